//! Stream and event handles, their calls, and pinned host memory.
//!
//! Stream and event handles are fake, never-dereferenced addresses. The null
//! stream and `CU_STREAM_LEGACY` (0x1) name the current context's legacy
//! default stream (one per context); `CU_STREAM_PER_THREAD` (0x2) names the
//! per-thread default stream of the current context and the calling thread
//! (one per context and thread, made on first use).

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use cuda_vmm_sys::{CUevent, CUevent_st, CUresult, CUstream, CUstreamCaptureStatus, CUstream_st};

use crate::model::answers;
use crate::model::contexts;
use crate::model::state::{DriverResult, Sim, Waitable};
use crate::model::work::{legacy, Action, Event, Kind, Stream, StreamId};
use crate::os;

const STREAM_BASE: usize = 0x0057_0000_0000;
const EVENT_BASE: usize = 0x00e7_0000_0000;
const STRIDE: usize = 0x10;

/// `CU_STREAM_NON_BLOCKING`.
const NON_BLOCKING: u32 = 1;
/// `CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING | CU_EVENT_INTERPROCESS`.
const EVENT_FLAGS: u32 = 1 | 2 | 4;
const EVENT_DISABLE_TIMING: u32 = 2;
const EVENT_INTERPROCESS: u32 = 4;
/// `CU_MEMHOSTALLOC_PORTABLE | DEVICEMAP | WRITECOMBINED`.
const HOST_ALLOC_FLAGS: u32 = 1 | 2 | 4;

/// `CU_STREAM_PER_THREAD`.
const PER_THREAD: usize = 2;

static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's identity for per-thread default streams (0: not yet given).
    static THREAD: Cell<u64> = const { Cell::new(0) };
}

/// The calling thread's identity (never reused).
fn thread_id() -> u64 {
    THREAD.with(|t| {
        if t.get() == 0 {
            t.set(NEXT_THREAD.fetch_add(1, Ordering::Relaxed));
        }
        t.get()
    })
}

fn decode(handle: usize, base: usize) -> Option<u64> {
    let offset = handle.checked_sub(base)?;
    (offset % STRIDE == 0).then_some((offset / STRIDE) as u64)
}

fn stream_handle(id: StreamId) -> CUstream {
    core::ptr::null_mut::<CUstream_st>().wrapping_byte_add(STREAM_BASE + id as usize * STRIDE)
}

fn event_handle(id: u64) -> CUevent {
    core::ptr::null_mut::<CUevent_st>().wrapping_byte_add(EVENT_BASE + id as usize * STRIDE)
}

impl Sim {
    /// The stream `handle` names and its device, checking that its context is
    /// active and not poisoned.
    pub fn stream_of(&mut self, handle: CUstream) -> DriverResult<(StreamId, usize)> {
        let (id, device) = match handle as usize {
            PER_THREAD => {
                let d = contexts::current_device(self)?;
                (self.per_thread_stream(d), d)
            }
            0 | 1 => {
                let d = contexts::current_device(self)?;
                (legacy(d), d)
            }
            h => {
                let id = decode(h, STREAM_BASE).ok_or(answers::BAD_STREAM_OR_EVENT)?;
                let s = self
                    .work
                    .streams
                    .get(&id)
                    .filter(|s| s.live && matches!(s.kind, Kind::Blocking | Kind::NonBlocking))
                    .ok_or(answers::BAD_STREAM_OR_EVENT)?;
                (id, s.device)
            }
        };
        self.healthy(device)?;
        Ok((id, device))
    }

    /// The calling thread's per-thread default stream of `device`'s context,
    /// made on first use.
    fn per_thread_stream(&mut self, device: usize) -> StreamId {
        let key = (device, thread_id());
        if let Some(id) = self.work.per_thread.get(&key) {
            return *id;
        }
        let id = self.work.new_id();
        self.work.streams.insert(
            id,
            Stream {
                device,
                kind: Kind::PerThread,
                live: true,
                queue: VecDeque::new(),
            },
        );
        self.work.per_thread.insert(key, id);
        id
    }

