//! How a sparse array is set up: its tile size, hole behaviour, pool and properties.

use cuda_vmm::AllocationProps;

use super::ZeroMemory;
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
    /// pool, a tile may then show a previous user's bytes. `false` (zero-fill) by default.
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
    /// released by [`release_spares`](crate::SparseArray::release_spares) and on drop, not
    /// by `decommit`. 0 (none) by default.
    pub spare_tiles: usize,
}
