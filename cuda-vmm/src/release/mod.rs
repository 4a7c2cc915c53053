//! The release queue: ends of life ordered after device work, off the caller's thread.
//!
//! Ending a mapping (dropping a structure, decommitting, shrinking, recycling into a pool,
//! rolling back) must wait until no device work may touch the memory. Instead of waiting
//! on the caller's thread, the mappings are marked *ending* in their reservation (copies and
//! access changes over them are refused from then on), handed to the [`Cuda`]'s queue with
//! the condition they wait for, and the call returns. A worker thread completes entries in
//! order: it waits for the recorded uses (events created with `CU_EVENT_BLOCKING_SYNC`, so
//! the wait does not spin a core), then, under [`UnmapWait::Devices`](crate::UnmapWait),
//! for all work in the contexts that can reach the memory (`cuCtxSynchronize` on the
//! worker's thread, once per batch and device), then unmaps and runs the entry's
//! [`ReleaseThen`] (returning the allocations to a pool, or releasing them).
//!
//! - Mapping over addresses whose unmap is still queued completes that entry first (and
//!   only that one), on the caller's thread.
//! - The bytes queued are bounded ([`Cuda::set_max_pending_release_bytes`]): past the
//!   bound, the caller completes the oldest entries itself.
//! - An allocation that runs out of memory while releases are pending waits for them and
//!   tries once more.
//! - [`Cuda::flush_releases`] waits until the queue is empty; failures are logged, counted
//!   and kept for [`Cuda::take_release_errors`]; an entry whose unmap failed is kept (never
//!   released) and tried again by the next flush.
//! - The worker holds no `Cuda`: entries hold their reservations (and so the driver) until
//!   they complete, and the worker exits once the queue has been empty for a while, so
//!   nothing outlives its last user for longer than the device work it waits for. Before
//!   exiting, the worker retries the kept entries once; one whose unmap fails again stays
//!   kept, and so does its memory (it may still be mapped), until a flush succeeds.
//!
//! [`Cuda`]: crate::Cuda
//! [`Cuda::set_max_pending_release_bytes`]: crate::Cuda::set_max_pending_release_bytes
//! [`Cuda::flush_releases`]: crate::Cuda::flush_releases
//! [`Cuda::take_release_errors`]: crate::Cuda::take_release_errors

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::Error;

mod entry;
mod worker;

pub use entry::ReleaseThen;
pub(crate) use entry::{Entry, Stage, Work};

/// The default bound on bytes whose release is queued: past it, callers complete the
/// oldest entries themselves.
pub const DEFAULT_MAX_PENDING_RELEASE_BYTES: usize = 4 << 30;

/// How long the worker waits with an empty queue before its thread exits (a new one is
/// started by the next release).
const WORKER_IDLE: Duration = Duration::from_millis(200);

/// Counters of a [`Cuda`](crate::Cuda)'s release queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReleaseStats {
    /// Entries queued so far.
    pub queued: u64,
    /// Entries completed (unmapped and handed on), by any thread.
    pub completed: u64,
    /// Entries completed by a caller that needed their addresses or was past the bound.
    pub completed_by_callers: u64,
    /// Entries queued and not yet completed (failed ones included).
    pub pending_entries: usize,
    /// Bytes of mappings queued and not yet unmapped.
    pub pending_bytes: usize,
    /// The most bytes ever pending at once.
    pub peak_pending_bytes: usize,
    /// Errors reported so far (also the ones already taken).
    pub errors: u64,
    /// Time the worker spent completing entries (waiting included).
    pub worker_busy: Duration,
    /// CPU time the worker threads used (their waits block rather than spin where the
    /// condition is events; a context fence may spin, as `cuCtxSynchronize` does).
    pub worker_cpu: Duration,
    /// The longest time an entry was pending.
    pub max_pending_time: Duration,
}

