//! The safe layer (`cuda-vmm`): every entry point's success path and every
//! validation error, on whichever backend `Cuda::new()` picks.
//!
//! Data checks write through one mapping and read back through another (an
//! alias of the same allocation) or through a copy. Tests that count device
//! memory hold the suite's [`crate::DEVICE_MEMORY`] exclusively
//! ([`crate::memory_exclusive`]); every other test here that allocates holds it
//! shared ([`crate::memory_shared`]), like every other module of the suite.

use std::os::fd::AsFd;

use cuda_vmm::{
    AccessFlags, Allocation, AllocationProps, Backend, Cuda, Device, Error, GranularityKind,
    HandleTypes, LinearAllocation, Location, Reservation, ReserveOptions,
};

/// The backend under test, printed once per run.
use crate::cuda;
/// Device 0, kept for the whole run so its primary context stays alive.
use crate::pinned_device as device;
use cuda_vmm_tests::helpers::{gran, pattern, TestResult};

/// The error of a call expected to fail.
#[track_caller]
fn fails<T>(r: cuda_vmm::Result<T>) -> Error {
    match r {
        Ok(_) => panic!("expected an error, the call succeeded"),
        Err(e) => e,
    }
}

fn rw(d: &Device) -> [(&Device, AccessFlags); 1] {
    [(d, AccessFlags::ReadWrite)]
}

// ---------------------------------------------------------------- driver, devices

#[test]
fn backend_version_and_devices() -> TestResult {
    let _memory = crate::memory_shared();
    let cuda = cuda()?;
    let count = cuda.device_count()?;
    assert!(count >= 1);
    assert_eq!(cuda.devices()?.len(), count);
    let v = cuda.driver_version()?;
    assert!(v.major >= 10, "driver version {v}");
    assert_eq!(v.to_string(), format!("{}.{}", v.major, v.minor));
    let text = cuda.describe();
    assert!(
        text.starts_with(&format!("{} {v}, device 0: ", cuda.backend())),
        "{text}"
    );
    assert_eq!(Backend::RealDriver.to_string(), "real driver");
    assert_eq!(Backend::Simulator.to_string(), "simulator");
    Ok(())
}

#[test]
fn bad_device_ordinal_is_refused() -> TestResult {
    let _memory = crate::memory_shared();
    let cuda = cuda()?;
    let n = cuda.device_count()?;
    assert_eq!(
        fails(cuda.device(n)),
        Error::InvalidArgument {
            message: format!(
                "device ordinal {n} is out of range: the driver reports {n} device(s)"
            )
        }
    );
    Ok(())
}

#[test]
fn device_queries() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    assert_eq!(d.ordinal(), 0);
    assert!(!d.name()?.is_empty());
    let total = d.total_memory()?;
    assert!(total > 0);
    let vmm = d.attribute(
        cuda_vmm::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED,
    )?;
    assert_eq!(vmm, 1);
    let info = d.memory_info()?;
    assert_eq!(info.total, total);
    assert!(info.free <= info.total);
    d.make_current()?;
    d.make_current()?;
    assert_eq!(d.cuda().backend(), cuda()?.backend());
    Ok(())
}

#[test]
fn capabilities_report() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let caps = d.capabilities()?;
    assert_eq!(caps.ordinal, 0);
    assert_eq!(caps.name, d.name()?);
    assert_eq!(caps.total_memory, d.total_memory()?);
    assert!(caps.vmm_supported);
    assert_eq!(caps.min_granularity, gran(&d)?);
    assert!(caps.min_granularity.is_power_of_two());
    assert!(caps.recommended_granularity >= caps.min_granularity);
    let text = caps.to_string();
    assert!(
        text.starts_with(&format!("device 0: {}\n", caps.name)),
        "{text}"
    );
    assert!(text.contains(&format!(
        "minimum granularity         {} bytes",
        caps.min_granularity
    )));
    Ok(())
}

#[test]
fn granularity_kinds() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let props = AllocationProps::device(&d);
    let min = d.granularity(&props, GranularityKind::Minimum)?;
    let rec = d.granularity(&props, GranularityKind::Recommended)?;
    assert!(min.is_power_of_two() && rec.is_power_of_two());
    assert_eq!(rec % min, 0);
    // Cached: a second query answers the same.
    assert_eq!(d.granularity(&props, GranularityKind::Minimum)?, min);
    let bad = AllocationProps::new(Location::Device(9999));
    assert_eq!(
        fails(d.granularity(&bad, GranularityKind::Minimum)),
        Error::InvalidArgument {
            message: format!(
                "location device ordinal 9999 is out of range: the driver reports {} device(s)",
                d.cuda().device_count()?
            )
        }
    );
    Ok(())
}

