//! Giving cached memory back: fully free pages to the release queue (trims, the release
//! threshold, compaction, the out-of-memory retry).

use std::sync::atomic::Ordering;

use cuda_vmm::Mapping;

use super::{Inner, State, FLUSH_TIMEOUT};
use crate::caching::arena::round_up;

impl Inner {
    /// Before a retry: every fully free page back, and the release queue drained.
    pub(super) fn give_back_for_retry(&self, state: &mut State) {
        state.poll_pending(self.device.ordinal());
        self.release_free_pages(state, 0);
        if let Err(e) = self.device.cuda().flush_releases(FLUSH_TIMEOUT) {
            tracing::warn!("flushing releases before an allocation retry: {e}");
        }
    }

    /// Hands fully free pages to the release queue until at most `keep` bytes stay mapped;
    /// returns the bytes handed over.
    pub(super) fn release_free_pages(&self, state: &mut State, keep: usize) -> usize {
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
            state.stats.pages_released += pages.len() as u64;
            self.queue_release(pages, bytes);
        }
        state.stats.reserved_bytes -= given;
        given
    }

    fn queue_release(&self, pages: Vec<Mapping>, bytes: usize) {
        self.releasing.fetch_add(bytes, Ordering::AcqRel);
        let releasing = self.releasing.clone();
        let then: cuda_vmm::release::ReleaseThen = Box::new(move |allocations| {
            releasing.fetch_sub(bytes, Ordering::AcqRel);
            drop(allocations);
            Ok(())
        });
        if let Err((e, kept)) = Mapping::unmap_deferred(pages, Some(then)) {
            // What came back is still mapped; dropping it unmaps it once more (and logs).
            let kept_bytes: usize = kept.iter().map(Mapping::size).sum();
            tracing::error!("giving back {bytes} cached bytes: {e}");
            drop(kept);
            self.releasing
                .fetch_sub(kept_bytes.min(bytes), Ordering::AcqRel);
        }
    }
}
