//! Zero holes: read-only, zero-filled blocks mapped over a sparse array's holes.
//!
//! `cuMemSetAccess` and `cuMemUnmap` cost per mapping, and `cuMemMap` maps whole
//! allocations only, so holes are covered by few large mappings: every hole run is cut into
//! aligned blocks of a power of two of tiles (at most [`ZeroMemory::max_block_bytes`]), each
//! mapped from a zero-filled allocation of exactly that size. Committing a tile inside a
//! block of `2^k` tiles unmaps that one block and maps `k` smaller blocks around the tile.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::Arc;

use cuda_vmm::{
    AccessFlags, Allocation, AllocationProps, Device, GranularityKind, Mapping, Reservation,
    ReserveOptions,
};
use parking_lot::Mutex;

use super::tiles;
use super::SparseArray;
use crate::error::{Error, Result};
use crate::pod::DevicePod;
use crate::policy::granular;
use crate::pool::same_device;
use crate::stats::{timed, DriverStats};

/// Zero-filled device memory that [`SparseArray`]s with
/// [`HoleBehavior::Zeros`](super::HoleBehavior::Zeros) map read-only over their holes.
///
/// Holds one allocation per block size an array needed (a tile times a power of two, up to
/// [`max_block_bytes`](ZeroMemory::max_block_bytes)), each created and zero-filled on first
/// use and released when the last clone and the last array using it are gone. With 2 MiB
/// tiles and 256 MiB blocks that is at most 510 MiB, whatever the arrays' sizes. Clones
/// share the blocks: give one to every array of a device through
/// [`SparseConfig::zeros`](super::SparseConfig::zeros) so that they share the memory.
#[derive(Clone)]
pub struct ZeroMemory {
    inner: Arc<ZeroInner>,
}

impl std::fmt::Debug for ZeroMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZeroMemory")
            .field("device", &self.inner.device.ordinal())
            .field("max_block_bytes", &self.inner.max_block)
            .field("physical_bytes", &self.physical_bytes())
            .finish()
    }
}

struct ZeroInner {
    device: Device,
    props: AllocationProps,
    granularity: usize,
    max_block: usize,
    blocks: Mutex<Blocks>,
}

#[derive(Default)]
struct Blocks {
    /// Zero-filled allocations by size in bytes.
    by_size: BTreeMap<usize, Allocation>,
    /// Where new blocks are mapped read-write to be filled: reserved with the first block
    /// (`max_block` bytes of address space), freed with the zero memory.
    scratch: Option<Reservation>,
}

impl ZeroMemory {
    /// The largest block when none is asked for: 256 MiB, so that 1 TiB of holes takes
    /// 4096 mappings and a split costs at most 7 maps (with 2 MiB tiles).
    pub const DEFAULT_MAX_BLOCK_BYTES: usize = 256 << 20;

    /// Zero memory on `device` (plain device memory), whose largest block is
    /// `max_block_bytes` (0 = [`DEFAULT_MAX_BLOCK_BYTES`](Self::DEFAULT_MAX_BLOCK_BYTES)), a
    /// multiple of the granularity. Nothing is allocated until an array needs it.
    pub fn new(device: &Device, max_block_bytes: usize) -> Result<ZeroMemory> {
        let props = AllocationProps::device(device);
        let granularity = device.granularity(&props, GranularityKind::Minimum)?;
        let default = Self::DEFAULT_MAX_BLOCK_BYTES.max(granularity);
        let max_block = granular(max_block_bytes, default, granularity, |size| {
            format!(
                "zero block size {size} bytes is not a multiple of the granularity {granularity}"
            )
        })?;
        Ok(ZeroMemory {
            inner: Arc::new(ZeroInner {
                device: device.clone(),
                props,
                granularity,
                max_block,
                blocks: Mutex::new(Blocks::default()),
            }),
        })
    }

    /// The device the zero memory lives on.
    pub fn device(&self) -> &Device {
        &self.inner.device
    }

    /// The largest block mapped over holes, in bytes.
    pub fn max_block_bytes(&self) -> usize {
        self.inner.max_block
    }

    /// Bytes of zero-filled physical memory held now.
    pub fn physical_bytes(&self) -> usize {
        self.inner.blocks.lock().by_size.keys().sum()
    }

    /// Tiles in the largest block for `tile`-byte tiles: a power of two, at least 1.
    fn max_tiles(&self, tile: usize) -> usize {
        let n = (self.inner.max_block / tile).max(1);
        1 << n.ilog2()
    }

