//! Pools and budgets shared by structures on many threads, with every end of life queued:
//! a pool never hands out a chunk before its queued release completed (checked with
//! patterns: a fresh tile reads zeros and keeps what this thread wrote while other threads
//! write theirs), a budget is never exceeded at any observed moment and returns to zero,
//! and every pending counter drains. Run on either backend.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use cuda_vmm::{Device, Stream};
use cuda_vmm_alloc::{
    BufferConfig, ChunkPool, Error, GrowableBuffer, MemoryBudget, PoolConfig, SparseArray,
    SparseConfig,
};
use cuda_vmm_tests::helpers::{pattern_cycle, TestResult};

use super::{queued_device, FLUSH};

const THREADS: usize = 4;
const ROUNDS: usize = 24;

/// A seed unique to a thread and round.
fn seed(thread: usize, round: usize) -> u8 {
    (thread * ROUNDS + round) as u8 | 1
}

/// One array thread: commits a tile of its array, checks it reads zeros, writes and checks
/// a pattern of its own, overwrites it asynchronously and decommits it at once (queued
/// behind that write), round after round.
fn array_rounds(device: &Device, pool: &ChunkPool, thread: usize, tile: usize) -> TestResult {
    let config = SparseConfig {
        pool: Some(pool.clone()),
        ..SparseConfig::default()
    };
    let mut array = SparseArray::<u8>::new(device, 4 * tile, config)?;
    let stream = Stream::new(device)?;
    let mut out = vec![0u8; tile];
    for round in 0..ROUNDS {
        let at = (round % 4) * tile;
        assert_eq!(array.commit(at..at + tile)?, 1);
        array.read(at..at + tile, &mut out)?;
        assert!(
            out.iter().all(|&b| b == 0),
            "thread {thread} round {round}: a fresh tile was not zero (a chunk still in use \
             elsewhere was handed out)"
        );
        let mine = pattern_cycle(tile, seed(thread, round));
        array.write(at, &mine)?;
        std::thread::yield_now();
        array.read(at..at + tile, &mut out)?;
        assert!(
            out == mine,
            "thread {thread} round {round}: tile changed under us"
        );
        let later = pattern_cycle(tile, seed(thread, round).wrapping_add(2));
        array.write_async(&stream, at, &later)?;
        assert_eq!(array.decommit(at..at + tile)?, 1);
    }
    drop(array);
    Ok(())
}

/// One buffer thread on the same pool: grows, checks, shrinks (queued) and drops (queued).
fn buffer_rounds(device: &Device, pool: &ChunkPool, tile: usize) -> TestResult {
    for round in 0..ROUNDS / 2 {
        let config = BufferConfig {
            pool: Some(pool.clone()),
            max_capacity: Some(4 * tile),
            ..BufferConfig::default()
        };
        let mut buffer = GrowableBuffer::<u8>::new(device, config)?;
        let data = pattern_cycle(3 * tile, seed(THREADS, round));
        buffer.extend_from_slice(&data)?;
        assert!(
            buffer.to_vec()? == data,
            "buffer round {round}: data changed"
        );
        buffer.truncate(tile);
        buffer.shrink_to_fit()?;
        assert!(
            buffer.to_vec()? == data[..tile],
            "buffer round {round}: kept head changed"
        );
        std::thread::yield_now();
        drop(buffer);
    }
    Ok(())
}

#[test]
fn structures_sharing_a_pool_never_get_a_chunk_whose_release_is_queued() -> TestResult {
    let _memory = crate::memory_shared();
    let (cuda, device, tile) = queued_device()?;
    let pool = ChunkPool::new(
        &device,
        PoolConfig {
            max_chunks: 3,
            ..PoolConfig::default()
        },
    )?;
    std::thread::scope(|s| {
        let mut threads = Vec::new();
        for t in 0..THREADS {
            let (device, pool) = (&device, &pool);
            threads.push(
                s.spawn(move || array_rounds(device, pool, t, tile).map_err(|e| e.to_string())),
            );
        }
        let (device, pool) = (&device, &pool);
        threads.push(s.spawn(move || buffer_rounds(device, pool, tile).map_err(|e| e.to_string())));
        for t in threads {
            t.join().expect("thread panicked").expect("thread failed");
        }
    });
    assert!(cuda.flush_releases(FLUSH)?);
    let errors = cuda.take_release_errors();
    assert!(errors.is_empty(), "{errors:?}");
    let stats = cuda.release_stats();
    assert_eq!((stats.pending_entries, stats.pending_bytes), (0, 0));
    assert!(stats.queued >= (THREADS * ROUNDS) as u64);
    let pool_stats = pool.stats();
    assert_eq!(pool_stats.pending_returns, 0, "{pool_stats:?}");
    assert!(pool_stats.chunks_held <= 3, "{pool_stats:?}");
    assert!(pool_stats.hits > 0, "{pool_stats:?}");
    Ok(())
}

