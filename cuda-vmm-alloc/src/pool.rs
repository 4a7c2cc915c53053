//! A bounded, thread-safe cache of physical allocations of one size class.

use std::fmt;
use std::sync::Arc;

use cuda_vmm::{Allocation, AllocationProps, Device, GranularityKind, Location};
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::policy::granular;
use crate::trace::Hex;
use tracing::field::Empty;

/// How a [`ChunkPool`] is sized. `Default`: one-granule chunks of pinned device memory, at
/// most 1024 chunks and 1 GiB cached.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Bytes per chunk; a nonzero multiple of the allocation granularity (0 = one granule).
    pub chunk_size: usize,
    /// Most chunks kept cached; returns past this are released to the device.
    pub max_chunks: usize,
    /// Most bytes kept cached; returns past this are released to the device.
    pub max_bytes: usize,
    /// Properties of the chunks (`None` = [`AllocationProps::device`] of the pool's device).
    pub props: Option<AllocationProps>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            chunk_size: 0,
            max_chunks: 1024,
            max_bytes: 1 << 30,
            props: None,
        }
    }
}

/// Counters of a [`ChunkPool`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Chunks handed out from the cache (no `cuMemCreate`).
    pub hits: u64,
    /// Chunks handed out that had to be created (`cuMemCreate`).
    pub misses: u64,
    /// Chunks handed back and kept in the cache.
    pub returns: u64,
    /// Chunks the pool released to the device (`cuMemRelease`): over its limits or trimmed.
    pub releases: u64,
    /// Chunks cached now.
    pub chunks_held: usize,
    /// Bytes cached now.
    pub bytes_held: usize,
    /// Chunks on their way back: their unmap is queued on the release queue, waiting for
    /// device work, and they return to the cache (or the device) once it completes.
    pub pending_returns: usize,
}

/// Recycles physical allocations of one size class (device + properties + chunk size), so
/// commit/decommit and grow/shrink cycles skip `cuMemCreate`/`cuMemRelease`.
///
/// Cheap to clone (shared state behind an `Arc`) and safe to use from many threads: share one
/// pool between the [`GrowableBuffer`](crate::GrowableBuffer)s and
/// [`SparseArray`](crate::SparseArray)s of a device. Cached chunks are released when the last
/// clone is dropped, or earlier by [`trim`](ChunkPool::trim).
#[derive(Clone)]
pub struct ChunkPool {
    inner: Arc<Inner>,
}

struct Inner {
    device: Device,
    props: AllocationProps,
    chunk_size: usize,
    max_chunks: usize,
    max_bytes: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    free: Vec<Allocation>,
    /// Cache slots promised to prefills whose chunks are being created (outside the lock):
    /// they count against the limits like cached chunks, so no interleaving exceeds them.
    reserved: usize,
    stats: PoolStats,
}

/// Chunks taken for one transactional operation; `hits` of them came from the cache.
pub(crate) struct Taken {
    pub(crate) allocations: Vec<Allocation>,
    pub(crate) hits: usize,
}

/// Why a [`take`](ChunkPool::take) failed, with the `cuMemCreate` calls it attempted (the
/// failed one included; all but that one were released again), for the owner's counters.
pub(crate) struct TakeFailed {
    pub(crate) error: Error,
    pub(crate) creates: usize,
}

impl ChunkPool {
    /// Creates an empty pool for `device`.
    pub fn new(device: &Device, config: PoolConfig) -> Result<ChunkPool> {
        let props = config
            .props
            .unwrap_or_else(|| AllocationProps::device(device));
        let granularity = device.granularity(&props, GranularityKind::Minimum)?;
        let chunk_size = granular(config.chunk_size, granularity, granularity, |size| {
            format!(
                "pool chunk size {size} is not a multiple of the allocation granularity {granularity}"
            )
        })?;
        Ok(ChunkPool {
            inner: Arc::new(Inner {
                device: device.clone(),
                props,
                chunk_size,
                max_chunks: config.max_chunks,
                max_bytes: config.max_bytes,
                state: Mutex::new(State::default()),
            }),
        })
    }

    /// The device the chunks live on.
    pub fn device(&self) -> &Device {
        &self.inner.device
    }