#[test]
fn peer_access_query() -> TestResult {
    let _memory = crate::memory_shared();
    let cuda = cuda()?;
    let devices = cuda.devices()?;
    for a in &devices {
        for b in &devices {
            if a.ordinal() != b.ordinal() {
                // Any answer is fine; the call itself must succeed.
                a.can_access_peer(b)?;
            }
        }
    }
    Ok(())
}

#[test]
fn handles_are_send_and_sync() {
    fn both<T: Send + Sync>() {}
    both::<Cuda>();
    both::<Device>();
    both::<Reservation>();
    both::<Allocation>();
    both::<cuda_vmm::Mapping>();
    both::<LinearAllocation>();
    both::<Error>();
}

// ---------------------------------------------------------------- reservations

#[test]
fn reservation_basics() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let r = Reservation::new(&d, 4 * g, ReserveOptions::default())?;
    assert_eq!(r.size(), 4 * g);
    assert_eq!(r.granularity(), g);
    assert_ne!(r.ptr(), 0);
    assert_eq!(r.ptr() % g as u64, 0);
    assert!(!r.hint_honoured());
    assert!(!r.is_mapped(0, g));
    r.free()?;
    Ok(())
}

#[test]
fn reservation_size_validation() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    assert_eq!(
        fails(Reservation::new(&d, 0, ReserveOptions::default())),
        Error::InvalidArgument {
            message: "reservation size 0: the size must be nonzero".into()
        }
    );
    assert_eq!(
        fails(Reservation::new(&d, g + 4096, ReserveOptions::default())),
        Error::NotAligned {
            what: "reservation size",
            value: (g + 4096) as u64,
            granularity: g
        }
    );
    Ok(())
}

#[test]
fn reservation_alignment() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let bad = ReserveOptions {
        alignment: 3 * g,
        ..Default::default()
    };
    assert_eq!(
        fails(Reservation::new(&d, g, bad)),
        Error::InvalidArgument {
            message: format!("alignment {} is not a power of two", 3 * g)
        }
    );
    let big = 8 * g;
    let r = Reservation::new(
        &d,
        g,
        ReserveOptions {
            alignment: big,
            ..Default::default()
        },
    )?;
    assert_eq!(r.ptr() % big as u64, 0);
    // A smaller power of two means "the granularity".
    let r2 = Reservation::new(
        &d,
        g,
        ReserveOptions {
            alignment: 4096,
            ..Default::default()
        },
    )?;
    assert_eq!(r2.ptr() % g as u64, 0);
    Ok(())
}

#[test]
fn reservation_hint_honoured() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    // Find a free hole, release it, and ask for its start (the real driver
    // honours that: conformance `reserve_hint_free_is_honoured`). Other test
    // threads may grab the hole in between, so try a few holes.
    for _ in 0..8 {
        let hole = Reservation::new(&d, 4 * g, ReserveOptions::default())?;
        let want = hole.ptr();
        hole.free()?;
        let opts = ReserveOptions {
            hint: Some(want),
            strict_hint: true,
            ..Default::default()
        };
        match Reservation::new(&d, 4 * g, opts) {
            Ok(r) => {
                assert!(r.hint_honoured());
                assert_eq!(r.ptr(), want);
                return Ok(());
            }
            Err(Error::HintNotHonoured { requested, .. }) => assert_eq!(requested, want),
            Err(e) => return Err(e.into()),
        }
    }
    panic!("a freed hole's start was never honoured as a hint in 8 tries")
}

#[test]
fn reservation_hint_not_honoured() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let taken = Reservation::new(&d, 4 * g, ReserveOptions::default())?;
    let lax = Reservation::new(
        &d,
        4 * g,
        ReserveOptions {
            hint: Some(taken.ptr()),
            ..Default::default()
        },
    )?;
    assert!(!lax.hint_honoured());
    assert_ne!(lax.ptr(), taken.ptr());
    match fails(Reservation::new(
        &d,
        4 * g,
        ReserveOptions {
            hint: Some(taken.ptr()),
            strict_hint: true,
            ..Default::default()
        },
    )) {
        Error::HintNotHonoured { requested, got } => {
            assert_eq!(requested, taken.ptr());
            assert_ne!(got, taken.ptr());
        }
        other => panic!("expected HintNotHonoured, got {other:?}"),
    }
    Ok(())
}

