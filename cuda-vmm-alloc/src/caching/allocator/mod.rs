//! The allocator: per-stream pools of expandable segments, stream-ordered reuse, growth,
//! trimming and the out-of-memory path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cuda_vmm::{AccessFlags, Device, Event, GranularityKind, Mapping, Stream};
use parking_lot::Mutex;

use super::arena::State as BlockState;
use super::arena::{round_up, ALIGN};
use super::block::CachedBlock;
use super::config::CachingConfig;
use super::pages::PageCache;
use super::segment::Segment;
use super::stats::CachingStats;
use super::stream_key::StreamKey;
use crate::pool::ChunkPool;
use crate::{Error, Result};
use sleep::Slept;

mod grow;
mod sleep;
mod snapshot;
mod trim;

/// How long an out-of-memory path waits for queued releases before retrying.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// A stream-ordered caching allocator of device memory on one device, on expandable
/// segments: one reserved address range per (stream, small or large blocks), mapped page
/// by page as it grows, with best-fit blocks split and coalesced inside it.
///
/// Steady state makes no driver call: a block dropped on its stream is reused by the next
/// fitting allocation on that stream at once (stream order makes that safe). Clones share
/// the allocator; it is `Send` and `Sync`.
#[derive(Clone)]
pub struct CachingAllocator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CachingAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stats = self.stats();
        f.debug_struct("CachingAllocator")
            .field("device", &self.inner.device.ordinal())
            .field("allocated_bytes", &stats.allocated_bytes)
            .field("reserved_bytes", &stats.reserved_bytes)
            .field("segments", &stats.segments)
            .finish()
    }
}

pub(crate) struct Inner {
    device: Device,
    config: CachingConfig,
    small_page: usize,
    large_page: usize,
    segment_size: usize,
    state: Mutex<State>,
    /// Bytes handed to the release queue and not yet released (decremented by the queue).
    releasing: Arc<AtomicUsize>,
    /// Physical chunks by size: pages come from here, compaction moves pages through it.
    pages: PageCache,
}

struct Pool {
    key: StreamKey,
    small: bool,
    tag: u16,
    /// Set while the tag sleeps: what wake maps again and restores.
    asleep: Option<Slept>,
    /// Views of its blocks alive now (they keep the tag from sleeping).
    views: usize,
    segment: Segment,
    /// The page cache's pool of this segment's page size.
    chunks: ChunkPool,
}

/// A block freed after uses on other streams, waiting for their events.
struct Pending {
    pool: usize,
    offset: usize,
    events: Vec<(StreamKey, Event)>,
}

struct State {
    pools: Vec<Pool>,
    index: HashMap<(StreamKey, bool, u16), usize>,
    /// Tag names by id (0 is `""`, the untagged blocks).
    tags: Vec<String>,
    /// Tags asleep now.
    asleep: Vec<u16>,
    /// Pinned host memory for backups, created on the first sleep with one.
    host: crate::sleeping::KeptArena,
    /// Bytes of `host` that backups asleep now use (from its start).
    host_used: usize,
    /// Bytes of blocks handed out in sleeping pools (in `allocated_bytes`, not backed by
    /// `reserved_bytes` while asleep).
    asleep_allocated: usize,
    pending: Vec<Pending>,
    spare_events: Vec<Event>,
    peers: Vec<Device>,
    stats: CachingStats,
}

impl CachingAllocator {
    /// An allocator for `device` with the default settings.
    pub fn new(device: &Device) -> Result<CachingAllocator> {
        CachingAllocator::with_config(device, CachingConfig::default())
    }

