//! The slow path of an allocation: growing a segment, compacting first when asked, and the
//! out-of-memory retry.

use std::sync::atomic::Ordering;

use cuda_vmm::{AccessFlags, Stream};

use super::{Inner, State, FLUSH_TIMEOUT};
use crate::{Error, Result};

impl Inner {
    /// The slow path: map pages into the pool's segment (giving cached memory back first
    /// when over the budget, out of device memory, or past `compact_above`) and take the
    /// block from them.
    pub(super) fn grow_and_take(
        &self,
        state: &mut State,
        pool: usize,
        size: usize,
        bytes: usize,
        stream: &Stream,
    ) -> Result<usize> {
        if stream.is_capturing()? {
            return Err(Error::StreamCapturing {
                operation: "growth",
            });
        }
        if let Some(share) = self.config.compact_above {
            // Only at the high-water mark: growth below the peak costs no peak memory, and
            // every page given back is a page mapped again later.
            let inactive = state.inactive();
            let held = self.held(state);
            let growth = state.pools[pool].segment.plan(size);
            let at_peak = growth.is_some_and(|g| held + g.size > state.stats.peak_reserved_bytes);
            if at_peak && inactive as f64 > share * state.stats.allocated_bytes as f64 {
                // Memory first (the mode's promise): the pages given back count until the
                // queue released them, so wait for it before mapping more. As many pages of
                // this segment's size as the growth needs go to the page cache, not the
                // driver: the growth maps them again instead of creating new ones.
                let page = state.pools[pool].segment.page();
                let recycle = growth.map(|g| (page, g.size));
                if self.release_free_pages(state, 0, recycle) > 0 {
                    if let Err(e) = self.device.cuda().flush_releases(FLUSH_TIMEOUT) {
                        tracing::warn!("flushing releases while compacting: {e}");
                    }
                }
            }
        }
        for attempt in 0..2 {
            let Some(growth) = state.pools[pool].segment.plan(size) else {
                break;
            };
            let held = self.held(state);
            if self
                .config
                .max_reserved
                .is_some_and(|max| held + growth.size > max)
            {
                if attempt == 0 {
                    self.give_back_for_retry(state);
                    continue;
                }
                break;
            }
            let mut access = vec![(&self.device, AccessFlags::ReadWrite)];
            access.extend(state.peers.iter().map(|p| (p, AccessFlags::ReadWrite)));
            let chunks = state.pools[pool].chunks.clone();
            match state.pools[pool].segment.grow(growth, &access, &chunks) {
                Ok(grown) => {
                    state.stats.growths += 1;
                    state.stats.pages_mapped += grown.handles as u64;
                    state.stats.pages_reused += grown.reused as u64;
                    state.stats.reserved_bytes += grown.bytes;
                    let held = self.held(state);
                    let stats = &mut state.stats;
                    stats.peak_reserved_bytes = stats.peak_reserved_bytes.max(held);
                    if let Some(offset) = state.pools[pool].segment.arena.take(size) {
                        return Ok(offset);
                    }
                    break;
                }
                Err(e) if e.is_out_of_memory() => {
                    if attempt == 0 {
                        self.give_back_for_retry(state);
                        continue;
                    }
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        state.stats.out_of_memory += 1;
        Err(Error::AllocatorOutOfMemory {
            requested: bytes,
            reserved: state.stats.reserved_bytes,
            allocated: state.stats.allocated_bytes,
            releasing: self.releasing.load(Ordering::Acquire),
            device_free: self.device.memory_info().map_or(0, |m| m.free),
            max_reserved: self.config.max_reserved,
        })
    }

    /// Physical memory the allocator holds: mapped, queued for release, and cached in its
    /// page cache (chunks buffers on its pools gave back included).
    pub(super) fn held(&self, state: &State) -> usize {
        state.stats.reserved_bytes
            + self.releasing.load(Ordering::Acquire)
            + self.pages.held_bytes()
    }
}
