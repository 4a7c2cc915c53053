//! Adversarial tests of sleep and wake with the page cache shared with buffers, with
//! faults, with the allocator dropped asleep, and with threads racing allocations, frees,
//! sleeps and wakes.

use std::sync::RwLock;
use std::time::Duration;

use cuda_vmm::Stream;
use cuda_vmm_alloc::{Backup, BufferConfig, CachedBlock, CachingConfig, Error, GrowableBuffer};
use cuda_vmm_sys::CUresult;

use super::adversarial::driver_error;
use super::adversarial_sleep::{access_at, check, fill, paged, pattern};
use crate::device;
use cuda_vmm_tests::helpers::{gran, TestResult};

const FLUSH: Duration = Duration::from_secs(30);
const MIB: usize = 1 << 20;

#[test]
fn dropping_the_allocator_while_tags_sleep_gives_every_byte_back() -> TestResult {
    let _memory = crate::memory_exclusive();
    let d = device()?;
    let g = gran(&d)?;
    let s = Stream::new(&d)?;
    assert!(d.cuda().flush_releases(FLUSH)?);
    let free0 = d.memory_info()?.free;
    for blocks_outlive_it in [false, true] {
        let a = paged(&d, CachingConfig::default())?;
        let w = a.alloc_tagged(3 * g, &s, "w")?;
        let k = a.alloc_tagged(2 * g, &s, "kv")?;
        let u = a.alloc(g, &s)?;
        fill(&w, 1)?;
        a.sleep(&["w"], Backup::Host)?;
        a.sleep(&["kv"], Backup::Discard)?;
        assert_eq!(d.memory_info()?.free, free0 - g);
        if blocks_outlive_it {
            drop(a);
            drop((w, k, u));
        } else {
            drop((w, k, u));
            drop(a);
        }
        assert!(d.cuda().flush_releases(FLUSH)?);
        assert_eq!(
            d.memory_info()?.free,
            free0,
            "outliving: {blocks_outlive_it}"
        );
    }
    Ok(())
}

/// A buffer on the allocator's pool of its page size keeps its bytes while the allocator
/// compacts (moving pages through that pool), sleeps (releasing the pool's idle chunks)
/// and wakes; at the end every byte is back with the driver.
#[test]
fn a_buffer_on_the_page_pool_keeps_its_bytes_through_compaction_sleep_and_wake() -> TestResult {
    let _memory = crate::memory_exclusive();
    let d = device()?;
    let g = gran(&d)?;
    let s = Stream::new(&d)?;
    assert!(d.cuda().flush_releases(FLUSH)?);
    let free0 = d.memory_info()?.free;
    {
        let a = paged(
            &d,
            CachingConfig {
                compact_above: Some(0.0),
                ..CachingConfig::default()
            },
        )?;
        let pool = a.chunk_pool(g)?;
        let mut buffer = GrowableBuffer::<u8>::new(
            &d,
            BufferConfig {
                pool: Some(pool.clone()),
                ..BufferConfig::default()
            },
        )?;
        let data = pattern(3 * g, 9);
        buffer.extend_from_slice(&data)?;
        let mut blocks: Vec<CachedBlock> =
            (0..4).map(|_| a.alloc(g, &s)).collect::<Result<_, _>>()?;
        for (i, b) in blocks.iter().enumerate() {
            fill(b, i as u64)?;
        }
        drop(blocks.remove(2));
        drop(blocks.remove(0)); // two free pages, not adjacent to the tail
        let big = a.alloc(3 * g, &s)?;
        fill(&big, 7)?;
        assert_eq!(a.stats().pages_recycled, 2);
        buffer.extend_from_slice(&pattern(2 * g, 10))?; // grows from the shared pool
        a.sleep(&[""], Backup::Host)?;
        assert_eq!(
            pool.stats().chunks_held,
            0,
            "sleep releases the idle chunks"
        );
        assert_eq!(buffer.to_vec()?[..3 * g], data[..]);
        a.wake(&[""])?;
        check(&blocks[0], 1)?;
        check(&blocks[1], 3)?;
        check(&big, 7)?;
        // The buffer's chunks go back to the shared pool; the next growth maps them.
        let committed = buffer.committed_bytes();
        drop(buffer);
        assert!(d.cuda().flush_releases(FLUSH)?);
        assert_eq!(pool.stats().bytes_held, committed);
        let reused = a.stats().pages_reused;
        let more = a.alloc(2 * g, &s)?;
        assert_eq!(a.stats().pages_reused, reused + 2);
        drop((blocks, big, more));
        a.empty_cache();
        assert!(a.flush_releases(FLUSH)?);
        assert_eq!(a.stats().reserved_bytes, 0);
    }
    assert!(d.cuda().flush_releases(FLUSH)?);
    assert_eq!(d.memory_info()?.free, free0);
    Ok(())
}