#[test]
fn reservation_hint_validation() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let hint = 0x7000_0000_0000u64 + 4096;
    assert_eq!(
        fails(Reservation::new(
            &d,
            g,
            ReserveOptions {
                hint: Some(hint),
                ..Default::default()
            }
        )),
        Error::NotAligned {
            what: "address hint",
            value: hint,
            granularity: g
        }
    );
    assert_eq!(
        fails(Reservation::new(
            &d,
            g,
            ReserveOptions {
                strict_hint: true,
                ..Default::default()
            }
        )),
        Error::InvalidArgument {
            message: "strict_hint is set but no address hint is given".into()
        }
    );
    assert_eq!(
        fails(Reservation::new(
            &d,
            g,
            ReserveOptions {
                hint: Some(0),
                ..Default::default()
            }
        )),
        Error::InvalidArgument {
            message: "address hint 0 is not an address; use None".into()
        }
    );
    Ok(())
}

// ---------------------------------------------------------------- allocations

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

// ---------------------------------------------------------------- mapping and data

#[test]
fn alias_mappings_share_data_and_one_set_access_covers_both() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let a = Allocation::new(&d, g, &AllocationProps::device(&d))?;
    let r = Reservation::new(&d, 2 * g, ReserveOptions::default())?;
    let m0 = r.map(0, &a, 0, g)?;
    let m1 = r.map(g, &a, 0, g)?;
    assert_eq!(m0.ptr(), r.ptr());
    assert_eq!(m1.ptr(), r.ptr() + g as u64);
    assert_eq!((m1.offset(), m1.size()), (g, g));
    assert_eq!(m1.allocation().raw_handle(), a.raw_handle());
    assert_eq!(m1.reservation().ptr(), r.ptr());
    assert!(r.is_mapped(0, 2 * g));
    r.set_access(0, 2 * g, &rw(&d))?;
    let data = pattern(4096, 7);
    r.write(100, &data)?;
    let mut out = vec![0u8; data.len()];
    r.read(g + 100, &mut out)?;
    assert_eq!(out, data);
    Ok(())
}

#[test]
fn data_across_two_allocations() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let props = AllocationProps::device(&d);
    let a = Allocation::new(&d, g, &props)?;
    let b = Allocation::new(&d, g, &props)?;
    let r = Reservation::new(&d, 2 * g, ReserveOptions::default())?;
    let _ma = r.map(0, &a, 0, g)?;
    let _mb = r.map(g, &b, 0, g)?;
    r.set_access(0, 2 * g, &rw(&d))?;
    let data = pattern(8192, 3);
    r.write(g - 4096, &data)?;
    // Read the second half back through a different reservation aliasing `b`.
    let r2 = Reservation::new(&d, g, ReserveOptions::default())?;
    let m2 = r2.map(0, &b, 0, g)?;
    m2.set_access(&rw(&d))?;
    let mut out = vec![0u8; 4096];
    r2.read(0, &mut out)?;
    assert_eq!(out, data[4096..]);
    Ok(())
}

#[test]
fn fill_and_copy_within() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let a = Allocation::new(&d, 2 * g, &AllocationProps::device(&d))?;
    let r = Reservation::new(&d, 2 * g, ReserveOptions::default())?;
    let m = r.map(0, &a, 0, 2 * g)?;
    m.set_access(&rw(&d))?;
    r.fill(0, 4096, 0xab)?;
    r.copy_within(0, g, 4096)?;
    let mut out = vec![0u8; 4096];
    r.read(g, &mut out)?;
    assert!(out.iter().all(|&b| b == 0xab));
    assert_eq!(
        fails(r.copy_within(0, 2048, 4096)),
        Error::InvalidArgument {
            message: "copy ranges [0, 0 + 4096) and [2048, 2048 + 4096) overlap".into()
        }
    );
    Ok(())
}

#[test]
fn map_alignment_validation() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let a = Allocation::new(&d, 2 * g, &AllocationProps::device(&d))?;
    let r = Reservation::new(&d, 4 * g, ReserveOptions::default())?;
    assert_eq!(
        fails(r.map(4096, &a, 0, g)),
        Error::NotAligned {
            what: "offset",
            value: 4096,
            granularity: g
        }
    );
    assert_eq!(
        fails(r.map(0, &a, 0, g + 4096)),
        Error::NotAligned {
            what: "size",
            value: (g + 4096) as u64,
            granularity: g
        }
    );
    assert_eq!(
        fails(r.map(0, &a, 4096, g)),
        Error::NotAligned {
            what: "allocation offset",
            value: 4096,
            granularity: g
        }
    );
    assert_eq!(
        fails(r.map(0, &a, 0, 0)),
        Error::InvalidArgument {
            message: "mapping size 0: the size must be nonzero".into()
        }
    );
    assert_eq!(r.mapping_count(), 0);
    Ok(())
}

