//! TEMPORARY synchronous stand-ins for the stream, event, async-copy and context-stack
//! entry points, until the asynchronous model lands (branch `sim-async`).
#![allow(non_snake_case, clippy::missing_safety_doc)]

use core::cell::RefCell;
use core::ffi::{c_uchar, c_uint, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

use cuda_vmm_sys::{CUcontext, CUdeviceptr, CUevent, CUresult, CUstream};

use crate::exports as x;
use crate::{contexts, state};

thread_local! {
    static SAVED: RefCell<Vec<CUcontext>> = const { RefCell::new(Vec::new()) };
}
static NEXT: AtomicUsize = AtomicUsize::new(0x5_0000);

fn handle<T>() -> *mut T {
    core::ptr::null_mut::<T>().wrapping_byte_add(NEXT.fetch_add(16, Ordering::Relaxed))
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxPushCurrent_v2(ctx: CUcontext) -> CUresult {
    let prev = contexts::current();
    match state::with(|sim| sim.set_current(ctx)) {
        Ok(()) => {
            SAVED.with(|s| s.borrow_mut().push(prev));
            CUresult::CUDA_SUCCESS
        }
        Err(e) => e,
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxPopCurrent_v2(pctx: *mut CUcontext) -> CUresult {
    let Some(prev) = SAVED.with(|s| s.borrow_mut().pop()) else {
        return CUresult::CUDA_ERROR_INVALID_CONTEXT;
    };
    if !pctx.is_null() {
        // SAFETY: entry-point contract.
        unsafe { pctx.write(contexts::current()) };
    }
    let _ = state::with(|sim| sim.set_current(prev));
    CUresult::CUDA_SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamCreate(ph: *mut CUstream, _flags: c_uint) -> CUresult {
    // SAFETY: entry-point contract.
    unsafe { ph.write(handle()) };
    CUresult::CUDA_SUCCESS
}
#[no_mangle]
pub unsafe extern "C" fn cuStreamDestroy_v2(_s: CUstream) -> CUresult {
    CUresult::CUDA_SUCCESS
}
#[no_mangle]
pub unsafe extern "C" fn cuStreamSynchronize(_s: CUstream) -> CUresult {
    CUresult::CUDA_SUCCESS
}
#[no_mangle]
pub unsafe extern "C" fn cuStreamQuery(_s: CUstream) -> CUresult {
    CUresult::CUDA_SUCCESS
}
#[no_mangle]
pub unsafe extern "C" fn cuStreamWaitEvent(_s: CUstream, _e: CUevent, _f: c_uint) -> CUresult {
    CUresult::CUDA_SUCCESS
}
#[no_mangle]
pub unsafe extern "C" fn cuEventCreate(ph: *mut CUevent, _flags: c_uint) -> CUresult {
    // SAFETY: entry-point contract.
    unsafe { ph.write(handle()) };
    CUresult::CUDA_SUCCESS
}
#[no_mangle]
pub unsafe extern "C" fn cuEventRecord(_e: CUevent, _s: CUstream) -> CUresult {
    CUresult::CUDA_SUCCESS
}
#[no_mangle]
pub unsafe extern "C" fn cuEventSynchronize(_e: CUevent) -> CUresult {
    CUresult::CUDA_SUCCESS
}
#[no_mangle]
pub unsafe extern "C" fn cuEventQuery(_e: CUevent) -> CUresult {
    CUresult::CUDA_SUCCESS
}
#[no_mangle]
pub unsafe extern "C" fn cuEventDestroy_v2(_e: CUevent) -> CUresult {
    CUresult::CUDA_SUCCESS
}
#[no_mangle]
pub unsafe extern "C" fn cuMemcpyHtoDAsync_v2(
    d: CUdeviceptr,
    s: *const c_void,
    n: usize,
    _st: CUstream,
) -> CUresult {
    // SAFETY: forwarded.
    unsafe { x::cuMemcpyHtoD_v2(d, s, n) }
}
#[no_mangle]
pub unsafe extern "C" fn cuMemcpyDtoHAsync_v2(
    d: *mut c_void,
    s: CUdeviceptr,
    n: usize,
    _st: CUstream,
) -> CUresult {
    // SAFETY: forwarded.
    unsafe { x::cuMemcpyDtoH_v2(d, s, n) }
}
#[no_mangle]
pub unsafe extern "C" fn cuMemcpyDtoDAsync_v2(
    d: CUdeviceptr,
    s: CUdeviceptr,
    n: usize,
    _st: CUstream,
) -> CUresult {
    // SAFETY: forwarded.
    unsafe { x::cuMemcpyDtoD_v2(d, s, n) }
}
#[no_mangle]
pub unsafe extern "C" fn cuMemsetD8Async(
    d: CUdeviceptr,
    v: c_uchar,
    n: usize,
    _st: CUstream,
) -> CUresult {
    // SAFETY: forwarded.
    unsafe { x::cuMemsetD8_v2(d, v, n) }
}
#[no_mangle]
pub unsafe extern "C" fn cuMemsetD32Async(
    d: CUdeviceptr,
    v: c_uint,
    n: usize,
    _st: CUstream,
) -> CUresult {
    // SAFETY: forwarded.
    unsafe { x::cuMemsetD32_v2(d, v, n) }
}
