//! A device's primary context: retained once, released on drop, made current on demand.

use std::mem::MaybeUninit;

use cuda_vmm_sys::{entry, CUcontext, CUdevice};

use crate::driver::Cuda;
use crate::error::{check, Result};

/// A retained primary context (`cuDevicePrimaryCtxRetain`), released on drop.
///
/// This is the context the CUDA runtime uses, so memory made here works with
/// kernels launched through the runtime API or cudarc.
pub(crate) struct PrimaryContext {
    cuda: Cuda,
    device: CUdevice,
    ctx: CUcontext,
}

// SAFETY: a CUcontext is an opaque driver handle; the driver API is thread-safe
// and any thread may make a context current or release a primary context.
unsafe impl Send for PrimaryContext {}
// SAFETY: as above; `&PrimaryContext` only reads the handle.
unsafe impl Sync for PrimaryContext {}

impl PrimaryContext {
    /// Retains `device`'s primary context.
    pub(crate) fn retain(cuda: Cuda, device: CUdevice) -> Result<Self> {
        let f = cuda.entry(entry!(cuda.table(), cuDevicePrimaryCtxRetain))?;
        let mut ctx = MaybeUninit::<CUcontext>::uninit();
        // SAFETY: `ctx` is a valid out-pointer; `device` came from cuDeviceGet.
        check("cuDevicePrimaryCtxRetain", unsafe {
            f(ctx.as_mut_ptr(), device)
        })?;
        // SAFETY: written by the driver on success.
        let ctx = unsafe { ctx.assume_init() };
        Ok(Self { cuda, device, ctx })
    }

    /// Makes this context current on the calling thread unless it already is.
    #[inline]
    pub(crate) fn make_current(&self) -> Result<()> {
        let table = self.cuda.table();
        let get = self.cuda.entry(entry!(table, cuCtxGetCurrent))?;
        let mut current = MaybeUninit::<CUcontext>::uninit();
        // SAFETY: `current` is a valid out-pointer.
        check("cuCtxGetCurrent", unsafe { get(current.as_mut_ptr()) })?;
        // SAFETY: written by the driver on success.
        if unsafe { current.assume_init() } == self.ctx {
            return Ok(());
        }
        let set = self.cuda.entry(entry!(table, cuCtxSetCurrent))?;
        // SAFETY: `self.ctx` is a primary context retained (and not yet released) by us.
        check("cuCtxSetCurrent", unsafe { set(self.ctx) })
    }
}

impl Drop for PrimaryContext {
    fn drop(&mut self) {
        let result = self
            .cuda
            .entry(entry!(self.cuda.table(), cuDevicePrimaryCtxRelease_v2))
            .and_then(|f| {
                // SAFETY: we retained this device's primary context exactly once.
                check("cuDevicePrimaryCtxRelease_v2", unsafe { f(self.device) })
            });
        if let Err(e) = result {
            log::error!(
                "releasing the primary context of device {}: {e}",
                self.device
            );
        }
    }
}
