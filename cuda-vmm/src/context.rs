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

use cuda_vmm_sys::CUstream_flags;

use crate::driver::Cuda;
use crate::error::Result;
pub(crate) use crate::raw::{bind, Bound};
use crate::raw::{Api, RetainedContext, StreamHandle};

/// A device's primary context, retained once, plus the crate's private stream on it.
pub(crate) struct PrimaryContext {
    pub(crate) context: RetainedContext,
    /// The crate's own non-blocking stream for its synchronous copies and fills.
    pub(crate) stream: StreamHandle,
}

impl PrimaryContext {
    /// Retains `device`'s primary context and creates the private stream on it.
    pub(crate) fn retain(cuda: &Cuda, device: cuda_vmm_sys::CUdevice) -> Result<Self> {
        let api = cuda.api();
        let mut context = RetainedContext::retain(api, device)?;
        let stream = bind(api.versionless(), &context).and_then(|bound| {
            StreamHandle::create(api, &bound, CUstream_flags::CU_STREAM_NON_BLOCKING.0)
        });
        match stream {
            Ok(stream) => Ok(PrimaryContext { context, stream }),
            Err(e) => {
                release_context(&mut context, api.versionless());
                Err(e)
            }
        }
    }

    /// Destroys the private stream and releases the context (called once, by `Cuda`'s drop).
    pub(crate) fn release(&mut self, api: Api) {
        if self.stream.is_owned() {
            let result =
                bind(api, &self.context).and_then(|bound| self.stream.destroy(api, &bound));
            if let Err(e) = result {
                tracing::error!(
                    "destroying the private stream of device {}: {e}",
                    self.context.device()
                );
            }
        }
        release_context(&mut self.context, api);
    }
}

/// Releases `context`, logging a failure.
fn release_context(context: &mut RetainedContext, api: Api) {
    if let Err(e) = context.release(api) {
        tracing::error!(
            "releasing the primary context of device {}: {e}",
            context.device()
        );
    }
}
