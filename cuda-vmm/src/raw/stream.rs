//! Checked calls: streams, events, asynchronous copies and fills.

use core::ffi::c_void;

use cuda_vmm_sys::{CUdeviceptr, CUevent, CUstream, CUstreamCaptureStatus};

use super::{bare, Api};
use crate::error::Result;

/// `cuStreamCreate` in the current context.
pub fn stream_create(api: Api, flags: u32) -> Result<CUstream> {
    api.out("cuStreamCreate", bare::stream_create(api, flags))
}

/// `cuStreamDestroy_v2`.
///
/// # Safety
/// As for [`bare::stream_destroy`].
pub unsafe fn stream_destroy(api: Api, stream: CUstream) -> Result<()> {
    // SAFETY: forwarded from this function's contract.
    let rc = unsafe { bare::stream_destroy(api, stream) };
    api.done("cuStreamDestroy_v2", rc)
}

/// `cuStreamSynchronize`.
///
/// # Safety
/// As for [`bare::stream_synchronize`].
pub unsafe fn stream_synchronize(api: Api, stream: CUstream) -> Result<()> {
    // SAFETY: forwarded from this function's contract.
    let rc = unsafe { bare::stream_synchronize(api, stream) };
    api.done("cuStreamSynchronize", rc)
}

/// `cuStreamQuery`: whether all queued work finished (`CUDA_ERROR_NOT_READY` is `false`).
///
/// # Safety
/// As for [`bare::stream_query`].
pub unsafe fn stream_query(api: Api, stream: CUstream) -> Result<bool> {
    // SAFETY: forwarded from this function's contract.
    let rc = unsafe { bare::stream_query(api, stream) };
    api.ready("cuStreamQuery", rc)
}

/// `cuStreamIsCapturing`: the stream's capture status.
///
/// # Safety
/// As for [`bare::stream_is_capturing`].
pub unsafe fn stream_is_capturing(api: Api, stream: CUstream) -> Result<CUstreamCaptureStatus> {
    // SAFETY: forwarded from this function's contract.
    let answer = unsafe { bare::stream_is_capturing(api, stream) };
    api.out("cuStreamIsCapturing", answer)
}

/// `cuStreamWaitEvent`.
///
/// # Safety
/// As for [`bare::stream_wait_event`].
pub unsafe fn stream_wait_event(
    api: Api,
    stream: CUstream,
    event: CUevent,
    flags: u32,
) -> Result<()> {
    // SAFETY: forwarded from this function's contract.
    let rc = unsafe { bare::stream_wait_event(api, stream, event, flags) };
    api.done("cuStreamWaitEvent", rc)
}

/// `cuEventCreate` in the current context.
pub fn event_create(api: Api, flags: u32) -> Result<CUevent> {
    api.out("cuEventCreate", bare::event_create(api, flags))
}

/// `cuEventRecord`.
///
/// # Safety
/// As for [`bare::event_record`].
pub unsafe fn event_record(api: Api, event: CUevent, stream: CUstream) -> Result<()> {
    // SAFETY: forwarded from this function's contract.
    let rc = unsafe { bare::event_record(api, event, stream) };
    api.done("cuEventRecord", rc)
}

/// `cuEventSynchronize`.
///
/// # Safety
/// As for [`bare::event_synchronize`].
pub unsafe fn event_synchronize(api: Api, event: CUevent) -> Result<()> {
    // SAFETY: forwarded from this function's contract.
    let rc = unsafe { bare::event_synchronize(api, event) };
    api.done("cuEventSynchronize", rc)
}

/// `cuEventQuery`: whether the recorded work finished (`CUDA_ERROR_NOT_READY` is `false`).
///
/// # Safety
/// As for [`bare::event_query`].
pub unsafe fn event_query(api: Api, event: CUevent) -> Result<bool> {
    // SAFETY: forwarded from this function's contract.
    let rc = unsafe { bare::event_query(api, event) };
    api.ready("cuEventQuery", rc)
}

/// `cuEventDestroy_v2`.
///
/// # Safety
/// As for [`bare::event_destroy`].
pub unsafe fn event_destroy(api: Api, event: CUevent) -> Result<()> {
    // SAFETY: forwarded from this function's contract.
    let rc = unsafe { bare::event_destroy(api, event) };
    api.done("cuEventDestroy_v2", rc)
}

/// `cuMemcpyHtoDAsync_v2`.
///
/// # Safety
/// As for [`bare::memcpy_htod_async`].
pub unsafe fn memcpy_htod_async(
    api: Api,
    dst: CUdeviceptr,
    src: *const c_void,
    len: usize,
    stream: CUstream,
) -> Result<()> {
    // SAFETY: forwarded from this function's contract.
    let rc = unsafe { bare::memcpy_htod_async(api, dst, src, len, stream) };
    api.done("cuMemcpyHtoDAsync_v2", rc)
}

/// `cuMemcpyDtoHAsync_v2`.
///
/// # Safety
/// As for [`bare::memcpy_dtoh_async`].
pub unsafe fn memcpy_dtoh_async(
    api: Api,
    dst: *mut c_void,
    src: CUdeviceptr,
    len: usize,
    stream: CUstream,
) -> Result<()> {
    // SAFETY: forwarded from this function's contract.
    let rc = unsafe { bare::memcpy_dtoh_async(api, dst, src, len, stream) };
    api.done("cuMemcpyDtoHAsync_v2", rc)
}

/// `cuMemcpyDtoDAsync_v2`.
///
/// # Safety
/// As for [`bare::memcpy_dtod_async`].
pub unsafe fn memcpy_dtod_async(
    api: Api,
    dst: CUdeviceptr,
    src: CUdeviceptr,
    len: usize,
    stream: CUstream,
) -> Result<()> {
    // SAFETY: forwarded from this function's contract.
    let rc = unsafe { bare::memcpy_dtod_async(api, dst, src, len, stream) };
    api.done("cuMemcpyDtoDAsync_v2", rc)
}

/// `cuMemsetD8Async`.
///
/// # Safety
/// As for [`bare::memset_d8_async`].
pub unsafe fn memset_d8_async(
    api: Api,
    dst: CUdeviceptr,
    byte: u8,
    len: usize,
    stream: CUstream,
) -> Result<()> {
    // SAFETY: forwarded from this function's contract.
    let rc = unsafe { bare::memset_d8_async(api, dst, byte, len, stream) };
    api.done("cuMemsetD8Async", rc)
}