    /// An allocator for `device` configured by `config`; refuses pages that are not
    /// nonzero multiples of the allocation granularity.
    pub fn with_config(device: &Device, config: CachingConfig) -> Result<CachingAllocator> {
        let props = cuda_vmm::AllocationProps::device(device);
        let granule = device.granularity(&props, GranularityKind::Minimum)?;
        let page = |asked: Option<std::num::NonZeroUsize>, default: usize, what: &str| {
            let page = asked.map_or(default, |p| p.get());
            if page % granule != 0 {
                return Err(Error::InvalidConfig {
                    message: format!(
                        "{what} {page} is not a multiple of the allocation granularity {granule}"
                    ),
                });
            }
            Ok(page)
        };
        let small_page = page(config.small_page, granule, "small_page")?;
        let large_page = page(config.large_page, 16 * granule, "large_page")?;
        for (tag, asked) in &config.tag_large_pages {
            page(Some(*asked), 0, &format!("the large page of tag {tag:?}"))?;
        }
        if config.small_limit > small_page {
            return Err(Error::InvalidConfig {
                message: format!(
                    "small_limit {} is larger than the small page {small_page}",
                    config.small_limit
                ),
            });
        }
        if let Some(share) = config.compact_above {
            if !(share >= 0.0 && share.is_finite()) {
                return Err(Error::InvalidConfig {
                    message: format!("compact_above {share} is not a finite share >= 0"),
                });
            }
        }
        let segment_size = match config.segment_size {
            Some(0) => {
                return Err(Error::InvalidConfig {
                    message: "segment_size 0: a segment needs address space".into(),
                })
            }
            Some(size) => size,
            None => device.total_memory()?,
        };
        Ok(CachingAllocator {
            inner: Arc::new(Inner {
                device: device.clone(),
                config,
                small_page,
                large_page,
                segment_size,
                state: Mutex::new(State {
                    pools: Vec::new(),
                    index: HashMap::new(),
                    tags: vec![String::new()],
                    asleep: Vec::new(),
                    host: crate::sleeping::KeptArena::new(),
                    host_used: 0,
                    asleep_allocated: 0,
                    pending: Vec::new(),
                    spare_events: Vec::new(),
                    peers: Vec::new(),
                    stats: CachingStats::new(),
                }),
                releasing: Arc::new(AtomicUsize::new(0)),
                pages: PageCache::new(device),
            }),
        })
    }

    /// The device the memory lives on.
    pub fn device(&self) -> &Device {
        &self.inner.device
    }

    /// The shared state (for a [`SleepGroup`](crate::SleepGroup)'s weak handle).
    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// An allocator handle on existing shared state.
    pub(crate) fn from_inner(inner: Arc<Inner>) -> CachingAllocator {
        CachingAllocator { inner }
    }

    /// The settings.
    pub fn config(&self) -> &CachingConfig {
        &self.inner.config
    }

    /// `bytes` of device memory for work on `stream` (a stream of this allocator's device),
    /// aligned to 512 bytes. Served from the stream's cache when a free block fits (no
    /// driver call); else the stream's segment grows by whole pages. When the budget or the
    /// device is full, cached memory is given back and the growth retried once; then
    /// [`Error::AllocatorOutOfMemory`] names the request and what is held.
    pub fn alloc(&self, bytes: usize, stream: &Stream) -> Result<CachedBlock> {
        self.alloc_in(bytes, stream, None)
    }

    /// [`alloc`](Self::alloc) in the segments of `tag` (for example `"weights"` or
    /// `"kv_cache"`): blocks of different tags never share a page, so a tag can be put to
    /// [`sleep`](Self::sleep) alone. Refused with [`Error::Asleep`] while `tag` sleeps.
    pub fn alloc_tagged(&self, bytes: usize, stream: &Stream, tag: &str) -> Result<CachedBlock> {
        self.alloc_in(bytes, stream, Some(tag))
    }

