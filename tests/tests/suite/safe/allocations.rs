//! The safe layer: allocations.

use super::*;

#[test]
fn allocation_basics_and_properties_round_trip() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let props = AllocationProps::device(&d);
    let a = Allocation::new(&d, 2 * g, &props)?;
    assert_eq!(a.size(), 2 * g);
    assert_eq!(a.device().ordinal(), 0);
    assert_eq!(a.props(), &props);
    assert_eq!(a.granularity(), g);
    assert_ne!(a.raw_handle(), 0);
    assert_eq!(a.properties()?, props);
    a.release()?;
    Ok(())
}

#[test]
fn properties_round_trip_with_posix_handles() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    if !d.capabilities()?.posix_fd_handles {
        return Ok(());
    }
    let props = AllocationProps::device(&d).handle_types(HandleTypes::POSIX_FD);
    let a = Allocation::new(&d, gran(&d)?, &props)?;
    let back = a.properties()?;
    assert_eq!(back, props);
    assert_eq!(back.location(), Location::Device(0));
    assert_eq!(back.requested_handle_types(), HandleTypes::POSIX_FD);
    Ok(())
}

#[test]
fn allocation_size_validation() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let props = AllocationProps::device(&d);
    assert_eq!(
        fails(Allocation::new(&d, 0, &props)),
        Error::InvalidArgument {
            message: "allocation size 0: the size must be nonzero".into()
        }
    );
    assert_eq!(
        fails(Allocation::new(&d, g / 2, &props)),
        Error::NotAligned {
            what: "allocation size",
            value: (g / 2) as u64,
            granularity: g
        }
    );
    Ok(())
}

#[test]
fn allocation_props_validation() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let n = d.cuda().device_count()?;
    assert_eq!(
        fails(Allocation::new(
            &d,
            g,
            &AllocationProps::new(Location::Device(n))
        )),
        Error::InvalidArgument {
            message: format!(
                "location device ordinal {n} is out of range: the driver reports {n} device(s)"
            )
        }
    );
    let unknown = AllocationProps::device(&d).handle_types(HandleTypes::from_bits_retain(0x30));
    assert_eq!(
        fails(Allocation::new(&d, g, &unknown)),
        Error::InvalidArgument {
            message: "handle types 0x30 contain unknown bits 0x30".into()
        }
    );
    assert_eq!(
        fails(unknown.validate(d.cuda())),
        Error::InvalidArgument {
            message: "handle types 0x30 contain unknown bits 0x30".into()
        }
    );
    let usage = AllocationProps::device(&d).usage(0x80);
    assert_eq!(
        fails(Allocation::new(&d, g, &usage)),
        Error::InvalidArgument {
            message: "usage flags 0x80 contain unknown bits 0x80".into()
        }
    );
    if cfg!(unix) {
        let win = AllocationProps::device(&d).handle_types(HandleTypes::WIN32);
        assert_eq!(
            fails(Allocation::new(&d, g, &win)),
            Error::Unsupported {
                feature: "Win32 handles",
                device: 0
            }
        );
    }
    AllocationProps::device(&d).validate(d.cuda())?;
    Ok(())
}

#[test]
fn unsupported_features_are_refused_before_the_driver() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let caps = d.capabilities()?;
    let cases = [
        (
            AllocationProps::device(&d).compression(true),
            caps.generic_compression,
            "compression",
        ),
        (
            AllocationProps::device(&d).rdma_capable(true),
            caps.gpu_direct_rdma_with_vmm,
            "GPUDirect RDMA",
        ),
        (
            AllocationProps::device(&d).handle_types(HandleTypes::FABRIC),
            caps.fabric_handles,
            "fabric handles",
        ),
    ];
    for (props, supported, feature) in cases {
        if supported {
            continue; // Whether the driver grants it depends on the system.
        }
        assert_eq!(
            fails(Allocation::new(&d, g, &props)),
            Error::Unsupported { feature, device: 0 },
            "{feature}"
        );
    }
    Ok(())
}
