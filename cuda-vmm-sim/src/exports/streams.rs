//! The context stack, streams, events, pinned host memory, and the module and
//! kernel entry points (which the simulator cannot run).
#![allow(non_snake_case, clippy::missing_safety_doc, clippy::too_many_arguments)]

use core::ffi::{c_char, c_uint, c_void};

use cuda_vmm_sys::{
    CUcontext, CUevent, CUfunction, CUmodule, CUresult, CUstream, CUstreamCaptureStatus,
};

use super::{answer, call, on_current_device, Out};
use crate::model::state;
use crate::model::symbols::sym;
use crate::model::{answers, contexts};

// ---- Context stack ------------------------------------------------------------

/// `cuCtxPushCurrent_v2`: `ctx` (an active primary context) becomes current.
#[no_mangle]
pub unsafe extern "C" fn cuCtxPushCurrent_v2(ctx: CUcontext) -> CUresult {
    call(const { sym("cuCtxPushCurrent_v2") }, || {
        state::with(|sim| sim.push_current(ctx))
    })
}

/// `cuCtxPopCurrent_v2`: pops the current context and writes it to `pctx` (if not null).
#[no_mangle]
pub unsafe extern "C" fn cuCtxPopCurrent_v2(pctx: *mut CUcontext) -> CUresult {
    call(const { sym("cuCtxPopCurrent_v2") }, || {
        let ctx = contexts::pop()?;
        if let Ok(out) = Out::new(pctx) {
            // SAFETY: a non-null optional out-pointer (entry-point contract).
            unsafe { out.write(ctx) };
        }
        Ok(())
    })
}

// ---- Streams ------------------------------------------------------------------

/// `cuStreamCreate` in the current context: flags 0 (blocking: synchronises
/// with the legacy stream) or `CU_STREAM_NON_BLOCKING`.
#[no_mangle]
pub unsafe extern "C" fn cuStreamCreate(phStream: *mut CUstream, Flags: c_uint) -> CUresult {
    call(const { sym("cuStreamCreate") }, || {
        let value = || on_current_device(|sim, d| sim.stream_create(d, Flags));
        // SAFETY: entry-point contract.
        unsafe { answer(phStream, value) }
    })
}

/// `cuStreamDestroy_v2`: returns at once; queued work still completes.
#[no_mangle]
pub unsafe extern "C" fn cuStreamDestroy_v2(hStream: CUstream) -> CUresult {
    call(const { sym("cuStreamDestroy_v2") }, || {
        state::with(|sim| sim.stream_destroy(hStream))
    })
}

/// `cuStreamSynchronize`: completes the stream's work (and what it waits for);
/// blocks while a [hold](crate::hold_stream) keeps it from completing.
#[no_mangle]
pub unsafe extern "C" fn cuStreamSynchronize(hStream: CUstream) -> CUresult {
    call(const { sym("cuStreamSynchronize") }, || {
        state::with_waiting(|sim| sim.stream_synchronize(hStream))
    })
}

/// `cuStreamQuery`: `CUDA_ERROR_NOT_READY` while work is pending, changing
/// nothing (but see [`SimConfig::query_progress`](crate::SimConfig::query_progress)).
#[no_mangle]
pub unsafe extern "C" fn cuStreamQuery(hStream: CUstream) -> CUresult {
    call(const { sym("cuStreamQuery") }, || {
        state::with(|sim| sim.stream_query(hStream))
    })
}

/// `cuStreamIsCapturing`: `CU_STREAM_CAPTURE_STATUS_NONE` for every valid stream (the
/// simulator has no graphs), `CU_STREAM_CAPTURE_STATUS_ACTIVE` while a test
/// [marks](crate::mark_capturing) it. Streams are checked as by `cuStreamQuery`.
#[no_mangle]
pub unsafe extern "C" fn cuStreamIsCapturing(
    hStream: CUstream,
    captureStatus: *mut CUstreamCaptureStatus,
) -> CUresult {
    call(const { sym("cuStreamIsCapturing") }, || {
        let value = || state::with(|sim| sim.stream_is_capturing(hStream));
        // SAFETY: entry-point contract.
        unsafe { answer(captureStatus, value) }
    })
}

/// `cuStreamWaitEvent`: later work on the stream waits for the event's work.
#[no_mangle]
pub unsafe extern "C" fn cuStreamWaitEvent(
    hStream: CUstream,
    hEvent: CUevent,
    Flags: c_uint,
) -> CUresult {
    call(const { sym("cuStreamWaitEvent") }, || {
        state::with(|sim| sim.stream_wait_event(hStream, hEvent, Flags))
    })
}

// ---- Events -------------------------------------------------------------------