    fn alloc_in(&self, bytes: usize, stream: &Stream, tag: Option<&str>) -> Result<CachedBlock> {
        let inner = &self.inner;
        if bytes == 0 {
            return Err(Error::InvalidRequest {
                message: "an allocation of 0 bytes: ask for at least 1".into(),
            });
        }
        if bytes > isize::MAX as usize {
            return Err(Error::InvalidRequest {
                message: format!("an allocation of {bytes} bytes is larger than isize::MAX"),
            });
        }
        if stream.device().ordinal() != inner.device.ordinal()
            || stream.device().raw_context() != inner.device.raw_context()
        {
            return Err(Error::InvalidRequest {
                message: format!(
                    "a stream of device {} for an allocator of device {}",
                    stream.device().ordinal(),
                    inner.device.ordinal()
                ),
            });
        }
        if inner.config.check_capture && stream.is_capturing()? {
            return Err(Error::StreamCapturing { operation: "alloc" });
        }
        let size = round_up(bytes, ALIGN);
        let small = bytes <= inner.config.small_limit;
        let key = StreamKey::of(stream);
        let mut state = inner.state.lock();
        let tag = match tag {
            Some(name) => state.tag_id(name)?,
            None => 0,
        };
        if state.asleep.contains(&tag) {
            return Err(Error::Asleep {
                tag: state.tags[usize::from(tag)].clone(),
                operation: "alloc",
            });
        }
        if !state.pending.is_empty() {
            state.poll_pending(inner.device.ordinal());
        }
        let pool = inner.pool_for(&mut state, key, small, tag)?;
        let offset = match state.pools[pool].segment.arena.take(size) {
            Some(offset) => {
                state.stats.cache_hits += 1;
                offset
            }
            None => match inner.grow_and_take(&mut state, pool, size, bytes, stream) {
                Ok(offset) => offset,
                Err(e) => {
                    inner.forget_if_unused(&mut state, pool);
                    return Err(e);
                }
            },
        };
        let ptr = state.pools[pool].segment.base() + offset as u64;
        let stats = &mut state.stats;
        stats.allocs += 1;
        stats.allocated_bytes += size;
        stats.requested_bytes += bytes;
        stats.peak_allocated_bytes = stats.peak_allocated_bytes.max(stats.allocated_bytes);
        stats.active_blocks += 1;
        let class = stats.class(bytes);
        class.allocs += 1;
        class.active += 1;
        drop(state);
        Ok(CachedBlock {
            owner: inner.clone(),
            pool,
            offset,
            size,
            requested: bytes,
            ptr,
            stream: key,
            uses: Vec::new(),
        })
    }

    /// Gives every fully free page of every segment back (through the release queue, after
    /// the device work that may touch it), and releases the chunks cached in the page cache
    /// (see [`chunk_pool`](Self::chunk_pool)); returns the bytes given back.
    pub fn empty_cache(&self) -> usize {
        self.trim(0) + self.inner.pages.trim()
    }

    /// The allocator's pool of `chunk_size`-byte physical chunks (a nonzero multiple of the
    /// allocation granularity), created on first use. Its segments take their pages from
    /// the pools of their page sizes (2 MiB and 32 MiB by default), and compaction moves
    /// pages through them. A [`GrowableBuffer`](crate::GrowableBuffer) or
    /// [`SparseArray`](crate::SparseArray) built on one (`pool: Some(..)` in its config)
    /// shares the cache: what it gives back is mapped again by the next buffer, or by the
    /// allocator's growth, with no `cuMemCreate`. Chunks cached here count as held by the
    /// allocator (its peak and its budget) until [`empty_cache`](Self::empty_cache) or the
    /// out-of-memory path releases them.
    pub fn chunk_pool(&self, chunk_size: usize) -> Result<ChunkPool> {
        if chunk_size == 0 {
            return Err(Error::InvalidConfig {
                message: "a chunk size of 0: chunks are whole granules".into(),
            });
        }
        self.inner.pages.pool(chunk_size)
    }

    /// Gives fully free pages back until at most `keep` bytes stay reserved (or no page is
    /// wholly free); returns the bytes given back.
    pub fn trim(&self, keep: usize) -> usize {
        let mut state = self.inner.state.lock();
        if !state.pending.is_empty() {
            state.poll_pending(self.inner.device.ordinal());
        }
        self.inner.release_free_pages(&mut state, keep, None)
    }

