//! Bare calls: initialisation, version, devices, contexts.

use core::ffi::{c_char, c_int};

use cuda_vmm_sys::{entry, CUcontext, CUdevice, CUdevice_attribute};

use super::{Out, Rc};
use crate::raw::Api;

/// `cuInit(flags)`.
pub fn init(api: Api, flags: u32) -> Rc {
    let f = entry!(api.table(), cuInit)?;
    // SAFETY: cuInit takes a flags word (bad flags fail) and has no other
    // preconditions; `api` vouches for the table.
    Ok(unsafe { f(flags) })
}

/// `cuDriverGetVersion`: the raw version integer.
pub fn driver_get_version(api: Api) -> Out<c_int> {
    let f = entry!(api.table(), cuDriverGetVersion)?;
    let mut version = 0;
    // SAFETY: `version` is a valid out-pointer for one int.
    let rc = unsafe { f(&mut version) };
    Ok((rc, version))
}

/// `cuDeviceGetCount`.
pub fn device_get_count(api: Api) -> Out<c_int> {
    let f = entry!(api.table(), cuDeviceGetCount)?;
    let mut count = 0;
    // SAFETY: `count` is a valid out-pointer for one int.
    let rc = unsafe { f(&mut count) };
    Ok((rc, count))
}

/// `cuDeviceGet(ordinal)`.
pub fn device_get(api: Api, ordinal: c_int) -> Out<CUdevice> {
    let f = entry!(api.table(), cuDeviceGet)?;
    let mut device = 0;
    // SAFETY: `device` is a valid out-pointer; any ordinal is accepted (bad ones fail).
    let rc = unsafe { f(&mut device, ordinal) };
    Ok((rc, device))
}

/// `cuDeviceGetName` into `buf` (NUL-terminated by the driver on success).
pub fn device_get_name(api: Api, buf: &mut [c_char], device: CUdevice) -> Rc {
    let f = entry!(api.table(), cuDeviceGetName)?;
    let len = c_int::try_from(buf.len()).unwrap_or(c_int::MAX);
    // SAFETY: `buf` is writable for at least `len` bytes, which we pass as the length;
    // bad devices fail.
    Ok(unsafe { f(buf.as_mut_ptr(), len, device) })
}

/// `cuDeviceTotalMem_v2`.
pub fn device_total_mem(api: Api, device: CUdevice) -> Out<usize> {
    let f = entry!(api.table(), cuDeviceTotalMem_v2)?;
    let mut bytes = 0;
    // SAFETY: `bytes` is a valid out-pointer; bad devices fail.
    let rc = unsafe { f(&mut bytes, device) };
    Ok((rc, bytes))
}

/// `cuDeviceGetAttribute`.
pub fn device_get_attribute(api: Api, attr: CUdevice_attribute, device: CUdevice) -> Out<c_int> {
    let f = entry!(api.table(), cuDeviceGetAttribute)?;
    let mut value = 0;
    // SAFETY: `value` is a valid out-pointer; unknown attributes and devices fail cleanly.
    let rc = unsafe { f(&mut value, attr, device) };
    Ok((rc, value))
}

/// `cuDeviceCanAccessPeer`.
pub fn device_can_access_peer(api: Api, device: CUdevice, peer: CUdevice) -> Out<c_int> {
    let f = entry!(api.table(), cuDeviceCanAccessPeer)?;
    let mut can = 0;
    // SAFETY: `can` is a valid out-pointer; bad devices fail.
    let rc = unsafe { f(&mut can, device, peer) };
    Ok((rc, can))
}

/// `cuDevicePrimaryCtxRetain`: one more reference to `device`'s primary context.
pub fn device_primary_ctx_retain(api: Api, device: CUdevice) -> Out<CUcontext> {
    let f = entry!(api.table(), cuDevicePrimaryCtxRetain)?;
    let mut ctx: CUcontext = core::ptr::null_mut();
    // SAFETY: `ctx` is a valid out-pointer; bad devices fail (a reference never
    // released only keeps the context alive).
    let rc = unsafe { f(&mut ctx, device) };
    Ok((rc, ctx))
}

/// `cuDevicePrimaryCtxRelease_v2`.
///
/// # Safety
/// The caller must own a reference to `device`'s primary context (from
/// [`device_primary_ctx_retain`]) and give it up here, once; nothing may use the
/// context through that reference afterwards.
pub unsafe fn device_primary_ctx_release(api: Api, device: CUdevice) -> Rc {
    let f = entry!(api.table(), cuDevicePrimaryCtxRelease_v2)?;
    // SAFETY: forwarded from this function's contract.
    Ok(unsafe { f(device) })
}

/// `cuCtxGetCurrent`: the calling thread's current context (null when none).
pub fn ctx_get_current(api: Api) -> Out<CUcontext> {
    let f = entry!(api.table(), cuCtxGetCurrent)?;
    let mut ctx: CUcontext = core::ptr::null_mut();
    // SAFETY: `ctx` is a valid out-pointer.
    let rc = unsafe { f(&mut ctx) };
    Ok((rc, ctx))
}

/// `cuCtxSetCurrent(ctx)`.
///
/// # Safety
/// `ctx` must be a live context of this driver (or null), kept alive while it is current.
pub unsafe fn ctx_set_current(api: Api, ctx: CUcontext) -> Rc {
    let f = entry!(api.table(), cuCtxSetCurrent)?;
    // SAFETY: forwarded from this function's contract.
    Ok(unsafe { f(ctx) })
}

/// `cuCtxPushCurrent_v2(ctx)`.
///
/// # Safety
/// `ctx` must be a live context of this driver, kept alive while it is pushed.
pub unsafe fn ctx_push_current(api: Api, ctx: CUcontext) -> Rc {
    let f = entry!(api.table(), cuCtxPushCurrent_v2)?;
    // SAFETY: forwarded from this function's contract.
    Ok(unsafe { f(ctx) })
}

/// `cuCtxPopCurrent_v2`: the context popped.
///
/// # Safety
/// The caller must have pushed the context on top of this thread's stack and pop
/// exactly that one (popping a context other code pushed breaks that code).
pub unsafe fn ctx_pop_current(api: Api) -> Out<CUcontext> {
    let f = entry!(api.table(), cuCtxPopCurrent_v2)?;
    let mut ctx: CUcontext = core::ptr::null_mut();
    // SAFETY: `ctx` is a valid out-pointer; the pop is the caller's contract.
    let rc = unsafe { f(&mut ctx) };
    Ok((rc, ctx))
}

/// `cuCtxSynchronize`: waits for all work of the current context.
pub fn ctx_synchronize(api: Api) -> Rc {
    let f = entry!(api.table(), cuCtxSynchronize)?;
    // SAFETY: no arguments; without a current context the call fails.
    Ok(unsafe { f() })
}
