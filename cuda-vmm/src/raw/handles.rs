//! Typed stream and event rules: handles the crate created or was vouched for.
//!
//! A [`StreamHandle`] or [`EventHandle`] is only made by creating the object
//! ([`StreamHandle::create`], [`EventHandle::create`]), by naming one of the driver's
//! built-in streams ([`StreamHandle::legacy`], [`StreamHandle::per_thread`]), or
//! through an `unsafe` constructor whose caller vouches for a borrowed stream
//! ([`StreamHandle::borrowed`], behind [`Stream::from_raw`](crate::Stream::from_raw)).
//! Neither is `Clone`, and destroying one consumes or clears it, so while one exists its handle is
//! live and it is destroyed at most once: the contracts of the stream and event calls
//! below hold by construction.

use cuda_vmm_sys::{CUevent, CUstream, CUstreamCaptureStatus};

use super::bound::Bound;
use super::{bare, Api};
use crate::error::Result;

/// A live stream: created by the crate (and then destroyed by it, once), a built-in
/// stream, or a borrowed one its lender keeps alive.
pub(crate) struct StreamHandle {
    raw: CUstream,
    owned: bool,
}

// SAFETY: a `CUstream` is an opaque driver handle, and the driver API lets any thread
// queue work on, query or synchronise any stream; `destroy` takes `&mut self`.
unsafe impl Send for StreamHandle {}
// SAFETY: as above; `&StreamHandle` only passes the handle on.
unsafe impl Sync for StreamHandle {}

impl StreamHandle {
    /// A new stream in the bound context (`cuStreamCreate`), owned.
    pub(crate) fn create(api: Api, _bound: &Bound, flags: u32) -> Result<Self> {
        Ok(StreamHandle {
            raw: super::stream_create(api, flags)?,
            owned: true,
        })
    }

    /// The legacy default stream (null), not owned.
    pub(crate) fn legacy() -> Self {
        StreamHandle {
            raw: std::ptr::null_mut(),
            owned: false,
        }
    }

    /// The per-thread default stream (`CU_STREAM_PER_THREAD`), not owned.
    pub(crate) fn per_thread() -> Self {
        StreamHandle {
            raw: 0x2 as CUstream,
            owned: false,
        }
    }

    /// A stream created elsewhere, not owned.
    ///
    /// # Safety
    /// `raw` must be a live stream (or null), and stay alive while the value is used.
    pub(crate) unsafe fn borrowed(raw: CUstream) -> Self {
        StreamHandle { raw, owned: false }
    }

    /// The raw handle.
    #[inline]
    pub(crate) fn raw(&self) -> CUstream {
        self.raw
    }

    /// Whether the crate created the stream (and destroys it).
    #[inline]
    pub(crate) fn is_owned(&self) -> bool {
        self.owned
    }

    /// `cuStreamSynchronize`.
    pub(crate) fn synchronize(&self, api: Api) -> Result<()> {
        // SAFETY: a `StreamHandle` is live while it exists (see the module docs).
        unsafe { super::stream_synchronize(api, self.raw) }
    }

    /// `cuStreamQuery`: whether all queued work finished.
    pub(crate) fn query(&self, api: Api) -> Result<bool> {
        // SAFETY: a `StreamHandle` is live while it exists (see the module docs).
        unsafe { super::stream_query(api, self.raw) }
    }

    /// `cuStreamIsCapturing`: the stream's capture status.
    pub(crate) fn capture_status(&self, api: Api) -> Result<CUstreamCaptureStatus> {
        // SAFETY: a `StreamHandle` is live while it exists (see the module docs).
        unsafe { super::stream_is_capturing(api, self.raw) }
    }

    /// `cuStreamWaitEvent` (flags 0).
    pub(crate) fn wait(&self, api: Api, event: &EventHandle) -> Result<()> {
        // SAFETY: both handles are live while they exist (see the module docs); the
        // flags must be 0.
        unsafe { super::stream_wait_event(api, self.raw, event.raw, 0) }
    }

    /// Destroys an owned stream (`cuStreamDestroy_v2`) in the bound context; a no-op
    /// for one not owned or already destroyed. The driver finishes queued work first.
    pub(crate) fn destroy(&mut self, api: Api, _bound: &Bound) -> Result<()> {
        if !std::mem::take(&mut self.owned) {
            return Ok(());
        }
        let raw = std::mem::replace(&mut self.raw, std::ptr::null_mut());
        // SAFETY: `create` made this stream and the cleared flag makes this its only
        // destruction; nothing uses the handle afterwards (it is now the null stream's).
        unsafe { super::stream_destroy(api, raw) }
    }
}