#[test]
fn map_bounds_validation() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let a = Allocation::new(&d, 2 * g, &AllocationProps::device(&d))?;
    let r = Reservation::new(&d, 4 * g, ReserveOptions::default())?;
    // Past the reservation's end: the real driver may accept this; the wrapper refuses.
    assert_eq!(
        fails(r.map(3 * g, &a, 0, 2 * g)),
        Error::OutOfBounds {
            what: "mapping in reservation",
            offset: 3 * g as u64,
            size: 2 * g as u64,
            limit: 4 * g as u64
        }
    );
    assert_eq!(
        fails(r.map(0, &a, g, 2 * g)),
        Error::OutOfBounds {
            what: "mapping in allocation",
            offset: g as u64,
            size: 2 * g as u64,
            limit: 2 * g as u64
        }
    );
    assert_eq!(
        fails(r.map(usize::MAX - g + 1, &a, 0, g)),
        Error::OutOfBounds {
            what: "mapping in reservation",
            offset: (usize::MAX - g + 1) as u64,
            size: g as u64,
            limit: 4 * g as u64
        }
    );
    // Exactly up to the end is fine.
    let _m = r.map(2 * g, &a, 0, 2 * g)?;
    Ok(())
}

#[test]
fn partial_maps_are_refused_before_the_driver() -> TestResult {
    let _memory = crate::memory_shared();
    // The real driver answers CUDA_ERROR_NOT_SUPPORTED (conformance
    // `map_size_smaller_than_allocation`, `map_nonzero_offset`); the wrapper
    // refuses first and says why.
    let d = device()?;
    let g = gran(&d)?;
    let a = Allocation::new(&d, 2 * g, &AllocationProps::device(&d))?;
    let r = Reservation::new(&d, 4 * g, ReserveOptions::default())?;
    let msg = |off: usize, size: usize| Error::InvalidArgument {
        message: format!(
            "mapping {size} bytes at allocation offset {off} of a {}-byte allocation: \
             cuMemMap maps whole allocations only (offset 0, size {})",
            2 * g,
            2 * g
        ),
    };
    assert_eq!(fails(r.map(0, &a, 0, g)), msg(0, g));
    assert_eq!(fails(r.map(0, &a, g, g)), msg(g, g));
    assert_eq!(r.mapping_count(), 0);
    let _whole = r.map(0, &a, 0, 2 * g)?;
    assert_eq!(r.mapping_count(), 1);
    Ok(())
}

#[test]
fn overlapping_maps_are_refused() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let a = Allocation::new(&d, 2 * g, &AllocationProps::device(&d))?;
    let r = Reservation::new(&d, 4 * g, ReserveOptions::default())?;
    let m = r.map(g, &a, 0, 2 * g)?;
    assert_eq!(
        fails(r.map(0, &a, 0, 2 * g)),
        Error::Overlap {
            offset: 0,
            size: 2 * g,
            existing_offset: g,
            existing_size: 2 * g
        }
    );
    assert_eq!(
        fails(r.map(2 * g, &a, 0, 2 * g)),
        Error::Overlap {
            offset: 2 * g,
            size: 2 * g,
            existing_offset: g,
            existing_size: 2 * g
        }
    );
    // Neighbours on both sides are fine.
    let small = Allocation::new(&d, g, &AllocationProps::device(&d))?;
    let _left = r.map(0, &small, 0, g)?;
    let _right = r.map(3 * g, &small, 0, g)?;
    assert_eq!(r.mapping_count(), 3);
    // After unmapping, the range can be mapped again.
    m.unmap()?;
    assert!(!r.is_mapped(g, 2 * g));
    let _again = r.map(g, &a, 0, 2 * g)?;
    assert!(r.is_mapped(0, 4 * g));
    Ok(())
}

