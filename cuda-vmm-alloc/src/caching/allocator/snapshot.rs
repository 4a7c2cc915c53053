//! What the allocator holds, as statistics and as a snapshot of segments and blocks.

use std::sync::atomic::Ordering;

use super::{BlockState, CachingAllocator, Inner, State};
use crate::caching::stats::{BlockSnapshot, CachingStats, SegmentSnapshot, Snapshot};

impl CachingAllocator {
    /// Every segment and block now, with the statistics (see [`Snapshot::to_json`]).
    pub fn snapshot(&self) -> Snapshot {
        let state = self.inner.state.lock();
        let segments = state
            .pools
            .iter()
            .enumerate()
            .map(|(i, p)| SegmentSnapshot {
                tag: state.tags[usize::from(p.tag)].clone(),
                asleep: p.asleep.is_some(),
                stream: p.key.raw(),
                small: p.small,
                address: p.segment.base(),
                page: p.segment.page(),
                mapped_bytes: p.segment.mapped_bytes(),
                blocks: p
                    .segment
                    .blocks()
                    .filter(|&(_, _, s)| s != BlockState::Unmapped)
                    .map(|(offset, size, s)| BlockSnapshot {
                        offset,
                        size,
                        state: match s {
                            BlockState::Used
                                if state
                                    .pending
                                    .iter()
                                    .any(|q| q.pool == i && q.offset == offset) =>
                            {
                                "pending"
                            }
                            BlockState::Used => "active",
                            BlockState::Free => "free",
                            BlockState::Unmapped => "unmapped",
                        },
                    })
                    .collect(),
            })
            .collect();
        Snapshot {
            device: self.inner.device.ordinal(),
            stats: self.inner.stats_of(&state),
            segments,
        }
    }
}

impl Inner {
    pub(super) fn stats_of(&self, state: &State) -> CachingStats {
        let mut stats = state.stats.clone();
        stats.releasing_bytes = self.releasing.load(Ordering::Acquire);
        stats.cached_chunk_bytes = self.pages.held_bytes();
        stats.host_backup_bytes = state.host.bytes();
        stats.inactive_bytes = state.inactive();
        stats.pending_blocks = state.pending.len() as u64;
        stats.segments = state.pools.len();
        stats
    }
}
