//! Ordering memory lifetime against the device timeline.
//!
//! Every reservation keeps a [`UseTracker`]: the events of work queued on its
//! memory (by this crate's async copies and by [`Reservation::record_use`]),
//! the peer devices granted access, and the [`UnmapWait`] policy. Before a
//! mapping ends, [`UseTracker::wait`] waits for that work.
//!
//! [`Reservation::record_use`]: crate::Reservation::record_use

use std::sync::Arc;

use cuda_vmm_sys::CUstream;
use parking_lot::Mutex;

use crate::device::Device;
use crate::error::Result;
use crate::raw::{StreamHandle, Waited};
use crate::stream::Event;

/// What unmapping (and so freeing, recycling, shrinking, dropping) waits for.
///
/// Whatever the policy, unmapping first waits for every event recorded on the
/// reservation ([`Reservation::record_use`], and the async copies of this
/// crate, which record their own).
///
/// [`Reservation::record_use`]: crate::Reservation::record_use
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum UnmapWait {
    /// The default, safe for any work on the memory: also wait for all work in
    /// the primary context of the reservation's device and of every device
    /// granted access (`cuCtxSynchronize` on each), once per unmap batch. This
    /// is what PyTorch's expandable segments and vLLM do before unmapping.
    #[default]
    Devices,
    /// Wait only for the recorded events. Cheaper: other streams and work on
    /// other memory are not waited for. Set with the `unsafe`
    /// [`Reservation::set_unmap_wait`]: the caller promises every use by
    /// work this crate did not issue is recorded.
    ///
    /// [`Reservation::set_unmap_wait`]: crate::Reservation::set_unmap_wait
    RecordedUse,
    /// Wait for nothing: the caller synchronises before every unmap.
    /// Set with the `unsafe` [`Reservation::set_unmap_wait`].
    ///
    /// [`Reservation::set_unmap_wait`]: crate::Reservation::set_unmap_wait
    Caller,
}

/// Which stream a use was recorded on: streams are per context, and the special
/// handles name a different stream in each context (the null stream and
/// `CU_STREAM_LEGACY` the context's legacy stream, `CU_STREAM_PER_THREAD` the calling
/// thread's per-thread stream of the context), so a raw handle alone is not an identity.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct StreamKey {
    context: usize,
    stream: usize,
    thread: Option<std::thread::ThreadId>,
}

impl StreamKey {
    fn new(device: &Device, stream: CUstream) -> StreamKey {
        let raw = stream as usize;
        StreamKey {
            context: device.raw_context() as usize,
            // The null stream and CU_STREAM_LEGACY name the same stream.
            stream: if raw == 0 { STREAM_LEGACY } else { raw },
            thread: (raw == STREAM_PER_THREAD).then(|| std::thread::current().id()),
        }
    }
}

/// `CU_STREAM_LEGACY` (a `cuda.h` macro bindgen cannot translate).
const STREAM_LEGACY: usize = 0x1;
/// `CU_STREAM_PER_THREAD`.
const STREAM_PER_THREAD: usize = 0x2;

/// Whether a recorded use may write the memory or only reads it: readers on different
/// streams need not wait for each other, a writer waits for every use (as cudarc's
/// `CudaSlice` keeps its read and write events apart).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum UseKind {
    /// The work only reads the memory.
    Read,
    /// The work may write the memory (what an unknown use counts as).
    Write,
}

/// One event per (stream, kind of use); re-recording moves it forward. The event is shared
/// with the release queue's entries that snapshot it, so it is re-recorded in place only
/// while no entry holds it.
struct Recorded {
    key: StreamKey,
    kind: UseKind,
    event: Arc<Event>,
}

#[derive(Default)]
struct State {
    policy: UnmapWait,
    recorded: Vec<Recorded>,
    peers: Vec<Device>,
}

/// The use a reservation's memory has had on the device timeline.
#[derive(Default)]
pub(crate) struct UseTracker {
    state: Mutex<State>,
}

impl UseTracker {
    pub(crate) fn policy(&self) -> UnmapWait {
        self.state.lock().policy
    }

    pub(crate) fn set_policy(&self, policy: UnmapWait) {
        self.state.lock().policy = policy;
    }

    /// Records the current end of `stream` (a stream of `device`, whose context the
    /// caller bound) as a use that may write the memory.
    pub(crate) fn record(&self, device: &Device, stream: &StreamHandle) -> Result<()> {
        self.record_kind(device, stream, UseKind::Write)
    }