    /// Checks that an array of `tile`-byte tiles on `device` can use this memory.
    pub(super) fn check(&self, device: &Device, tile: usize) -> Result<()> {
        if !same_device(device, &self.inner.device) {
            return Err(Error::PoolMismatch {
                message: format!(
                    "the zero memory lives on device {}, the array on device {}",
                    self.inner.device.ordinal(),
                    device.ordinal()
                ),
            });
        }
        if tile > self.inner.max_block {
            return Err(Error::InvalidConfig {
                message: format!(
                    "tile size {tile} is larger than the zero memory's largest block ({})",
                    self.inner.max_block
                ),
            });
        }
        if tile % self.inner.granularity != 0 {
            return Err(Error::BadTileSize {
                tile_size: tile,
                granularity: self.inner.granularity,
            });
        }
        Ok(())
    }

    /// The zero-filled allocation of `size` bytes, created and filled on first use.
    fn block(&self, size: usize, stats: &mut DriverStats) -> Result<Allocation> {
        let mut blocks = self.inner.blocks.lock();
        if let Some(a) = blocks.by_size.get(&size) {
            return Ok(a.clone());
        }
        let inner = &*self.inner;
        let scratch = match &blocks.scratch {
            Some(r) => r.clone(),
            None => {
                let r =
                    Reservation::new(&inner.device, inner.max_block, ReserveOptions::default())?;
                blocks.scratch = Some(r.clone());
                r
            }
        };
        let allocation = self.create_filled(&scratch, size, stats)?;
        blocks.by_size.insert(size, allocation.clone());
        Ok(allocation)
    }

    /// Creates an allocation of `size` bytes and zero-fills it through the `scratch`
    /// reservation (mapped read-write, filled, unmapped after the fill completed).
    fn create_filled(
        &self,
        scratch: &Reservation,
        size: usize,
        stats: &mut DriverStats,
    ) -> Result<Allocation> {
        let inner = &*self.inner;
        stats.creates += 1;
        let allocation = timed(&mut stats.time.create, || {
            Allocation::new(&inner.device, size, &inner.props)
        })?;
        let mut fill = || -> Result<()> {
            stats.maps += 1;
            let mapping = timed(&mut stats.time.map, || scratch.map(0, &allocation, 0, size))?;
            stats.set_access_calls += 1;
            let filled = timed(&mut stats.time.set_access, || {
                mapping.set_access(&[(&inner.device, AccessFlags::ReadWrite)])
            })
            .and_then(|()| scratch.fill(0, size, 0));
            stats.unmaps += 1;
            let unmapped = timed(&mut stats.time.unmap, || {
                Mapping::unmap_in_order(vec![mapping])
            });
            filled?;
            // A mapping not unmapped is dropped: that tries once more, and leaks on failure.
            unmapped.map_err(|(e, _kept)| e)?;
            Ok(())
        };
        match fill() {
            Ok(()) => Ok(allocation),
            Err(e) => {
                stats.releases += 1;
                drop(allocation);
                Err(e)
            }
        }
    }
}

/// A zero-hole array's zero memory and its read-only mappings over holes.
pub(super) struct ZeroHoles {
    pub(super) memory: ZeroMemory,
    /// Zero mappings by first tile; each covers `size / tile` tiles (a power of two).
    pub(super) mappings: BTreeMap<usize, Mapping>,
    /// Holes whose zero mapping failed: mapped again before the next commit or decommit.
    pub(super) missing: BTreeSet<usize>,
}

impl ZeroHoles {
    /// Runs of zero-mapped tiles (adjacent blocks merged), ascending.
    pub(super) fn runs(&self, tile: usize) -> Vec<Range<usize>> {
        let mut out: Vec<Range<usize>> = Vec::new();
        for (&start, m) in &self.mappings {
            let end = start + m.size() / tile;
            match out.last_mut() {
                Some(run) if run.end == start => run.end = end,
                _ => out.push(start..end),
            }
        }
        out
    }

    /// Whether tile `t` lies in a zero mapping.
    fn covers(&self, t: usize, tile: usize) -> bool {
        self.mappings
            .range(..=t)
            .next_back()
            .is_some_and(|(&s, m)| t < s + m.size() / tile)
    }
}

/// Cuts `run` into aligned blocks of a power of two of tiles, at most `max_tiles` each.
fn blocks_of(run: Range<usize>, max_tiles: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut at = run.start;
    while at < run.end {
        let mut n = max_tiles;
        while n > 1 && (at % n != 0 || at + n > run.end) {
            n /= 2;
        }
        out.push(at..at + n);
        at += n;
    }
    out
}

