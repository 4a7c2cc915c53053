//! Copies and fills between host and device memory (the raw calls; callers validate).

use cuda_vmm_sys::entry;

use crate::device::Device;
use crate::error::{check, Result};

/// Copies `data` to device address `dst` (`cuMemcpyHtoD`, synchronous).
///
/// Callers guarantee `[dst, dst + data.len())` is mapped and writable by `device`.
pub(crate) fn htod(device: &Device, dst: u64, data: &[u8]) -> Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let cuda = device.cuda();
    let f = cuda.entry(entry!(cuda.table(), cuMemcpyHtoD_v2))?;
    device.make_current()?;
    // SAFETY: `data` is readable for its length; the caller checked the device range.
    check("cuMemcpyHtoD_v2", unsafe {
        f(dst, data.as_ptr().cast(), data.len())
    })
}

/// Copies from device address `src` into `out` (`cuMemcpyDtoH`, synchronous).
///
/// Callers guarantee `[src, src + out.len())` is mapped and readable by `device`.
pub(crate) fn dtoh(device: &Device, out: &mut [u8], src: u64) -> Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let cuda = device.cuda();
    let f = cuda.entry(entry!(cuda.table(), cuMemcpyDtoH_v2))?;
    device.make_current()?;
    // SAFETY: `out` is writable for its length; the caller checked the device range.
    check("cuMemcpyDtoH_v2", unsafe {
        f(out.as_mut_ptr().cast(), src, out.len())
    })
}

/// Copies `len` bytes between device addresses and waits for the copy to finish.
///
/// Callers guarantee both ranges are mapped with the needed access.
pub(crate) fn dtod_sync(device: &Device, dst: u64, src: u64, len: usize) -> Result<()> {
    if len == 0 {
        return Ok(());
    }
    let cuda = device.cuda();
    let f = cuda.entry(entry!(cuda.table(), cuMemcpyDtoD_v2))?;
    device.make_current()?;
    // SAFETY: the caller checked both device ranges.
    check("cuMemcpyDtoD_v2", unsafe { f(dst, src, len) })?;
    synchronize(device)
}

/// Sets `len` bytes at `dst` to `byte` and waits for it to finish.
///
/// Callers guarantee the range is mapped and writable by `device`.
pub(crate) fn fill_sync(device: &Device, dst: u64, byte: u8, len: usize) -> Result<()> {
    if len == 0 {
        return Ok(());
    }
    let cuda = device.cuda();
    let f = cuda.entry(entry!(cuda.table(), cuMemsetD8_v2))?;
    device.make_current()?;
    // SAFETY: the caller checked the device range.
    check("cuMemsetD8_v2", unsafe { f(dst, byte, len) })?;
    synchronize(device)
}

/// Waits for all work in `device`'s primary context (`cuCtxSynchronize`).
pub(crate) fn synchronize(device: &Device) -> Result<()> {
    let cuda = device.cuda();
    let f = cuda.entry(entry!(cuda.table(), cuCtxSynchronize))?;
    device.make_current()?;
    // SAFETY: no arguments; the device's context is current.
    check("cuCtxSynchronize", unsafe { f() })
}

/// Copies `len` bytes from device address `src` to `dst` and waits for it to finish.
///
/// # Safety
/// Both `[src, src + len)` and `[dst, dst + len)` must be device memory of
/// `device`'s driver, mapped and accessible (readable, respectively writable)
/// by `device`, for the duration of the call.
pub unsafe fn copy_dtod(device: &Device, dst: u64, src: u64, len: usize) -> Result<()> {
    dtod_sync(device, dst, src, len)
}
