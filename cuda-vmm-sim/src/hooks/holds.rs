//! Holds — a modelled long-running kernel that keeps a stream's work from
//! completing — and device progress outside synchronisation points.
//!
//! Queued work runs only at synchronisation points (see the crate docs,
//! "Asynchrony"). A test that needs work to stay pending while another thread
//! synchronises holds its stream ([`hold_stream`]); one that needs the device to
//! have moved on without synchronising calls [`advance`]. The kernel itself can
//! be a `cuMemsetD8Async` on the stream: queued work that writes a range.

use cuda_vmm_sys::{CUdevice, CUresult, CUstream};

use crate::model::state;

/// A held stream; dropping the guard ends the hold and wakes the threads
/// waiting for the stream's work.
///
/// While it lives, none of the stream's pending work runs (queued before or
/// after the hold began), nor work that depends on it (`cuStreamWaitEvent` on
/// an event recorded after it, legacy-stream ordering); the hold counts as
/// work on the stream that began when it was taken. A synchronisation that
/// needs that work (`cuStreamSynchronize`, `cuEventSynchronize`,
/// `cuCtxSynchronize`, a synchronous copy on a stream ordered after it,
/// `cuMemFree_v2` / `cuMemFreeHost` of memory it uses, the last
/// `cuDevicePrimaryCtxRelease_v2`) blocks the calling thread, without holding
/// the simulator's lock, until the guard is dropped; `cuStreamQuery` and
/// `cuEventQuery` answer `CUDA_ERROR_NOT_READY` and change nothing; [`advance`]
/// leaves it pending. Unmapping memory the held work touches poisons its
/// context as usual (discarding the work, so waiters return with the poison).
/// Holds are inert with asynchrony off. The guard may be dropped on any thread.
#[must_use = "dropping the guard ends the hold"]
#[derive(Debug)]
pub struct HoldGuard {
    id: Option<u64>,
}

impl HoldGuard {
    /// Whether this guard holds a stream ([`hold_stream`] returns an inert
    /// guard for a handle it refuses; [`try_hold_stream`] says why).
    pub fn is_active(&self) -> bool {
        self.id.is_some()
    }
}

impl Drop for HoldGuard {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        state::with_initialised(|sim| sim.unhold(id));
        state::notify_changed();
    }
}

/// Holds `stream` (see [`HoldGuard`]) until the guard is dropped.
///
/// `stream` is a stream handle of the simulator, or null / `CU_STREAM_LEGACY`
/// for the legacy stream of the calling thread's current context
/// (`CU_STREAM_PER_THREAD`: the thread's per-thread stream). A handle the
/// driver would refuse (no current context, bogus or destroyed, poisoned
/// context) gives an inert guard ([`HoldGuard::is_active`] is false).
pub fn hold_stream(stream: CUstream) -> HoldGuard {
    try_hold_stream(stream).unwrap_or(HoldGuard { id: None })
}

/// [`hold_stream`], answering the driver's error for a handle it refuses
/// (`CUDA_ERROR_NOT_INITIALIZED` before `cuInit`).
pub fn try_hold_stream(stream: CUstream) -> Result<HoldGuard, CUresult> {
    let id = state::with(|sim| {
        let (id, _device) = sim.stream_of(stream)?;
        Ok(sim.hold(id))
    })?;
    Ok(HoldGuard { id: Some(id) })
}

/// Lets the device run for a while: completes all pending work that no hold
/// keeps from running (in every context), as a GPU does on its own. Work that
/// fails poisons its context, as at a synchronisation point. Nothing before `cuInit`.
pub fn advance() {
    state::with_initialised(|sim| sim.advance());
}

/// How many operations are queued and not yet run in `device`'s context
/// (0 before `cuInit` and for devices that do not exist).
pub fn pending_work_on(device: CUdevice) -> usize {
    usize::try_from(device).map_or(0, state::pending_work_on)
}