/// A live event the crate created, destroyed at most once (by value).
pub(crate) struct EventHandle {
    raw: CUevent,
}

// SAFETY: a `CUevent` is an opaque driver handle; the driver API lets any thread
// record, query, wait on or synchronise any event. `destroy` takes `self`.
unsafe impl Send for EventHandle {}
// SAFETY: as above; `&EventHandle` only passes the handle on.
unsafe impl Sync for EventHandle {}

impl EventHandle {
    /// A new event in the bound context (`cuEventCreate`).
    pub(crate) fn create(api: Api, _bound: &Bound, flags: u32) -> Result<Self> {
        Ok(EventHandle {
            raw: super::event_create(api, flags)?,
        })
    }

    /// A new event in the context the caller made current (`cuEventCreate`).
    pub(crate) fn create_in_current(api: Api, flags: u32) -> Result<Self> {
        Ok(EventHandle {
            raw: super::event_create(api, flags)?,
        })
    }

    /// The raw handle.
    #[inline]
    pub(crate) fn raw(&self) -> CUevent {
        self.raw
    }

    /// `cuEventRecord` at the end of `stream`.
    pub(crate) fn record(&self, api: Api, stream: &StreamHandle) -> Result<()> {
        // SAFETY: both handles are live while they exist (see the module docs).
        unsafe { super::event_record(api, self.raw, stream.raw) }
    }

    /// `cuEventSynchronize`.
    pub(crate) fn synchronize(&self, api: Api) -> Result<()> {
        // SAFETY: an `EventHandle` is live while it exists (see the module docs).
        unsafe { super::event_synchronize(api, self.raw) }
    }

    /// `cuEventQuery`: whether the recorded work finished.
    pub(crate) fn query(&self, api: Api) -> Result<bool> {
        // SAFETY: an `EventHandle` is live while it exists (see the module docs).
        unsafe { super::event_query(api, self.raw) }
    }

    /// The bare `cuEventQuery` answer, for callers that only tell success from the rest.
    pub(crate) fn query_bare(&self, api: Api) -> bare::Rc {
        // SAFETY: an `EventHandle` is live while it exists (see the module docs).
        unsafe { bare::event_query(api, self.raw) }
    }

    /// The bare `cuEventSynchronize` answer.
    pub(crate) fn synchronize_bare(&self, api: Api) -> bare::Rc {
        // SAFETY: an `EventHandle` is live while it exists (see the module docs).
        unsafe { bare::event_synchronize(api, self.raw) }
    }

    /// Destroys the event (`cuEventDestroy_v2`).
    pub(crate) fn destroy(self, api: Api) -> Result<()> {
        let rc = self.destroy_bare(api);
        api.done("cuEventDestroy_v2", rc)
    }

    /// Destroys the event, returning the bare `cuEventDestroy_v2` answer.
    pub(crate) fn destroy_bare(self, api: Api) -> bare::Rc {
        // SAFETY: `create` made this event, and taking `self` by value (no `Clone`)
        // makes this its only destruction, with no use afterwards.
        unsafe { bare::event_destroy(api, self.raw) }
    }
}

/// Lends `stream`, a live cudarc stream, to `f` as a [`StreamHandle`].
#[cfg(feature = "cudarc")]
pub(crate) fn with_cudarc_stream<R>(
    stream: &cudarc::driver::CudaStream,
    f: impl FnOnce(&StreamHandle) -> R,
) -> R {
    // SAFETY: cudarc keeps its stream alive while `stream` is borrowed, which outlasts
    // `f`; the handle is only lent to `f` and cannot escape it (`StreamHandle` is not
    // `Clone`, and it is not owned, so nothing destroys it).
    let handle = unsafe { StreamHandle::borrowed(stream.cu_stream().cast()) };
    f(&handle)
}

#[cfg(feature = "cudarc")]
impl StreamHandle {
    /// `cuStreamWaitEvent` (flags 0) on `event`, a live cudarc event.
    pub(crate) fn wait_cudarc_event(
        &self,
        api: Api,
        event: &cudarc::driver::CudaEvent,
    ) -> Result<()> {
        // SAFETY: this stream is live while it exists (see the module docs), and cudarc
        // keeps its event alive while `event` is borrowed, for the whole call; the flags
        // must be 0.
        unsafe { super::stream_wait_event(api, self.raw, event.cu_event().cast(), 0) }
    }
}
