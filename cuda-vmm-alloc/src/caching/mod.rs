//! A stream-ordered caching allocator of device memory on expandable segments, as
//! PyTorch's `CUDACachingAllocator` with `expandable_segments:True`, in Rust.
//!
//! - **Segments.** One reserved address range per (stream, small or large blocks), mapped
//!   page by page as it grows (2 MiB pages for blocks up to 1 MiB, 32 MiB pages above), so a
//!   stream's cache is one contiguous range and growth extends its free tail in place.
//! - **Blocks.** Best fit over the free blocks of the stream's segment, split to the request
//!   (rounded up to 512 bytes), coalesced with free neighbours when dropped.
//! - **Stream order.** A [`CachedBlock`] dropped goes back to its stream's cache at once;
//!   after [`CachedBlock::record_use`] on another stream, only once that work is done.
//!   Steady state makes no driver call.
//! - **Limits.** [`CachingConfig::max_reserved`] (a budget), a release threshold,
//!   [`CachingAllocator::empty_cache`] and [`CachingAllocator::trim`]: only fully free
//!   pages are given back, through the release queue, after the device work on them.
//! - **CUDA graphs.** Growth and `record_use` on a capturing stream are refused with
//!   [`Error::StreamCapturing`](crate::Error::StreamCapturing) (they would make driver calls
//!   inside the capture); [`CachingConfig::check_capture`] refuses every `alloc` on one.
//! - **Visibility.** [`CachingAllocator::stats`] and [`CachingAllocator::snapshot`] (serde
//!   JSON); tracing spans `caching.grow` and `caching.trim`.
//! - **One physical cache.** [`CachingAllocator::chunk_pool`]: the segments' pages come from
//!   its pools, compaction moves pages through them, and buffers built on one share them.
//! - **Sleep and wake.** [`CachingAllocator::alloc_tagged`] keeps tags in separate
//!   segments; [`CachingAllocator::sleep`] gives a tag's pages back to the driver (its
//!   blocks' bytes copied to reused pinned host memory with [`Backup::Host`]) and
//!   [`CachingAllocator::wake`] maps new pages at the same addresses and restores them.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use cuda_vmm::{Cuda, Stream};
//! use cuda_vmm_alloc::CachingAllocator;
//!
//! let cuda = Cuda::simulator()?;
//! let device = cuda.device(0)?;
//! let stream = Stream::new(&device)?;
//! let allocator = CachingAllocator::new(&device)?;
//!
//! let a = allocator.alloc(3 << 20, &stream)?; // grows the segment: driver calls
//! let ptr = a.ptr();
//! drop(a); // back to the stream's cache, at once
//! let b = allocator.alloc(2 << 20, &stream)?; // served from the cache: no driver call
//! assert_eq!(b.ptr(), ptr);
//! let stats = allocator.stats();
//! assert_eq!((stats.allocs, stats.cache_hits, stats.growths), (2, 1, 1));
//! # Ok(())
//! # }
//! ```

pub(crate) mod allocator;
pub(crate) mod arena;
mod block;
mod config;
#[cfg(feature = "cudarc")]
mod cudarc_view;
pub(crate) mod host_arena;
mod pages;
mod segment;
mod sleep;
mod stats;
mod stream_key;

pub use allocator::CachingAllocator;
pub use block::CachedBlock;
pub use config::CachingConfig;
#[cfg(feature = "cudarc")]
pub use cudarc_view::CachedView;
pub use sleep::{Backup, SleepReport, WakeReport};
pub use stats::{
    BlockSnapshot, CachingStats, SegmentSnapshot, SizeClassStats, Snapshot, SIZE_CLASSES,
};