    /// Waits (up to `timeout`) until the memory given back so far is released to the driver;
    /// `Ok(true)` when nothing is left queued.
    pub fn flush_releases(&self, timeout: Duration) -> Result<bool> {
        self.inner.device.cuda().flush_releases(timeout)?;
        Ok(self.inner.releasing.load(Ordering::Acquire) == 0)
    }

    /// Grants `peer` read-write access to every page mapped now and every page mapped later
    /// (`cuMemSetAccess` per mapped run). Refused, changing nothing, for this allocator's own
    /// device or a device without peer access.
    pub fn grant_access(&self, peer: &Device) -> Result<()> {
        let inner = &self.inner;
        if peer.ordinal() == inner.device.ordinal() {
            return Err(Error::InvalidRequest {
                message: format!("device {} is the allocator's own device", peer.ordinal()),
            });
        }
        if !inner.device.can_access_peer(peer)? {
            return Err(Error::InvalidRequest {
                message: format!(
                    "device {} cannot access device {}'s memory (no peer access)",
                    peer.ordinal(),
                    inner.device.ordinal()
                ),
            });
        }
        let mut state = inner.state.lock();
        if state.peers.iter().any(|p| p.ordinal() == peer.ordinal()) {
            return Ok(());
        }
        for (i, pool) in state.pools.iter().enumerate() {
            if let Err(e) = pool.segment.set_access(&[(peer, AccessFlags::ReadWrite)]) {
                // Back to no access on the segments granted before: a failure changes
                // nothing.
                for done in &state.pools[..i] {
                    if let Err(undo) = done.segment.set_access(&[(peer, AccessFlags::None)]) {
                        tracing::error!("undoing a failed grant_access: {undo}");
                    }
                }
                return Err(e);
            }
        }
        state.peers.push(peer.clone());
        Ok(())
    }

    /// The statistics now.
    pub fn stats(&self) -> CachingStats {
        let state = self.inner.state.lock();
        self.inner.stats_of(&state)
    }
}

impl Inner {
    /// The allocator's device.
    #[cfg(feature = "cudarc")]
    pub(crate) fn device(&self) -> &Device {
        &self.device
    }

    /// The pool of `key`'s small or large blocks, reserving its segment on first use.
    fn pool_for(&self, state: &mut State, key: StreamKey, small: bool, tag: u16) -> Result<usize> {
        if let Some(&i) = state.index.get(&(key, small, tag)) {
            return Ok(i);
        }
        let name = &state.tags[usize::from(tag)];
        let page = match self.config.tag_large_pages.iter().find(|(t, _)| t == name) {
            _ if small => self.small_page,
            Some((_, page)) => page.get(),
            None => self.large_page,
        };
        let chunks = self.pages.pool(page)?;
        let segment = Segment::new(&self.device, self.segment_size, page)?;
        state.pools.push(Pool {
            key,
            small,
            tag,
            asleep: None,
            views: 0,
            segment,
            chunks,
        });
        let i = state.pools.len() - 1;
        state.index.insert((key, small, tag), i);
        Ok(i)
    }

    /// Drops `pool` when it is the newest, maps nothing and holds no block (its first
    /// growth failed): a refused or failed first allocation on a stream leaves no
    /// reservation behind.
    fn forget_if_unused(&self, state: &mut State, pool: usize) {
        let last = state.pools.len().checked_sub(1);
        if last != Some(pool) || !state.pools[pool].segment.is_unused() {
            return;
        }
        if state.pending.iter().any(|p| p.pool == pool) {
            return;
        }
        if let Some(p) = state.pools.pop() {
            state.index.remove(&(p.key, p.small, p.tag));
        }
    }