/// `cuEventCreate` in the current context.
#[no_mangle]
pub unsafe extern "C" fn cuEventCreate(phEvent: *mut CUevent, Flags: c_uint) -> CUresult {
    call(const { sym("cuEventCreate") }, || {
        let value = || on_current_device(|sim, d| sim.event_create(d, Flags));
        // SAFETY: entry-point contract.
        unsafe { answer(phEvent, value) }
    })
}

/// `cuEventRecord`: captures the stream's current position (re-recording overwrites).
#[no_mangle]
pub unsafe extern "C" fn cuEventRecord(hEvent: CUevent, hStream: CUstream) -> CUresult {
    call(const { sym("cuEventRecord") }, || {
        state::with(|sim| sim.event_record(hEvent, hStream))
    })
}

/// `cuEventSynchronize`: completes the work before the recorded position;
/// blocks while a [hold](crate::hold_stream) keeps it from completing.
#[no_mangle]
pub unsafe extern "C" fn cuEventSynchronize(hEvent: CUevent) -> CUresult {
    call(const { sym("cuEventSynchronize") }, || {
        state::with_waiting(|sim| sim.event_synchronize(hEvent))
    })
}

/// `cuEventQuery`: `CUDA_ERROR_NOT_READY` until the recorded work completed,
/// changing nothing (but see [`SimConfig::query_progress`](crate::SimConfig::query_progress)).
#[no_mangle]
pub unsafe extern "C" fn cuEventQuery(hEvent: CUevent) -> CUresult {
    call(const { sym("cuEventQuery") }, || {
        state::with(|sim| sim.event_query(hEvent))
    })
}

/// `cuEventDestroy_v2`.
#[no_mangle]
pub unsafe extern "C" fn cuEventDestroy_v2(hEvent: CUevent) -> CUresult {
    call(const { sym("cuEventDestroy_v2") }, || {
        state::with(|sim| sim.event_destroy(hEvent))
    })
}

// ---- Pinned host memory -------------------------------------------------------

/// `cuMemHostAlloc`: page-aligned host memory that async copies read and
/// write when they run (not when they are issued).
#[no_mangle]
pub unsafe extern "C" fn cuMemHostAlloc(
    pp: *mut *mut c_void,
    bytesize: usize,
    Flags: c_uint,
) -> CUresult {
    call(const { sym("cuMemHostAlloc") }, || {
        let value = || {
            let p = state::with(|sim| sim.host_alloc(bytesize, Flags))?;
            Ok(p as *mut c_void)
        };
        // SAFETY: entry-point contract.
        unsafe { answer(pp, value) }
    })
}

/// `cuMemFreeHost`: completes pending work using the block, then frees it.
#[no_mangle]
pub unsafe extern "C" fn cuMemFreeHost(p: *mut c_void) -> CUresult {
    call(const { sym("cuMemFreeHost") }, || {
        state::with_waiting(|sim| sim.free_host(p as usize))
    })
}

// ---- Modules and kernels ------------------------------------------------------

/// `cuModuleLoadData`: not supported (the simulator cannot run device code).
#[no_mangle]
pub unsafe extern "C" fn cuModuleLoadData(module: *mut CUmodule, image: *const c_void) -> CUresult {
    let _ = (module, image);
    call(const { sym("cuModuleLoadData") }, || {
        Err(answers::MODULE_UNSUPPORTED)
    })
}

/// `cuModuleGetFunction`: no module handle is valid.
#[no_mangle]
pub unsafe extern "C" fn cuModuleGetFunction(
    hfunc: *mut CUfunction,
    hmod: CUmodule,
    name: *const c_char,
) -> CUresult {
    let _ = (hfunc, hmod, name);
    call(const { sym("cuModuleGetFunction") }, || {
        Err(answers::BAD_MODULE_OR_FUNCTION)
    })
}

/// `cuModuleUnload`: no module handle is valid.
#[no_mangle]
pub unsafe extern "C" fn cuModuleUnload(hmod: CUmodule) -> CUresult {
    let _ = hmod;
    call(const { sym("cuModuleUnload") }, || {
        Err(answers::BAD_MODULE_OR_FUNCTION)
    })
}

/// `cuLaunchKernel`: no function handle is valid.
#[no_mangle]
pub unsafe extern "C" fn cuLaunchKernel(
    f: CUfunction,
    gridDimX: c_uint,
    gridDimY: c_uint,
    gridDimZ: c_uint,
    blockDimX: c_uint,
    blockDimY: c_uint,
    blockDimZ: c_uint,
    sharedMemBytes: c_uint,
    hStream: CUstream,
    kernelParams: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> CUresult {
    let _ = (
        f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ,
    );
    let _ = (sharedMemBytes, hStream, kernelParams, extra);
    call(const { sym("cuLaunchKernel") }, || {
        Err(answers::BAD_MODULE_OR_FUNCTION)
    })
}
