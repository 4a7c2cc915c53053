//! A huge logical array over one reservation, of which only touched tiles hold memory.

mod ahead;
mod commit;
mod config;
mod sleep;
mod spare;
mod tiles;
mod zero;

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;

use cuda_vmm::{Device, Mapping, Stream};

use crate::backing::{Backing, Chunk};
use crate::error::{check_len, check_range, Error, Result};
use crate::growable::element_size;
use crate::memory::overwrite;
use crate::pod::{as_bytes_mut, DevicePod};
use crate::stats::DriverStats;

pub use config::{HoleBehavior, SparseConfig};
use zero::ZeroHoles;
pub use zero::ZeroMemory;

/// A huge logical array of `T` over one reserved address range, of which only committed
/// tiles are backed by physical memory.
///
/// Each committed tile is its own allocation (from the pool when configured), so any tile can
/// be decommitted and its memory returned on its own. Committing a run of adjacent tiles maps
/// them back to back and makes ONE `cuMemSetAccess` for the run. Newly committed tiles read
/// as zero. Element ranges are rounded OUT to whole tiles by [`commit`](SparseArray::commit)
/// and IN by [`decommit`](SparseArray::decommit), so a decommit never drops data outside its
/// range.
///
/// [`ptr`](SparseArray::ptr) is stable; kernels may access committed tiles (and, with
/// [`HoleBehavior::Zeros`], read holes).
///
/// ```
/// # fn main() -> Result<(), cuda_vmm_alloc::Error> {
/// use cuda_vmm::Cuda;
/// use cuda_vmm_alloc::{SparseArray, SparseConfig};
///
/// let cuda = Cuda::simulator()?;
/// let device = cuda.device(0)?;
/// // A 1 TiB logical array of u32: only address space until tiles are committed.
/// let mut a = SparseArray::<u32>::new(&device, 1 << 38, SparseConfig::default())?;
/// let per_tile = a.tile_bytes() / 4;
/// assert_eq!(a.commit(10 * per_tile..10 * per_tile + 3)?, 1); // rounded out: one tile
/// a.write(10 * per_tile, &[7, 8, 9])?;
/// let mut out = [0u32; 4];
/// a.read(10 * per_tile..10 * per_tile + 4, &mut out)?;
/// assert_eq!(out, [7, 8, 9, 0]); // a new tile reads as zero
/// let hole = a.read(0..1, &mut out[..1]).unwrap_err();
/// assert!(matches!(hole, cuda_vmm_alloc::Error::NotCommitted { .. }));
/// assert_eq!(a.decommit(10 * per_tile..11 * per_tile)?, 1);
/// assert_eq!(a.committed_bytes(), 0);
/// # Ok(()) }
/// ```
pub struct SparseArray<T: DevicePod> {
    backing: Backing,
    len: usize,
    tile_bytes: usize,
    uninit_tiles: bool,
    tile_count: usize,
    holes: HoleBehavior,
    committed: BTreeMap<usize, Chunk>,
    /// Tiles committed ahead of a growing run, still holes to the caller
    /// ([`SparseConfig::spare_tiles`]).
    spares: BTreeMap<usize, Chunk>,
    spare_tiles: usize,
    zero: Option<ZeroHoles>,
    /// The worker mapping spares ahead, with [`SparseConfig::background_spares`].
    ahead: Option<ahead::Ahead>,
    /// Set while the array sleeps.
    asleep: Option<sleep::SleptArray>,
    /// Host memory for sleep backups.
    host: crate::sleeping::KeptArena,
    _elements: PhantomData<T>,
}

crate::memory::device_memory!(SparseArray);

impl<T: crate::pod::DevicePod> SparseArray<T> {
    /// See [`DeviceMemory::set_unmap_wait`](crate::DeviceMemory::set_unmap_wait); written
    /// here rather than by `device_memory!`, so that no macro holds an `unsafe` block.
    ///
    /// # Safety
    /// As for [`DeviceMemory::set_unmap_wait`](crate::DeviceMemory::set_unmap_wait).
    pub unsafe fn set_unmap_wait(&self, policy: cuda_vmm::UnmapWait) {
        // SAFETY: forwarded from this function's contract.
        unsafe { crate::memory::DeviceMemory::set_unmap_wait(self, policy) }
    }
}

