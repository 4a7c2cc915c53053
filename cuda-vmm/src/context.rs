//! Primary contexts: retained once per [`Cuda`], bound to the calling thread
//! only for the duration of an operation.
//!
//! Every operation that needs a current context goes through [`bind`]: when the
//! device's primary context is already current it costs one `cuCtxGetCurrent`;
//! otherwise the context is pushed (`cuCtxPushCurrent`) and popped again when
//! the returned [`Bound`] guard drops. So the caller's current context, or
//! whatever it pushed, is exactly as it was after every call into this crate.
//!
//! Should that pop fail, operations that return `()` or a plain value report it
//! ([`Bound::finish`]): copies, fills, waits, queries, event records. Only
//! creations of owned handles (streams, events, allocations...) and drops log
//! it instead, since their result is the handle or nothing.

use cuda_vmm_sys::{CUcontext, CUdevice, CUstream, CUstream_flags};

use crate::driver::Cuda;
use crate::error::Result;
use crate::raw::{self, Api};

/// A device's primary context, retained once, plus the crate's private stream on it.
pub(crate) struct PrimaryContext {
    pub(crate) device: CUdevice,
    pub(crate) ctx: CUcontext,
    /// The crate's own non-blocking stream for its synchronous copies and fills.
    pub(crate) stream: CUstream,
}

// SAFETY: `CUcontext` and `CUstream` are opaque driver handles; the driver API is
// thread-safe, and any thread may push a context or use a stream of it.
#[allow(unsafe_code)]
unsafe impl Send for PrimaryContext {}
// SAFETY: as above; `&PrimaryContext` only reads the handles.
#[allow(unsafe_code)]
unsafe impl Sync for PrimaryContext {}

impl PrimaryContext {
    /// Retains `device`'s primary context and creates the private stream on it.
    pub(crate) fn retain(cuda: &Cuda, device: CUdevice) -> Result<Self> {
        let api = cuda.api();
        let ctx = raw::device_primary_ctx_retain(api, device)?;
        let mut this = PrimaryContext {
            device,
            ctx,
            stream: std::ptr::null_mut(),
        };
        let stream = bind(api.versionless(), ctx)
            .and_then(|_bound| raw::stream_create(api, CUstream_flags::CU_STREAM_NON_BLOCKING.0));
        match stream {
            Ok(stream) => {
                this.stream = stream;
                Ok(this)
            }
            Err(e) => {
                this.release(api.versionless());
                Err(e)
            }
        }
    }

    /// Destroys the private stream and releases the context (called once, by `Cuda`'s drop).
    #[allow(unsafe_code)]
    pub(crate) fn release(&mut self, api: Api) {
        if !self.stream.is_null() {
            let stream = std::mem::replace(&mut self.stream, std::ptr::null_mut());
            let result = bind(api, self.ctx).and_then(|_bound| {
                // SAFETY: we created this stream and destroy it once; the driver
                // lets queued work finish before freeing it.
                unsafe { raw::stream_destroy(api, stream) }
            });
            if let Err(e) = result {
                tracing::error!(
                    "destroying the private stream of device {}: {e}",
                    self.device
                );
            }
        }
        // SAFETY: we retained this device's primary context exactly once.
        let result = unsafe { raw::device_primary_ctx_release(api, self.device) };
        if let Err(e) = result {
            tracing::error!(
                "releasing the primary context of device {}: {e}",
                self.device
            );
        }
    }
}

/// Proof that a context is current on this thread; pops it on drop if [`bind`] pushed it.
#[must_use = "the context is only bound while the guard lives"]
pub(crate) struct Bound {
    api: Api,
    pushed: bool,
}

/// Makes `ctx` current on the calling thread until the guard drops, leaving the
/// thread's context stack exactly as it was afterwards.
#[inline]
#[allow(unsafe_code)]
pub(crate) fn bind(api: Api, ctx: CUcontext) -> Result<Bound> {
    if raw::ctx_get_current(api)? == ctx {
        return Ok(Bound { api, pushed: false });
    }
    // SAFETY: `ctx` is a primary context retained by the `Cuda` for its lifetime.
    unsafe { raw::ctx_push_current(api, ctx) }?;
    Ok(Bound { api, pushed: true })
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

/// Pops the context [`bind`] pushed on this thread.
#[allow(unsafe_code)]
fn pop(api: Api) -> Result<()> {
    // SAFETY: the caller pushed a context on this thread in `bind`.
    unsafe { raw::ctx_pop_current(api) }.map(|_popped| ())
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
