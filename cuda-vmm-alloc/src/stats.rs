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
    /// Growth steps whose creates ran slower than 1.3 µs per MiB, each switching the buffer
    /// to [`GrowthPolicy::churn_allocation`](crate::GrowthPolicy::churn_allocation) pieces.
    pub slow_creates: u64,
    /// Physical chunks mapped now.
    pub chunks: usize,
    /// The most bytes of physical memory ever mapped at once for the structure's contents:
    /// for a sparse array, committed and spare tiles together (zero memory not included).
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

/// How long a [`GrowableBuffer`](crate::GrowableBuffer)'s growing calls (appends, resizes,
/// reserves) kept their caller in the allocator: committing memory in line, or waiting for
/// and taking a step the prefetch worker committed. Calls that needed no new memory count
/// as zero; failed calls are not counted (a failed call leaves these as they were).
/// Percentiles are within 1% (an HDR histogram of nanoseconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockedStats {
    /// Growing calls made.
    pub calls: u64,
    /// Of those, the calls that needed new memory.
    pub grew: u64,
    /// Growth steps taken ready-made from the prefetch worker.
    pub prefetched: u64,
    /// Median time blocked per call.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Longest.
    pub max: Duration,
    /// Sum over all calls.
    pub total: Duration,
}

/// The longest blocked time recorded exactly; longer ones count as this.
const HOUR_NS: u64 = 3_600_000_000_000;

/// Records per-call blocked times for [`BlockedStats`].
pub(crate) struct BlockedLog {
    /// Nanoseconds per call (`None` only if the histogram could not be made).
    hist: Option<hdrhistogram::Histogram<u64>>,
    grew: u64,
    prefetched: u64,
    total: Duration,
}

impl Default for BlockedLog {
    fn default() -> Self {
        BlockedLog {
            hist: hdrhistogram::Histogram::new_with_bounds(1, HOUR_NS, 2).ok(),
            grew: 0,
            prefetched: 0,
            total: Duration::ZERO,
        }
    }
}

impl BlockedLog {
    /// A call that needed no memory.
    pub(crate) fn idle(&mut self) {
        if let Some(h) = &mut self.hist {
            h.saturating_record(0);
        }
    }

    /// A call that grew, blocked for `blocked`; `prefetched` if it took a ready step.
    pub(crate) fn grew(&mut self, blocked: Duration, prefetched: bool) {
        self.grew += 1;
        self.prefetched += u64::from(prefetched);
        self.total += blocked;
        if let Some(h) = &mut self.hist {
            h.saturating_record(u64::try_from(blocked.as_nanos()).unwrap_or(u64::MAX));
        }
    }

    /// The summary.
    pub(crate) fn stats(&self) -> BlockedStats {
        let at =
            |q: f64| Duration::from_nanos(self.hist.as_ref().map_or(0, |h| h.value_at_quantile(q)));
        BlockedStats {
            calls: self.hist.as_ref().map_or(0, hdrhistogram::Histogram::len),
            grew: self.grew,
            prefetched: self.prefetched,
            p50: at(0.5),
            p99: at(0.99),
            max: Duration::from_nanos(self.hist.as_ref().map_or(0, |h| h.max())),
            total: self.total,
        }
    }
}

impl DriverStats {
    /// Adds the calls and times of `other` (another thread's work for the same owner).
    pub(crate) fn absorb(&mut self, other: &DriverStats) {
        self.creates += other.creates;
        self.pool_hits += other.pool_hits;
        self.maps += other.maps;
        self.set_access_calls += other.set_access_calls;
        self.unmaps += other.unmaps;
        self.releases += other.releases;
        self.slow_creates += other.slow_creates;
        self.chunks += other.chunks;
        let (t, o) = (&mut self.time, &other.time);
        t.create += o.create;
        t.map += o.map;
        t.set_access += o.set_access;
        t.unmap += o.unmap;
        t.release += o.release;
    }
}
