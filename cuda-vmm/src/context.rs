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

use std::mem::MaybeUninit;

use cuda_vmm_sys::{entry, CUcontext, CUdevice, CUstream, DriverTable, MissingSymbol};

use crate::driver::Cuda;
use crate::error::{check, Error, Result};

/// A missing entry point, for code that runs where no [`Cuda`] is at hand.
fn missing(m: MissingSymbol) -> Error {
    Error::MissingEntryPoint {
        symbol: m.0,
        driver_version: None,
    }
}

/// A device's primary context, retained once, plus the crate's private stream on it.
pub(crate) struct PrimaryContext {
    pub(crate) device: CUdevice,
    pub(crate) ctx: CUcontext,
    /// The crate's own non-blocking stream for its synchronous copies and fills.
    pub(crate) stream: CUstream,
}

// SAFETY: `CUcontext` and `CUstream` are opaque driver handles; the driver API is
// thread-safe, and any thread may push a context or use a stream of it.
unsafe impl Send for PrimaryContext {}
// SAFETY: as above; `&PrimaryContext` only reads the handles.
unsafe impl Sync for PrimaryContext {}

impl PrimaryContext {
    /// Retains `device`'s primary context and creates the private stream on it.
    pub(crate) fn retain(cuda: &Cuda, device: CUdevice) -> Result<Self> {
        let table = cuda.table();
        let retain = cuda.entry(entry!(table, cuDevicePrimaryCtxRetain))?;
        let mut ctx = MaybeUninit::<CUcontext>::uninit();
        // SAFETY: `ctx` is a valid out-pointer; `device` came from cuDeviceGet.
        check("cuDevicePrimaryCtxRetain", unsafe {
            retain(ctx.as_mut_ptr(), device)
        })?;
        // SAFETY: written by the driver on success.
        let ctx = unsafe { ctx.assume_init() };
        let mut this = PrimaryContext {
            device,
            ctx,
            stream: std::ptr::null_mut(),
        };
        let stream =
            bind(cuda.table(), ctx).and_then(|_bound| crate::stream::create_raw(cuda, true));
        match stream {
            Ok(stream) => {
                this.stream = stream;
                Ok(this)
            }
            Err(e) => {
                this.release(cuda.table());
                Err(e)
            }
        }
    }

    /// Destroys the private stream and releases the context (called once, by `Cuda`'s drop).
    pub(crate) fn release(&mut self, table: &'static DriverTable) {
        if !self.stream.is_null() {
            let stream = std::mem::replace(&mut self.stream, std::ptr::null_mut());
            let result = bind(table, self.ctx).and_then(|_bound| {
                let f = entry!(table, cuStreamDestroy_v2).map_err(missing)?;
                // SAFETY: we created this stream and destroy it once; the driver
                // lets queued work finish before freeing it.
                check("cuStreamDestroy_v2", unsafe { f(stream) })
            });
            if let Err(e) = result {
                tracing::error!(
                    "destroying the private stream of device {}: {e}",
                    self.device
                );
            }
        }
        let result = entry!(table, cuDevicePrimaryCtxRelease_v2)
            .map_err(missing)
            .and_then(|f| {
                // SAFETY: we retained this device's primary context exactly once.
                check("cuDevicePrimaryCtxRelease_v2", unsafe { f(self.device) })
            });
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
    table: &'static DriverTable,
    pushed: bool,
}

/// Makes `ctx` current on the calling thread until the guard drops, leaving the
/// thread's context stack exactly as it was afterwards.
#[inline]
pub(crate) fn bind(table: &'static DriverTable, ctx: CUcontext) -> Result<Bound> {
    let get = entry!(table, cuCtxGetCurrent).map_err(missing)?;
    let mut current = MaybeUninit::<CUcontext>::uninit();
    // SAFETY: `current` is a valid out-pointer.
    check("cuCtxGetCurrent", unsafe { get(current.as_mut_ptr()) })?;
    // SAFETY: written by the driver on success.
    if unsafe { current.assume_init() } == ctx {
        return Ok(Bound {
            table,
            pushed: false,
        });
    }
    let push = entry!(table, cuCtxPushCurrent_v2).map_err(missing)?;
    // SAFETY: `ctx` is a primary context retained by `cuda` for its lifetime.
    check("cuCtxPushCurrent_v2", unsafe { push(ctx) })?;
    Ok(Bound {
        table,
        pushed: true,
    })
}

impl Bound {
    /// Restores the caller's context now and returns `result`; when `result` is `Ok`, a
    /// failed `cuCtxPopCurrent` is returned instead (this crate's context is then still
    /// current on the caller's thread, which the caller must know). When `result` is an
    /// error, that error wins and a failed pop is logged, as dropping the guard does.
    pub(crate) fn finish<T>(mut self, result: Result<T>) -> Result<T> {
        let popped = if std::mem::take(&mut self.pushed) {
            pop(self.table)
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
fn pop(table: &'static DriverTable) -> Result<()> {
    let pop = entry!(table, cuCtxPopCurrent_v2).map_err(missing)?;
    let mut popped = MaybeUninit::<CUcontext>::uninit();
    // SAFETY: the caller pushed a context on this thread in `bind`; the out-pointer is
    // valid.
    check("cuCtxPopCurrent_v2", unsafe { pop(popped.as_mut_ptr()) })
}

impl Drop for Bound {
    fn drop(&mut self) {
        if !self.pushed {
            return;
        }
        if let Err(e) = pop(self.table) {
            tracing::error!("restoring the caller's current context: {e}");
        }
    }
}