    /// The event `handle` names, checking that its context is not poisoned.
    fn event_of(&self, handle: CUevent) -> DriverResult<(u64, Event)> {
        let id = decode(handle as usize, EVENT_BASE).ok_or(answers::BAD_STREAM_OR_EVENT)?;
        let e = *self
            .work
            .events
            .get(&id)
            .ok_or(answers::BAD_STREAM_OR_EVENT)?;
        self.healthy(e.device)?;
        Ok((id, e))
    }

    /// `cuStreamCreate` on `device`.
    pub fn stream_create(&mut self, device: usize, flags: u32) -> DriverResult<CUstream> {
        let kind = match flags {
            0 => Kind::Blocking,
            NON_BLOCKING => Kind::NonBlocking,
            _ => return Err(answers::STREAM_BAD_FLAGS),
        };
        let id = self.work.new_id();
        self.work.streams.insert(
            id,
            Stream {
                device,
                kind,
                live: true,
                queue: VecDeque::new(),
            },
        );
        Ok(stream_handle(id))
    }

    /// `cuStreamDestroy_v2`: returns at once; queued work still completes later.
    pub fn stream_destroy(&mut self, handle: CUstream) -> DriverResult<()> {
        let (id, _) = self.stream_of(handle)?;
        let special = self
            .work
            .streams
            .get(&id)
            .map_or(true, |s| matches!(s.kind, Kind::Legacy | Kind::PerThread));
        if special {
            return Err(answers::BAD_STREAM_OR_EVENT);
        }
        if let Some(s) = self.work.streams.get_mut(&id) {
            s.live = false;
            if s.queue.is_empty() {
                self.work.streams.remove(&id);
            }
        }
        Ok(())
    }

    /// `cuStreamSynchronize` (blocked while a hold keeps the work from completing);
    /// then the pools release free memory beyond their thresholds.
    pub fn stream_synchronize(&mut self, handle: CUstream) -> Waitable<()> {
        let (id, device) = self.stream_of(handle)?;
        self.sync_stream(id)?;
        self.healthy(device)?;
        Ok(self.pools_after_sync()?)
    }

    /// `cuStreamQuery`: success once the stream's work completed, else
    /// [`answers::NOT_READY`]; see [`Sim::query_point`].
    pub fn stream_query(&mut self, handle: CUstream) -> DriverResult<()> {
        let (id, device) = self.stream_of(handle)?;
        let upto = match self.work.streams.get(&id).and_then(|s| s.queue.back()) {
            Some(last) => last + 1,
            None => self.work.next_seq(),
        };
        self.query_point(device, id, upto)
    }

    /// `cuStreamIsCapturing`: the simulator has no graphs, so a stream is never
    /// captured (`CU_STREAM_CAPTURE_STATUS_NONE`) unless a test marks it
    /// ([`crate::mark_capturing`]: `CU_STREAM_CAPTURE_STATUS_ACTIVE`).
    pub fn stream_is_capturing(&mut self, handle: CUstream) -> DriverResult<CUstreamCaptureStatus> {
        let (id, _device) = self.stream_of(handle)?;
        Ok(
            if self.work.captures.get(&id).is_some_and(|m| !m.is_empty()) {
                CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_ACTIVE
            } else {
                CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE
            },
        )
    }

    /// Marks `stream` as capturing until [`Sim::unmark_capturing`] with the
    /// returned identity.
    pub(crate) fn mark_capturing(&mut self, stream: StreamId) -> u64 {
        let id = self.work.new_id();
        self.work.captures.entry(stream).or_default().push(id);
        id
    }

    /// Ends capture mark `id` (nothing if it is gone already).
    pub(crate) fn unmark_capturing(&mut self, id: u64) {
        for marks in self.work.captures.values_mut() {
            marks.retain(|m| *m != id);
        }
        self.work.captures.retain(|_, m| !m.is_empty());
    }