    /// The chunks' allocation properties.
    pub fn props(&self) -> &AllocationProps {
        &self.inner.props
    }

    /// Bytes per chunk.
    pub fn chunk_size(&self) -> usize {
        self.inner.chunk_size
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> PoolStats {
        self.inner.state.lock().stats
    }

    /// Hands out one chunk: a cached one if any, else a new allocation.
    pub fn acquire(&self) -> Result<Allocation> {
        let taken = self.take(1).map_err(|failed| failed.error)?;
        taken
            .allocations
            .into_iter()
            .next()
            .ok_or_else(|| Error::InvalidConfig {
                message: "chunk pool handed out no chunk".into(),
            })
    }

    /// Hands a chunk back. Returns `Ok(true)` if it was cached, `Ok(false)` if the pool was full
    /// and it was released.
    ///
    /// The pool takes only a chunk it can prove is free: of its size class, and uniquely owned
    /// (no other clone, no live or leaked [`Mapping`](cuda_vmm::Mapping) of it:
    /// [`Allocation::holders`] is 1), since it hands the chunk to the next user as is. Anything
    /// else is refused with [`Error::PoolMismatch`] or [`Error::ChunkInUse`], and the chunk
    /// comes back inside the [`RecycleError`], untouched. Uniqueness is
    /// [`Allocation::is_exclusive`]: counted per DRIVER HANDLE, so a second wrapper of the same
    /// handle (retained from a mapping) is refused while the first lives, and an imported
    /// allocation is always refused.
    pub fn recycle(&self, allocation: Allocation) -> Result<bool, RecycleError> {
        let span = tracing::debug_span!(
            "chunk_pool.recycle",
            handle = %Hex(allocation.raw_handle()),
            size = allocation.size(),
            cached = Empty,
        )
        .entered();
        if let Err(error) = self.check_class(
            allocation.device(),
            allocation.props(),
            allocation.size(),
            "allocation",
        ) {
            return Err(RecycleError::new(error, Some(allocation)));
        }
        if !allocation.is_exclusive() {
            let holders = allocation.holders() + allocation.handle_wrappers() - 1;
            let error = Error::ChunkInUse {
                handle: allocation.raw_handle(),
                holders,
            };
            return Err(RecycleError::new(error, Some(allocation)));
        }
        let overflow = {
            let mut state = self.inner.state.lock();
            if self.room(&state) > 0 {
                state.free.push(allocation);
                state.stats.returns += 1;
                state.stats.chunks_held += 1;
                state.stats.bytes_held += self.inner.chunk_size;
                None
            } else {
                state.stats.releases += 1;
                Some(allocation)
            }
        };
        span.record("cached", overflow.is_none());
        match overflow {
            None => Ok(true),
            // A refused release is tried again as the handle drops (see `Allocation::release`).
            Some(allocation) => match allocation.release() {
                Ok(()) => Ok(false),
                Err(e) => Err(RecycleError::new(e.into(), None)),
            },
        }
    }

    /// Counts `n` chunks whose return is queued (see [`PoolStats::pending_returns`]).
    pub(crate) fn note_pending(&self, n: usize) {
        self.inner.state.lock().stats.pending_returns += n;
    }

    /// Counts `n` queued returns as arrived (recycled, released or failed).
    pub(crate) fn note_arrived(&self, n: usize) {
        let mut state = self.inner.state.lock();
        state.stats.pending_returns = state.stats.pending_returns.saturating_sub(n);
    }

    /// Creates chunks until `chunks` are cached (bounded by the pool's limits, counting the
    /// chunks other threads' prefills are creating), so that later commits hit. Returns how
    /// many were created. All or nothing: on a failed create, the chunks created for this
    /// call are released and the cache is as before. A count the device's memory could never
    /// hold (with unbounded limits) is refused with [`Error::InvalidConfig`] before anything
    /// is created.
    pub fn prefill(&self, chunks: usize) -> Result<usize> {
        let _span =
            tracing::debug_span!("chunk_pool.prefill", chunks, size = self.inner.chunk_size)
                .entered();
        let bound = self.prefill_bound()?;
        // The slots are promised under the lock, so concurrent prefills, returns and
        // recycles see them as taken while the chunks are created without it.
        let missing = {
            let mut state = self.inner.state.lock();
            let pending = state.stats.chunks_held.saturating_add(state.reserved);
            let missing = chunks
                .min(self.capacity())
                .saturating_sub(pending)
                .min(self.room(&state));
            if missing > bound {
                return Err(Error::InvalidConfig {
                    message: format!(
                        "prefilling {missing} chunks of {} bytes exceeds the memory of device {} \
                         ({bound} chunks at most)",
                        self.inner.chunk_size,
                        self.inner.device.ordinal()
                    ),
                });
            }
            state.reserved += missing;
            missing
        };
        // Grown one chunk at a time: the count is bounded by memory, never pre-allocated.
        let mut created = Vec::new();
        for _ in 0..missing {
            match self.create() {
                Ok(a) => created.push(a),
                Err(e) => {
                    self.inner.state.lock().reserved -= missing;
                    drop(created);
                    return Err(e);
                }
            }
        }
        let mut state = self.inner.state.lock();
        state.reserved -= missing;
        state.stats.chunks_held += created.len();
        state.stats.bytes_held += created.len() * self.inner.chunk_size;
        state.free.extend(created);
        Ok(missing)
    }

    /// The most chunks the limits let the cache hold.
    fn capacity(&self) -> usize {
        self.inner
            .max_chunks
            .min(self.inner.max_bytes / self.inner.chunk_size)
    }

    /// Chunks the cache may still take: the limits less the cached chunks and the slots
    /// promised to prefills in progress.
    fn room(&self, state: &State) -> usize {
        self.capacity()
            .saturating_sub(state.stats.chunks_held.saturating_add(state.reserved))
    }

    /// The most chunks a prefill can create: what fits in the device's total memory for
    /// device memory; unbounded (limited by the creates failing) for host memory.
    fn prefill_bound(&self) -> Result<usize> {
        match self.inner.props.location() {
            Location::Device(_) => Ok(self.inner.device.total_memory()? / self.inner.chunk_size),
            _ => Ok(usize::MAX),
        }
    }

    /// Releases every cached chunk to the device. Returns how many were released; the first
    /// driver error, if any, after trying them all.
    pub fn trim(&self) -> Result<usize> {
        let _span = tracing::debug_span!("chunk_pool.trim", size = self.inner.chunk_size).entered();
        let free = {
            let mut state = self.inner.state.lock();
            state.stats.chunks_held = 0;
            state.stats.bytes_held = 0;
            state.stats.releases += state.free.len() as u64;
            std::mem::take(&mut state.free)
        };
        let count = free.len();
        let mut first_error = None;
        for allocation in free {
            if let Err(e) = allocation.release() {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(count),
        }
    }

    /// Takes `n` chunks, cached ones first, creating the rest. All or nothing: on a failed
    /// create, the cached chunks go back and the created ones are released.
    pub(crate) fn take(&self, n: usize) -> Result<Taken, TakeFailed> {
        let span = tracing::debug_span!(
            "chunk_pool.take",
            chunks = n,
            size = self.inner.chunk_size,
            hits = Empty,
            misses = Empty,
        )
        .entered();
        let mut allocations = {
            let mut state = self.inner.state.lock();
            let keep = state.free.len().saturating_sub(n);
            let hits = state.free.split_off(keep);
            state.stats.chunks_held -= hits.len();
            state.stats.bytes_held -= hits.len() * self.inner.chunk_size;
            hits
        };
        let hits = allocations.len();
        span.record("hits", hits);
        span.record("misses", n - hits);
        while allocations.len() < n {
            match self.create() {
                Ok(a) => allocations.push(a),
                Err(error) => {
                    let created = allocations.split_off(hits);
                    let creates = created.len() + 1;
                    self.put_back(allocations);
                    drop(created);
                    return Err(TakeFailed { error, creates });
                }
            }
        }
        let mut state = self.inner.state.lock();
        state.stats.hits += hits as u64;
        state.stats.misses += (n - hits) as u64;
        Ok(Taken { allocations, hits })
    }

    /// Undoes a [`take`](ChunkPool::take): cached chunks go back, created ones are released.
    /// A chunk still held elsewhere (its rollback unmap failed) is not taken back.
    pub(crate) fn untake(&self, mut taken: Taken) {
        let created = taken.allocations.split_off(taken.hits);
        {
            let mut state = self.inner.state.lock();
            state.stats.hits -= taken.hits as u64;
            state.stats.misses -= created.len() as u64;
        }
        self.put_back(taken.allocations);
        drop(created);
    }

    /// Checks that this pool serves `device`, `props` and `size` (named `what` in the error).
    pub(crate) fn check_class(
        &self,
        device: &Device,
        props: &AllocationProps,
        size: usize,
        what: &str,
    ) -> Result<()> {
        if !same_device(device, &self.inner.device) {
            return Err(Error::PoolMismatch {
                message: format!(
                    "{what} is on device {} but the pool serves device {}",
                    device.ordinal(),
                    self.inner.device.ordinal()
                ),
            });
        }
        if props != &self.inner.props {
            return Err(Error::PoolMismatch {
                message: format!(
                    "{what} has properties {props:?} but the pool serves {:?}",
                    self.inner.props
                ),
            });
        }
        if size != self.inner.chunk_size {
            return Err(Error::PoolMismatch {
                message: format!(
                    "{what} size {size} differs from the pool's chunk size {}",
                    self.inner.chunk_size
                ),
            });
        }
        Ok(())
    }

    fn create(&self) -> Result<Allocation> {
        Ok(Allocation::new(
            &self.inner.device,
            self.inner.chunk_size,
            &self.inner.props,
        )?)
    }

    /// Returns chunks taken from the cache (a failed take, an undone commit). The limits
    /// hold: chunks past them (the cache filled up meanwhile) are released, not cached. A
    /// chunk held elsewhere too (still mapped after a failed unmap) is not cached: dropping
    /// this handle leaves it to its other holders.
    fn put_back(&self, allocations: Vec<Allocation>) {
        let (mut free, held): (Vec<Allocation>, Vec<Allocation>) =
            allocations.into_iter().partition(|a| a.is_exclusive());
        for a in &held {
            tracing::error!(
                "chunk {:#x} is still held elsewhere ({} holders): not cached",
                a.raw_handle(),
                a.holders()
            );
        }
        drop(held);
        let overflow = {
            let mut state = self.inner.state.lock();
            let fits = self.room(&state).min(free.len());
            let overflow = free.split_off(fits);
            state.stats.chunks_held += free.len();
            state.stats.bytes_held += free.len() * self.inner.chunk_size;
            state.stats.releases += overflow.len() as u64;
            state.free.extend(free);
            overflow
        };
        for allocation in overflow {
            // A refused release is tried again as the handle drops.
            if let Err(e) = allocation.release() {
                tracing::error!("releasing a chunk past the pool's limits: {e}");
            }
        }
    }
}

/// Why [`ChunkPool::recycle`] did not take a chunk, with the chunk given back.
#[derive(Debug)]
pub struct RecycleError {
    error: Error,
    allocation: Option<Allocation>,
}

impl RecycleError {
    fn new(error: Error, allocation: Option<Allocation>) -> RecycleError {
        RecycleError { error, allocation }
    }

    /// What was wrong.
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// The refused chunk, untouched; `None` when the pool was full and the driver refused to
    /// release it (the release is tried again as the handle drops).
    pub fn allocation(&self) -> Option<&Allocation> {
        self.allocation.as_ref()
    }

    /// Splits into the error and the refused chunk.
    pub fn into_parts(self) -> (Error, Option<Allocation>) {
        (self.error, self.allocation)
    }
}

impl fmt::Display for RecycleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the pool did not take the chunk: {}", self.error)
    }
}

impl std::error::Error for RecycleError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl From<RecycleError> for Error {
    /// Keeps the error; the chunk, if any, is dropped (released once its last holder goes).
    fn from(e: RecycleError) -> Error {
        e.error
    }
}

impl fmt::Debug for ChunkPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkPool")
            .field("device", &self.inner.device.ordinal())
            .field("chunk_size", &self.inner.chunk_size)
            .field("max_chunks", &self.inner.max_chunks)
            .field("max_bytes", &self.inner.max_bytes)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Whether two handles name the same device of the same driver.
pub(crate) fn same_device(a: &Device, b: &Device) -> bool {
    a.ordinal() == b.ordinal() && std::ptr::eq(a.cuda().sys(), b.cuda().sys())
}