    /// A block's end of life (its drop): back to its pool now, or pending on the events of
    /// its uses on other streams.
    pub(crate) fn free(
        &self,
        pool: usize,
        offset: usize,
        size: usize,
        requested: usize,
        uses: Vec<(StreamKey, Event)>,
    ) {
        let mut state = self.state.lock();
        let stats = &mut state.stats;
        stats.allocated_bytes -= size;
        stats.requested_bytes -= requested;
        stats.active_blocks -= 1;
        stats.class(requested).active -= 1;
        if state.pools[pool].asleep.is_some() {
            state.asleep_allocated -= size;
        }
        if uses.is_empty() {
            state.pools[pool].segment.arena.give(offset);
        } else {
            state.pending.push(Pending {
                pool,
                offset,
                events: uses,
            });
        }
        if let Some(threshold) = self.config.release_threshold {
            if state.stats.reserved_bytes > threshold {
                self.release_free_pages(&mut state, threshold, None);
            }
        }
    }

    /// An event for a use on `stream`: a cached one of this device, else a new one.
    pub(crate) fn event_for(&self, stream: &Stream) -> Result<Event> {
        if stream.device().ordinal() == self.device.ordinal() {
            if let Some(event) = self.state.lock().spare_events.pop() {
                return Ok(event);
            }
        }
        Ok(Event::new(stream.device())?)
    }

    /// Keeps an event of this device for the next use.
    pub(crate) fn return_event(&self, event: Event) {
        if event.device().ordinal() == self.device.ordinal() {
            self.state.lock().spare_events.push(event);
        }
    }
}

impl State {
    /// The id of tag `name` if it was ever used.
    fn find_tag(&self, name: &str) -> Option<u16> {
        self.tags
            .iter()
            .position(|t| t == name)
            .and_then(|i| u16::try_from(i).ok())
    }

    /// Bytes mapped and free in awake blocks: what compaction and the statistics call
    /// inactive.
    fn inactive(&self) -> usize {
        let awake = self.stats.allocated_bytes - self.asleep_allocated;
        self.stats.reserved_bytes.saturating_sub(awake)
    }

    /// The id of tag `name`, registered on first use (at most `u16::MAX` tags).
    fn tag_id(&mut self, name: &str) -> Result<u16> {
        if let Some(i) = self.tags.iter().position(|t| t == name) {
            return u16::try_from(i).map_err(|_| Error::InvalidRequest {
                message: "tag ids overflowed".into(),
            });
        }
        let id = u16::try_from(self.tags.len()).map_err(|_| Error::InvalidRequest {
            message: format!("tag {name:?}: an allocator takes at most {} tags", u16::MAX),
        })?;
        self.tags.push(name.to_owned());
        Ok(id)
    }

    /// Returns pending blocks whose events all completed to their pools, keeping the events
    /// of `device` for reuse.
    fn poll_pending(&mut self, device: usize) {
        let mut i = 0;
        while i < self.pending.len() {
            let done = self.pending[i]
                .events
                .iter()
                .all(|(_, e)| match e.is_complete() {
                    Ok(done) => done,
                    Err(err) => {
                        tracing::warn!("querying a cached block's use event: {err}");
                        false
                    }
                });
            if !done {
                i += 1;
                continue;
            }
            let p = self.pending.swap_remove(i);
            self.pools[p.pool].segment.arena.give(p.offset);
            self.spare_events.extend(
                p.events
                    .into_iter()
                    .map(|(_, e)| e)
                    .filter(|e| e.device().ordinal() == device),
            );
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // No block is left (each holds the allocator): every page goes to the release queue.
        let state = self.state.get_mut();
        // Pending blocks are free too: the queue's fence orders their unmap after all work.
        for p in state.pending.drain(..) {
            state.pools[p.pool].segment.arena.give(p.offset);
        }
        for pool in state.pools.drain(..) {
            let pages = {
                let mut segment = pool.segment;
                segment.take_free_pages(usize::MAX)
            };
            if pages.is_empty() {
                continue;
            }
            if let Err((e, _kept)) = Mapping::unmap_deferred(pages, None) {
                tracing::error!("releasing a caching allocator's segment: {e}");
            }
        }
    }
}