    /// Records the current end of `stream` as a use of `kind`.
    pub(crate) fn record_kind(
        &self,
        device: &Device,
        stream: &StreamHandle,
        kind: UseKind,
    ) -> Result<()> {
        let key = StreamKey::new(device, stream.raw());
        let mut state = self.state.lock();
        if let Some(i) = state
            .recorded
            .iter()
            .position(|r| r.key == key && r.kind == kind)
        {
            // Later work on the same stream supersedes the earlier record: in place while
            // no queued release holds the event, else on a new event (the entry keeps
            // waiting for the point it was queued after, no later).
            if Arc::strong_count(&state.recorded[i].event) == 1 {
                return state.recorded[i].event.record_raw(stream);
            }
            let event = Arc::new(Event::blocking(device)?);
            event.record_raw(stream)?;
            state.recorded[i].event = event;
            return Ok(());
        }
        // Drop records of finished work so the list stays short.
        state
            .recorded
            .retain(|r| !matches!(r.event.is_complete(), Ok(true)));
        let event = Arc::new(Event::blocking(device)?);
        event.record_raw(stream)?;
        state.recorded.push(Recorded { key, kind, event });
        Ok(())
    }

    /// The events of every recorded use, for a queued release to wait for: the memory is
    /// free of device work once all of them completed.
    pub(crate) fn snapshot(&self) -> Vec<Arc<Event>> {
        let state = self.state.lock();
        state.recorded.iter().map(|r| r.event.clone()).collect()
    }

    /// The devices granted access besides the owner (whose contexts a fence waits for).
    pub(crate) fn peers(&self) -> Vec<Device> {
        self.state.lock().peers.clone()
    }

    /// Records the work before `event` (an event of `device`'s primary context, recorded
    /// by other code such as cudarc) as a use: the private stream waits for it and the
    /// use is recorded there.
    #[cfg(feature = "cudarc")]
    pub(crate) fn record_after_event(
        &self,
        device: &Device,
        event: &cudarc::driver::CudaEvent,
    ) -> Result<()> {
        let stream = device.private_stream();
        let _bound = device.bind()?;
        stream.wait_cudarc_event(device.cuda().api(), event)?;
        self.record(device, stream)
    }

    /// Makes `stream` (a stream of `device`) wait for every recorded use: what work that
    /// may write the memory waits for.
    pub(crate) fn order_after_uses(&self, device: &Device, stream: &StreamHandle) -> Result<()> {
        self.order_for(device, stream, UseKind::Write)
    }

    /// Makes `stream` wait for what a use of `kind` must follow: a reader waits for the
    /// recorded writes only, a writer for every use.
    pub(crate) fn order_for(
        &self,
        device: &Device,
        stream: &StreamHandle,
        kind: UseKind,
    ) -> Result<()> {
        let key = StreamKey::new(device, stream.raw());
        let state = self.state.lock();
        for r in &state.recorded {
            let conflicts = kind == UseKind::Write || r.kind == UseKind::Write;
            if r.key != key && conflicts {
                stream.wait(device.cuda().api(), r.event.handle())?;
            }
        }
        Ok(())
    }

    /// Keeps `peer` (and its primary context) alive while it may access the memory.
    pub(crate) fn add_peer(&self, owner: &Device, peer: &Device) {
        if peer.same_as(owner) {
            return;
        }
        let mut state = self.state.lock();
        if !state.peers.iter().any(|p| p.same_as(peer)) {
            state.peers.push(peer.clone());
        }
    }

    /// Waits, on the host, until no device work may still touch the memory.
    ///
    /// On failure nothing is forgotten: a later call waits again.
    pub(crate) fn wait(&self, owner: &Device) -> Result<Waited> {
        let policy = self.state.lock().policy;
        self.wait_for(owner, policy)?;
        Ok(Waited::after_wait())
    }

    /// Waits for the recorded uses and, under `Devices`, the contexts: what a documented
    /// wait (a synchronize, a publish) waits for whatever the unmap policy (`Caller` only
    /// waives the wait at unmap).
    pub(crate) fn wait_documented(&self, owner: &Device) -> Result<()> {
        let policy = match self.state.lock().policy {
            UnmapWait::Caller => UnmapWait::RecordedUse,
            p => p,
        };
        self.wait_for(owner, policy)
    }

    fn wait_for(&self, owner: &Device, policy: UnmapWait) -> Result<()> {
        let mut state = self.state.lock();
        if policy == UnmapWait::Caller {
            return Ok(());
        }
        for r in &state.recorded {
            r.event.synchronize()?;
        }
        state.recorded.clear();
        if policy == UnmapWait::Devices {
            owner.synchronize()?;
            for peer in &state.peers {
                peer.synchronize()?;
            }
        }
        Ok(())
    }
}