impl<T: DevicePod> SparseArray<T> {
    /// Reserves room for `len` elements on `device`; nothing is committed.
    pub fn new(device: &Device, len: usize, config: SparseConfig) -> Result<Self> {
        let size = element_size::<T>()?;
        let len_bytes = len
            .checked_mul(size)
            .filter(|&b| b > 0)
            .ok_or_else(|| Error::InvalidConfig {
                message: format!("sparse array length {len} elements of {size} bytes is unusable (zero or overflowing)"),
            })?;
        let requested_tile = config.tile_bytes;
        let zeros = config.zeros.clone();
        let mut tile_bytes = 0;
        let mut tile_count = 0;
        let pool = config.pool.clone();
        let budget = config.budget.clone();
        let mut backing = Backing::new(
            device,
            config.props,
            config.pool,
            &config.placement,
            "the sparse array",
            |unit, granularity| {
                tile_bytes = if requested_tile == 0 {
                    unit
                } else {
                    requested_tile
                };
                if tile_bytes % granularity != 0 {
                    return Err(Error::BadTileSize {
                        tile_size: tile_bytes,
                        granularity,
                    });
                }
                if let Some(pool) = &pool {
                    if pool.chunk_size() != tile_bytes {
                        return Err(Error::PoolMismatch {
                            message: format!(
                                "tile size {tile_bytes} differs from the pool's chunk size {}",
                                pool.chunk_size()
                            ),
                        });
                    }
                }
                tile_count = len_bytes.div_ceil(tile_bytes);
                tile_count
                    .checked_mul(tile_bytes)
                    .ok_or_else(|| Error::InvalidConfig {
                        message: format!("{tile_count} tiles of {tile_bytes} bytes overflow"),
                    })
            },
        )?;
        backing.budget = budget;
        let mut array = SparseArray {
            backing,
            len,
            tile_bytes,
            tile_count,
            holes: config.holes,
            uninit_tiles: config.uninit_tiles,
            committed: BTreeMap::new(),
            spares: BTreeMap::new(),
            spare_tiles: config.spare_tiles,
            zero: None,
            ahead: None,
            asleep: None,
            host: crate::sleeping::KeptArena::new(),
            _elements: PhantomData,
        };
        if config.background_spares {
            let why = if config.spare_tiles == 0 {
                Some("spare_tiles is 0")
            } else if config.holes != HoleBehavior::Error {
                Some("holes read as zeros (HoleBehavior::Zeros)")
            } else if !config.uninit_tiles {
                Some("new tiles are zero-filled (uninit_tiles is false)")
            } else if array.backing.homes.only().is_none() {
                Some("the placement stripes tiles over several devices")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(Error::InvalidConfig {
                    message: format!("background_spares needs spare tiles mapped as is: {why}"),
                });
            }
            array.ahead = Some(ahead::Ahead::start(array.backing.shadow())?);
        }
        if array.holes == HoleBehavior::Zeros {
            let memory = match zeros {
                Some(memory) => memory,
                None => ZeroMemory::new(device, 0)?,
            };
            array.create_zero_holes(memory)?;
        }
        Ok(array)
    }

    /// Logical length in elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a sparse array has at least one element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes per tile.
    pub fn tile_bytes(&self) -> usize {
        self.tile_bytes
    }

    /// Tiles covering the array.
    pub fn tile_count(&self) -> usize {
        self.tile_count
    }

    /// What reading a hole does.
    pub fn hole_behavior(&self) -> HoleBehavior {
        self.holes
    }

    /// Bytes of physical memory committed to tiles (zero memory not included). Spare tiles
    /// ([`SparseConfig::spare_tiles`]) are holes to the caller and are not counted here:
    /// the array holds [`committed_bytes`](Self::committed_bytes) +
    /// [`spare_bytes`](Self::spare_bytes) of physical memory, which is what
    /// [`DriverStats::peak_committed_bytes`] records.
    pub fn committed_bytes(&self) -> usize {
        self.committed.len() * self.tile_bytes
    }