#[test]
fn a_budget_shared_across_threads_is_never_exceeded_and_returns_to_zero() -> TestResult {
    let _memory = crate::memory_shared();
    let (cuda, device, tile) = queued_device()?;
    let limit = 3 * tile;
    let budget = MemoryBudget::new(limit);
    let stop = AtomicBool::new(false);
    let max_seen = AtomicUsize::new(0);
    let refusals = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                max_seen.fetch_max(budget.used(), Ordering::Relaxed);
                std::thread::yield_now();
            }
        });
        let mut threads = Vec::new();
        for t in 0..THREADS {
            let (device, budget, refusals) = (&device, &budget, &refusals);
            threads.push(s.spawn(move || {
                let config = SparseConfig {
                    budget: Some(budget.clone()),
                    ..SparseConfig::default()
                };
                let mut array = SparseArray::<u8>::new(device, 2 * tile, config).expect("array");
                let stream = Stream::new(device).expect("stream");
                for round in 0..ROUNDS {
                    match array.commit(0..2 * tile) {
                        Ok(n) => assert_eq!(n, 2),
                        Err(Error::BudgetExceeded {
                            requested,
                            used,
                            limit: l,
                        }) => {
                            assert_eq!((requested, l), (2 * tile, limit));
                            assert!(used <= limit && used + requested > limit, "used {used}");
                            refusals.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        Err(e) => panic!("thread {t} round {round}: {e:?}"),
                    }
                    let data = pattern_cycle(2 * tile, seed(t, round));
                    array.write_async(&stream, 0, &data).expect("write");
                    assert_eq!(array.decommit(0..2 * tile).expect("decommit"), 2);
                }
                // Ends with a tile committed if the budget allows: the drop queues it.
                match array.commit(0..tile) {
                    Ok(n) => assert_eq!(n, 1),
                    Err(Error::BudgetExceeded {
                        requested,
                        used,
                        limit: l,
                    }) => {
                        assert_eq!((requested, l), (tile, limit));
                        assert!(used <= limit && used + requested > limit, "used {used}");
                    }
                    Err(e) => panic!("thread {t}: {e:?}"),
                }
                drop(array);
            }));
        }
        for t in threads {
            t.join().expect("thread panicked");
        }
        stop.store(true, Ordering::Relaxed);
        watcher.join().expect("watcher");
    });
    assert!(max_seen.load(Ordering::Relaxed) <= limit);
    assert!(cuda.flush_releases(FLUSH)?);
    assert!(cuda.take_release_errors().is_empty());
    assert_eq!(budget.used(), 0, "the budget was not refunded");
    assert_eq!(cuda.release_stats().pending_bytes, 0);
    eprintln!("budget refusals: {}", refusals.load(Ordering::Relaxed));
    Ok(())
}

/// The bound toggled between "inline" and the default by one thread while others commit,
/// write, check and decommit over a shared pool and a third flushes with a zero timeout:
/// every end completes exactly once, with no error, and the data stays each thread's own.
#[test]
fn toggling_the_bound_while_threads_end_memory_loses_and_doubles_nothing() -> TestResult {
    let _memory = crate::memory_shared();
    let (cuda, device, tile) = queued_device()?;
    let pool = ChunkPool::new(&device, PoolConfig::default())?;
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let toggler = s.spawn(|| {
            let mut inline = false;
            while !stop.load(Ordering::Relaxed) {
                inline = !inline;
                cuda.set_max_pending_release_bytes(if inline {
                    0
                } else {
                    cuda_vmm::release::DEFAULT_MAX_PENDING_RELEASE_BYTES
                });
                std::thread::yield_now();
            }
        });
        let flusher = s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                cuda.flush_releases(std::time::Duration::ZERO)
                    .expect("a zero-timeout flush failed");
                std::thread::yield_now();
            }
        });
        let mut threads = Vec::new();
        for t in 0..THREADS - 1 {
            let (device, pool) = (&device, &pool);
            threads.push(
                s.spawn(move || array_rounds(device, pool, t, tile).map_err(|e| e.to_string())),
            );
        }
        for t in threads {
            t.join().expect("thread panicked").expect("thread failed");
        }
        stop.store(true, Ordering::Relaxed);
        toggler.join().expect("toggler");
        flusher.join().expect("flusher");
    });
    cuda.set_max_pending_release_bytes(cuda_vmm::release::DEFAULT_MAX_PENDING_RELEASE_BYTES);
    assert!(cuda.flush_releases(FLUSH)?);
    let errors = cuda.take_release_errors();
    assert!(errors.is_empty(), "{errors:?}");
    let stats = cuda.release_stats();
    assert_eq!(stats.completed, stats.queued, "{stats:?}");
    assert_eq!((stats.pending_entries, stats.pending_bytes), (0, 0));
    let pool_stats = pool.stats();
    assert_eq!(pool_stats.pending_returns, 0, "{pool_stats:?}");
    // Every chunk the arrays took came back to the pool (or was released by it).
    assert_eq!(
        pool_stats.returns,
        pool_stats.hits + pool_stats.misses,
        "{pool_stats:?}"
    );
    Ok(())
}
