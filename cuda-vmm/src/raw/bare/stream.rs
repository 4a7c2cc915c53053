//! Bare calls: streams, events, asynchronous copies and fills.

use core::ffi::c_void;

use cuda_vmm_sys::{entry, CUdeviceptr, CUevent, CUstream, CUstreamCaptureStatus};

use super::{Out, Rc};
use crate::raw::Api;

/// `cuStreamCreate` in the current context.
pub fn stream_create(api: Api, flags: u32) -> Out<CUstream> {
    let f = entry!(api.table(), cuStreamCreate)?;
    let mut stream: CUstream = core::ptr::null_mut();
    // SAFETY: `stream` is a valid out-pointer; bad flags, or no current context, fail
    // (a stream never destroyed only leaks).
    let rc = unsafe { f(&mut stream, flags) };
    Ok((rc, stream))
}

/// `cuStreamDestroy_v2` (queued work still runs to completion).
///
/// # Safety
/// `stream` must be a stream the caller created and destroys once; nothing may use
/// it afterwards.
pub unsafe fn stream_destroy(api: Api, stream: CUstream) -> Rc {
    let f = entry!(api.table(), cuStreamDestroy_v2)?;
    // SAFETY: forwarded from this function's contract.
    Ok(unsafe { f(stream) })
}

/// `cuStreamSynchronize`.
///
/// # Safety
/// `stream` must be a live stream of the current context, or a special handle
/// (null, `CU_STREAM_LEGACY`, `CU_STREAM_PER_THREAD`).
pub unsafe fn stream_synchronize(api: Api, stream: CUstream) -> Rc {
    let f = entry!(api.table(), cuStreamSynchronize)?;
    // SAFETY: forwarded from this function's contract.
    Ok(unsafe { f(stream) })
}

/// `cuStreamQuery` (`CUDA_ERROR_NOT_READY` while work is queued).
///
/// # Safety
/// As for [`stream_synchronize`].
pub unsafe fn stream_query(api: Api, stream: CUstream) -> Rc {
    let f = entry!(api.table(), cuStreamQuery)?;
    // SAFETY: forwarded from this function's contract.
    Ok(unsafe { f(stream) })
}

/// `cuStreamIsCapturing`: whether `stream` is being captured into a graph
/// (`CU_STREAM_CAPTURE_STATUS_NONE` / `_ACTIVE` / `_INVALIDATED`).
///
/// # Safety
/// As for [`stream_synchronize`].
pub unsafe fn stream_is_capturing(api: Api, stream: CUstream) -> Out<CUstreamCaptureStatus> {
    let f = entry!(api.table(), cuStreamIsCapturing)?;
    let mut status = CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE;
    // SAFETY: `status` is a valid out-pointer; the stream is the caller's contract.
    let rc = unsafe { f(stream, &mut status) };
    Ok((rc, status))
}

/// `cuStreamIsCapturing` into `status`, passed to the driver as given: for callers
/// that check how the driver answers a bad out-pointer (null is
/// `CUDA_ERROR_INVALID_VALUE`); everything else wants [`stream_is_capturing`].
///
/// # Safety
/// `stream` as for [`stream_synchronize`]; `status` must be null or valid for a
/// write of one `CUstreamCaptureStatus`.
pub unsafe fn stream_is_capturing_into(
    api: Api,
    stream: CUstream,
    status: *mut CUstreamCaptureStatus,
) -> Rc {
    let f = entry!(api.table(), cuStreamIsCapturing)?;
    // SAFETY: forwarded from this function's contract.
    Ok(unsafe { f(stream, status) })
}

/// `cuStreamWaitEvent`.
///
/// # Safety
/// `stream` as for [`stream_synchronize`]; `event` must be a live event of this
/// driver for the duration of the call.
pub unsafe fn stream_wait_event(api: Api, stream: CUstream, event: CUevent, flags: u32) -> Rc {
    let f = entry!(api.table(), cuStreamWaitEvent)?;
    // SAFETY: forwarded from this function's contract.
    Ok(unsafe { f(stream, event, flags) })
}

/// `cuEventCreate` in the current context.
pub fn event_create(api: Api, flags: u32) -> Out<CUevent> {
    let f = entry!(api.table(), cuEventCreate)?;
    let mut event: CUevent = core::ptr::null_mut();
    // SAFETY: `event` is a valid out-pointer; bad flags, or no current context, fail
    // (an event never destroyed only leaks).
    let rc = unsafe { f(&mut event, flags) };
    Ok((rc, event))
}

