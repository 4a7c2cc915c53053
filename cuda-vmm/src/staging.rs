//! Library-owned staging for copies between the host and the device.
//!
//! The rule: no call returns while device work may still read or write host memory the
//! library does not own. A copy straight into the caller's slice breaks it whenever the
//! wait after the copy fails (the copy may still be queued and land later, over whatever
//! the caller stored there since, or into a freed `Vec`), and an async copy from pinned
//! memory reads the caller's slice after the call returned. So every copy between the
//! host and the device goes through staging buffers this module owns:
//!
//! - **Shape.** Per device (kept with its primary context), page-locked
//!   (`cuMemHostAlloc` with `CU_MEMHOSTALLOC_PORTABLE`, so every context treats it as
//!   pinned), [`STAGE_BYTES`] each. A driver that refuses page-locked memory gets heap
//!   buffers instead: slower, equally sound.
//! - **Chunking.** Larger copies go through two buffers in turn: the device fills (or
//!   drains) one while the host copies the other.
//! - **Reuse.** A buffer is reused once the event recorded after its last copy completed;
//!   at most [`KEEP_FREE`] idle buffers are kept, and at most [`MAX_BUFFERS`] exist per
//!   device (an async write past that waits for the oldest one in flight: back-pressure;
//!   only when copies in progress hold every buffer and none is in flight is one more
//!   made, and counted).
//! - **Quarantine.** When a wait fails, the buffers whose copies may still run are set
//!   aside: a buffer whose event covers its last copy is reused only once that event
//!   is seen complete (never, when the context is lost); one with a copy no event
//!   covers is never reused or freed. At most [`QUARANTINE_BYTES`] may be set aside
//!   per device: a buffer is handed out only while setting it aside too would stay
//!   within the bound, so at the bound copies are refused ([`Error::StagingExhausted`])
//!   before any driver call.

use std::collections::VecDeque;

use cuda_vmm_sys::{CUevent_flags, CUresult, CU_MEMHOSTALLOC_PORTABLE};
use parking_lot::Mutex;

use crate::context::bind;
use crate::device::Device;
use crate::error::{check, Error, Result};
use crate::raw::{Api, EventHandle, HostMemory, RetainedContext, StreamHandle};

/// Bytes per staging buffer (the chunk size of large copies).
pub const STAGE_BYTES: usize = 4 << 20;
/// Idle buffers kept per device for reuse.
pub const KEEP_FREE: usize = 4;
/// Buffers per device at most, idle and in flight together.
pub const MAX_BUFFERS: usize = 16;
/// Bytes per device that failed waits may quarantine before copies are refused.
pub const QUARANTINE_BYTES: usize = 64 << 20;

/// One staging buffer and the event recorded after its last copy.
pub(crate) struct HostBuffer {
    memory: HostMemory,
    /// Created on first use in the device's context; `None` until then.
    event: Option<EventHandle>,
}

// SAFETY: the buffer is plain host memory owned by this value, and the event an opaque
// driver handle any thread may use; only one owner touches them at a time.
#[allow(unsafe_code)]
unsafe impl Send for HostBuffer {}

impl HostBuffer {
    /// The buffer's bytes, for host-side copies. Only called while no device work on
    /// the buffer is queued (after its event completed).
    pub(crate) fn bytes(&mut self) -> &mut [u8] {
        self.memory.bytes()
    }

    /// The bytes from `from` on, while copies of the bytes before it may be in flight
    /// (see `HostMemory::bytes_from`).
    pub(crate) fn bytes_from(&mut self, from: usize) -> &mut [u8] {
        self.memory.bytes_from(from)
    }

    /// The buffer's memory, for the driver's copies.
    pub(crate) fn memory(&self) -> &HostMemory {
        &self.memory
    }

