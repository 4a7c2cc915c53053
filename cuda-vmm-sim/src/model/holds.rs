//! Holds (a modelled long-running kernel), device progress outside
//! synchronisation points, and the answers of stream and event queries.
//!
//! A hold on a stream freezes it: none of its pending work runs — queued
//! before or after the hold began — and neither does work that depends on it
//! (through `cuStreamWaitEvent`, or legacy-stream ordering). The hold itself
//! counts as work on the stream that began when it was taken, so work recorded
//! on the stream after that (an event, a synchronisation) is not complete while
//! it lasts either. Completing held work makes the caller wait (see
//! [`state::with_waiting`](crate::model::state::with_waiting)); queries answer
//! [`answers::NOT_READY`] and change nothing.

use std::collections::HashSet;

use crate::model::answers;
use crate::model::state::{DriverResult, Sim};
use crate::model::work::{Action, StreamId};

/// One hold of a stream: its identity and the sequence number it took when it
/// began (work numbered above it comes after the modelled kernel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hold {
    pub id: u64,
    pub since: u64,
}

impl Sim {
    /// Whether `stream` is held. Holds are inert without asynchrony (no work is
    /// ever pending then).
    pub(crate) fn is_held(&self, stream: StreamId) -> bool {
        self.config.is_asynchronous() && self.work.holds.get(&stream).is_some_and(|h| !h.is_empty())
    }

    /// Whether completing `stream`'s work before `upto` needs the stream's held
    /// work: it is held and has pending work below `upto`, or `upto` lies after
    /// the (earliest) hold began.
    pub(crate) fn blocks(&self, stream: StreamId, upto: u64) -> bool {
        if !self.is_held(stream) {
            return false;
        }
        let since = self
            .work
            .holds
            .get(&stream)
            .and_then(|h| h.iter().map(|h| h.since).min())
            .unwrap_or(u64::MAX);
        self.stream_pending(stream, upto) || upto > since
    }

    /// Holds `stream` until [`Sim::unhold`] with the returned identity.
    pub(crate) fn hold(&mut self, stream: StreamId) -> u64 {
        let id = self.work.new_id();
        let since = self.work.take_seq();
        self.work
            .holds
            .entry(stream)
            .or_default()
            .push(Hold { id, since });
        id
    }

    /// Ends hold `id` (nothing if it is gone already).
    pub(crate) fn unhold(&mut self, id: u64) {
        for holds in self.work.holds.values_mut() {
            holds.retain(|h| h.id != id);
        }
        self.work.holds.retain(|_, h| !h.is_empty());
    }

    /// Completes every pending operation that no hold keeps from running, as
    /// if the device had run for a while.
    pub(crate) fn advance(&mut self) {
        let next = self.work.next_seq();
        let mut ids: Vec<StreamId> = self.work.streams.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            // A held stream (or one waiting for held work) keeps its work.
            let _held = self.run_until(id, next);
        }
    }

    /// Whether completing `stream`'s work before `upto` would need held work,
    /// found without running anything. `seen`: the points already visited.
    fn would_block(
        &self,
        stream: StreamId,
        upto: u64,
        seen: &mut HashSet<(StreamId, u64)>,
    ) -> bool {
        if !seen.insert((stream, upto)) {
            return false;
        }
        if self.blocks(stream, upto) {
            return true;
        }
        let Some(s) = self.work.streams.get(&stream) else {
            return false;
        };
        let deps = self.cross_dependencies(stream);
        for seq in s.queue.iter().copied().take_while(|q| *q < upto) {
            if deps.iter().any(|d| self.would_block(*d, seq, seen)) {
                return true;
            }
            if let Some(Action::Wait { stream: w, upto: u }) =
                self.work.pending.get(&seq).map(|o| &o.action)
            {
                if self.would_block(*w, *u, seen) {
                    return true;
                }
            }
        }
        false
    }

    /// The answer of `cuStreamQuery` / `cuEventQuery` for the work on `stream`
    /// before `upto` (a stream of `device`'s context): success when it has
    /// completed, else [`answers::NOT_READY`], changing nothing — except under
    /// the query progress rule ([`SimConfig::query_progress`]): the `n`-th
    /// `NOT_READY` query of the same point, when no hold is in the way,
    /// completes the work instead and answers its outcome.
    ///
    /// [`SimConfig::query_progress`]: crate::SimConfig::query_progress
    pub(crate) fn query_point(
        &mut self,
        device: usize,
        stream: StreamId,
        upto: u64,
    ) -> DriverResult<()> {
        if !self.blocks(stream, upto) && !self.stream_pending(stream, upto) {
            return Ok(());
        }
        let every = self.config.query_progress_every();
        if every == 0 || self.would_block(stream, upto, &mut HashSet::new()) {
            return Err(answers::NOT_READY);
        }
        // Forget the points that completed some other way meanwhile.
        let done: Vec<(StreamId, u64)> = self
            .work
            .queries
            .keys()
            .filter(|(s, u)| !self.stream_pending(*s, *u))
            .copied()
            .collect();
        for key in done {
            self.work.queries.remove(&key);
        }
        let count = self.work.queries.entry((stream, upto)).or_insert(0);
        *count += 1;
        if *count < every {
            return Err(answers::NOT_READY);
        }
        self.work.queries.remove(&(stream, upto));
        if self.run_until(stream, upto).is_err() {
            // Not reached: `would_block` said nothing is held.
            return Err(answers::NOT_READY);
        }
        self.healthy(device)
    }
}
