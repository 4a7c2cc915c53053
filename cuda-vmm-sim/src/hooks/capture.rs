//! Capture marks: a stream that `cuStreamIsCapturing` reports as being captured
//! into a graph, so tests reach the code that refuses to act on a capturing
//! stream (the simulator has no graphs, and no stream is captured otherwise).

use cuda_vmm_sys::{CUresult, CUstream};

use crate::model::state;

/// A stream marked as capturing; dropping the guard ends the mark.
///
/// While it lives, `cuStreamIsCapturing` on the stream answers
/// `CU_STREAM_CAPTURE_STATUS_ACTIVE` (without it, `CU_STREAM_CAPTURE_STATUS_NONE`).
/// Nothing else changes: work queued on the stream still runs as usual. Marks
/// nest (the stream reports capturing until every guard on it is dropped), a
/// mark ends with its stream (a destroyed stream is refused as always), and the
/// guard may be dropped on any thread.
#[must_use = "dropping the guard ends the mark"]
#[derive(Debug)]
pub struct CaptureGuard {
    id: Option<u64>,
}

impl CaptureGuard {
    /// Whether this guard marks a stream ([`mark_capturing`] returns an inert
    /// guard for a handle it refuses; [`try_mark_capturing`] says why).
    pub fn is_active(&self) -> bool {
        self.id.is_some()
    }
}

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        state::with_initialised(|sim| sim.unmark_capturing(id));
    }
}

/// Marks `stream` as capturing (see [`CaptureGuard`]) until the guard is dropped.
///
/// `stream` is a stream handle of the simulator, or null / `CU_STREAM_LEGACY`
/// for the legacy stream of the calling thread's current context
/// (`CU_STREAM_PER_THREAD`: the thread's per-thread stream). A handle the
/// driver would refuse (no current context, bogus or destroyed, poisoned
/// context) gives an inert guard ([`CaptureGuard::is_active`] is false).
pub fn mark_capturing(stream: CUstream) -> CaptureGuard {
    try_mark_capturing(stream).unwrap_or(CaptureGuard { id: None })
}

/// [`mark_capturing`], answering the driver's error for a handle it refuses
/// (`CUDA_ERROR_NOT_INITIALIZED` before `cuInit`).
pub fn try_mark_capturing(stream: CUstream) -> Result<CaptureGuard, CUresult> {
    let id = state::with(|sim| {
        let (id, _device) = sim.stream_of(stream)?;
        Ok(sim.mark_capturing(id))
    })?;
    Ok(CaptureGuard { id: Some(id) })
}