/// An error met while completing a queued release.
#[derive(Debug)]
pub struct ReleaseError {
    /// Start address of the entry's range.
    pub address: u64,
    /// Bytes in the entry.
    pub size: usize,
    /// What failed.
    pub error: Error,
    /// True when the error came from waiting for device work. A failed event wait falls
    /// back to a fence of the event's context; a failed fence is the sticky error of work
    /// someone else launched in the context (reported here because the fence met it), and
    /// the entry is still completed, since a failed context runs nothing more. False when
    /// the unmap or the hand-on failed.
    pub from_wait: bool,
    /// True when the entry is kept (its unmap failed; nothing was released) for the next
    /// [`flush_releases`](crate::Cuda::flush_releases) to try again.
    pub kept: bool,
}

impl fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.from_wait {
            "waiting for device work before releasing"
        } else {
            "releasing"
        };
        write!(
            f,
            "{what} [{:#x}, +{}): {}",
            self.address, self.size, self.error
        )?;
        if self.kept {
            f.write_str(" (kept for a retry)")?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct State {
    entries: VecDeque<Arc<Entry>>,
    /// Entries whose unmap failed, kept for a flush to retry.
    failed: Vec<Arc<Entry>>,
    stats: ReleaseStats,
    errors: Vec<ReleaseError>,
    worker_running: bool,
    /// Entries a thread is completing right now.
    running: usize,
}

/// The queue a [`Cuda`](crate::Cuda) owns (shared with its worker thread).
pub(crate) struct ReleaseQueue {
    state: Mutex<State>,
    /// Wakes the worker.
    work: Condvar,
    /// Wakes flushers and callers waiting for room.
    settled: Condvar,
    max_pending: AtomicU64,
    name: String,
}

static NEXT_QUEUE: AtomicU64 = AtomicU64::new(1);

impl ReleaseQueue {
    pub(crate) fn new() -> Arc<ReleaseQueue> {
        let id = NEXT_QUEUE.fetch_add(1, Ordering::Relaxed);
        Arc::new(ReleaseQueue {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            settled: Condvar::new(),
            max_pending: AtomicU64::new(DEFAULT_MAX_PENDING_RELEASE_BYTES as u64),
            name: format!("cuda-vmm-release-{id}"),
        })
    }

    /// The worker thread's name.
    pub(crate) fn worker_name(&self) -> &str {
        &self.name
    }

    pub(crate) fn set_max_pending(&self, bytes: usize) {
        self.max_pending.store(bytes as u64, Ordering::Relaxed);
    }

    /// Queues `entry`, starting the worker if none runs; then, past the bound, completes
    /// the oldest entries on this thread until the bytes pending fit again.
    pub(crate) fn push(self: &Arc<Self>, entry: Arc<Entry>) {
        let _span = tracing::debug_span!(
            "release_queued",
            address = format_args!("{:#x}", entry.reservation.ptr() + entry.span.0 as u64),
            bytes = entry.bytes,
        )
        .entered();
        let inline = self.max_pending.load(Ordering::Relaxed) == 0;
        let over = {
            let mut state = self.state.lock();
            state.stats.queued += 1;
            state.stats.pending_entries += 1;
            state.stats.pending_bytes += entry.bytes;
            state.stats.peak_pending_bytes = state
                .stats
                .peak_pending_bytes
                .max(state.stats.pending_bytes);
            if inline {
                // No queueing: this thread completes the entry before returning.
                state.running += 1;
                drop(state);
                self.complete_one(entry, true);
                return;
            }
            state.entries.push_back(entry);
            if !state.worker_running {
                state.worker_running = worker::spawn(self);
            }
            self.work.notify_one();
            state.stats.pending_bytes as u64 > self.max_pending.load(Ordering::Relaxed)
        };
        if over {
            self.make_room();
        }
    }

    /// Completes the oldest queued entries on this thread while the bytes pending exceed
    /// the bound.
    fn make_room(self: &Arc<Self>) {
        loop {
            let next = {
                let mut state = self.state.lock();
                if state.stats.pending_bytes as u64 <= self.max_pending.load(Ordering::Relaxed) {
                    return;
                }
                match state.entries.pop_front() {
                    Some(e) => {
                        state.running += 1;
                        e
                    }
                    None => return,
                }
            };
            self.complete_one(next, true);
        }
    }

    /// Completes `entry` now on this thread (or waits while another thread completes it):
    /// what mapping over its addresses needs. True if it is done.
    pub(crate) fn complete_now(self: &Arc<Self>, entry: &Arc<Entry>) -> bool {
        {
            let mut state = self.state.lock();
            // Out of the queue (or the failed list) if it is there. If not, the worker may
            // hold it in a batch without having started it: `complete_one` takes it then,
            // or waits while another thread has it, or sees it done.
            state.entries.retain(|e| !Arc::ptr_eq(e, entry));
            state.failed.retain(|e| !Arc::ptr_eq(e, entry));
            state.running += 1;
        }
        self.complete_one(entry.clone(), true)
    }

    /// Waits for `entry`'s condition and finishes it, updating the counters. The caller
    /// removed it from the queue and counted it in `running`; the count goes down only once
    /// `entry` is dropped here, so a flush that sees the queue settled also sees every
    /// entry's reservation and allocations let go.
    fn complete_one(&self, entry: Arc<Entry>, by_caller: bool) -> bool {
        let done = match entry.take() {
            None => entry.wait_settled(),
            Some(mut work) => {
                let mut errors = Vec::new();
                Entry::wait_condition(&mut work, &mut errors);
                let waits = errors.len();
                let outcome = entry.finish(work, errors);
                self.account(&entry, outcome, waits, by_caller);
                entry.stage() == Stage::Done
            }
        };
        drop(entry);
        self.stop_running();
        done
    }

    /// One entry fewer is being completed (its `Arc` already dropped by the thread).
    pub(super) fn stop_running(&self) {
        self.state.lock().running -= 1;
        self.settled.notify_all();
    }

    /// Counts a finished (or failed) entry and files its errors.
    fn account(&self, entry: &Arc<Entry>, outcome: entry::Outcome, waits: usize, by_caller: bool) {
        let pending_for = entry.queued_at.elapsed();
        let address = entry.reservation.ptr() + entry.span.0 as u64;
        tracing::debug!(
            address = format_args!("{address:#x}"),
            bytes = entry.bytes,
            pending_us = pending_for.as_micros() as u64,
            done = outcome.done,
            "release_completed"
        );
        let mut state = self.state.lock();
        for (i, error) in outcome.errors.into_iter().enumerate() {
            tracing::error!("release of [{address:#x}, +{}): {error}", entry.bytes);
            state.stats.errors += 1;
            state.errors.push(ReleaseError {
                address,
                size: entry.bytes,
                error,
                from_wait: i < waits,
                kept: !outcome.done,
            });
        }
        if outcome.done {
            state.stats.completed += 1;
            if by_caller {
                state.stats.completed_by_callers += 1;
            }
            state.stats.pending_entries -= 1;
            state.stats.pending_bytes -= entry.bytes;
            state.stats.max_pending_time = state.stats.max_pending_time.max(pending_for);
        } else {
            state.failed.push(entry.clone());
        }
        drop(state);
        entry.reservation.forget_ending(entry);
        self.settled.notify_all();
    }

    /// Waits until nothing is queued or running, retrying each failed entry once (those
    /// kept before the flush first, then any that failed while it waited). `Ok(true)` when
    /// drained, `Ok(false)` on timeout, the first error of a retried entry that failed
    /// again otherwise. A timeout too far to represent waits without a deadline.
    pub(crate) fn flush(self: &Arc<Self>, timeout: Duration) -> crate::Result<bool> {
        let deadline = Instant::now().checked_add(timeout);
        // The entries retried so far: weak, since holding them would keep their memory; a
        // weak reference still pins the address, so it is not reused by a new entry.
        let mut retried: Vec<std::sync::Weak<Entry>> = Vec::new();
        let seen = |retried: &[std::sync::Weak<Entry>], e: &Arc<Entry>| {
            retried
                .iter()
                .any(|r| std::ptr::eq(r.as_ptr(), Arc::as_ptr(e)))
        };
        let mut failed_again = None;
        loop {
            let retry: Vec<Arc<Entry>> = {
                let mut state = self.state.lock();
                let (again, fresh): (Vec<_>, Vec<_>) = std::mem::take(&mut state.failed)
                    .into_iter()
                    .partition(|e| seen(&retried, e));
                state.failed = again;
                state.running += fresh.len();
                fresh
            };
            for entry in retry {
                retried.push(Arc::downgrade(&entry));
                let what = format!(
                    "a queued release of [{:#x}, +{}) failed again; see take_release_errors",
                    entry.reservation.ptr() + entry.span.0 as u64,
                    entry.bytes
                );
                if !self.complete_one(entry, true) && failed_again.is_none() {
                    failed_again = Some(Error::invalid(what));
                }
            }
            let mut state = self.state.lock();
            while !state.entries.is_empty() || state.running > 0 {
                match deadline {
                    Some(deadline) => {
                        if self.settled.wait_until(&mut state, deadline).timed_out() {
                            return Ok(false);
                        }
                    }
                    None => self.settled.wait(&mut state),
                }
            }
            // Drained; done unless an entry failed meanwhile and was not retried yet.
            if state.failed.iter().all(|e| seen(&retried, e)) {
                break;
            }
        }
        match failed_again {
            Some(e) => Err(e),
            None => Ok(true),
        }
    }

    /// Retries the kept entries once, for a worker about to exit idle: without it, a kept
    /// entry would wait for a flush nobody may make (it holds its reservation, and so the
    /// `Cuda`, alive). One that fails again stays kept: its memory may still be mapped.
    pub(crate) fn retry_kept(self: &Arc<Self>) {
        let retry: Vec<Arc<Entry>> = {
            let mut state = self.state.lock();
            let failed = std::mem::take(&mut state.failed);
            state.running += failed.len();
            failed
        };
        for entry in retry {
            self.complete_one(entry, false);
        }
    }

    pub(crate) fn stats(&self) -> ReleaseStats {
        self.state.lock().stats
    }

    pub(crate) fn take_errors(&self) -> Vec<ReleaseError> {
        std::mem::take(&mut self.state.lock().errors)
    }

    /// Whether anything is queued, running or kept.
    pub(crate) fn has_pending(&self) -> bool {
        self.state.lock().stats.pending_entries > 0
    }
}

impl crate::Cuda {
    /// Waits until every queued release has completed (retrying, once, the ones whose unmap
    /// failed), for callers that want the memory back now.
    ///
    /// `Ok(true)` when the queue is empty, `Ok(false)` when `timeout` passed first, and an
    /// error when a retried entry failed again (it stays kept; see
    /// [`take_release_errors`](crate::Cuda::take_release_errors)).
    pub fn flush_releases(&self, timeout: Duration) -> crate::Result<bool> {
        self.release_queue().flush(timeout)
    }

    /// The errors met completing queued releases since the last call (each also logged).
    pub fn take_release_errors(&self) -> Vec<ReleaseError> {
        self.release_queue().take_errors()
    }

    /// The release queue's counters.
    pub fn release_stats(&self) -> ReleaseStats {
        self.release_queue().stats()
    }

    /// The name of the release worker's thread (for diagnostics, and for tests that target
    /// it on the simulator).
    pub fn release_worker_name(&self) -> &str {
        self.release_queue().worker_name()
    }

    /// Bounds the bytes whose release may be queued at once (default
    /// [`DEFAULT_MAX_PENDING_RELEASE_BYTES`]); past it, the caller that queues completes
    /// the oldest entries itself.
    ///
    /// 0 turns the queue off: every release completes on the caller's thread before the
    /// call that ended the memory returns (waiting for the device there, as
    /// [`Mapping::unmap`](crate::Mapping::unmap) does), and its errors come back from that
    /// call instead of [`take_release_errors`](crate::Cuda::take_release_errors).
    pub fn set_max_pending_release_bytes(&self, bytes: usize) {
        self.release_queue().set_max_pending(bytes);
    }

    /// Whether releases complete on the caller's thread (the bound is 0; see
    /// [`set_max_pending_release_bytes`](crate::Cuda::set_max_pending_release_bytes)).
    pub fn releases_complete_inline(&self) -> bool {
        self.release_queue().max_pending.load(Ordering::Relaxed) == 0
    }
}