    /// `cuEventCreate` on `device`.
    pub fn event_create(&mut self, device: usize, flags: u32) -> DriverResult<CUevent> {
        if flags & !EVENT_FLAGS != 0
            || (flags & EVENT_INTERPROCESS != 0 && flags & EVENT_DISABLE_TIMING == 0)
        {
            return Err(answers::EVENT_BAD_FLAGS);
        }
        let id = self.work.new_id();
        self.work.events.insert(id, Event { device, at: None });
        Ok(event_handle(id))
    }

    /// `cuEventRecord`: captures the stream's current queue position.
    pub fn event_record(&mut self, event: CUevent, stream: CUstream) -> DriverResult<()> {
        let (id, e) = self.event_of(event)?;
        let (s, device) = self.stream_of(stream)?;
        if device != e.device {
            return Err(answers::BAD_STREAM_OR_EVENT);
        }
        let at = Some((s, self.work.next_seq()));
        if let Some(e) = self.work.events.get_mut(&id) {
            e.at = at;
        }
        Ok(())
    }

    /// `cuEventSynchronize`: completes the work before the recorded position
    /// (blocked while a hold keeps it from completing); then the pools release
    /// free memory beyond their thresholds.
    pub fn event_synchronize(&mut self, event: CUevent) -> Waitable<()> {
        let (_, e) = self.event_of(event)?;
        if let Some((s, upto)) = e.at {
            self.run_until(s, upto)?;
        }
        self.healthy(e.device)?;
        Ok(self.pools_after_sync()?)
    }

    /// `cuEventQuery`: success once the work before the recorded position
    /// completed, else [`answers::NOT_READY`]; see [`Sim::query_point`].
    pub fn event_query(&mut self, event: CUevent) -> DriverResult<()> {
        let (_, e) = self.event_of(event)?;
        match e.at {
            Some((s, upto)) => self.query_point(e.device, s, upto),
            None => Ok(()),
        }
    }

    /// `cuEventDestroy_v2`.
    pub fn event_destroy(&mut self, event: CUevent) -> DriverResult<()> {
        let (id, _) = self.event_of(event)?;
        self.work.events.remove(&id);
        Ok(())
    }

    /// `cuStreamWaitEvent`: later work on the stream waits for the event's work.
    pub fn stream_wait_event(
        &mut self,
        stream: CUstream,
        event: CUevent,
        flags: u32,
    ) -> DriverResult<()> {
        let (s, _) = self.stream_of(stream)?;
        let (_, e) = self.event_of(event)?;
        if flags != 0 {
            return Err(answers::WAIT_BAD_FLAGS);
        }
        match e.at {
            Some((stream, upto)) => self.submit(s, Action::Wait { stream, upto }, Vec::new(), None),
            None => Ok(()),
        }
    }

    /// `cuMemHostAlloc`: page-aligned, read-write host memory, tracked as pinned.
    pub fn host_alloc(&mut self, size: usize, flags: u32) -> DriverResult<usize> {
        if size == 0 && answers::HOST_ALLOC_ZERO_SIZE != CUresult::CUDA_SUCCESS {
            return Err(answers::HOST_ALLOC_ZERO_SIZE);
        }
        if flags & !HOST_ALLOC_FLAGS != 0 {
            return Err(answers::HOST_ALLOC_BAD_FLAGS);
        }
        let page = os::page_size();
        let len = (size.max(1) as u64)
            .checked_next_multiple_of(page)
            .ok_or(answers::HOST_ALLOC_FAILED)?;
        let start = os::anonymous(len).map_err(|_| answers::HOST_ALLOC_FAILED)? as usize;
        self.work.host.insert(start, len as usize);
        Ok(start)
    }

    /// `cuMemFreeHost`: completes pending work using the block, then unmaps it.
    pub fn free_host(&mut self, ptr: usize) -> Waitable<()> {
        let len = *self.work.host.get(&ptr).ok_or(answers::FREE_HOST_UNKNOWN)?;
        self.complete_touching_host(ptr, ptr + len)?;
        self.work.host.remove(&ptr);
        // SAFETY: the block was mapped by `host_alloc`, its record is gone and
        // no pending work reads or writes it any more.
        unsafe { os::release(ptr as u64, len as u64) }.map_err(|_| answers::OS_FAILURE.into())
    }
}
