//! Typed context rules: a retained primary context, and the guard proving it is bound.
//!
//! The crate's safe layer never pushes, pops or releases a context itself: it holds a
//! [`RetainedContext`] (which only [`RetainedContext::retain`] makes, and which releases
//! at most once) and binds it with [`bind`], whose [`Bound`] guard pops exactly what it
//! pushed. So the `unsafe` contracts of `cuCtxPushCurrent`, `cuCtxPopCurrent` and
//! `cuDevicePrimaryCtxRelease` are discharged here, once.

use std::marker::PhantomData;

use cuda_vmm_sys::{CUcontext, CUdevice};

use super::Api;
use crate::error::{Error, Result};

/// A device's primary context, retained by [`retain`](Self::retain) and released at
/// most once, by [`release`](Self::release).
pub(crate) struct RetainedContext {
    device: CUdevice,
    ctx: CUcontext,
    retained: bool,
}

// SAFETY: a `CUcontext` is an opaque driver handle; the driver API is thread-safe, and
// any thread may push a primary context. `release` takes `&mut self`.
unsafe impl Send for RetainedContext {}
// SAFETY: as above; `&RetainedContext` only reads the handle.
unsafe impl Sync for RetainedContext {}

impl RetainedContext {
    /// Retains `device`'s primary context (`cuDevicePrimaryCtxRetain`).
    pub(crate) fn retain(api: Api, device: CUdevice) -> Result<Self> {
        let ctx = super::device_primary_ctx_retain(api, device)?;
        Ok(RetainedContext {
            device,
            ctx,
            retained: true,
        })
    }

    /// The context's handle.
    #[inline]
    pub(crate) fn raw(&self) -> CUcontext {
        self.ctx
    }

    /// The device whose primary context this is.
    #[inline]
    pub(crate) fn device(&self) -> CUdevice {
        self.device
    }

    /// Makes the context current on the calling thread (`cuCtxSetCurrent`), leaving it
    /// current; a no-op when it already is.
    pub(crate) fn make_current(&self, api: Api) -> Result<()> {
        if !self.retained {
            return Err(released());
        }
        if super::ctx_get_current(api)? == self.ctx {
            return Ok(());
        }
        // SAFETY: the context is still retained (checked above), so a live one.
        unsafe { super::ctx_set_current(api, self.ctx) }
    }

    /// Releases the context (`cuDevicePrimaryCtxRelease_v2`); later calls, and
    /// [`bind`]s, do nothing and fail respectively.
    pub(crate) fn release(&mut self, api: Api) -> Result<()> {
        if !std::mem::take(&mut self.retained) {
            return Ok(());
        }
        // SAFETY: `retain` retained this device's primary context once, and the flag
        // just cleared makes this the only release of that retain.
        unsafe { super::device_primary_ctx_release(api, self.device) }
    }
}

/// The error for a context used after its release.
fn released() -> Error {
    Error::invalid("the device's primary context was already released")
}

/// Proof that a context is current on this thread; pops it on drop if [`bind`] pushed it.
#[must_use = "the context is only bound while the guard lives"]
pub(crate) struct Bound {
    api: Api,
    pushed: bool,
    /// Neither `Send` nor `Sync`: the guard pops on the thread that pushed.
    _thread: PhantomData<*const ()>,
}

/// Makes `ctx` current on the calling thread until the guard drops, leaving the
/// thread's context stack exactly as it was afterwards.
#[inline]
pub(crate) fn bind(api: Api, ctx: &RetainedContext) -> Result<Bound> {
    if !ctx.retained {
        return Err(released());
    }
    if super::ctx_get_current(api)? == ctx.ctx {
        return Ok(Bound {
            api,
            pushed: false,
            _thread: PhantomData,
        });
    }
    // SAFETY: `ctx` is a primary context still retained (checked above), so a live one.
    unsafe { super::ctx_push_current(api, ctx.ctx) }?;
    Ok(Bound {
        api,
        pushed: true,
        _thread: PhantomData,
    })
}

impl Bound {
    /// Restores the caller's context now and returns `result`; when `result` is `Ok`, a
    /// failed `cuCtxPopCurrent` is returned instead (this crate's context is then still
    /// current on the caller's thread, which the caller must know). When `result` is an
    /// error, that error wins and a failed pop is logged, as dropping the guard does.
    pub(crate) fn finish<T>(mut self, result: Result<T>) -> Result<T> {
        let popped = if std::mem::take(&mut self.pushed) {
            pop(self.api)
        } else {
            Ok(())
        };
        match (result, popped) {
            (result, Ok(())) => result,
            (Ok(_), Err(e)) => Err(e),
            (Err(e), Err(pop_error)) => {
                tracing::error!("restoring the caller's current context: {pop_error}");
                Err(e)
            }
        }
    }
}

/// Pops the context [`bind`] pushed on this thread (only called by a guard whose
/// `pushed` flag is set, which it clears or drops with).
fn pop(api: Api) -> Result<()> {
    // SAFETY: the guard calling this pushed a context in `bind`, on this thread
    // (`Bound` is neither `Send` nor `Sync`), and pops it once (the flag).
    unsafe { super::ctx_pop_current(api) }.map(|_popped| ())
}

impl Drop for Bound {
    fn drop(&mut self) {
        if !self.pushed {
            return;
        }
        if let Err(e) = pop(self.api) {
            tracing::error!("restoring the caller's current context: {e}");
        }
    }
}
