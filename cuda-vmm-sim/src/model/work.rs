//! Device asynchrony: streams, the queue of pending work, its deterministic
//! completion, and context poisoning.
//!
//! Every queued operation has a global sequence number and a stream. It runs
//! only at a synchronisation point, after its dependencies:
//!
//! - the earlier operations of its stream;
//! - on a context's legacy stream: the earlier operations of that context's
//!   blocking streams; on a blocking stream: the earlier operations of its
//!   context's legacy stream (non-blocking streams have neither);
//! - for a wait-event marker: the operations of the event's stream before the
//!   recorded position.
//!
//! A [hold](crate::hold_stream) keeps a stream's work (and what depends on it)
//! from running: completion then stops with [`Blocked`] (see `model::holds`).
//!
//! Completion is [`Sim::run_until`]`(stream, upto)`: nothing else runs, so a
//! program that synchronises stream A but unmaps memory stream B still uses
//! is caught. Unmapping memory that pending work touches poisons the work's
//! context ([`answers::UNMAP_WITH_PENDING_WORK`]).

use std::collections::{BTreeMap, HashMap, VecDeque};

use cuda_vmm_sys::CUresult;

use crate::model::answers;
use crate::model::copies::Span;
use crate::model::holds::Hold;
use crate::model::state::{DriverResult, Sim, Stop, Waitable};

/// Completion needs work a [hold](crate::hold_stream) keeps from running: the
/// caller waits (without the global lock) until a hold is dropped, then retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Blocked;

/// A stream's identity: `0..devices` are the devices' legacy streams.
pub(crate) type StreamId = u64;

/// First identity of a user stream (and of an event).
const FIRST_USER_ID: u64 = 0x100;

/// How a stream synchronises with its context's legacy stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The context's legacy default stream (null, `CU_STREAM_LEGACY`).
    Legacy,
    /// A thread's per-thread default stream of the context
    /// (`CU_STREAM_PER_THREAD`): ordered with the legacy stream like a
    /// blocking stream, not with other threads' per-thread streams.
    PerThread,
    /// A user stream created with `CU_STREAM_DEFAULT`.
    Blocking,
    /// A user stream created with `CU_STREAM_NON_BLOCKING`.
    NonBlocking,
}

/// A stream and the sequence numbers of its pending operations, in order.
#[derive(Debug)]
pub(crate) struct Stream {
    pub device: usize,
    pub kind: Kind,
    /// False once destroyed (its queued work still completes).
    pub live: bool,
    pub queue: VecDeque<u64>,
}

/// What a queued operation does when it runs.
pub(crate) enum Action {
    /// Copy device (or snapshot) bytes: `dst` from `src`.
    Copy { dst: Span, src: Span },
    /// Write `dst` from pinned host memory at `src`, read when the operation runs.
    FromHost { dst: Span, src: usize },
    /// Read `src` into host memory at `dst`, written when the operation runs.
    ToHost { src: Span, dst: usize },
    /// Fill `dst` with repetitions of `pattern`.
    Fill { dst: Span, pattern: Vec<u8> },
    /// Later operations of the stream wait for `stream`'s operations before `upto`.
    Wait { stream: StreamId, upto: u64 },
    /// Nothing: a position in the stream (where a stream-ordered free takes effect).
    Marker,
}

impl core::fmt::Debug for Action {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Copy { .. } => "Copy",
            Self::FromHost { .. } => "FromHost",
            Self::ToHost { .. } => "ToHost",
            Self::Fill { .. } => "Fill",
            Self::Wait { .. } => "Wait",
            Self::Marker => "Marker",
        })
    }
}

