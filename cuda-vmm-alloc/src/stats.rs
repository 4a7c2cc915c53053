//! Driver-call statistics of a buffer or sparse array.

use std::time::{Duration, Instant};

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
    /// Wall time spent in those calls, per entry point: where growth time goes.
    pub time: DriverTimes,
}

/// Wall time spent in each kind of driver call (including the safe layer's checks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriverTimes {
    /// In `cuMemCreate` (or taking chunks from the pool).
    pub create: Duration,
    /// In `cuMemMap`.
    pub map: Duration,
    /// In `cuMemSetAccess`.
    pub set_access: Duration,
    /// In `cuMemUnmap`.
    pub unmap: Duration,
    /// In `cuMemRelease` (or handing chunks back to the pool).
    pub release: Duration,
}

impl DriverTimes {
    /// The sum over all entry points.
    pub fn total(&self) -> Duration {
        self.create + self.map + self.set_access + self.unmap + self.release
    }
}

/// Runs `f`, adding its wall time to `slot`.
pub(crate) fn timed<T>(slot: &mut Duration, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    *slot += start.elapsed();
    out
}