impl<T: DevicePod> SparseArray<T> {
    /// Makes the array's zero holes from `memory` and maps them over every tile.
    pub(super) fn create_zero_holes(&mut self, memory: ZeroMemory) -> Result<()> {
        memory.check(&self.backing.device, self.tile_bytes)?;
        self.zero = Some(ZeroHoles {
            memory,
            mappings: BTreeMap::new(),
            missing: BTreeSet::new(),
        });
        let all = 0..self.tile_count;
        self.map_zero(std::slice::from_ref(&all))
    }

    /// Takes the zero mappings out of `run`. Blocks reaching past the run are unmapped whole
    /// and their parts outside the run mapped again as smaller blocks (made first, so a
    /// failure to make them changes nothing). All or nothing: on failure every hole of the
    /// blocks touched is zero-mapped again.
    pub(super) fn unmap_zero(&mut self, run: Range<usize>) -> Result<()> {
        let tile = self.tile_bytes;
        let Some(zero) = &mut self.zero else {
            return Ok(());
        };
        let mut spans: Vec<Range<usize>> = zero
            .mappings
            .range(..run.end)
            .rev()
            .map(|(&s, m)| s..s + m.size() / tile)
            .take_while(|span| span.end > run.start)
            .collect();
        if spans.is_empty() {
            return Ok(());
        }
        spans.reverse();
        let mut rest: Vec<Range<usize>> = Vec::new();
        for span in &spans {
            rest.push(span.start..span.start.max(run.start));
            rest.push(span.end.min(run.end)..span.end);
        }
        rest.retain(|r| !r.is_empty());
        let max_tiles = zero.memory.max_tiles(tile);
        let memory = zero.memory.clone();
        for r in &rest {
            for b in blocks_of(r.clone(), max_tiles) {
                memory.block(b.len() * tile, &mut self.backing.stats)?;
            }
        }
        let mappings: Vec<Mapping> = spans
            .iter()
            .filter_map(|s| zero.mappings.remove(&s.start))
            .collect();
        let count = mappings.len();
        self.backing.stats.unmaps += count as u64;
        if let Err((e, kept)) = timed_unmap(&mut self.backing.stats, mappings) {
            let done = count - kept.len();
            zero.mappings
                .extend(kept.into_iter().map(|m| (m.offset() / tile, m)));
            self.remap_holes(&spans[..done]);
            return Err(e.into());
        }
        if let Err(e) = self.map_zero(&rest) {
            self.remap_holes(&spans);
            return Err(e);
        }
        Ok(())
    }

    /// Maps zero blocks over the holes a decommit of `run` made. An aligned span of the
    /// largest block that holds no committed or spare tile any more is merged back into as few blocks
    /// as fit (its smaller zero mappings are unmapped), so that the mappings do not pile up;
    /// elsewhere the new holes get their own blocks and the zero mappings around are left
    /// alone, so that committing those tiles again unmaps nothing else. On failure the holes
    /// left unmapped are recorded as missing, mapped by the next commit or decommit.
    pub(super) fn rezero(&mut self, run: Range<usize>) -> Result<()> {
        let tile = self.tile_bytes;
        let Some(zero) = &mut self.zero else {
            return Ok(());
        };
        let m = zero.memory.max_tiles(tile);
        let merge: Vec<Range<usize>> = (run.start / m * m..run.end)
            .step_by(m)
            .map(|start| start..(start + m).min(self.tile_count))
            .filter(|span| {
                self.committed.range(span.clone()).next().is_none()
                    && self.spares.range(span.clone()).next().is_none()
            })
            .collect();
        let merged = |t: &usize| merge.iter().any(|span| span.contains(t));
        let occupied = |t: &usize| self.committed.contains_key(t) || self.spares.contains_key(t);
        let mut holes = tiles::runs(run.filter(|t| !occupied(t) && !merged(t)));
        let starts: Vec<usize> = merge
            .iter()
            .flat_map(|span| zero.mappings.range(span.clone()).map(|(&s, _)| s))
            .collect();
        let old: Vec<Mapping> = starts
            .iter()
            .filter_map(|s| zero.mappings.remove(s))
            .collect();
        self.backing.stats.unmaps += old.len() as u64;
        let mut result = Ok(());
        if let Err((e, kept)) = timed_unmap(&mut self.backing.stats, old) {
            zero.mappings
                .extend(kept.into_iter().map(|m| (m.offset() / tile, m)));
            result = Err(e.into());
        }
        for span in &merge {
            let free: Vec<usize> = span.clone().filter(|t| !zero.covers(*t, tile)).collect();
            for t in &free {
                zero.missing.remove(t);
            }
            holes.extend(tiles::runs(free));
        }
        holes.sort_by_key(|r| r.start);
        result.and(self.map_zero(&holes))
    }