impl Action {
    fn run(&self) -> DriverResult<()> {
        match self {
            Self::Copy { dst, src } => dst.copy_from(src),
            // SAFETY: `src` was pinned host memory of the span's length at issue
            // time; `cuMemFreeHost` completes the work reading it before unmapping.
            Self::FromHost { dst, src } => unsafe { dst.write_from(*src as *const u8) },
            // SAFETY: the caller of the async copy promised `dst` writable for
            // the span's length until the work completes (the CUDA contract);
            // an unmapped buffer is reported (EFAULT), not faulted.
            Self::ToHost { src, dst } => unsafe { src.read_into(*dst as *mut u8) },
            Self::Fill { dst, pattern } => dst.fill(pattern),
            Self::Wait { .. } | Self::Marker => Ok(()),
        }
    }
}

/// One queued operation.
#[derive(Debug)]
pub(crate) struct Op {
    pub stream: StreamId,
    pub device: usize,
    pub action: Action,
    /// Device address ranges `[start, end)` it reads or writes.
    pub ranges: Vec<(u64, u64)>,
    /// Pinned host range `[start, end)` it reads or writes when it runs.
    pub host: Option<(usize, usize)>,
}

impl Op {
    /// The sticky error its context gets when memory it touches is unmapped
    /// before it runs: `host_to_device` (recorded on an H200 for pageable and
    /// pinned host-to-device copies) when it writes device memory from the
    /// host, [`answers::UNMAPPED_BY_DEVICE_WORK`] (recorded for device-to-device
    /// copies and memsets) when the device itself reads or writes it.
    fn unmapped_code(&self, host_to_device: CUresult) -> CUresult {
        match self.action {
            Action::FromHost { .. } => host_to_device,
            // A snapshot source: the only device range is the destination.
            Action::Copy { .. } if self.ranges.len() == 1 => host_to_device,
            _ => answers::UNMAPPED_BY_DEVICE_WORK,
        }
    }
}

/// Where an event was last recorded: before `upto` on `stream`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Event {
    pub device: usize,
    pub at: Option<(StreamId, u64)>,
}

/// Streams, events, pending work and pinned host memory.
#[derive(Debug)]
pub(crate) struct Work {
    next_seq: u64,
    next_id: u64,
    pub pending: BTreeMap<u64, Op>,
    pub streams: HashMap<StreamId, Stream>,
    pub events: HashMap<u64, Event>,
    /// Per-thread default streams: (device, thread) -> stream.
    pub per_thread: HashMap<(usize, u64), StreamId>,
    /// Pinned host blocks (`cuMemHostAlloc`): start -> length.
    pub host: BTreeMap<usize, usize>,
    /// Held streams and their holds (see [`crate::hold_stream`]).
    pub holds: HashMap<StreamId, Vec<Hold>>,
    /// Streams a test marks as capturing, and the marks' identities (see
    /// [`crate::mark_capturing`]).
    pub captures: HashMap<StreamId, Vec<u64>>,
    /// `NOT_READY` answers given per queried point `(stream, upto)`, for the
    /// query progress rule ([`crate::SimConfig::query_progress`]).
    pub queries: HashMap<(StreamId, u64), u32>,
}

impl Work {
    pub(crate) fn new(devices: usize) -> Self {
        let streams = (0..devices)
            .map(|d| {
                let stream = Stream {
                    device: d,
                    kind: Kind::Legacy,
                    live: true,
                    queue: VecDeque::new(),
                };
                (d as StreamId, stream)
            })
            .collect();
        Self {
            next_seq: 1,
            next_id: FIRST_USER_ID,
            pending: BTreeMap::new(),
            streams,
            events: HashMap::new(),
            per_thread: HashMap::new(),
            host: BTreeMap::new(),
            holds: HashMap::new(),
            captures: HashMap::new(),
            queries: HashMap::new(),
        }
    }

    /// A fresh stream or event identity (never reused).
    pub(crate) fn new_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Takes a sequence number for something that is not a queued operation
    /// (a hold's start), so that later work is numbered after it.
    pub(crate) fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// The sequence number the next queued operation gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The first pending operation of `stream`.
    fn front(&self, stream: StreamId) -> Option<u64> {
        self.streams.get(&stream)?.queue.front().copied()
    }

