//! The allocator's page cache shared with buffers: chunks a `GrowableBuffer` gives back are
//! mapped again by the allocator's growth (and by the next buffer) with no `cuMemCreate`,
//! and `empty_cache` gives them to the driver.

use std::time::Duration;

use cuda_vmm::Stream;
use cuda_vmm_alloc::{BufferConfig, CachingAllocator, CachingConfig, Error, GrowableBuffer};

use super::{check_stamp, stamp};
use crate::alloc::{counts, delta};
use crate::{device, on_simulator};
use cuda_vmm_tests::helpers::{gran, TestResult};

const FLUSH: Duration = Duration::from_secs(30);

/// A buffer of `chunks` chunks of the allocator's `chunk`-byte pool, dropped: its chunks
/// land in the cache once their unmaps ran.
fn buffer_round_trip(a: &CachingAllocator, chunk: usize, chunks: usize) -> TestResult {
    let pool = a.chunk_pool(chunk)?;
    let mut buffer = GrowableBuffer::<u8>::new(
        a.device(),
        BufferConfig {
            pool: Some(pool.clone()),
            ..BufferConfig::default()
        },
    )?;
    buffer.reserve(chunks * chunk)?;
    assert_eq!(buffer.committed_bytes(), chunks * chunk);
    drop(buffer);
    assert!(a.device().cuda().flush_releases(FLUSH)?);
    assert_eq!(pool.stats().chunks_held, chunks);
    Ok(())
}

#[test]
fn a_buffer_s_chunks_feed_the_allocator_s_growth_and_empty_cache_releases_them() -> TestResult {
    let _memory = crate::memory_exclusive();
    let d = device()?;
    let g = gran(&d)?;
    let s = Stream::new(&d)?;
    let free0 = d.memory_info()?.free;
    let a = CachingAllocator::new(&d)?;
    let large = 16 * g;
    buffer_round_trip(&a, large, 3)?;
    assert_eq!(a.stats().cached_chunk_bytes, 3 * large);
    // Two pages of the large segment: both from the cache.
    let before = counts(&["cuMemCreate"]);
    let block = a.alloc(large + 1, &s)?;
    if on_simulator()? {
        assert_eq!(delta(&before, &counts(&["cuMemCreate"])), [0]);
    }
    stamp(&block, 11)?;
    check_stamp(&block, 11)?;
    let stats = a.stats();
    assert_eq!((stats.pages_mapped, stats.pages_reused), (2, 2));
    assert_eq!(stats.cached_chunk_bytes, large);
    assert_eq!(stats.reserved_bytes, 2 * large);
    // Held: the two mapped pages and the cached one.
    assert_eq!(stats.peak_reserved_bytes, 3 * large);
    drop(block);
    assert_eq!(a.empty_cache(), 3 * large);
    assert!(a.flush_releases(FLUSH)?);
    assert_eq!(a.stats().cached_chunk_bytes, 0);
    assert_eq!(
        d.memory_info()?.free,
        free0,
        "every chunk is back with the driver"
    );
    Ok(())
}

#[test]
fn the_next_buffer_on_the_cache_creates_nothing() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let a = CachingAllocator::new(&d)?;
    buffer_round_trip(&a, 4 * g, 5)?;
    let before = counts(&["cuMemCreate", "cuMemRelease"]);
    buffer_round_trip(&a, 4 * g, 5)?;
    if on_simulator()? {
        assert_eq!(
            delta(&before, &counts(&["cuMemCreate", "cuMemRelease"])),
            [0, 0]
        );
    }
    let pool = a.chunk_pool(4 * g)?;
    assert_eq!((pool.stats().hits, pool.stats().misses), (5, 5));
    assert_eq!(a.empty_cache(), 5 * 4 * g);
    Ok(())
}

#[test]
fn chunk_pool_sizes_are_checked_and_pools_are_shared_by_size() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let a = CachingAllocator::new(&d)?;
    assert!(matches!(a.chunk_pool(0), Err(Error::InvalidConfig { .. })));
    assert!(matches!(
        a.chunk_pool(g + 1),
        Err(Error::InvalidConfig { .. })
    ));
    assert!(matches!(
        a.chunk_pool(usize::MAX),
        Err(Error::InvalidConfig { .. })
    ));
    let p = a.chunk_pool(2 * g)?;
    let q = a.chunk_pool(2 * g)?;
    let _x = p.acquire()?;
    assert_eq!(q.stats().misses, 1, "one pool per size");
    Ok(())
}

#[test]
fn compaction_maps_its_pages_again_instead_of_creating() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let s = Stream::new(&d)?;
    let a = CachingAllocator::with_config(
        &d,
        CachingConfig {
            large_page: std::num::NonZeroUsize::new(g),
            compact_above: Some(0.0),
            ..CachingConfig::default()
        },
    )?;
    let blocks: Vec<_> = (0..4).map(|_| a.alloc(g, &s)).collect::<Result<_, _>>()?;
    for (i, b) in blocks.iter().enumerate() {
        stamp(b, i as u64)?;
    }
    let mut blocks = blocks.into_iter();
    let (x, y, z, w) = (
        blocks.next().ok_or("x")?,
        blocks.next().ok_or("y")?,
        blocks.next().ok_or("z")?,
        blocks.next().ok_or("w")?,
    );
    drop((x, z)); // two free pages, not adjacent to the tail
    let before = counts(&["cuMemCreate", "cuMemRelease"]);
    let big = a.alloc(3 * g, &s)?;
    if on_simulator()? {
        // Two pages moved through the cache, one created.
        assert_eq!(
            delta(&before, &counts(&["cuMemCreate", "cuMemRelease"])),
            [1, 0]
        );
    }
    stamp(&big, 9)?;
    check_stamp(&y, 1)?;
    check_stamp(&w, 3)?;
    check_stamp(&big, 9)?;
    let stats = a.stats();
    assert_eq!(
        (
            stats.pages_recycled,
            stats.pages_reused,
            stats.pages_released
        ),
        (2, 2, 0)
    );
    assert_eq!(stats.reserved_bytes, 5 * g);
    assert_eq!(
        stats.peak_reserved_bytes,
        5 * g,
        "the peak never held the moved pages twice"
    );
    assert_eq!(stats.cached_chunk_bytes, 0);
    Ok(())
}