/// A wake whose pages come from the page cache (a buffer's chunks) and whose second map
/// fails: the chunks it took go back to the cache (the one mapped and the ones not yet
/// mapped), the tag stays asleep, and the retry wakes it with every byte.
#[test]
fn a_failed_wake_puts_the_cached_chunks_back() -> TestResult {
    let Some((d, g)) = crate::simulated_device(crate::FAULT_INJECTION)? else {
        return Ok(());
    };
    let _memory = crate::memory_shared();
    let s = Stream::new(&d)?;
    let a = paged(&d, CachingConfig::default())?;
    let w = a.alloc_tagged(4 * g, &s, "w")?;
    fill(&w, 2)?;
    a.sleep(&["w"], Backup::Host)?;
    let pool = a.chunk_pool(g)?;
    let mut buffer = GrowableBuffer::<u8>::new(
        &d,
        BufferConfig {
            pool: Some(pool.clone()),
            ..BufferConfig::default()
        },
    )?;
    buffer.reserve(3 * g)?;
    let cached = buffer.committed_bytes() / g;
    assert!(cached >= 4, "the wake's four pages all come from the cache");
    drop(buffer);
    assert!(d.cuda().flush_releases(FLUSH)?);
    assert_eq!(pool.stats().chunks_held, cached);
    let failed = {
        let _f = cuda_vmm_sim::inject_fault("cuMemMap", 2, CUresult::CUDA_ERROR_OUT_OF_MEMORY);
        a.wake(&["w"])
    };
    let e = failed.expect_err("the wake's second map failed");
    assert!(
        driver_error(&e, "cuMemMap", CUresult::CUDA_ERROR_OUT_OF_MEMORY),
        "{e:?}"
    );
    assert!(a.is_asleep("w"));
    assert!(d.cuda().flush_releases(FLUSH)?);
    assert_eq!(
        pool.stats().chunks_held,
        cached,
        "the chunks taken are cached again"
    );
    assert_eq!(a.stats().reserved_bytes, 0);
    a.wake(&["w"])?;
    assert_eq!(pool.stats().chunks_held, cached - 4);
    check(&w, 2)?;
    Ok(())
}

/// Compaction whose unmap fails: the allocation still succeeds, and nothing is lost.
#[test]
fn a_failed_unmap_while_compacting_leaks_nothing() -> TestResult {
    let Some((d, g)) = crate::simulated_device(crate::FAULT_INJECTION)? else {
        return Ok(());
    };
    let _memory = crate::memory_exclusive();
    let s = Stream::new(&d)?;
    assert!(d.cuda().flush_releases(FLUSH)?);
    let free0 = d.memory_info()?.free;
    {
        let a = paged(
            &d,
            CachingConfig {
                compact_above: Some(0.0),
                ..CachingConfig::default()
            },
        )?;
        let mut blocks: Vec<CachedBlock> =
            (0..4).map(|_| a.alloc(g, &s)).collect::<Result<_, _>>()?;
        for (i, b) in blocks.iter().enumerate() {
            fill(b, i as u64)?;
        }
        drop(blocks.remove(2));
        drop(blocks.remove(0));
        let big = {
            let _f = cuda_vmm_sim::inject_fault("cuMemUnmap", 1, CUresult::CUDA_ERROR_UNKNOWN);
            a.alloc(3 * g, &s)?
        };
        fill(&big, 7)?;
        check(&blocks[0], 1)?;
        check(&blocks[1], 3)?;
        assert!(a.flush_releases(FLUSH)?);
        let stats = a.stats();
        assert_eq!((stats.releasing_bytes, stats.reserved_bytes), (0, 5 * g));
        drop((blocks, big));
        a.empty_cache();
        assert!(a.flush_releases(FLUSH)?);
        assert_eq!(a.stats().cached_chunk_bytes, 0);
    }
    assert!(d.cuda().flush_releases(FLUSH)?);
    assert_eq!(d.memory_info()?.free, free0);
    Ok(())
}

