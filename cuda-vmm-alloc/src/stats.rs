//! Driver-call statistics of a buffer or sparse array.

/// Driver calls a [`GrowableBuffer`](crate::GrowableBuffer) or
/// [`SparseArray`](crate::SparseArray) has made since it was created, and its physical
/// footprint. Calls are counted when attempted, failed ones included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// `cuMemCreate` calls (made directly or by the pool on a miss for this owner).
    pub creates: u64,
    /// Chunks taken from a [`ChunkPool`](crate::ChunkPool) without a `cuMemCreate`.
    pub pool_hits: u64,
    /// `cuMemMap` calls.
    pub maps: u64,
    /// `cuMemSetAccess` calls.
    pub set_access_calls: u64,
    /// `cuMemUnmap` calls.
    pub unmaps: u64,
    /// `cuMemRelease` calls (chunks handed back to a pool are not released).
    pub releases: u64,
    /// Physical chunks mapped now.
    pub chunks: usize,
    /// The most bytes ever committed at once.
    pub peak_committed_bytes: usize,
}
