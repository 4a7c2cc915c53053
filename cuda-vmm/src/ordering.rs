//! Ordering memory lifetime against the device timeline.
//!
//! Every reservation keeps a [`UseTracker`]: the events of work queued on its
//! memory (by this crate's async copies and by [`Reservation::record_use`]),
//! the peer devices granted access, and the [`UnmapWait`] policy. Before a
//! mapping ends, [`UseTracker::wait`] waits for that work.
//!
//! [`Reservation::record_use`]: crate::Reservation::record_use

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

/// One event per stream the memory was used on; re-recording moves it forward.
struct Recorded {
    key: StreamKey,
    event: Event,
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
    /// caller bound) as a use.
    pub(crate) fn record(&self, device: &Device, stream: &StreamHandle) -> Result<()> {
        let key = StreamKey::new(device, stream.raw());
        let mut state = self.state.lock();
        if let Some(r) = state.recorded.iter().find(|r| r.key == key) {
            // Later work on the same stream supersedes the earlier record.
            return r.event.record_raw(stream);
        }
        // Drop records of finished work so the list stays short.
        state
            .recorded
            .retain(|r| !matches!(r.event.is_complete(), Ok(true)));
        let event = Event::new(device)?;
        event.record_raw(stream)?;
        state.recorded.push(Recorded { key, event });
        Ok(())
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

    /// Makes `stream` (a stream of `device`) wait for every recorded use.
    pub(crate) fn order_after_uses(&self, device: &Device, stream: &StreamHandle) -> Result<()> {
        let key = StreamKey::new(device, stream.raw());
        let state = self.state.lock();
        for r in &state.recorded {
            if r.key != key {
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
