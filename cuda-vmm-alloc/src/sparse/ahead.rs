//! Background spares ([`SparseConfig::background_spares`](super::SparseConfig)): the spare
//! tiles after a commit are mapped by a worker thread while the caller goes on, as
//! kvcached maps pages ahead, instead of inside the commit.
//!
//! The worker (the buffers' [`Prefetcher`], on a shadow of the array's backing) maps one
//! requested run at a time; the array adopts finished runs as spares at its next call.
//! The array never touches a requested range before its run is collected: a commit,
//! decommit or access change over it first waits for the worker, so the worker and the
//! caller never map the same addresses.

use std::collections::VecDeque;
use std::ops::Range;

use super::SparseArray;
use crate::backing::Backing;
use crate::error::Result;
use crate::growable::prefetch::{Prefetcher, Staged};
use crate::pod::DevicePod;

/// Runs the worker may have asked for and not handed back at once.
const DEPTH: usize = 256;

/// The array's worker and the tile runs asked of it, oldest first (its order).
pub(super) struct Ahead {
    prefetcher: Prefetcher,
    requested: VecDeque<Range<usize>>,
}

impl Ahead {
    pub(super) fn start(shadow: Backing) -> Result<Ahead> {
        Ok(Ahead {
            prefetcher: Prefetcher::start_with_depth(shadow, DEPTH)?,
            requested: VecDeque::new(),
        })
    }

    /// Whether a requested run overlaps `tiles`.
    fn overlaps(&self, tiles: &Range<usize>) -> bool {
        self.requested
            .iter()
            .any(|r| r.start < tiles.end && tiles.start < r.end)
    }
}

impl<T: DevicePod> SparseArray<T> {
    /// Adopts the runs the worker has finished, without waiting.
    pub(super) fn adopt_ready(&mut self) {
        while let Some(staged) = self.ahead.as_mut().and_then(|a| a.prefetcher.try_collect()) {
            self.adopt(staged);
        }
    }

    /// Waits for (and adopts) every requested run overlapping `tiles`, and the ones asked
    /// before them.
    pub(super) fn settle_ahead(&mut self, tiles: Range<usize>) {
        while self.ahead.as_ref().is_some_and(|a| a.overlaps(&tiles)) {
            let Some(staged) = self.ahead.as_mut().and_then(|a| a.prefetcher.collect()) else {
                // The worker is gone: nothing more comes back.
                if let Some(ahead) = &mut self.ahead {
                    ahead.requested.clear();
                }
                return;
            };
            self.adopt(staged);
        }
    }

    /// Waits for (and adopts) every requested run.
    pub(super) fn settle_all_ahead(&mut self) {
        self.settle_ahead(0..usize::MAX);
    }

    /// Takes a finished run into the spares (with its driver calls and stranded mappings).
    fn adopt(&mut self, mut staged: Staged) {
        let tile = self.tile_bytes;
        let first = staged.offset / tile;
        if let Some(ahead) = &mut self.ahead {
            ahead.requested.pop_front();
        }
        self.backing.stats.absorb(&staged.stats);
        self.backing.stranded.append(&mut staged.stranded);
        match staged.chunks {
            Ok(chunks) => {
                for (i, chunk) in chunks.into_iter().enumerate() {
                    self.spares.insert(first + i, chunk);
                }
                self.backing
                    .note_committed((self.committed.len() + self.spares.len()) * self.tile_bytes);
            }
            // No spares then; the commit that needs the tiles maps them itself.
            Err(e) => tracing::debug!("background spares at tile {first} failed: {e}"),
        }
    }

    /// Asks the worker for the spare run after tile `end` (the end of a commit): up to
    /// `spare_tiles` holes, stopping at a committed, spare or requested tile.
    pub(super) fn request_ahead(&mut self, end: usize) {
        let limit = end.saturating_add(self.spare_tiles).min(self.tile_count);
        let Some(ahead) = &self.ahead else {
            return;
        };
        let stop = (end..limit)
            .find(|t| {
                self.committed.contains_key(t)
                    || self.spares.contains_key(t)
                    || ahead.overlaps(&(*t..*t + 1))
            })
            .unwrap_or(limit);
        if stop <= end {
            return;
        }
        let tile = self.tile_bytes;
        let turn = self.backing.homes.position();
        let Some(ahead) = &mut self.ahead else {
            return;
        };
        if ahead
            .prefetcher
            .request(end * tile, turn, vec![tile; stop - end])
        {
            ahead.requested.push_back(end..stop);
        }
    }

    /// Stops the worker after adopting what it mapped (before the array changes what the
    /// worker's shadow copied: access, or the end of the array's life).
    pub(super) fn stop_ahead(&mut self) -> Option<()> {
        self.ahead.as_ref()?;
        self.settle_all_ahead();
        self.ahead = None;
        Some(())
    }

    /// Starts the worker again after [`stop_ahead`](Self::stop_ahead), on a fresh shadow.
    pub(super) fn restart_ahead(&mut self) {
        match Ahead::start(self.backing.shadow()) {
            Ok(ahead) => self.ahead = Some(ahead),
            Err(e) => tracing::error!("restarting background spares: {e}"),
        }
    }
}
