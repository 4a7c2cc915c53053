//! What a [`CachingAllocator`](super::CachingAllocator) is configured with.

use std::num::NonZeroUsize;

/// The settings of a [`CachingAllocator`](super::CachingAllocator). `Default` gives
/// PyTorch-like behaviour: blocks up to 1 MiB in small segments of 2 MiB pages, larger ones
/// in segments of 32 MiB pages, no budget, and cached memory kept until
/// [`empty_cache`](super::CachingAllocator::empty_cache).
#[derive(Clone, Debug, PartialEq)]
pub struct CachingConfig {
    /// Requests up to this many bytes go to the small segments. Default 1 MiB.
    pub small_limit: usize,
    /// The physical page (one `cuMemCreate` handle) of small segments: a multiple of the
    /// allocation granularity; `None` means the granularity (2 MiB on current GPUs).
    pub small_page: Option<NonZeroUsize>,
    /// The physical page of large segments; `None` means 16 granules (32 MiB on current
    /// GPUs). Set access and unmap cost per handle (about 30 and 20 µs on an H200), so large
    /// pages make growth cheap; free memory is given back in whole pages only.
    pub large_page: Option<NonZeroUsize>,
    /// The most bytes of physical memory the allocator maps at once (its budget); growth
    /// past it first empties the cache, then fails. `None`: the device is the limit.
    pub max_reserved: Option<usize>,
    /// After a free, while more than this many bytes are reserved, fully free pages are
    /// given back (through the release queue). `None` (the default) keeps cached memory,
    /// as the driver pool's release threshold of `u64::MAX` does.
    pub release_threshold: Option<usize>,
    /// Compaction, memory first: before a growth that would raise the high-water mark of
    /// reserved memory, when more than this share of the allocated bytes is cached in free
    /// blocks, every fully free page is given back and the caller waits for the release
    /// queue to release them (the device work on them included) before mapping more. Costs
    /// mapping and that wait; `None` (the default) grows without giving back, as PyTorch's
    /// expandable segments do.
    pub compact_above: Option<f64>,
    /// Check every `alloc` and every free for a capturing stream
    /// (`cuStreamIsCapturing`, one call each) and refuse it. Off by default: the paths
    /// that make driver calls (growth, cross-stream events) always check.
    pub check_capture: bool,
    /// Address space reserved per segment; `None` means the device's total memory.
    pub segment_size: Option<usize>,
    /// The large page of the segments of these tags (see
    /// [`alloc_tagged`](super::CachingAllocator::alloc_tagged)), instead of `large_page`:
    /// a tag of a few big long-lived blocks (weights, a KV cache) maps fewer handles with
    /// pages as large as its blocks, which makes growth, sleep and wake cheaper (their
    /// driver calls cost per handle). Each a multiple of the allocation granularity.
    pub tag_large_pages: Vec<(String, NonZeroUsize)>,
    /// Keep the pinned host memory of sleep backups after `wake`, for the next sleep
    /// (pinning costs far more than the copy: 0.2–0.37 s per GiB on an H200). The default
    /// keeps it; `false` gives it back as soon as no backup uses it (see also
    /// [`release_host_backup`](super::CachingAllocator::release_host_backup)).
    pub keep_host_backup: bool,
}

impl Default for CachingConfig {
    fn default() -> CachingConfig {
        CachingConfig {
            small_limit: 1 << 20,
            small_page: None,
            large_page: None,
            max_reserved: None,
            release_threshold: None,
            compact_above: None,
            check_capture: false,
            segment_size: None,
            tag_large_pages: Vec::new(),
            keep_host_backup: true,
        }
    }
}
