//! Zero holes: the zero-filled allocation mapped read-only into a sparse array's holes.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use cuda_vmm::{Allocation, Mapping};

use super::SparseArray;
use crate::error::Result;
use crate::pod::DevicePod;
use crate::stats::DriverStats;

/// The shared zero tile and its read-only mappings into holes.
pub(super) struct ZeroTile {
    pub(super) allocation: Allocation,
    /// Holes mapped to the zero tile, with read access set.
    pub(super) mappings: BTreeMap<usize, Mapping>,
    /// Holes whose zero mapping failed: mapped again before the next commit or decommit.
    pub(super) missing: BTreeSet<usize>,
}

impl<T: DevicePod> SparseArray<T> {
    /// Unmaps the zero tile from `run`; returns the tiles it was mapped in. All or nothing:
    /// if an unmap fails, the zero tile is mapped back where it was unmapped.
    pub(super) fn unmap_zero(&mut self, run: Range<usize>) -> Result<Vec<usize>> {
        let Some(zero) = &mut self.zero else {
            return Ok(Vec::new());
        };
        let (tiles, mappings): (Vec<usize>, Vec<Mapping>) = run
            .filter_map(|t| zero.mappings.remove(&t).map(|m| (t, m)))
            .unzip();
        if mappings.is_empty() {
            return Ok(tiles);
        }
        self.backing.stats.unmaps += mappings.len() as u64;
        let tile = self.tile_bytes;
        let unmapped = timed_unmap(&mut self.backing.stats, mappings);
        let Err((e, kept)) = unmapped else {
            return Ok(tiles);
        };
        let done = tiles.len() - kept.len();
        if let Some(zero) = &mut self.zero {
            zero.mappings
                .extend(kept.into_iter().map(|m| (m.offset() / tile, m)));
        }
        if let Err(z) = self.map_zero(&tiles[..done]) {
            tracing::error!("mapping the zero tile back after a failed unmap: {z}");
        }
        Err(e.into())
    }

    /// Maps the zero tile read-only into `tiles` (ascending); one set-access per run of
    /// mapped tiles. Every tile is tried; a tile whose map or access fails is left unmapped
    /// and recorded as missing (mapped again by the next commit or decommit). Reports the
    /// first error.
    pub(super) fn map_zero(&mut self, tiles: &[usize]) -> Result<()> {
        let Some(zero) = &self.zero else {
            return Ok(());
        };
        let allocation = zero.allocation.clone();
        let tile = self.tile_bytes;
        let mut failure = None;
        let mut missing = Vec::new();
        let mut mapped: Vec<(usize, Mapping)> = Vec::new();
        for &t in tiles {
            match self.backing.map_shared(t * tile, &allocation, tile) {
                Ok(m) => mapped.push((t, m)),
                Err(e) => {
                    failure.get_or_insert(e);
                    missing.push(t);
                }
            }
        }
        let mut ok = Vec::with_capacity(mapped.len());
        let mut rest = mapped.into_iter().peekable();
        while let Some(first) = rest.next() {
            let mut group = vec![first];
            while let Some(next) =
                rest.next_if(|(t, _)| group.last().is_some_and(|(l, _)| l + 1 == *t))
            {
                group.push(next);
            }
            let start = group[0].0;
            match self
                .backing
                .set_access(start * tile, group.len() * tile, true)
            {
                Ok(()) => ok.extend(group),
                Err(e) => {
                    failure.get_or_insert(e);
                    let (ts, ms): (Vec<usize>, Vec<Mapping>) = group.into_iter().unzip();
                    missing.extend(ts);
                    if let Err(undo) = self.backing.unmap_or_strand(ms) {
                        tracing::error!("unmapping zero tiles without access: {undo}");
                    }
                }
            }
        }
        if let Some(zero) = &mut self.zero {
            zero.mappings.extend(ok);
            zero.missing.extend(missing);
        }
        failure.map_or(Ok(()), Err)
    }

    /// Creates the zero tile, fills it through a temporary read-write mapping at tile 0,
    /// then maps it read-only into every tile.
    pub(super) fn create_zero_tile(&mut self) -> Result<()> {
        let tile = self.tile_bytes;
        self.backing.stats.creates += 1;
        let allocation = Allocation::new(&self.backing.device, tile, &self.backing.props)?;
        let scratch = self.backing.map_shared(0, &allocation, tile)?;
        let filled = self
            .backing
            .set_access(0, tile, false)
            .and_then(|()| Ok(self.backing.reservation.fill(0, tile, 0)?));
        let unmapped = self.backing.unmap_or_strand(vec![scratch]);
        filled?;
        unmapped?;
        self.zero = Some(ZeroTile {
            allocation,
            mappings: BTreeMap::new(),
            missing: BTreeSet::new(),
        });
        let all: Vec<usize> = (0..self.tile_count).collect();
        self.map_zero(&all)
    }
}

/// Unmaps `mappings` in order after one wait, timing it in `stats`.
#[allow(clippy::result_large_err)]
fn timed_unmap(
    stats: &mut DriverStats,
    mappings: Vec<Mapping>,
) -> std::result::Result<(), (cuda_vmm::Error, Vec<Mapping>)> {
    crate::stats::timed(&mut stats.time.unmap, || Mapping::unmap_in_order(mappings))
}