    /// Streams of `device` of the given kind (destroyed ones included).
    fn streams_of(&self, device: usize, kind: Kind) -> Vec<StreamId> {
        let mut ids: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|(_, s)| s.device == device && s.kind == kind)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Whether `len` bytes at `ptr` lie inside one pinned host block.
    pub(crate) fn is_pinned(&self, ptr: usize, len: usize) -> bool {
        self.host
            .range(..=ptr)
            .next_back()
            .is_some_and(|(s, n)| ptr.checked_add(len).is_some_and(|end| end <= s + n))
    }
}

/// The legacy stream of `device`.
pub(crate) fn legacy(device: usize) -> StreamId {
    device as StreamId
}

fn overlaps(ranges: &[(u64, u64)], start: u64, end: u64) -> bool {
    ranges.iter().any(|(a, b)| *a < end && start < *b)
}

impl Sim {
    /// Queues `action` on `stream`; with asynchrony off, completes it at once.
    pub fn submit(
        &mut self,
        stream: StreamId,
        action: Action,
        ranges: Vec<(u64, u64)>,
        host: Option<(usize, usize)>,
    ) -> DriverResult<()> {
        if self.config.is_asynchronous() {
            self.enqueue(stream, action, ranges, host).map(drop)
        } else {
            match self.submit_and_wait(stream, action, ranges, host) {
                Ok(()) => Ok(()),
                Err(Stop::Driver(code)) => Err(code),
                // Holds are inert without asynchrony (`is_held` is false), so
                // nothing blocks; were it to, the work stays queued.
                Err(Stop::Blocked) => Ok(()),
            }
        }
    }

    /// Queues `action` on `stream` and completes it (with its dependencies)
    /// inside the call, returning its own result. [`Blocked`] (before
    /// anything is queued) while a hold keeps what it waits for from completing.
    pub fn submit_and_wait(
        &mut self,
        stream: StreamId,
        action: Action,
        ranges: Vec<(u64, u64)>,
        host: Option<(usize, usize)>,
    ) -> Waitable<()> {
        self.ready_to_run(stream)?;
        let seq = self.enqueue(stream, action, ranges, host)?;
        self.finish(stream, seq)
    }

    fn enqueue(
        &mut self,
        stream: StreamId,
        action: Action,
        ranges: Vec<(u64, u64)>,
        host: Option<(usize, usize)>,
    ) -> DriverResult<u64> {
        let device = self
            .work
            .streams
            .get(&stream)
            .map(|s| s.device)
            .ok_or(answers::BAD_STREAM_OR_EVENT)?;
        self.healthy(device)?;
        let seq = self.work.next_seq;
        self.work.next_seq += 1;
        self.work.pending.insert(
            seq,
            Op {
                stream,
                device,
                action,
                ranges,
                host,
            },
        );
        if let Some(s) = self.work.streams.get_mut(&stream) {
            s.queue.push_back(seq);
        }
        Ok(seq)
    }

    /// Runs, in order, the pending operations of `stream` numbered below
    /// `upto`, each after its dependencies. An operation that fails poisons
    /// its context ([`answers::ASYNC_WORK_FAILED`]). Stops with [`Blocked`]
    /// (having run only what did not need held work) when a
    /// [hold](crate::hold_stream) keeps any of it from completing.
    pub fn run_until(&mut self, stream: StreamId, upto: u64) -> Result<(), Blocked> {
        if self.blocks(stream, upto) {
            return Err(Blocked);
        }
        while let Some(seq) = self.work.front(stream).filter(|s| *s < upto) {
            if let Err(_code) = self.run_front(stream, seq)? {
                if let Some(device) = self.work.streams.get(&stream).map(|s| s.device) {
                    self.poison(device, answers::ASYNC_WORK_FAILED);
                }
            }
        }
        Ok(())
    }