    /// Zero-maps every tile of `spans` that is neither committed, spare nor zero-mapped (a failed
    /// operation's undo). Failures are logged; the tiles stay missing for the next operation.
    pub(super) fn remap_holes(&mut self, spans: &[Range<usize>]) {
        let tile = self.tile_bytes;
        let Some(zero) = &mut self.zero else {
            return;
        };
        let holes: Vec<usize> = spans
            .iter()
            .flat_map(Clone::clone)
            .filter(|t| {
                !self.committed.contains_key(t)
                    && !self.spares.contains_key(t)
                    && !zero.covers(*t, tile)
            })
            .collect();
        for t in &holes {
            zero.missing.remove(t);
        }
        if let Err(e) = self.map_zero(&tiles::runs(holes)) {
            tracing::error!("mapping zero blocks back after a failed change: {e}");
        }
    }

    /// Maps zero blocks read-only over `runs` of holes (ascending); one set-access per run
    /// of adjacent blocks. Every block is tried; the tiles of a block whose allocation, map
    /// or access fails are left unmapped and recorded as missing (mapped again by the next
    /// commit or decommit). Reports the first error.
    pub(super) fn map_zero(&mut self, runs: &[Range<usize>]) -> Result<()> {
        let tile = self.tile_bytes;
        let Some(zero) = &self.zero else {
            return Ok(());
        };
        let memory = zero.memory.clone();
        let max_tiles = memory.max_tiles(tile);
        let mut failure = None;
        let mut missing: Vec<Range<usize>> = Vec::new();
        let mut mapped: Vec<(usize, Mapping)> = Vec::new();
        for run in runs {
            for b in blocks_of(run.clone(), max_tiles) {
                let made = memory
                    .block(b.len() * tile, &mut self.backing.stats)
                    .and_then(|a| self.backing.map_shared(b.start * tile, &a, a.size()));
                match made {
                    Ok(m) => mapped.push((b.start, m)),
                    Err(e) => {
                        failure.get_or_insert(e);
                        missing.push(b);
                    }
                }
            }
        }
        let mut ok = Vec::with_capacity(mapped.len());
        let mut rest = mapped.into_iter().peekable();
        while let Some(first) = rest.next() {
            let start = first.0;
            let mut end = start + first.1.size() / tile;
            let mut group = vec![first];
            while let Some(next) = rest.next_if(|(t, _)| *t == end) {
                end += next.1.size() / tile;
                group.push(next);
            }
            match self
                .backing
                .set_access(start * tile, (end - start) * tile, true)
            {
                Ok(()) => ok.extend(group),
                Err(e) => {
                    failure.get_or_insert(e);
                    missing.push(start..end);
                    let ms: Vec<Mapping> = group.into_iter().map(|(_, m)| m).collect();
                    if let Err(undo) = self.backing.unmap_or_strand(ms) {
                        tracing::error!("unmapping zero blocks without access: {undo}");
                    }
                }
            }
        }
        if let Some(zero) = &mut self.zero {
            zero.mappings.extend(ok);
            zero.missing.extend(missing.into_iter().flatten());
        }
        failure.map_or(Ok(()), Err)
    }
}

/// Unmaps `mappings` in order after one wait, timing it in `stats`.
#[allow(clippy::result_large_err)]
pub(super) fn timed_unmap(
    stats: &mut DriverStats,
    mappings: Vec<Mapping>,
) -> std::result::Result<(), (cuda_vmm::Error, Vec<Mapping>)> {
    timed(&mut stats.time.unmap, || Mapping::unmap_in_order(mappings))
}

#[cfg(test)]
mod tests {
    use super::blocks_of;

    #[test]
    fn blocks_are_aligned_powers_of_two() {
        assert_eq!(blocks_of(0..8, 4), vec![0..4, 4..8]);
        assert_eq!(blocks_of(0..6, 128), vec![0..4, 4..6]);
        assert_eq!(blocks_of(3..13, 8), vec![3..4, 4..8, 8..12, 12..13]);
        // A split of an aligned block of 2^k tiles takes exactly k blocks.
        let mut around = blocks_of(0..37, 128);
        around.extend(blocks_of(38..128, 128));
        assert_eq!(around.len(), 7);
        assert_eq!(blocks_of(5..5, 4), Vec::<std::ops::Range<usize>>::new());
    }
}