#[test]
fn set_access_validation() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let a = Allocation::new(&d, g, &AllocationProps::device(&d))?;
    let r = Reservation::new(&d, 4 * g, ReserveOptions::default())?;
    let _m = r.map(0, &a, 0, g)?;
    assert_eq!(
        fails(r.set_access(0, 2 * g, &rw(&d))),
        Error::NotMapped {
            offset: 0,
            size: 2 * g
        }
    );
    assert_eq!(
        fails(r.set_access(4096, g, &rw(&d))),
        Error::NotAligned {
            what: "offset",
            value: 4096,
            granularity: g
        }
    );
    assert_eq!(
        fails(r.set_access(3 * g, 2 * g, &rw(&d))),
        Error::OutOfBounds {
            what: "access range in reservation",
            offset: 3 * g as u64,
            size: 2 * g as u64,
            limit: 4 * g as u64
        }
    );
    assert_eq!(
        fails(r.set_access(0, g, &[])),
        Error::InvalidArgument {
            message: "the access list is empty: name at least one device".into()
        }
    );
    assert_eq!(
        fails(r.set_access(
            0,
            g,
            &[(&d, AccessFlags::Read), (&d, AccessFlags::ReadWrite)]
        )),
        Error::InvalidArgument {
            message: "device 0 appears more than once in the access list".into()
        }
    );
    Ok(())
}

#[test]
fn get_access_reports_what_was_set() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let a = Allocation::new(&d, g, &AllocationProps::device(&d))?;
    let b = Allocation::new(&d, g, &AllocationProps::device(&d))?;
    let r = Reservation::new(&d, 4 * g, ReserveOptions::default())?;
    let m0 = r.map(0, &a, 0, g)?;
    let m1 = r.map(g, &b, 0, g)?;
    m0.set_access(&rw(&d))?;
    m1.set_access(&[(&d, AccessFlags::Read)])?;
    assert_eq!(r.access(0, &d)?, AccessFlags::ReadWrite);
    assert_eq!(r.access(g + 4096, &d)?, AccessFlags::Read);
    assert_eq!(
        fails(r.access(2 * g, &d)),
        Error::NotMapped {
            offset: 2 * g,
            size: 1
        }
    );
    assert_eq!(
        fails(r.access(4 * g, &d)),
        Error::OutOfBounds {
            what: "access query in reservation",
            offset: 4 * g as u64,
            size: 1,
            limit: 4 * g as u64
        }
    );
    Ok(())
}

#[test]
fn copies_need_mapping_and_access() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let a = Allocation::new(&d, g, &AllocationProps::device(&d))?;
    let b = Allocation::new(&d, g, &AllocationProps::device(&d))?;
    let r = Reservation::new(&d, 4 * g, ReserveOptions::default())?;
    let m0 = r.map(0, &a, 0, g)?;
    let _m1 = r.map(g, &b, 0, g)?;
    let mut buf = [0u8; 16];
    // Mapped, but no access yet.
    assert_eq!(
        fails(r.write(0, &buf)),
        Error::AccessDenied {
            offset: 0,
            size: 16,
            required: AccessFlags::ReadWrite,
            device: 0
        }
    );
    assert_eq!(
        fails(r.read(0, &mut buf)),
        Error::AccessDenied {
            offset: 0,
            size: 16,
            required: AccessFlags::Read,
            device: 0
        }
    );
    m0.set_access(&[(&d, AccessFlags::Read)])?;
    r.read(0, &mut buf)?;
    assert_eq!(
        fails(r.fill(0, 16, 1)),
        Error::AccessDenied {
            offset: 0,
            size: 16,
            required: AccessFlags::ReadWrite,
            device: 0
        }
    );
    // Unmapped and out of bounds.
    assert_eq!(
        fails(r.read(2 * g, &mut buf)),
        Error::NotMapped {
            offset: 2 * g,
            size: 16
        }
    );
    assert_eq!(
        fails(r.write(4 * g - 8, &buf)),
        Error::OutOfBounds {
            what: "copy range in reservation",
            offset: 4 * g as u64 - 8,
            size: 16,
            limit: 4 * g as u64
        }
    );
    // A copy spanning an accessible and an inaccessible mapping is refused.
    assert_eq!(
        fails(r.read(g - 8, &mut buf)),
        Error::AccessDenied {
            offset: g - 8,
            size: 16,
            required: AccessFlags::Read,
            device: 0
        }
    );
    Ok(())
}

