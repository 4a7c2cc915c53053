//! Issue 17: refusals that change nothing, frees that can be retried, and stream
//! identity per (context, stream). Each test names the defect it guards.

use cuda_vmm::{
    AccessFlags, Allocation, AllocationProps, Error, LinearAllocation, Reservation, ReserveOptions,
    Stream,
};
use cuda_vmm_sys::CUresult;

use crate::cuda;
use cuda_vmm_tests::helpers::TestResult;

/// Class 4: `unmap_batch` given a mapping of another reservation returned
/// `InvalidArgument` and unmapped every mapping anyway (dropped on the early return).
/// The refusal must hand every mapping back, still mapped.
#[test]
fn unmap_batch_refusal_hands_every_mapping_back() -> TestResult {
    let _memory = crate::memory_shared();
    let device = cuda()?.device(0)?;
    let props = AllocationProps::device(&device);
    let g = device.granularity(&props, cuda_vmm::GranularityKind::Minimum)?;
    let a = Reservation::new(&device, 2 * g, ReserveOptions::default())?;
    let b = Reservation::new(&device, g, ReserveOptions::default())?;
    let mut mappings = Vec::new();
    for at in [0, g] {
        mappings.push(a.map(at, &Allocation::new(&device, g, &props)?, 0, g)?);
    }
    mappings.push(b.map(0, &Allocation::new(&device, g, &props)?, 0, g)?);
    let Err((error, back)) = a.unmap_batch(mappings) else {
        panic!("a batch with a foreign mapping was accepted");
    };
    assert!(matches!(error, Error::InvalidArgument { .. }), "{error:?}");
    assert_eq!(back.len(), 3);
    assert_eq!(a.mapping_count(), 2);
    assert_eq!(b.mapping_count(), 1);
    assert!(a.is_mapped(0, 2 * g));
    let (ours, theirs): (Vec<_>, Vec<_>) = back
        .into_iter()
        .partition(|m| m.reservation().ptr() == a.ptr());
    let results = a.unmap_batch(ours).map_err(|(e, _)| e)?;
    assert_eq!(results, vec![Ok(()), Ok(())]);
    assert_eq!(a.mapping_count(), 0);
    drop(theirs);
    assert_eq!(b.mapping_count(), 0);
    Ok(())
}

/// Class 8: `LinearAllocation::free` marked itself freed before the wait, so a failed
/// wait leaked the memory with no way to retry. A failed wait now hands the
/// allocation back, and the retry frees it.
#[test]
fn linear_free_after_a_failed_wait_can_be_retried() -> TestResult {
    let cuda = cuda()?;
    if !crate::simulator_or_skip(crate::FAULT_INJECTION)? {
        return Ok(());
    }
    let _memory = crate::memory_exclusive();
    let device = cuda.device(0)?;
    let before = device.memory_info()?.free;
    let linear = LinearAllocation::new(&device, 1 << 20)?;
    let guard = cuda_vmm_sim::inject_fault("cuCtxSynchronize", 1, CUresult::CUDA_ERROR_UNKNOWN);
    let failed = linear.free().expect_err("the injected wait failure");
    drop(guard);
    assert!(matches!(
        failed.error,
        Error::Driver {
            call: "cuCtxSynchronize",
            ..
        }
    ));
    let linear = failed
        .allocation
        .expect("nothing was freed: the allocation comes back");
    linear.free()?;
    assert_eq!(device.memory_info()?.free, before);
    Ok(())
}

/// Class 8: after `cuMemFree` itself fails, the pointer is never freed again (the
/// memory may already be gone), so no allocation comes back to retry with.
#[test]
fn linear_free_does_not_retry_a_failed_cumemfree() -> TestResult {
    let cuda = cuda()?;
    if !crate::simulator_or_skip(crate::FAULT_INJECTION)? {
        return Ok(());
    }
    let _memory = crate::memory_shared();
    let device = cuda.device(0)?;
    let linear = LinearAllocation::new(&device, 1 << 20)?;
    let ptr = linear.ptr();
    let _guard = cuda_vmm_sim::inject_fault("cuMemFree_v2", 1, CUresult::CUDA_ERROR_UNKNOWN);
    let failed = linear.free().expect_err("the injected free failure");
    assert!(matches!(
        failed.error,
        Error::Driver {
            call: "cuMemFree_v2",
            ..
        }
    ));
    assert!(
        failed.allocation.is_none(),
        "{ptr:#x} must not be freed twice"
    );
    Ok(())
}

/// Class 2: uses were keyed by the raw stream handle, and every device's legacy stream
/// is the null handle: an async write on device 0's legacy stream, recorded after a use
/// on device 1's legacy stream, re-recorded device 1's event and was lost, so a later
/// read was not ordered after it and returned the old bytes.
#[test]
fn legacy_streams_of_two_devices_are_two_streams() -> TestResult {
    let cuda = cuda()?;
    if cuda.device_count()? < 2 {
        eprintln!("skipped: needs two devices");
        return Ok(());
    }
    let _memory = crate::memory_shared();
    let (d0, d1) = (cuda.device(0)?, cuda.device(1)?);
    let props = AllocationProps::device(&d0);
    let g = d0.granularity(&props, cuda_vmm::GranularityKind::Minimum)?;
    let r = Reservation::new(&d0, g, ReserveOptions::default())?;
    let _m = r.map(0, &Allocation::new(&d0, g, &props)?, 0, g)?;
    r.set_access(
        0,
        g,
        &[(&d0, AccessFlags::ReadWrite), (&d1, AccessFlags::ReadWrite)],
    )?;
    r.fill(0, 64, 1)?;
    r.record_use(&Stream::legacy(&d1))?;
    r.write_async(&Stream::legacy(&d0), 0, &[7u8; 64])?;
    let mut out = [0u8; 64];
    r.read(0, &mut out)?;
    assert_eq!(out, [7u8; 64]);
    Ok(())
}