/// `cuEventRecord`.
///
/// # Safety
/// `event` must be a live event, `stream` as for [`stream_synchronize`], both of the
/// current context.
pub unsafe fn event_record(api: Api, event: CUevent, stream: CUstream) -> Rc {
    let f = entry!(api.table(), cuEventRecord)?;
    // SAFETY: forwarded from this function's contract.
    Ok(unsafe { f(event, stream) })
}

/// `cuEventSynchronize`.
///
/// # Safety
/// `event` must be a live event of this driver.
pub unsafe fn event_synchronize(api: Api, event: CUevent) -> Rc {
    let f = entry!(api.table(), cuEventSynchronize)?;
    // SAFETY: forwarded from this function's contract.
    Ok(unsafe { f(event) })
}

/// `cuEventQuery` (`CUDA_ERROR_NOT_READY` until the recorded work finished).
///
/// # Safety
/// As for [`event_synchronize`].
pub unsafe fn event_query(api: Api, event: CUevent) -> Rc {
    let f = entry!(api.table(), cuEventQuery)?;
    // SAFETY: forwarded from this function's contract.
    Ok(unsafe { f(event) })
}

/// `cuEventDestroy_v2`.
///
/// # Safety
/// `event` must be an event the caller created and destroys once; nothing may use it
/// afterwards.
pub unsafe fn event_destroy(api: Api, event: CUevent) -> Rc {
    let f = entry!(api.table(), cuEventDestroy_v2)?;
    // SAFETY: forwarded from this function's contract.
    Ok(unsafe { f(event) })
}

/// `cuMemcpyHtoDAsync_v2`.
///
/// # Safety
/// `[src, src + len)` must stay valid for reads, and unchanged, until `stream` has
/// reached the copy; `[dst, dst + len)` must be device memory writable by the
/// current context's device; `stream` as for [`stream_synchronize`].
pub unsafe fn memcpy_htod_async(
    api: Api,
    dst: CUdeviceptr,
    src: *const c_void,
    len: usize,
    stream: CUstream,
) -> Rc {
    let f = entry!(api.table(), cuMemcpyHtoDAsync_v2)?;
    // SAFETY: forwarded from this function's contract.
    Ok(unsafe { f(dst, src, len, stream) })
}

/// `cuMemcpyDtoHAsync_v2`.
///
/// # Safety
/// `[dst, dst + len)` must stay valid for writes, and unread, until `stream` has
/// reached the copy; `[src, src + len)` must be device memory readable by the
/// current context's device; `stream` as for [`stream_synchronize`].
pub unsafe fn memcpy_dtoh_async(
    api: Api,
    dst: *mut c_void,
    src: CUdeviceptr,
    len: usize,
    stream: CUstream,
) -> Rc {
    let f = entry!(api.table(), cuMemcpyDtoHAsync_v2)?;
    // SAFETY: forwarded from this function's contract.
    Ok(unsafe { f(dst, src, len, stream) })
}

/// `cuMemcpyDtoDAsync_v2`.
///
/// # Safety
/// Both ranges must be device memory of this driver, readable (`src`) and writable
/// (`dst`) by the current context's device until `stream` has reached the copy;
/// `stream` as for [`stream_synchronize`].
pub unsafe fn memcpy_dtod_async(
    api: Api,
    dst: CUdeviceptr,
    src: CUdeviceptr,
    len: usize,
    stream: CUstream,
) -> Rc {
    let f = entry!(api.table(), cuMemcpyDtoDAsync_v2)?;
    // SAFETY: forwarded from this function's contract.
    Ok(unsafe { f(dst, src, len, stream) })
}

/// `cuMemsetD8Async`.
///
/// # Safety
/// `[dst, dst + len)` must be device memory writable by the current context's
/// device until `stream` has reached the fill; `stream` as for [`stream_synchronize`].
pub unsafe fn memset_d8_async(
    api: Api,
    dst: CUdeviceptr,
    byte: u8,
    len: usize,
    stream: CUstream,
) -> Rc {
    let f = entry!(api.table(), cuMemsetD8Async)?;
    // SAFETY: forwarded from this function's contract.
    Ok(unsafe { f(dst, byte, len, stream) })
}