    /// Driver calls made so far and the physical footprint.
    pub fn stats(&self) -> DriverStats {
        self.backing.stats
    }

    /// Whether element `index` is backed by committed memory (false past the end).
    pub fn is_committed(&self, index: usize) -> bool {
        index < self.len && self.first_hole(self.tiles_of(index..index + 1)).is_none()
    }

    /// The physical allocation backing committed tile `tile` (`None` for a hole or a
    /// spare): its [`device`](cuda_vmm::Allocation::device) is where the placement put it.
    pub fn tile_allocation(&self, tile: usize) -> Option<&cuda_vmm::Allocation> {
        self.committed.get(&tile).map(|c| c.mapping.allocation())
    }

    /// Runs of committed tiles, ascending (tile indices, not elements).
    pub fn committed_runs(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        tiles::runs(self.committed.keys().copied()).into_iter()
    }

    /// The elements with at least one byte in tile `tile` (clipped to the array's length;
    /// empty for a tile past the end).
    pub fn tile_elements(&self, tile: usize) -> Range<usize> {
        let size = size_of::<T>();
        let at = |t: usize| {
            t.checked_mul(self.tile_bytes)
                .map_or(self.len, |b| b.div_ceil(size).min(self.len))
        };
        let start = tile
            .checked_mul(self.tile_bytes)
            .map_or(self.len, |b| (b / size).min(self.len));
        start..at(tile.saturating_add(1)).max(start)
    }