#[test]
fn retain_allocation_from_a_mapping() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let r = Reservation::new(&d, g, ReserveOptions::default())?;
    let m = {
        let a = Allocation::new(&d, g, &AllocationProps::device(&d))?;
        r.map(0, &a, 0, g)?
    };
    m.set_access(&rw(&d))?;
    let data = pattern(512, 11);
    r.write(0, &data)?;
    let retained = m.retain_allocation()?;
    assert_eq!(retained.size(), g);
    assert_eq!(retained.props(), m.allocation().props());
    drop(m);
    // The retained reference keeps the memory: map it again and read the data.
    let r2 = Reservation::new(&d, g, ReserveOptions::default())?;
    let m2 = r2.map(0, &retained, 0, g)?;
    m2.set_access(&rw(&d))?;
    let mut out = vec![0u8; data.len()];
    r2.read(0, &mut out)?;
    assert_eq!(out, data);
    Ok(())
}

// ---------------------------------------------------------------- ownership

#[test]
fn release_and_free_with_live_users_are_in_use() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let a = Allocation::new(&d, g, &AllocationProps::device(&d))?;
    let r = Reservation::new(&d, g, ReserveOptions::default())?;
    let m = r.map(0, &a, 0, g)?;
    // `a` + the mapping's clone remain besides the clone being released.
    assert_eq!(
        fails(a.clone().release()),
        Error::InUse {
            what: "allocation",
            users: 2
        }
    );
    assert_eq!(
        fails(r.clone().free()),
        Error::InUse {
            what: "reservation",
            users: 2
        }
    );
    m.unmap()?;
    a.release()?;
    r.free()?;
    Ok(())
}

#[test]
fn mapping_keeps_reservation_and_allocation_alive() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let m = {
        let a = Allocation::new(&d, g, &AllocationProps::device(&d))?;
        let r = Reservation::new(&d, g, ReserveOptions::default())?;
        r.map(0, &a, 0, g)?
        // `a` and `r` are dropped here; the mapping holds both.
    };
    m.set_access(&rw(&d))?;
    let data = pattern(1024, 5);
    m.reservation().write(0, &data)?;
    let mut out = vec![0u8; data.len()];
    m.reservation().read(0, &mut out)?;
    assert_eq!(out, data);
    let r = m.reservation().clone();
    drop(m);
    assert!(!r.is_mapped(0, g));
    r.free()?;
    Ok(())
}

#[test]
fn memory_returns_to_the_start_after_everything_is_dropped() -> TestResult {
    let _memory = crate::memory_exclusive();
    let d = device()?;
    let g = gran(&d)?;
    let sim = d.cuda().backend() == Backend::Simulator;
    // Every test of the suite that allocates holds `crate::DEVICE_MEMORY` (shared), so
    // with it held exclusively nothing else allocates meanwhile: one measurement.
    let start = d.memory_info()?;
    let (during, after) = {
        let r = Reservation::new(&d, 4 * g, ReserveOptions::default())?;
        let mut maps = Vec::new();
        for i in 0..4 {
            let a = Allocation::new(&d, g, &AllocationProps::device(&d))?;
            maps.push(r.map(i * g, &a, 0, g)?);
        }
        r.set_access(0, 4 * g, &rw(&d))?;
        let during = d.memory_info()?;
        drop(maps);
        drop(r);
        (during, d.memory_info()?)
    };
    let ok = if sim {
        during.free + 4 * g == start.free && after == start
    } else {
        after.total == start.total && after.free + 16 * g >= start.free
    };
    assert!(
        ok,
        "memory did not return to its start value: start {start:?}, during {during:?}, after {after:?}"
    );
    Ok(())
}

#[test]
fn mapping_from_another_driver_is_refused() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let r = Reservation::new(&d, g, ReserveOptions::default())?;
    // A second driver object over the simulator's functions: handles of one
    // Cuda must never reach the other.
    let table = *cuda_vmm_sim::driver().table();
    // SAFETY: the simulator's functions, valid for the program's lifetime.
    let other: &'static cuda_vmm_sys::Driver = Box::leak(Box::new(unsafe {
        cuda_vmm_sys::Driver::from_table(table, "copy")
    }));
    // SAFETY: the simulator implements the driver API.
    let other = unsafe { Cuda::from_driver(other, Backend::Simulator) }?;
    let od = other.device(0)?;
    let oa = Allocation::new(&od, gran(&od)?, &AllocationProps::device(&od))?;
    assert!(matches!(
        fails(r.map(0, &oa, 0, g)),
        Error::InvalidArgument { message } if message.starts_with("the allocation belongs to a different driver")
    ));
    assert!(matches!(
        fails(r.set_access(0, g, &rw(&od))),
        Error::InvalidArgument { message } if message.starts_with("a device in the access list belongs to a different driver")
    ));
    Ok(())
}

