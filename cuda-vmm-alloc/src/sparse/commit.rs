//! Committing tiles: the transactional commit of a range, with spares and background
//! spares, and the mapping of one run.

use std::ops::Range;

use super::{tiles, SparseArray};
use crate::backing::Chunk;
use crate::error::{check_range, Result};
use crate::pod::DevicePod;
use crate::trace::Hex;

impl<T: DevicePod> SparseArray<T> {
    /// Commits every tile the element range touches (rounded out to tiles). Each run of
    /// adjacent new tiles gets one set-access call; spare tiles
    /// ([`SparseConfig::spare_tiles`](super::SparseConfig::spare_tiles)) are taken without driver calls. All or nothing: on
    /// error the array, its pool and the device's memory are as before. Returns the number
    /// of tiles newly committed.
    ///
    /// Spares never make a commit fail: one that a [`MemoryBudget`](crate::MemoryBudget)
    /// refuses, but that would fit without the spares outside its range, releases those
    /// spares and is tried once more.
    pub fn commit(&mut self, range: Range<usize>) -> Result<usize> {
        self.check_awake("commit")?;
        check_range("commit", &range, self.len)?;
        let wanted = self.tiles_of(range.clone());
        // The worker's runs first: a run it could not undo leaves a stranded mapping that
        // the retry below must unmap before this commit maps over it.
        if self.ahead.is_some() {
            self.adopt_ready();
            self.settle_ahead(wanted.clone());
        }
        match self.commit_tiles(wanted.clone()) {
            Err(e) if e.is_budget_exceeded() => {
                self.settle_all_ahead();
                let outside: Vec<usize> = self
                    .spares
                    .keys()
                    .copied()
                    .filter(|t| !wanted.contains(t))
                    .collect();
                // Released only when that lets the commit fit: a refusal changes nothing.
                let needed = wanted
                    .clone()
                    .filter(|t| !self.committed.contains_key(t) && !self.spares.contains_key(t))
                    .count()
                    * self.tile_bytes;
                let available = self.backing.budget.as_ref().map_or(0, |b| b.available());
                if outside.is_empty() || available + outside.len() * self.tile_bytes < needed {
                    return Err(e);
                }
                self.decommit_runs(tiles::runs(outside), true)?;
                self.commit_tiles(wanted)
            }
            other => other,
        }
    }

    /// [`commit`](Self::commit) of the tiles `wanted`, once.
    fn commit_tiles(&mut self, wanted: Range<usize>) -> Result<usize> {
        self.prepare();
        self.backing.retry_stranded()?;
        let new: Vec<usize> = wanted
            .clone()
            .filter(|t| !self.committed.contains_key(t))
            .collect();
        let missing = tiles::runs(new.iter().copied().filter(|t| !self.spares.contains_key(t)));
        let mut done: Vec<(Range<usize>, Vec<Chunk>)> = Vec::new();
        let rotation = self.backing.homes.position();
        for (i, run) in missing.iter().enumerate() {
            let ahead = if i + 1 == missing.len() && self.ahead.is_none() {
                self.spare_run(run, &new)
            } else {
                None
            };
            match self.commit_with_spares(run.clone(), ahead) {
                Ok(made) => done.push(made),
                Err(e) => {
                    for (run, chunks) in done.into_iter().rev() {
                        self.backing.rollback(chunks);
                        if let Err(z) = self.map_zero(&[run]) {
                            tracing::error!("restoring zero tiles after a failed commit: {z}");
                        }
                    }
                    // The runs given back give their turns in the placement rotation back.
                    self.backing.homes.set_position(rotation);
                    return Err(e);
                }
            }
        }
        for (run, chunks) in done {
            if let Some(zero) = &mut self.zero {
                for t in run.clone() {
                    zero.missing.remove(&t);
                }
            }
            for (t, chunk) in run.zip(chunks) {
                if t < wanted.end {
                    self.committed.insert(t, chunk);
                } else {
                    self.spares.insert(t, chunk);
                }
            }
        }
        self.take_spares(&new);
        self.backing
            .note_committed((self.committed.len() + self.spares.len()) * self.tile_bytes);
        if self.ahead.is_some() && !new.is_empty() {
            self.request_ahead(wanted.end);
        }
        Ok(new.len())
    }

    /// Commits one run of uncommitted tiles, transactionally; the caller records the chunks.
    /// Zero-fills the run unless `uninit_tiles`, and always the tiles from `fill_from` on.
    pub(super) fn commit_run(&mut self, run: Range<usize>, fill_from: usize) -> Result<Vec<Chunk>> {
        let tile = self.tile_bytes;
        let _span = tracing::debug_span!(
            "commit",
            address = %Hex(self.ptr() + (run.start * tile) as u64),
            size = run.len() * tile,
            chunks = run.len(),
            pooled = self.backing.pool.is_some(),
        )
        .entered();
        let obtained = self.backing.obtain(&vec![tile; run.len()])?;
        if let Err(e) = self.unmap_zero(run.clone()) {
            self.backing.unobtain(obtained);
            return Err(e);
        }
        let offset = run.start * tile;
        let bytes = run.len() * tile;
        let mapped = self
            .backing
            .map_run(offset, obtained, false)
            .and_then(|chunks| {
                let (offset, bytes) = if !self.uninit_tiles {
                    (offset, bytes)
                } else if fill_from < run.end {
                    let from = fill_from.max(run.start) * tile;
                    (from, offset + bytes - from)
                } else {
                    return Ok(chunks);
                };
                // New tiles read as zero, whatever the allocation held before.
                match self.backing.reservation.fill(offset, bytes, 0) {
                    Ok(()) => Ok(chunks),
                    Err(e) => {
                        self.backing.rollback(chunks);
                        Err(e.into())
                    }
                }
            });
        if mapped.is_err() {
            self.remap_holes(&[run]);
        }
        mapped
    }
}
