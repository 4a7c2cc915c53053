//! The safe layer: driver, devices.

use super::*;

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