/// `grant_access` whose `cuMemSetAccess` fails on the second segment: a failure rolls
/// back everything, so the first segment must not keep the peer's access.
#[test]
fn a_failed_grant_access_rolls_back_the_segments_granted_before() -> TestResult {
    let Some((d0, d1)) = crate::two_simulated_devices()? else {
        return Ok(());
    };
    let _memory = crate::memory_shared();
    let g = gran(&d0)?;
    let (s1, s2) = (Stream::new(&d0)?, Stream::new(&d0)?);
    let a = paged(&d0, CachingConfig::default())?;
    let x = a.alloc(g, &s1)?;
    let y = a.alloc(g, &s2)?;
    let failed = {
        let _f = cuda_vmm_sim::inject_fault("cuMemSetAccess", 2, CUresult::CUDA_ERROR_UNKNOWN);
        a.grant_access(&d1)
    };
    let e = failed.expect_err("the second segment's cuMemSetAccess failed");
    assert!(
        driver_error(&e, "cuMemSetAccess", CUresult::CUDA_ERROR_UNKNOWN),
        "{e:?}"
    );
    assert_eq!(access_at(y.ptr(), &d1)?, 0);
    assert_eq!(
        access_at(x.ptr(), &d1)?,
        0,
        "the first segment kept the peer"
    );
    a.grant_access(&d1)?;
    assert_eq!(access_at(x.ptr(), &d1)?, 3);
    assert_eq!(access_at(y.ptr(), &d1)?, 3);
    Ok(())
}

/// Workers allocate and free in a tag a sleeper puts to sleep and wakes over and over, and
/// sleep and wake their own tags: every allocation either succeeds or is refused with
/// `Asleep` for that tag, every byte written survives, and the counts add up at the end.
#[test]
fn threads_racing_allocations_frees_sleeps_and_wakes_keep_every_byte() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let a = paged(&d, CachingConfig::default())?;
    // Held shared to touch the shared tag's blocks, exclusively around a sleep and its wake.
    let awake = RwLock::new(());
    let sizes = [512, 4096, 700_000, 3 * MIB, g + 1];
    let result: Result<(), String> = std::thread::scope(|scope| {
        let sleeper = scope.spawn(|| -> Result<(), String> {
            for i in 0..30 {
                let _g = awake.write().map_err(|e| e.to_string())?;
                let backup = if i % 3 == 0 {
                    Backup::Discard
                } else {
                    Backup::Host
                };
                a.sleep(&["shared"], backup).map_err(|e| e.to_string())?;
                std::thread::yield_now();
                a.wake(&["shared"]).map_err(|e| e.to_string())?;
            }
            Ok(())
        });
        let workers: Vec<_> = (0..3u64)
            .map(|t| {
                let (a, awake) = (&a, &awake);
                let d = d.clone();
                scope.spawn(move || -> Result<u64, String> {
                    let run = || -> Result<u64, Box<dyn std::error::Error>> {
                        let s = Stream::new(&d)?;
                        let own = format!("own-{t}");
                        let mut mine: Vec<(CachedBlock, u64)> = Vec::new();
                        let mut refused = 0;
                        for i in 0..40u64 {
                            let size = sizes[(i as usize + t as usize) % sizes.len()];
                            let seed = t * 1000 + i;
                            match a.alloc_tagged(size, &s, "shared") {
                                Ok(b) => {
                                    let _r = awake.read().map_err(|e| e.to_string())?;
                                    // Discard sleeps lose the bytes: written after the wake.
                                    fill(&b, seed)?;
                                    check(&b, seed)?;
                                    drop(b);
                                }
                                Err(Error::Asleep { tag, operation }) => {
                                    assert_eq!((tag.as_str(), operation), ("shared", "alloc"));
                                    refused += 1;
                                }
                                Err(e) => return Err(e.into()),
                            }
                            let b = a.alloc_tagged(size, &s, &own)?;
                            fill(&b, seed)?;
                            mine.push((b, seed));
                            if i % 4 == 3 {
                                a.sleep(&[own.as_str()], Backup::Host)?;
                                mine.remove(0); // a free while asleep
                                a.wake(&[own.as_str()])?;
                                for (b, seed) in &mine {
                                    check(b, *seed)?;
                                }
                            }
                        }
                        drop(mine);
                        Ok(refused)
                    };
                    run().map_err(|e| e.to_string())
                })
            })
            .collect();
        sleeper
            .join()
            .map_err(|_| "sleeper panicked".to_string())??;
        for w in workers {
            w.join().map_err(|_| "worker panicked".to_string())??;
        }
        Ok(())
    });
    result?;
    let stats = a.stats();
    assert_eq!(
        (
            stats.allocated_bytes,
            stats.active_blocks,
            stats.asleep_bytes,
            stats.pending_blocks
        ),
        (0, 0, 0, 0)
    );
    a.empty_cache();
    assert!(a.flush_releases(FLUSH)?);
    assert_eq!(a.stats().reserved_bytes, 0);
    Ok(())
}
