//! Checked calls: initialisation, version, devices, contexts.

use core::ffi::{c_char, c_int};

use cuda_vmm_sys::{CUcontext, CUdevice, CUdevice_attribute};

use super::{bare, Api};
use crate::error::Result;
use crate::version::DriverVersion;

/// `cuInit(flags)` (0 is the only valid value).
pub fn init(api: Api, flags: u32) -> Result<()> {
    api.done("cuInit", bare::init(api, flags))
}

/// `cuDriverGetVersion`, decoded.
pub fn driver_get_version(api: Api) -> Result<DriverVersion> {
    api.out("cuDriverGetVersion", bare::driver_get_version(api))
        .map(DriverVersion::from_raw)
}

/// `cuDeviceGetCount`.
pub fn device_get_count(api: Api) -> Result<c_int> {
    api.out("cuDeviceGetCount", bare::device_get_count(api))
}

/// `cuDeviceGet(ordinal)`.
pub fn device_get(api: Api, ordinal: c_int) -> Result<CUdevice> {
    api.out("cuDeviceGet", bare::device_get(api, ordinal))
}

/// `cuDeviceGetName`: the name up to its NUL (at most 255 bytes), lossily as UTF-8.
pub fn device_get_name(api: Api, device: CUdevice) -> Result<String> {
    let mut buf = [0 as c_char; 256];
    api.done(
        "cuDeviceGetName",
        bare::device_get_name(api, &mut buf, device),
    )?;
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `cuDeviceTotalMem_v2`.
pub fn device_total_mem(api: Api, device: CUdevice) -> Result<usize> {
    api.out("cuDeviceTotalMem_v2", bare::device_total_mem(api, device))
}

/// `cuDeviceGetAttribute`.
pub fn device_get_attribute(api: Api, attr: CUdevice_attribute, device: CUdevice) -> Result<c_int> {
    api.out(
        "cuDeviceGetAttribute",
        bare::device_get_attribute(api, attr, device),
    )
}

/// `cuDeviceCanAccessPeer`.
pub fn device_can_access_peer(api: Api, device: CUdevice, peer: CUdevice) -> Result<bool> {
    api.out(
        "cuDeviceCanAccessPeer",
        bare::device_can_access_peer(api, device, peer),
    )
    .map(|can| can != 0)
}

/// `cuDevicePrimaryCtxRetain`.
pub fn device_primary_ctx_retain(api: Api, device: CUdevice) -> Result<CUcontext> {
    api.out(
        "cuDevicePrimaryCtxRetain",
        bare::device_primary_ctx_retain(api, device),
    )
}

/// `cuDevicePrimaryCtxRelease_v2`.
///
/// # Safety
/// As for [`bare::device_primary_ctx_release`].
pub unsafe fn device_primary_ctx_release(api: Api, device: CUdevice) -> Result<()> {
    // SAFETY: forwarded from this function's contract.
    let rc = unsafe { bare::device_primary_ctx_release(api, device) };
    api.done("cuDevicePrimaryCtxRelease_v2", rc)
}

/// `cuCtxGetCurrent` (null when no context is current).
pub fn ctx_get_current(api: Api) -> Result<CUcontext> {
    api.out("cuCtxGetCurrent", bare::ctx_get_current(api))
}

/// `cuCtxSetCurrent`.
///
/// # Safety
/// As for [`bare::ctx_set_current`].
pub unsafe fn ctx_set_current(api: Api, ctx: CUcontext) -> Result<()> {
    // SAFETY: forwarded from this function's contract.
    let rc = unsafe { bare::ctx_set_current(api, ctx) };
    api.done("cuCtxSetCurrent", rc)
}

/// `cuCtxPushCurrent_v2`.
///
/// # Safety
/// As for [`bare::ctx_push_current`].
pub unsafe fn ctx_push_current(api: Api, ctx: CUcontext) -> Result<()> {
    // SAFETY: forwarded from this function's contract.
    let rc = unsafe { bare::ctx_push_current(api, ctx) };
    api.done("cuCtxPushCurrent_v2", rc)
}

/// `cuCtxPopCurrent_v2`: the context popped.
///
/// # Safety
/// As for [`bare::ctx_pop_current`].
pub unsafe fn ctx_pop_current(api: Api) -> Result<CUcontext> {
    // SAFETY: forwarded from this function's contract.
    let answer = unsafe { bare::ctx_pop_current(api) };
    api.out("cuCtxPopCurrent_v2", answer)
}

/// `cuCtxSynchronize`.
pub fn ctx_synchronize(api: Api) -> Result<()> {
    api.done("cuCtxSynchronize", bare::ctx_synchronize(api))
}