    /// Decommits the tiles lying wholly inside the element range (rounded in to tiles; the
    /// last tile counts as inside when the range reaches the array's end), returning their
    /// memory to the pool or the device. Spare tiles inside the range are released too.
    /// Returns the number of committed tiles decommitted (spares, already holes to the
    /// caller, are not counted; [`spare_count`](Self::spare_count) shows what is left).
    ///
    /// Returns without waiting for the device: the tiles become holes at once and are
    /// handed to the release queue ([`cuda_vmm::release`]), whose worker thread unmaps them
    /// and gives them back once the device work the array's
    /// [`UnmapWait`](cuda_vmm::UnmapWait) names has ended (by default the recorded uses and
    /// all work in the contexts that can reach the memory). Until then their bytes count in
    /// [`pending_release_bytes`](Self::pending_release_bytes), and a commit over them waits
    /// for that entry. With the queue turned off
    /// ([`Cuda::set_max_pending_release_bytes`](cuda_vmm::Cuda::set_max_pending_release_bytes)
    /// 0) or under `UnmapWait::Caller`, the wait and the unmaps happen in this call.
    ///
    /// On error, the tiles that could not be unmapped stay committed (or spare) with their
    /// contents, and the others are holes. Failures on the worker are logged and kept for
    /// [`Cuda::take_release_errors`](cuda_vmm::Cuda::take_release_errors).
    pub fn decommit(&mut self, range: Range<usize>) -> Result<usize> {
        self.check_awake("decommit")?;
        check_range("decommit", &range, self.len)?;
        let size = size_of::<T>();
        let inner = tiles::inside(
            range.start * size..range.end * size,
            self.tile_bytes,
            self.len * size,
        );
        if self.ahead.is_some() {
            self.adopt_ready();
            self.settle_ahead(inner.clone());
        }
        self.prepare();
        let present = tiles::runs(self.committed.range(inner.clone()).map(|(&t, _)| t));
        let spares = tiles::runs(self.spares.range(inner).map(|(&t, _)| t));
        let decommitted = self.decommit_runs(present, false);
        let released = self.decommit_runs(spares, true);
        match (decommitted, released) {
            (Ok(n), Ok(_)) => Ok(n),
            (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(e),
            (Err(e), Err(later)) => {
                tracing::error!("decommit: releasing spare tiles: {later}");
                Err(e)
            }
        }
    }

    /// Decommits `runs` of committed (or, with `spare`, spare) tiles with ONE release (one
    /// queue entry, one wait for all of them), then maps zero blocks into each run if
    /// configured; returns how many tiles became holes, or the first error (later ones are
    /// logged). On error, the tiles not unmapped stay as they were.
    fn decommit_runs(&mut self, runs: Vec<Range<usize>>, spare: bool) -> Result<usize> {
        if runs.is_empty() {
            return Ok(0);
        }
        let tiles = if spare {
            &mut self.spares
        } else {
            &mut self.committed
        };
        let chunks: Vec<Chunk> = runs
            .iter()
            .flat_map(|run| run.clone())
            .filter_map(|t| tiles.remove(&t))
            .collect();
        let tile = self.tile_bytes;
        let mut result = match self.backing.release_chunks(chunks) {
            Ok(()) => Ok(0),
            Err((e, kept)) => {
                tracing::error!("releasing tiles failed: {e}");
                let tiles = if spare {
                    &mut self.spares
                } else {
                    &mut self.committed
                };
                for chunk in kept {
                    tiles.insert(chunk.offset() / tile, chunk);
                }
                Err(e)
            }
        };
        for run in runs {
            let tiles = if spare { &self.spares } else { &self.committed };
            let holes = run.clone().filter(|t| !tiles.contains_key(t)).count();
            match (self.rezero(run), &mut result) {
                (Ok(()), Ok(count)) => *count += holes,
                (Err(e), Ok(_)) => result = Err(e),
                (Err(e), Err(_)) => tracing::error!("decommit: {e}"),
                (Ok(()), Err(_)) => {}
            }
        }
        result
    }

    /// Copies elements `range` to the host. Holes read as zeros with
    /// [`HoleBehavior::Zeros`], else fail with [`Error::NotCommitted`] (nothing copied).
    pub fn read(&self, range: Range<usize>, out: &mut [T]) -> Result<()> {
        self.check_awake("read")?;
        check_range("read", &range, self.len)?;
        check_len(&range, out.len())?;
        if range.is_empty() {
            return Ok(());
        }
        let size = size_of::<T>();
        if self.holes == HoleBehavior::Error {
            self.check_committed(range.clone())?;
        }
        let start = range.start * size;
        let end = range.end * size;
        let out = as_bytes_mut(out);
        let mut pos = start;
        while pos < end {
            let backed = self.committed.contains_key(&(pos / self.tile_bytes));
            let mut seg_end = ((pos / self.tile_bytes + 1) * self.tile_bytes).min(end);
            while seg_end < end
                && self.committed.contains_key(&(seg_end / self.tile_bytes)) == backed
            {
                seg_end = (seg_end + self.tile_bytes).min(end);
            }
            let dst = &mut out[pos - start..seg_end - start];
            if backed {
                self.backing.reservation.read(pos, dst)?;
            } else {
                dst.fill(0);
            }
            pos = seg_end;
        }
        Ok(())
    }

    /// Copies host elements to `offset..`; every tile touched must be committed. If it fails
    /// after a driver call, each element holds its old value or its new one.
    pub fn write(&mut self, offset: usize, values: &[T]) -> Result<()> {
        self.overwrite(offset, values, None)
    }

    /// Copies host elements to `offset..`, queued on `stream` and recorded as a use; every
    /// tile touched must be committed. `values` are staged before this returns.
    pub fn write_async(&mut self, stream: &Stream, offset: usize, values: &[T]) -> Result<()> {
        self.overwrite(offset, values, Some(stream))
    }

    /// [`overwrite`] on this structure's reservation and length.
    fn overwrite(&self, offset: usize, values: &[T], stream: Option<&Stream>) -> Result<()> {
        self.check_awake("write")?;
        let reservation = &self.backing.reservation;
        overwrite(
            reservation,
            self.len,
            offset,
            values,
            |r| self.check_committed(r),
            stream,
        )
    }

    /// Gives `devices` access, now and for tiles committed later: read-write on committed
    /// runs and spare tiles, read-only on zero-mapped holes. One set-access call per run; the owner always
    /// has access.
    pub fn grant_access(&mut self, devices: &[Device]) -> Result<()> {
        self.check_awake("grant_access")?;
        // The worker's shadow copied the peers: stopped around the change.
        let restart = self.stop_ahead().is_some();
        let result = self.grant_access_now(devices);
        if restart {
            self.restart_ahead();
        }
        result
    }

    fn grant_access_now(&mut self, devices: &[Device]) -> Result<()> {
        let tile = self.tile_bytes;
        let occupied = self.committed.keys().chain(self.spares.keys()).copied();
        let mut occupied: Vec<usize> = occupied.collect();
        occupied.sort_unstable();
        let mut ranges: Vec<(usize, usize, bool)> = tiles::runs(occupied)
            .into_iter()
            .map(|r| (r.start * tile, r.len() * tile, false))
            .collect();
        if let Some(zero) = &self.zero {
            ranges.extend(
                zero.runs(tile)
                    .into_iter()
                    .map(|r| (r.start * tile, r.len() * tile, true)),
            );
        }
        self.backing.grant_access(devices, &ranges)
    }

    /// Tiles touched by an element range.
    fn tiles_of(&self, range: Range<usize>) -> Range<usize> {
        let size = size_of::<T>();
        tiles::covering(range.start * size..range.end * size, self.tile_bytes)
    }

    fn first_hole(&self, tiles: Range<usize>) -> Option<usize> {
        tiles.into_iter().find(|t| !self.committed.contains_key(t))
    }

    pub(crate) fn check_committed(&self, range: Range<usize>) -> Result<()> {
        match self.first_hole(self.tiles_of(range.clone())) {
            None => Ok(()),
            Some(tile) => Err(Error::NotCommitted {
                index: self.tile_elements(tile).start.max(range.start),
                tile,
            }),
        }
    }

    /// Repairs what earlier failures left: unmaps stranded mappings and maps zero blocks
    /// into holes that lack them. Failures are logged and retried next time.
    fn prepare(&mut self) {
        if let Err(e) = self.backing.retry_stranded() {
            tracing::error!("unmapping mappings left by a failed rollback: {e}");
        }
        let Some(zero) = &mut self.zero else {
            return;
        };
        if zero.missing.is_empty() {
            return;
        }
        let holes = tiles::runs(std::mem::take(&mut zero.missing));
        if let Err(e) = self.map_zero(&holes) {
            tracing::error!("mapping zero blocks into holes: {e}");
        }
    }
}

impl<T: DevicePod> Drop for SparseArray<T> {
    fn drop(&mut self) {
        self.stop_ahead();
        let mut chunks: Vec<Chunk> = std::mem::take(&mut self.committed).into_values().collect();
        chunks.extend(std::mem::take(&mut self.spares).into_values());
        if let Err((e, kept)) = self.backing.release_chunks(chunks) {
            // Dropping the kept chunks tries each unmap once more, and leaks on failure.
            tracing::error!("dropping a sparse array: releasing tiles failed: {e}");
            drop(kept);
        }
        if let Some(zero) = &mut self.zero {
            let mappings = std::mem::take(&mut zero.mappings).into_values().collect();
            // Queued like the tiles: the zero blocks may be read by work still running.
            if let Err((e, kept)) = Mapping::unmap_deferred(mappings, None) {
                tracing::error!("dropping a sparse array: unmapping the zero tile failed: {e}");
                drop(kept);
            }
        }
    }
}

impl<T: DevicePod> fmt::Display for SparseArray<T> {
    /// A residency map: a header line (committed tiles and bytes; spare tiles and the
    /// memory they hold, when there are any), then `#` per committed tile, `s` per spare
    /// tile and `.` per hole.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        tiles::render(
            f,
            self.tile_count,
            self.tile_bytes,
            |r| self.committed.range(r).count(),
            |r| self.spares.range(r).count(),
        )
    }
}

impl<T: DevicePod> fmt::Debug for SparseArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SparseArray")
            .field("ptr", &format_args!("{:#x}", self.ptr()))
            .field("len", &self.len)
            .field("tile_bytes", &self.tile_bytes)
            .field("committed_tiles", &self.committed.len())
            .field("spare_tiles", &self.spares.len())
            .field("tile_count", &self.tile_count)
            .field("holes", &self.holes)
            .finish()
    }
}