    /// The streams an operation on `stream` depends on besides its own: the
    /// cross-stream ones of its stream kind.
    pub(crate) fn cross_dependencies(&self, stream: StreamId) -> Vec<StreamId> {
        let Some((device, kind)) = self.work.streams.get(&stream).map(|s| (s.device, s.kind))
        else {
            return Vec::new();
        };
        match kind {
            Kind::Legacy => {
                let mut ids = self.work.streams_of(device, Kind::Blocking);
                ids.extend(self.work.streams_of(device, Kind::PerThread));
                ids
            }
            Kind::Blocking | Kind::PerThread => vec![legacy(device)],
            Kind::NonBlocking => Vec::new(),
        }
    }

    /// Runs the dependencies an operation at `seq` on `stream` would have:
    /// the cross-stream ones of its stream kind (not its own stream's).
    fn run_cross_dependencies(&mut self, stream: StreamId, seq: u64) -> Result<(), Blocked> {
        for s in self.cross_dependencies(stream) {
            self.run_until(s, seq)?;
        }
        Ok(())
    }

    /// Runs the first pending operation `seq` of `stream` after its
    /// dependencies; its own failure is the inner result.
    fn run_front(&mut self, stream: StreamId, seq: u64) -> Result<DriverResult<()>, Blocked> {
        if self.is_held(stream) {
            return Err(Blocked);
        }
        self.run_cross_dependencies(stream, seq)?;
        if let Some(Action::Wait { stream: s, upto }) =
            self.work.pending.get(&seq).map(|o| &o.action)
        {
            let (s, upto) = (*s, *upto);
            self.run_until(s, upto)?;
        }
        // A dependency may have poisoned the context and discarded the operation.
        let Some(op) = self.work.pending.remove(&seq) else {
            return Ok(Ok(()));
        };
        if let Some(s) = self.work.streams.get_mut(&stream) {
            if s.queue.front() == Some(&seq) {
                s.queue.pop_front();
            } else {
                s.queue.retain(|q| *q != seq);
            }
        }
        Ok(op.action.run())
    }

    /// Completes operation `seq` of `stream` (after everything it depends on),
    /// returning its own result, or the poison of its context.
    fn finish(&mut self, stream: StreamId, seq: u64) -> Waitable<()> {
        let device = self.work.pending.get(&seq).map(|o| o.device);
        self.run_until(stream, seq)?;
        let result = self.run_front(stream, seq)?;
        match device {
            Some(d) => {
                self.healthy(d)?;
                Ok(result?)
            }
            None => Ok(result?),
        }
    }

    /// Completes everything an operation queued now on `stream` would wait for.
    pub fn drain(&mut self, stream: StreamId) -> Result<(), Blocked> {
        let next = self.work.next_seq();
        self.run_cross_dependencies(stream, next)?;
        self.run_until(stream, next)
    }

    /// [`Sim::drain`], and [`Blocked`] if `stream` itself is held: after
    /// success, an operation queued now on `stream` completes at once.
    pub fn ready_to_run(&mut self, stream: StreamId) -> Result<(), Blocked> {
        self.drain(stream)?;
        if self.is_held(stream) {
            return Err(Blocked);
        }
        Ok(())
    }

    /// `cuStreamSynchronize`: completes the stream's pending work.
    pub fn sync_stream(&mut self, stream: StreamId) -> Result<(), Blocked> {
        let next = self.work.next_seq();
        self.run_until(stream, next)
    }

    /// Whether `stream` has pending operations numbered below `upto`.
    pub fn stream_pending(&self, stream: StreamId, upto: u64) -> bool {
        self.work.front(stream).is_some_and(|s| s < upto)
    }

