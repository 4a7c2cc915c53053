//! Spare tiles: memory committed ahead of a run that grows upward, so that the next commits
//! of those tiles make no driver call ([`SparseConfig::spare_tiles`](super::SparseConfig)).
//!
//! kvcached keeps a few spare pages mapped for the same reason. Here they pay off twice: a
//! commit in a zero-hole array unmaps the zero block over the tile and maps the pieces left
//! around it, about one extra mapping per commit when tiles are taken one by one; committing
//! a tile with its spares makes those zero-block changes once per batch instead.

use std::ops::Range;

use super::tiles;
use super::{HoleBehavior, SparseArray};
use crate::backing::Chunk;
use crate::error::Result;
use crate::pod::DevicePod;

impl<T: DevicePod> SparseArray<T> {
    /// Tiles held as spares now (committed ahead, still holes to the caller).
    pub fn spare_count(&self) -> usize {
        self.spares.len()
    }

    /// Bytes of physical memory held by spare tiles, beside (not included in)
    /// [`committed_bytes`](Self::committed_bytes).
    pub fn spare_bytes(&self) -> usize {
        self.spares.len() * self.tile_bytes
    }

    /// Decommits every spare tile, returning its memory to the pool or the device (zero
    /// blocks are mapped back over them with [`HoleBehavior::Zeros`]). Returns how many
    /// spares were released; on error, those not unmapped stay spares.
    pub fn release_spares(&mut self) -> Result<usize> {
        self.settle_all_ahead();
        self.prepare();
        let runs = tiles::runs(self.spares.keys().copied());
        self.decommit_runs(runs, true)
    }

    /// The run to commit in place of `run`, the last run of new tiles a commit needs, with
    /// spares after it: only when spares are configured and `run` extends a run that will be
    /// committed (the tile before it is committed or among `new`, sorted), or starts at 0.
    /// Stops at the first committed or spare tile. `None` when there is nothing to add.
    pub(super) fn spare_run(&self, run: &Range<usize>, new: &[usize]) -> Option<Range<usize>> {
        if self.spare_tiles == 0 {
            return None;
        }
        let grows = match run.start.checked_sub(1) {
            None => true,
            Some(before) => {
                self.committed.contains_key(&before) || new.binary_search(&before).is_ok()
            }
        };
        if !grows {
            return None;
        }
        let limit = run
            .end
            .saturating_add(self.spare_tiles)
            .min(self.tile_count);
        let end = (run.end..limit)
            .find(|t| self.committed.contains_key(t) || self.spares.contains_key(t))
            .unwrap_or(limit);
        (end > run.end).then_some(run.start..end)
    }

    /// Commits `run`, or `ahead` (the run with spares after it) when given. A failure with
    /// spares falls back to `run` alone, so spares never make a commit fail. Returns the
    /// tiles committed and their chunks.
    pub(super) fn commit_with_spares(
        &mut self,
        run: Range<usize>,
        ahead: Option<Range<usize>>,
    ) -> Result<(Range<usize>, Vec<Chunk>)> {
        if let Some(ahead) = ahead {
            // Spares read as zeros in a zero-hole array, whatever `uninit_tiles` says.
            let fill_from = match self.holes {
                HoleBehavior::Zeros => run.end,
                HoleBehavior::Error => usize::MAX,
            };
            let rotation = self.backing.homes.position();
            match self.commit_run(ahead.clone(), fill_from) {
                Ok(chunks) => return Ok((ahead, chunks)),
                Err(e) => {
                    // The batch gave its chunks back: so does its turn in the rotation.
                    self.backing.homes.set_position(rotation);
                    tracing::debug!(
                        "committing spare tiles {ahead:?} failed ({e}); committing {run:?} alone"
                    );
                }
            }
        }
        let chunks = self.commit_run(run.clone(), usize::MAX)?;
        Ok((run, chunks))
    }

    /// Moves the spares among `new` (tiles a commit makes committed) to the committed tiles.
    pub(super) fn take_spares(&mut self, new: &[usize]) {
        if self.spares.is_empty() {
            return;
        }
        for t in new {
            if let Some(chunk) = self.spares.remove(t) {
                self.committed.insert(*t, chunk);
            }
        }
    }
}
