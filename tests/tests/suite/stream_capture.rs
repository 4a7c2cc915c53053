//! `cuStreamIsCapturing` and [`Stream::is_capturing`]: no stream the crate makes or names
//! is being captured; on the simulator, a stream marked with
//! `cuda_vmm_sim::mark_capturing` is, until the guard drops; and the bare tier passes the
//! driver's answer for a null out-pointer through untouched.

use cuda_vmm::raw::bare;
use cuda_vmm::Stream;
use cuda_vmm_sys::{CUresult, CUstreamCaptureStatus};
use cuda_vmm_tests::helpers::TestResult;

use crate::{cuda, device, simulator_or_skip};

const ON_SIMULATOR: &str = "stream capture marks need the simulator";

#[test]
fn no_stream_is_capturing() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    for (what, stream) in [
        ("new", Stream::new(&d)?),
        ("blocking", Stream::blocking(&d)?),
        ("legacy", Stream::legacy(&d)),
        ("per_thread", Stream::per_thread(&d)),
    ] {
        assert!(!stream.is_capturing()?, "{what} stream reports capturing");
    }
    Ok(())
}

#[test]
fn a_marked_stream_is_capturing_until_the_guard_drops() -> TestResult {
    let _memory = crate::memory_shared();
    if !simulator_or_skip(ON_SIMULATOR)? {
        return Ok(());
    }
    let d = device()?;
    let stream = Stream::new(&d)?;
    let other = Stream::new(&d)?;
    let guard = cuda_vmm_sim::mark_capturing(stream.raw());
    assert!(guard.is_active());
    assert!(stream.is_capturing()?);
    assert!(!other.is_capturing()?, "a mark is for its stream only");
    {
        let nested = cuda_vmm_sim::mark_capturing(stream.raw());
        assert!(nested.is_active());
        assert!(stream.is_capturing()?);
    }
    assert!(stream.is_capturing()?, "the outer mark still holds");
    drop(guard);
    assert!(!stream.is_capturing()?);
    Ok(())
}

#[test]
fn the_bare_tier_answers_the_status_and_the_driver_code() -> TestResult {
    let _memory = crate::memory_shared();
    if !simulator_or_skip(ON_SIMULATOR)? {
        return Ok(());
    }
    let api = cuda()?.api();
    let d = device()?;
    let stream = Stream::new(&d)?;
    // SAFETY: a live stream the test owns.
    let answer = unsafe { bare::stream_is_capturing(api, stream.raw()) }?;
    assert_eq!(
        answer,
        (
            CUresult::CUDA_SUCCESS,
            CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE
        )
    );
    let _guard = cuda_vmm_sim::mark_capturing(stream.raw());
    // SAFETY: as above.
    let answer = unsafe { bare::stream_is_capturing(api, stream.raw()) }?;
    assert_eq!(
        answer,
        (
            CUresult::CUDA_SUCCESS,
            CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_ACTIVE
        )
    );
    // SAFETY: a live stream; a null out-pointer is refused by the driver, never written.
    let rc = unsafe { bare::stream_is_capturing_into(api, stream.raw(), std::ptr::null_mut()) }?;
    assert_eq!(rc, CUresult::CUDA_ERROR_INVALID_VALUE);
    Ok(())
}

#[test]
fn a_destroyed_stream_is_refused_and_cannot_be_marked() -> TestResult {
    let _memory = crate::memory_shared();
    if !simulator_or_skip(ON_SIMULATOR)? {
        return Ok(());
    }
    let api = cuda()?.api();
    let d = device()?;
    let raw = Stream::new(&d)?.raw();
    // SAFETY: the simulator answers a destroyed handle with an error (the real driver's
    // contract forbids this call, hence the simulator only).
    let (rc, _) = unsafe { bare::stream_is_capturing(api, raw) }?;
    assert_eq!(rc, CUresult::CUDA_ERROR_INVALID_HANDLE);
    assert!(!cuda_vmm_sim::mark_capturing(raw).is_active());
    Ok(())
}
