//! How a sparse array is set up: its tile size, hole behaviour, pool and properties.

use cuda_vmm::AllocationProps;

use super::ZeroMemory;
use crate::budget::MemoryBudget;
use crate::placement::Placement;
use crate::pool::ChunkPool;

/// What reading an uncommitted tile (a hole) does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HoleBehavior {
    /// Host reads of holes fail with [`Error::NotCommitted`](crate::Error::NotCommitted); holes are unmapped, so a kernel
    /// touching one faults.
    #[default]
    Error,
    /// Holes read as zeros. Zero-filled blocks of [`ZeroMemory`] are mapped read-only over
    /// the holes so kernels can read holes safely (writes fault). Cost: one `cuMemMap` per
    /// block (a hole run is cut into aligned blocks of a power of two of tiles, 256 MiB at
    /// most by default, so 4096 per TiB) and one `cuMemSetAccess` per hole run, at creation
    /// and after each decommit; committing a tile inside a block of `2^k` tiles unmaps that
    /// block and maps `k` smaller ones around the tile. Memory: less than twice the largest
    /// block, shared by the arrays given the same [`ZeroMemory`].
    Zeros,
}

/// How a [`SparseArray`](crate::SparseArray) is set up. `Default`: one-granule tiles (or the pool's chunk size),
/// holes are errors, no pool, pinned device memory.
///
/// # What a serving loop pays
///
/// - **Each commit zero-fills** its new tiles by default: one `cuMemsetD8` and one context
///   synchronisation per committed run of adjacent tiles, so that a tile never shows what
///   its memory held before. [`uninit_tiles`](Self::uninit_tiles) skips both (a KV cache
///   writes a page before reading it).
/// - **Each decommit waits** before it unmaps, as the array's
///   [`UnmapWait`](cuda_vmm::UnmapWait) says: by default
///   ([`UnmapWait::Devices`](cuda_vmm::UnmapWait::Devices)) for the recorded uses and for
///   all work in the contexts that can reach the memory, not only the work on the tiles
///   being decommitted. Decommitting in batches (one call over many finished sequences)
///   pays that wait once per batch; the `unsafe`
///   [`set_unmap_wait`](crate::SparseArray::set_unmap_wait) with
///   [`UnmapWait::RecordedUse`](cuda_vmm::UnmapWait::RecordedUse) waits only for what
///   [`record_use`](crate::SparseArray::record_use) recorded.
/// - **Without a pool** every commit is a `cuMemCreate` and every decommit a
///   `cuMemRelease`; a [`ChunkPool`] shared by the arrays of a device keeps freed tiles
///   for the next commit.
/// - [`spare_tiles`](Self::spare_tiles) commits ahead of a growing run, so the next commits
///   of those tiles make no driver call, for memory held ahead
///   ([`spare_bytes`](crate::SparseArray::spare_bytes)).
///
/// A paged KV cache, whose sequences grow page by page and finish in any order:
///
/// ```
/// # fn main() -> Result<(), cuda_vmm_alloc::Error> {
/// use cuda_vmm::{AllocationProps, Cuda};
/// use cuda_vmm_alloc::{ChunkPool, PoolConfig, SparseArray, SparseConfig};
///
/// let cuda = Cuda::simulator()?;
/// let device = cuda.device(0)?;
/// let page = device.min_granularity(&AllocationProps::device(&device))?;
/// let pool = ChunkPool::new(&device, PoolConfig { chunk_size: page, ..PoolConfig::default() })?;
/// let config = SparseConfig {
///     pool: Some(pool.clone()),
///     uninit_tiles: true, // pages are written before they are read: no memset, no sync
///     spare_tiles: 1,     // the next page of a growing sequence is already mapped
///     ..SparseConfig::default()
/// };
/// let per_page = page / 2; // f16 elements per page
/// let mut cache = SparseArray::<u16>::new(&device, 1024 * per_page, config)?;
/// cache.commit(0..3 * per_page)?; // a sequence of 3 pages (and 1 spare)
/// cache.write(0, &[1; 8])?;
/// assert_eq!((cache.committed_bytes(), cache.spare_bytes()), (3 * page, page));
/// // The sequence finished: its pages and its spare go back to the pool.
/// assert_eq!(cache.decommit(0..4 * per_page)?, 3);
/// assert_eq!((cache.committed_bytes(), cache.spare_bytes()), (0, 0));
/// // The decommitted pages return to the pool once the release queue's worker has
/// // unmapped them (after the device work before the decommit).
/// assert!(cuda.flush_releases(std::time::Duration::from_secs(10))?);
/// assert_eq!(pool.stats().chunks_held, 4);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct SparseConfig {
    /// Bytes per tile: a nonzero multiple of the allocation granularity (0 = the pool's chunk
    /// size if there is a pool, else one granule). With a pool it must equal the chunk size.
    pub tile_bytes: usize,
    /// What reading a hole does.
    pub holes: HoleBehavior,
    /// Take tiles from (and return them to) this pool.
    pub pool: Option<ChunkPool>,
    /// Allocation properties (`None` = [`AllocationProps::device`]); must match the pool's.
    pub props: Option<AllocationProps>,
    /// Which devices the chunks live on ([`Placement::Owner`] by default).
    pub placement: Placement,
    /// Leave newly committed tiles as the physical memory left them instead of zero-filling
    /// them. Saves one `cuMemsetD8` and one context synchronisation per committed run; with a
    /// pool, a tile may then show a previous user's bytes. `false` (zero-fill) by default:
    /// a KV cache, which writes each page before reading it, wants `true`.
    pub uninit_tiles: bool,
    /// The zero memory mapped over holes with [`HoleBehavior::Zeros`]; give every array of
    /// a device the same one to share it. `None`: the array makes its own with the default
    /// block size.
    pub zeros: Option<ZeroMemory>,
    /// Tiles kept committed ahead of a run that grows upward, as kvcached keeps spare pages
    /// mapped: a commit that extends a committed run (or starts at tile 0) and needs new
    /// memory also commits up to this many holes after it, in the same calls (one
    /// set-access for the whole run), and later commits of those tiles make no driver call.
    /// Spares stay holes to [`is_committed`](crate::SparseArray::is_committed), reads and
    /// writes; they are zero-filled (so with [`HoleBehavior::Zeros`] they read as zeros like
    /// any hole) unless [`uninit_tiles`](Self::uninit_tiles) is set in error mode. Unlike a
    /// hole, a spare is mapped read-write: a kernel writing to it does not fault. Spares are
    /// released by [`release_spares`](crate::SparseArray::release_spares), by a
    /// [`decommit`](crate::SparseArray::decommit) whose range covers them, and on drop.
    /// They hold memory: [`spare_bytes`](crate::SparseArray::spare_bytes) reports it beside
    /// [`committed_bytes`](crate::SparseArray::committed_bytes) (which leaves them out),
    /// `Display` draws them as `s`, and
    /// [`DriverStats::peak_committed_bytes`](crate::DriverStats::peak_committed_bytes)
    /// counts them. 0 (none) by default.
    pub spare_tiles: usize,
    /// Map the spare tiles on a worker thread (one per array) after each commit, instead of
    /// in the commit: a commit maps only the tiles it needs that are not spares yet, and
    /// the next commit of the following tiles finds them mapped, as kvcached maps pages
    /// ahead. The array adopts finished spares at its next call; a call over tiles the
    /// worker is still mapping waits for it. Needs `spare_tiles > 0`,
    /// [`HoleBehavior::Error`], [`uninit_tiles`](Self::uninit_tiles) and one home
    /// ([`Placement::Owner`] or a single-device placement); refused otherwise. `false` by
    /// default.
    pub background_spares: bool,
    /// Bound the tiles this array commits (spares included), alone or together with the
    /// other structures given clones of the same budget: a commit past it is refused with
    /// [`Error::BudgetExceeded`](crate::Error::BudgetExceeded), changing nothing. `None`
    /// (no bound but the device's memory) by default.
    pub budget: Option<MemoryBudget>,
}