    /// Records the buffer's event at the end of `stream` (the device's context is bound).
    pub(crate) fn record(&mut self, device: &Device, stream: &StreamHandle) -> Result<()> {
        let api = device.cuda().api();
        let event = match &mut self.event {
            Some(event) => event,
            // The caller bound the context.
            None => self.event.insert(EventHandle::create_in_current(
                api,
                CUevent_flags::CU_EVENT_DISABLE_TIMING.0,
            )?),
        };
        event.record(api, stream)
    }

    /// Waits until the buffer's last copy finished (`cuEventSynchronize`).
    pub(crate) fn wait(&self, device: &Device) -> Result<()> {
        match &self.event {
            None => Ok(()),
            Some(event) => event.synchronize(device.cuda().api()),
        }
    }

    /// Whether the buffer's last copy finished (`cuEventQuery`); errors count as not.
    fn is_idle(&self, api: Api) -> bool {
        match &self.event {
            None => true,
            Some(event) => event.query_bare(api) == Ok(CUresult::CUDA_SUCCESS),
        }
    }

    /// Whether the buffer's last copy finished, waiting for it (`cuEventSynchronize`);
    /// errors count as not.
    fn wait_idle(&self, api: Api) -> bool {
        match &self.event {
            None => true,
            Some(event) => event.synchronize_bare(api) == Ok(CUresult::CUDA_SUCCESS),
        }
    }

    /// Frees the buffer and its event (the context is bound, the buffer idle).
    fn free(self, api: Api) {
        if let Some(event) = self.event {
            if let Ok(rc) = event.destroy_bare(api) {
                if let Err(e) = check("cuEventDestroy_v2", rc) {
                    tracing::error!("destroying a staging event: {e}");
                }
            }
        }
        // Idle: no copy uses the memory any more.
        self.memory.free(api);
    }
}

#[derive(Default)]
struct State {
    free: Vec<HostBuffer>,
    in_flight: VecDeque<HostBuffer>,
    /// Buffers a failed wait left behind whose event covers their last copy: reused
    /// once that event completes.
    suspended: Vec<HostBuffer>,
    /// Buffers that exist, idle, in flight or suspended (not quarantined for good).
    count: usize,
    quarantined: usize,
}

impl State {
    /// Moves the suspended buffers whose last copy completed back to the free list.
    fn resume_idle(&mut self, api: Api) {
        let mut i = 0;
        while i < self.suspended.len() {
            if self.suspended[i].is_idle(api) {
                let b = self.suspended.swap_remove(i);
                self.free.push(b);
            } else {
                i += 1;
            }
        }
    }
}

/// A device's staging buffers (kept in its shared state, freed with its context).
#[derive(Default)]
pub(crate) struct Staging {
    state: Mutex<State>,
}

impl Staging {
    /// Takes an idle buffer (reused, or new), the device's context bound by the caller;
    /// waits for the oldest buffer in flight when [`MAX_BUFFERS`] exist.
    ///
    /// Refused ([`Error::StagingExhausted`]) when setting one more buffer aside would
    /// pass [`QUARANTINE_BYTES`]: every buffer taken may be set aside by the copy's
    /// failed wait, so a take at the bound would overshoot it.
    pub(crate) fn take(&self, device: &Device) -> Result<HostBuffer> {
        /// What the take does once the lock is released.
        enum Next {
            /// Wait for the oldest buffer in flight (back-pressure).
            Wait(HostBuffer),
            /// Allocate a new buffer (already counted).
            Allocate,
        }
        let api = device.cuda().api().versionless();
        let next = {
            let mut state = self.state.lock();
            state.resume_idle(api);
            let set_aside = state.quarantined + state.suspended.len() * STAGE_BYTES;
            if set_aside + STAGE_BYTES > QUARANTINE_BYTES {
                return Err(Error::StagingExhausted {
                    quarantined: set_aside,
                });
            }
            while state.in_flight.front().is_some_and(|b| b.is_idle(api)) {
                if let Some(b) = state.in_flight.pop_front() {
                    state.free.push(b);
                }
            }
            if let Some(b) = state.free.pop() {
                return Ok(b);
            }
            match state.in_flight.pop_front() {
                Some(b) if state.count >= MAX_BUFFERS => Next::Wait(b),
                oldest => {
                    // Under the cap, or every buffer is held by copies in progress or
                    // suspended (nothing to wait for): a new one, counted either way so
                    // `count` stays the number that exist.
                    if let Some(b) = oldest {
                        state.in_flight.push_front(b);
                    }
                    state.count += 1;
                    Next::Allocate
                }
            }
        };
        match next {
            // Back-pressure: every buffer is in flight; wait for the oldest.
            Next::Wait(b) => match b.wait(device) {
                Ok(()) => Ok(b),
                Err(e) => {
                    self.suspend(b);
                    Err(e)
                }
            },
            Next::Allocate => Ok(self.allocate(device)),
        }
    }

