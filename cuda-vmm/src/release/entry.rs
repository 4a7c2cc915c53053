//! One queued end of life: mappings of one reservation, what they wait for, and what
//! happens to their allocations once they are unmapped.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use crate::allocation::Allocation;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::mapping::Mapping;
use crate::raw::Waited;
use crate::reservation::Reservation;
use crate::stream::Event;

/// What a queued release does with the allocations of its mappings once they are
/// unmapped (give them back to a pool, release them); run on whichever thread completes
/// the entry: the release worker, or a caller that needs the addresses back.
pub type ReleaseThen = Box<dyn FnOnce(Vec<Allocation>) -> Result<()> + Send + 'static>;

/// Where an entry stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Queued; nobody has started it.
    Queued,
    /// A thread took it and is waiting or unmapping.
    Running,
    /// Unmapped, its `then` ran.
    Done,
    /// An unmap failed: the mappings not unmapped are kept (still recorded as ending), to
    /// be tried again by a flush; nothing was released.
    Failed,
}

/// The part of an entry that is consumed by completing it.
pub(crate) struct Work {
    pub(crate) mappings: Vec<Mapping>,
    /// The recorded uses of the memory when it was queued.
    pub(crate) events: Vec<Arc<Event>>,
    /// The devices whose contexts are waited for (under `UnmapWait::Devices`).
    pub(crate) fence: Vec<Device>,
    pub(crate) then: Option<ReleaseThen>,
    /// Holds registration hooks took on the unmap (see [`crate::hooks`]).
    pub(crate) holds: Option<crate::hooks::Holds>,
}

/// One queued release.
pub(crate) struct Entry {
    pub(crate) reservation: Reservation,
    /// `[offset, end)` in the reservation that the entry's mappings span.
    pub(crate) span: (usize, usize),
    pub(crate) bytes: usize,
    pub(crate) queued_at: Instant,
    pub(crate) state: Mutex<(Stage, Option<Work>)>,
    pub(crate) changed: Condvar,
}

/// What completing an entry found, for the queue's counters.
pub(crate) struct Outcome {
    /// The entry is done (false: it failed and is kept).
    pub(crate) done: bool,
    /// Errors to report (a failed fence or event wait, a failed unmap, a failed `then`).
    pub(crate) errors: Vec<Error>,
}

impl Entry {
    pub(crate) fn new(reservation: Reservation, work: Work) -> Entry {
        let start = work.mappings.iter().map(Mapping::offset).min().unwrap_or(0);
        let end = work
            .mappings
            .iter()
            .map(|m| m.offset() + m.size())
            .max()
            .unwrap_or(0);
        let bytes = work.mappings.iter().map(Mapping::size).sum();
        Entry {
            reservation,
            span: (start, end),
            bytes,
            queued_at: Instant::now(),
            state: Mutex::new((Stage::Queued, Some(work))),
            changed: Condvar::new(),
        }
    }

    /// Takes the work to complete it, or `None` when another thread has it (or it is done).
    pub(crate) fn take(&self) -> Option<Work> {
        let mut state = self.state.lock();
        match state.0 {
            Stage::Queued | Stage::Failed => {
                state.0 = Stage::Running;
                state.1.take()
            }
            Stage::Running | Stage::Done => None,
        }
    }

    /// Blocks until the entry is done or failed; true if done.
    pub(crate) fn wait_settled(&self) -> bool {
        let mut state = self.state.lock();
        while state.0 == Stage::Running || state.0 == Stage::Queued {
            self.changed.wait(&mut state);
        }
        state.0 == Stage::Done
    }

    pub(crate) fn stage(&self) -> Stage {
        self.state.lock().0
    }

    /// Waits for the entry's events on this thread. An event whose wait failed adds its
    /// device to the entry's fence: a failed event wait alone does not prove the work
    /// done, so the context it belongs to is waited for instead.
    /// The hooks' holds are waited for first.
    pub(crate) fn wait_events(work: &mut Work, errors: &mut Vec<Error>) {
        if let Some(holds) = work.holds.take() {
            holds.wait();
        }
        for event in std::mem::take(&mut work.events) {
            if let Err(e) = event.synchronize() {
                errors.push(e);
                if !work.fence.iter().any(|d| d.same_as(event.device())) {
                    work.fence.push(event.device().clone());
                }
            }
        }
    }

    /// Waits for the entry's condition on this thread: its events, then its fence.
    ///
    /// A failed fence is reported, not fatal: the errors a context fence returns are the
    /// sticky errors of failed device work, after which the context runs nothing more, so
    /// no device work can touch the memory any more either way. They belong to whoever
    /// launched the failing work, and are reported as such.
    pub(crate) fn wait_condition(work: &mut Work, errors: &mut Vec<Error>) {
        Entry::wait_events(work, errors);
        for device in work.fence.drain(..) {
            if let Err(e) = device.synchronize() {
                errors.push(e);
            }
        }
    }

    /// Unmaps and runs `then`, once the condition held (see [`Entry::wait_condition`]).
    pub(crate) fn finish(&self, mut work: Work, errors: Vec<Error>) -> Outcome {
        let mut outcome = Outcome {
            done: false,
            errors,
        };
        let waited = Waited::after_wait();
        let mut allocations = Vec::with_capacity(work.mappings.len());
        let mut kept = Vec::new();
        let mut rest = std::mem::take(&mut work.mappings).into_iter();
        while let Some(mut m) = rest.next() {
            match m.unmap_ending(&waited) {
                Ok(()) => allocations.push(m.allocation().clone()),
                Err(e) => {
                    outcome.errors.push(e);
                    kept.push(m);
                    kept.extend(rest.by_ref());
                }
            }
        }
        if !kept.is_empty() {
            // Kept for a retry; `then` waits until every mapping is unmapped, with the
            // allocations unmapped so far.
            work.mappings = kept;
            let then = work.then.take();
            let done_allocations = allocations;
            work.then = then.map(|then| -> ReleaseThen {
                Box::new(move |mut later: Vec<Allocation>| {
                    let mut all = done_allocations;
                    all.append(&mut later);
                    then(all)
                })
            });
            let mut state = self.state.lock();
            *state = (Stage::Failed, Some(work));
            self.changed.notify_all();
            return outcome;
        }
        if let Some(then) = work.then.take() {
            if let Err(e) = then(allocations) {
                outcome.errors.push(e);
            }
        }
        outcome.done = true;
        let mut state = self.state.lock();
        state.0 = Stage::Done;
        self.changed.notify_all();
        outcome
    }
}