    /// The streams of `device` (destroyed ones with pending work included), in order.
    pub(crate) fn streams_of_device(&self, device: usize) -> Vec<StreamId> {
        let mut ids: Vec<StreamId> = self
            .work
            .streams
            .iter()
            .filter(|(_, s)| s.device == device)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// `cuCtxSynchronize`: completes every stream of `device`.
    pub fn sync_device(&mut self, device: usize) -> Result<(), Blocked> {
        let next = self.work.next_seq();
        for id in self.streams_of_device(device) {
            self.run_until(id, next)?;
        }
        Ok(())
    }

    /// Poisons `device`'s context with `code` (the first poison sticks) and
    /// discards its pending work.
    pub fn poison(&mut self, device: usize, code: CUresult) {
        if let Some(d) = self.devices.get_mut(device) {
            d.poison.get_or_insert(code);
        }
        self.work.pending.retain(|_, op| op.device != device);
        for s in self.work.streams.values_mut() {
            if s.device == device {
                s.queue.clear();
            }
        }
        // Threads blocked on discarded (held) work can return now.
        crate::model::state::notify_changed();
    }

    /// Poisons the context of every pending operation touching `[start, end)`.
    pub fn poison_pending_in(&mut self, start: u64, end: u64, code: CUresult) {
        let mut hits: Vec<(usize, CUresult)> = self
            .work
            .pending
            .values()
            .filter(|op| overlaps(&op.ranges, start, end))
            .map(|op| (op.device, op.unmapped_code(code)))
            .collect();
        // The first operation in sequence order decides each context's code.
        hits.dedup_by_key(|(d, _)| *d);
        let mut seen = Vec::new();
        for (d, c) in hits {
            if !seen.contains(&d) {
                seen.push(d);
                self.poison(d, c);
            }
        }
    }

    /// Completes every pending operation touching device range `[start, end)`
    /// (with its dependencies), as `cuMemFree` does implicitly.
    pub fn complete_touching(&mut self, start: u64, end: u64) -> Result<(), Blocked> {
        let targets: Vec<(StreamId, u64)> = self
            .work
            .pending
            .iter()
            .filter(|(_, op)| overlaps(&op.ranges, start, end))
            .map(|(seq, op)| (op.stream, *seq))
            .collect();
        for (stream, seq) in targets {
            self.run_until(stream, seq + 1)?;
        }
        Ok(())
    }

    /// Completes every pending operation using pinned host range `[start, end)`.
    pub fn complete_touching_host(&mut self, start: usize, end: usize) -> Result<(), Blocked> {
        let targets: Vec<(StreamId, u64)> = self
            .work
            .pending
            .iter()
            .filter(|(_, op)| op.host.is_some_and(|(a, b)| a < end && start < b))
            .map(|(seq, op)| (op.stream, *seq))
            .collect();
        for (stream, seq) in targets {
            self.run_until(stream, seq + 1)?;
        }
        Ok(())
    }

    /// The primary context of `device` is destroyed (its references dropped
    /// to zero): its work completes, its streams and events die, its poison clears.
    /// The caller completed the work first ([`Sim::sync_device`]), so nothing is held.
    pub fn destroy_context(&mut self, device: usize) {
        if self.sync_device(device).is_err() {
            // Unreachable after the caller's sync (under the same lock); discard
            // rather than keep work on streams about to die.
            self.work.pending.retain(|_, op| op.device != device);
        }
        self.work.holds.retain(|id, _| {
            self.work
                .streams
                .get(id)
                .map_or(true, |s| s.device != device)
        });
        for (id, s) in self.work.streams.iter_mut() {
            if s.device == device && *id != legacy(device) {
                s.live = false;
            }
        }
        self.work
            .streams
            .retain(|id, s| s.live || !s.queue.is_empty() || *id < FIRST_USER_ID);
        self.work.events.retain(|_, e| e.device != device);
        self.work.per_thread.retain(|(d, _), _| *d != device);
        if let Some(d) = self.devices.get_mut(device) {
            d.poison = None;
        }
    }
}