    fn allocate(&self, device: &Device) -> HostBuffer {
        // The caller bound the context.
        HostBuffer {
            memory: HostMemory::new(device.cuda().api(), STAGE_BYTES, CU_MEMHOSTALLOC_PORTABLE),
            event: None,
        }
    }

    /// Hands back a buffer whose last copy completed (it is kept or freed).
    pub(crate) fn give_back(&self, device: &Device, buffer: HostBuffer) {
        let mut state = self.state.lock();
        if state.free.len() < KEEP_FREE {
            state.free.push(buffer);
        } else {
            state.count = state.count.saturating_sub(1);
            drop(state);
            buffer.free(device.cuda().api().versionless());
        }
    }

    /// Hands back a buffer with a copy still queued; reused once its event completed.
    pub(crate) fn give_back_in_flight(&self, buffer: HostBuffer) {
        self.state.lock().in_flight.push_back(buffer);
    }

    /// Sets aside a buffer whose wait failed but whose event covers its last copy: it
    /// is reused only once that event completes (never, if the context is lost).
    pub(crate) fn suspend(&self, buffer: HostBuffer) {
        self.state.lock().suspended.push(buffer);
    }

    /// Gives up on a buffer with a copy queued that no event covers: it is never reused or
    /// freed (leaked), and counts against [`QUARANTINE_BYTES`].
    pub(crate) fn quarantine(&self, buffer: HostBuffer) {
        let mut state = self.state.lock();
        state.count = state.count.saturating_sub(1);
        state.quarantined += STAGE_BYTES;
        tracing::error!(
            "a staging buffer may still be in use by the device after a failed wait: \
             quarantined ({} bytes in all)",
            state.quarantined
        );
        // `HostBuffer` has no `Drop`: letting it go out of scope leaks the memory.
        let _leaked = buffer;
    }

    /// Bytes set aside after failed waits: quarantined for good, plus suspended
    /// buffers whose copy is not complete yet (their events are queried here, so the
    /// figure drops as soon as the copies finished, not only at the next copy).
    pub(crate) fn quarantined(&self, api: Api) -> usize {
        let mut state = self.state.lock();
        state.resume_idle(api);
        state.quarantined + state.suspended.len() * STAGE_BYTES
    }

    /// Frees every buffer (the device's context is being released): idle ones at once,
    /// ones in flight after their copy (quarantined if that wait fails).
    pub(crate) fn release(&mut self, api: Api, ctx: &RetainedContext) {
        let mut state = std::mem::take(self.state.get_mut());
        state.in_flight.extend(state.suspended.drain(..));
        if state.free.is_empty() && state.in_flight.is_empty() {
            return;
        }
        let Ok(_bound) = bind(api, ctx) else {
            tracing::error!("staging buffers leaked: their context could not be bound");
            return;
        };
        for b in state.free {
            b.free(api);
        }
        for b in state.in_flight {
            if b.wait_idle(api) {
                b.free(api);
            } else {
                // Leaked: `HostBuffer` has no `Drop`, and its copy may still run.
                tracing::error!("a staging buffer leaked: its last copy did not finish");
            }
        }
    }
}
