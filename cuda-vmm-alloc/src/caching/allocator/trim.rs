//! Giving cached memory back: fully free pages to the release queue (trims, the release
//! threshold, compaction, the out-of-memory retry).

use std::sync::atomic::Ordering;

use cuda_vmm::Mapping;

use crate::pool::ChunkPool;

use super::{Inner, State, FLUSH_TIMEOUT};
use crate::caching::arena::round_up;

impl Inner {
    /// Before a retry: every fully free page back, and the release queue drained.
    pub(super) fn give_back_for_retry(&self, state: &mut State) {
        state.poll_pending(self.device.ordinal());
        self.release_free_pages(state, 0, None);
        if let Err(e) = self.device.cuda().flush_releases(FLUSH_TIMEOUT) {
            tracing::warn!("flushing releases before an allocation retry: {e}");
        }
        self.pages.trim();
    }

    /// Hands fully free pages to the release queue until at most `keep` bytes stay mapped;
    /// returns the bytes handed over. With `recycle: Some((page, bytes))`, up to `bytes` of
    /// the pages of size `page` go back to the page cache once unmapped, the rest to the
    /// driver.
    pub(super) fn release_free_pages(
        &self,
        state: &mut State,
        keep: usize,
        recycle: Option<(usize, usize)>,
    ) -> usize {
        let (recycle_page, mut recycle_bytes) = recycle.unwrap_or((0, 0));
        let _span = tracing::debug_span!("caching.trim", keep).entered();
        let mut given = 0;
        for pool in &mut state.pools {
            let reserved = state.stats.reserved_bytes - given;
            if reserved <= keep {
                break;
            }
            // Whole pages: at most `keep` bytes stay, so a part of a page counts as one.
            let pages = pool
                .segment
                .take_free_pages(round_up(reserved - keep, pool.segment.page()));
            if pages.is_empty() {
                continue;
            }
            let bytes: usize = pages.iter().map(Mapping::size).sum();
            given += bytes;
            let page = pool.segment.page();
            let to_cache = if page == recycle_page {
                let n = pages.len().min(recycle_bytes / page);
                recycle_bytes -= n * page;
                n
            } else {
                0
            };
            state.stats.pages_released += (pages.len() - to_cache) as u64;
            state.stats.pages_recycled += to_cache as u64;
            self.queue_release(
                pages,
                bytes,
                (to_cache > 0).then(|| (pool.chunks.clone(), to_cache)),
            );
        }
        state.stats.reserved_bytes -= given;
        given
    }

    /// Queues the unmap of `pages`; once done, the first `n` of `cache: Some((pool, n))`
    /// go back to `pool`, the others (all of them without one) to the driver.
    fn queue_release(&self, pages: Vec<Mapping>, bytes: usize, cache: Option<(ChunkPool, usize)>) {
        self.releasing.fetch_add(bytes, Ordering::AcqRel);
        let releasing = self.releasing.clone();
        if let Some((pool, n)) = &cache {
            pool.note_pending(*n);
        }
        let back = cache.clone();
        let then: cuda_vmm::release::ReleaseThen = Box::new(move |allocations| {
            let mut allocations = allocations.into_iter();
            if let Some((pool, n)) = back {
                for allocation in allocations.by_ref().take(n) {
                    if let Err(refused) = pool.recycle(allocation) {
                        tracing::error!("caching a compacted page: {refused}");
                    }
                }
                pool.note_arrived(n);
            }
            // Cached first: the pages count as releasing until they are in the cache.
            releasing.fetch_sub(bytes, Ordering::AcqRel);
            drop(allocations);
            Ok(())
        });
        if let Err((e, kept)) = Mapping::unmap_deferred(pages, Some(then)) {
            // What came back is still mapped; dropping it unmaps it once more (and logs).
            let kept_bytes: usize = kept.iter().map(Mapping::size).sum();
            tracing::error!("giving back {bytes} cached bytes: {e}");
            drop(kept);
            if let Some((pool, n)) = &cache {
                pool.note_arrived(*n);
            }
            self.releasing
                .fetch_sub(kept_bytes.min(bytes), Ordering::AcqRel);
        }
    }
}
