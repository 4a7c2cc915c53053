//! What a [`CachingAllocator`](super::CachingAllocator) holds and has done: statistics and
//! snapshots (serde JSON).

use serde::Serialize;

/// Upper bounds of the size classes statistics are kept for: 4 KiB, 64 KiB, 1 MiB,
/// 16 MiB, 256 MiB, and everything larger.
pub const SIZE_CLASSES: [usize; 6] = [4 << 10, 64 << 10, 1 << 20, 16 << 20, 256 << 20, usize::MAX];

/// Counts for one size class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SizeClassStats {
    /// Largest request in the class, in bytes (`usize::MAX` for the last).
    pub upper_bound: usize,
    /// Allocations served.
    pub allocs: u64,
    /// Blocks handed out now.
    pub active: u64,
}

/// The allocator's statistics. Bytes are rounded block sizes (multiples of 512).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CachingStats {
    /// Bytes in blocks handed out now.
    pub allocated_bytes: usize,
    /// The most bytes ever handed out at once.
    pub peak_allocated_bytes: usize,
    /// Bytes requested by the blocks handed out now (before rounding).
    pub requested_bytes: usize,
    /// Physical memory mapped in segments now.
    pub reserved_bytes: usize,
    /// Physical memory given back but not yet released (its release is queued behind the
    /// device work that may touch it).
    pub releasing_bytes: usize,
    /// Bytes of pages given back by `sleep`, mapped again at `wake`.
    pub asleep_bytes: usize,
    /// Pinned host memory held for sleep backups (in use or kept for the next sleep).
    pub host_backup_bytes: usize,
    /// Physical chunks cached in the page cache now (see
    /// [`CachingAllocator::chunk_pool`](super::CachingAllocator::chunk_pool)).
    pub cached_chunk_bytes: usize,
    /// The most physical memory ever held at once (mapped, releasing and cached chunks),
    /// seen at growths.
    pub peak_reserved_bytes: usize,
    /// Bytes mapped and free in blocks (`reserved - allocated`, cross-stream pending
    /// included).
    pub inactive_bytes: usize,
    /// Blocks handed out now.
    pub active_blocks: u64,
    /// Blocks freed while recorded uses on other streams may still run: they return to the
    /// cache once their events completed.
    pub pending_blocks: u64,
    /// Allocations served.
    pub allocs: u64,
    /// Allocations served from cached memory, with no driver call.
    pub cache_hits: u64,
    /// Growth steps (each maps one run of new pages).
    pub growths: u64,
    /// Physical pages mapped.
    pub pages_mapped: u64,
    /// Of those, pages taken from the page cache rather than created.
    pub pages_reused: u64,
    /// Physical pages unmapped into the page cache by compaction, to be mapped again.
    pub pages_recycled: u64,
    /// Physical pages given back to the driver (trims, the release threshold, compaction).
    pub pages_released: u64,
    /// Allocations that failed for lack of memory (after emptying the cache and retrying).
    pub out_of_memory: u64,
    /// Streams (and kinds) with a segment.
    pub segments: usize,
    /// Counts per size class (see [`SIZE_CLASSES`]).
    pub size_classes: Vec<SizeClassStats>,
}

impl CachingStats {
    pub(crate) fn new() -> CachingStats {
        CachingStats {
            size_classes: SIZE_CLASSES
                .iter()
                .map(|&upper_bound| SizeClassStats {
                    upper_bound,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    pub(crate) fn class(&mut self, size: usize) -> &mut SizeClassStats {
        let i = SIZE_CLASSES
            .iter()
            .position(|&b| size <= b)
            .unwrap_or(SIZE_CLASSES.len() - 1);
        &mut self.size_classes[i]
    }
}

/// One block of a segment in a [`Snapshot`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BlockSnapshot {
    /// Offset in the segment.
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
    /// `"active"` (handed out), `"pending"` (freed, waiting for a use on another stream)
    /// or `"free"`; unmapped stretches are not listed.
    pub state: &'static str,
}

/// One segment in a [`Snapshot`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SegmentSnapshot {
    /// The tag its blocks were allocated with (`""`: untagged).
    pub tag: String,
    /// Whether the tag is asleep (no page mapped; the blocks keep their addresses).
    pub asleep: bool,
    /// The raw handle of the stream the segment serves (`1` for the legacy stream, `2` for a
    /// per-thread stream).
    pub stream: u64,
    /// Whether it holds small blocks.
    pub small: bool,
    /// Its first device address.
    pub address: u64,
    /// Its physical page size.
    pub page: usize,
    /// Bytes mapped.
    pub mapped_bytes: usize,
    /// Its blocks in address order.
    pub blocks: Vec<BlockSnapshot>,
}

/// Every segment and block, with the statistics, at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// The allocator's device ordinal.
    pub device: usize,
    /// The statistics.
    pub stats: CachingStats,
    /// The segments.
    pub segments: Vec<SegmentSnapshot>,
}

impl Snapshot {
    /// The snapshot as JSON.
    pub fn to_json(&self) -> String {
        // Serialising plain structs of numbers and strings cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}