#[test]
fn missing_entry_point_is_reported() -> TestResult {
    let _memory = crate::memory_shared();
    let mut table = *cuda_vmm_sim::driver().table();
    table.cuMemCreate = None;
    // SAFETY: every remaining slot is a simulator function, valid forever.
    let driver: &'static cuda_vmm_sys::Driver = Box::leak(Box::new(unsafe {
        cuda_vmm_sys::Driver::from_table(table, "sim without cuMemCreate")
    }));
    // SAFETY: the simulator implements the driver API.
    let cuda = unsafe { Cuda::from_driver(driver, Backend::Simulator) }?;
    let d = cuda.device(0)?;
    let g = gran(&d)?;
    let version = cuda.driver_version()?;
    let e = fails(Allocation::new(&d, g, &AllocationProps::device(&d)));
    assert_eq!(
        e,
        Error::MissingEntryPoint {
            symbol: "cuMemCreate",
            driver_version: Some(version)
        }
    );
    assert_eq!(
        e.to_string(),
        format!("the driver (version {version}) does not export `cuMemCreate`")
    );
    Ok(())
}

#[test]
fn threads_map_and_copy_concurrently() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let r = Reservation::new(&d, 8 * g, ReserveOptions::default())?;
    std::thread::scope(|s| -> TestResult {
        let handles: Vec<_> = (0..8usize)
            .map(|i| {
                let (r, d) = (r.clone(), d.clone());
                s.spawn(move || -> cuda_vmm::Result<Vec<u8>> {
                    let a = Allocation::new(&d, g, &AllocationProps::device(&d))?;
                    let m = r.map(i * g, &a, 0, g)?;
                    m.set_access(&rw(&d))?;
                    let data = pattern(256, i as u8);
                    r.write(i * g, &data)?;
                    let mut out = vec![0u8; 256];
                    r.read(i * g, &mut out)?;
                    m.unmap()?;
                    Ok(out)
                })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            let out = h.join().map_err(|_| "thread panicked")??;
            assert_eq!(out, pattern(256, i as u8));
        }
        Ok(())
    })?;
    assert_eq!(r.mapping_count(), 0);
    Ok(())
}

// ---------------------------------------------------------------- sharing

#[test]
fn posix_fd_export_import_round_trip() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    if !d.capabilities()?.posix_fd_handles {
        return Ok(());
    }
    let g = gran(&d)?;
    let props = AllocationProps::device(&d).handle_types(HandleTypes::POSIX_FD);
    let a = Allocation::new(&d, g, &props)?;
    let r = Reservation::new(&d, g, ReserveOptions::default())?;
    let m = r.map(0, &a, 0, g)?;
    m.set_access(&rw(&d))?;
    let data = pattern(2048, 9);
    r.write(0, &data)?;

    let fd = a.export_posix_fd()?;
    let imported = Allocation::import_posix_fd(&d, fd.as_fd(), g, &props)?;
    assert_eq!(imported.size(), g);
    // The driver reports no handle types for an imported handle (conformance
    // `properties_of_imported_handle`).
    assert_eq!(imported.props().requested_handle_types(), HandleTypes::NONE);
    // We still own `fd`: importing did not take it.
    drop(fd);
    let r2 = Reservation::new(&d, g, ReserveOptions::default())?;
    let m2 = r2.map(0, &imported, 0, g)?;
    m2.set_access(&rw(&d))?;
    let mut out = vec![0u8; data.len()];
    r2.read(0, &mut out)?;
    assert_eq!(out, data);
    Ok(())
}

#[test]
fn posix_fd_validation() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let plain = Allocation::new(&d, g, &AllocationProps::device(&d))?;
    assert_eq!(
        fails(plain.export_posix_fd()),
        Error::InvalidArgument {
            message: format!(
                "allocation {:#x} was created without HandleTypes::POSIX_FD (handle types NONE)",
                plain.raw_handle()
            )
        }
    );
    if d.capabilities()?.posix_fd_handles {
        let props = AllocationProps::device(&d).handle_types(HandleTypes::POSIX_FD);
        let a = Allocation::new(&d, g, &props)?;
        let fd = a.export_posix_fd()?;
        assert_eq!(
            fails(Allocation::import_posix_fd(&d, fd.as_fd(), 0, &props)),
            Error::InvalidArgument {
                message: "imported size 0: the size must be nonzero".into()
            }
        );
    }
    Ok(())
}

#[test]
fn fabric_handles_need_device_support() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let plain = Allocation::new(&d, g, &AllocationProps::device(&d))?;
    let handle = cuda_vmm::FabricHandle::from_bytes([7; 64]);
    assert_eq!(handle.as_bytes(), &[7; 64]);
    let attribute = d.attribute(
        cuda_vmm_sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_FABRIC_SUPPORTED,
    )?;
    eprintln!("device 0: CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_FABRIC_SUPPORTED = {attribute}");
    assert_eq!(d.capabilities()?.fabric_handles, attribute != 0);
    if d.capabilities()?.fabric_handles {
        assert_eq!(
            fails(plain.export_fabric()),
            Error::InvalidArgument {
                message: format!(
                    "allocation {:#x} was created without HandleTypes::FABRIC (handle types NONE)",
                    plain.raw_handle()
                )
            }
        );
    } else {
        let unsupported = Error::Unsupported {
            feature: "fabric handles",
            device: 0,
        };
        assert_eq!(fails(plain.export_fabric()), unsupported);
        assert_eq!(
            fails(Allocation::import_fabric(&d, &handle, g)),
            unsupported
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- linear memory

#[test]
fn linear_allocation_round_trip() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let a = LinearAllocation::new(&d, 1 << 20)?;
    let b = LinearAllocation::new(&d, 1 << 20)?;
    assert_eq!(a.size(), 1 << 20);
    assert_ne!(a.ptr(), 0);
    let data = pattern(4096, 1);
    a.write(0, &data)?;
    b.copy_from(&a, 4096)?;
    let mut out = vec![0u8; 4096];
    b.read(0, &mut out)?;
    assert_eq!(out, data);
    // The raw copy agrees.
    // SAFETY: both ranges are live cuMemAlloc memory of this device.
    unsafe { cuda_vmm::copy_dtod(&d, b.ptr() + 4096, a.ptr(), 4096) }?;
    b.read(4096, &mut out)?;
    assert_eq!(out, data);
    a.free()?;
    b.free()?;
    Ok(())
}

#[test]
fn linear_allocation_validation() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    assert_eq!(
        fails(LinearAllocation::new(&d, 0)),
        Error::InvalidArgument {
            message: "allocation size 0: the size must be nonzero".into()
        }
    );
    let a = LinearAllocation::new(&d, 4096)?;
    let b = LinearAllocation::new(&d, 8192)?;
    assert_eq!(
        fails(a.write(4000, &[0u8; 100])),
        Error::OutOfBounds {
            what: "copy range in linear allocation",
            offset: 4000,
            size: 100,
            limit: 4096
        }
    );
    assert_eq!(
        fails(a.copy_from(&b, 8192)),
        Error::OutOfBounds {
            what: "copy destination",
            offset: 0,
            size: 8192,
            limit: 4096
        }
    );
    Ok(())
}

/// Two GPUs: one mapping, access for both set in one call, and device 1 reading device 0's
/// memory through its own context. Needs two devices (e.g. an H200 pair); with one it says so.
#[test]
fn two_devices_share_one_mapping() -> TestResult {
    let _memory = crate::memory_shared();
    let cuda = cuda()?;
    let devices = cuda.devices()?;
    if devices.len() < 2 {
        eprintln!(
            "skipped: two_devices_share_one_mapping needs 2 devices, {} present",
            devices.len()
        );
        return Ok(());
    }
    let (d0, d1) = (&devices[0], &devices[1]);
    let g = gran(d0)?;
    let a = Allocation::new(d0, g, &AllocationProps::device(d0))?;
    let r = Reservation::new(d0, g, ReserveOptions::default())?;
    let _m = r.map(0, &a, 0, g)?;
    r.set_access(
        0,
        g,
        &[(d0, AccessFlags::ReadWrite), (d1, AccessFlags::ReadWrite)],
    )?;
    assert_eq!(r.access(0, d0)?, AccessFlags::ReadWrite);
    assert_eq!(r.access(0, d1)?, AccessFlags::ReadWrite);
    let data: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    r.write(0, &data)?;
    // Device 1 copies out of device 0's memory into its own.
    let dst = LinearAllocation::new(d1, g)?;
    // SAFETY: both ranges are live, mapped and accessible to device 1, and 4096 bytes long.
    unsafe { cuda_vmm::copy_dtod(d1, dst.ptr(), r.ptr(), data.len())? };
    let mut back = vec![0u8; data.len()];
    dst.read(0, &mut back)?;
    assert_eq!(back, data);
    Ok(())
}
