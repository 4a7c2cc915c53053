//! Issue 17, classes 7 and 9: a failed growth or commit gives its turn in the placement
//! rotation back (and the prefetch worker places chunks where the buffer's one rotation
//! says), and a [`ChunkPool`]'s limits hold under huge counts and every interleaving of
//! its operations. Each test names the defect it guards.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use cuda_vmm::Device;
use cuda_vmm_alloc::{
    BufferConfig, Error, GrowableBuffer, GrowthPolicy, Placement, PoolStats, SparseArray,
    SparseConfig,
};
use cuda_vmm_sim::inject_fault;
use cuda_vmm_sys::CUresult;

use crate::limited_pool as pool;
use crate::{cuda, two_simulated_devices_and_granule};
use cuda_vmm_tests::helpers::{gran, TestResult};

/// A byte buffer of `d0` striping one-granule chunks over `d0` and `d1`.
fn striped(
    d0: &Device,
    d1: &Device,
    g: usize,
    prefetch: bool,
) -> cuda_vmm_alloc::Result<GrowableBuffer<u8>> {
    GrowableBuffer::new(
        d0,
        BufferConfig {
            max_capacity: Some(32 * g),
            policy: GrowthPolicy::fixed(g),
            placement: Placement::RoundRobin(vec![d0.clone(), d1.clone()]),
            prefetch,
            ..Default::default()
        },
    )
}

/// The device ordinal of each chunk of `b`, in address order.
fn homes(b: &GrowableBuffer<u8>) -> Vec<usize> {
    b.chunk_allocations()
        .map(|(_, a)| a.device().ordinal())
        .collect()
}

/// Class 7: a growth under `Placement::RoundRobin` that failed after obtaining its chunks
/// (a failed map or set-access, or a failed copy after the commit) kept its turns in the
/// rotation, so the next chunk landed on the wrong device. After a failed growth the
/// rotation is exactly as before: the chunks land as in a buffer that never failed.
#[test]
fn failed_round_robin_growth_gives_its_turns_back() -> TestResult {
    let Some((d0, d1, g)) = two_simulated_devices_and_granule()? else {
        return Ok(());
    };
    let _memory = crate::memory_shared();
    // A three-chunk growth (an odd count, so a kept turn shows with two devices) failing in
    // its creates, its maps, its one set-access, or its copy after the commit.
    let faults = [
        ("cuMemCreate", 3, CUresult::CUDA_ERROR_OUT_OF_MEMORY),
        ("cuMemMap", 3, CUresult::CUDA_ERROR_OUT_OF_MEMORY),
        ("cuMemSetAccess", 1, CUresult::CUDA_ERROR_INVALID_VALUE),
        ("cuMemcpyHtoDAsync", 1, CUresult::CUDA_ERROR_INVALID_VALUE),
    ];
    let mut reference = striped(&d0, &d1, g, false)?;
    reference.extend_from_slice(&vec![1; g])?;
    reference.extend_from_slice(&vec![2; 3 * g])?;
    reference.extend_from_slice(&vec![3; g])?;
    let expected = homes(&reference);
    assert_eq!(expected, [0, 1, 0, 1, 0]);
    for (symbol, nth, code) in faults {
        let mut b = striped(&d0, &d1, g, false)?;
        b.extend_from_slice(&vec![1; g])?;
        let guard = inject_fault(symbol, nth, code);
        let failed = b.extend_from_slice(&vec![2; 3 * g]);
        drop(guard);
        let err = failed.expect_err("the injected fault");
        assert_eq!(err.code(), Some(code.0), "{symbol}: {err}");
        assert_eq!(homes(&b), [0], "{symbol}: the failed growth kept nothing");
        b.extend_from_slice(&vec![2; 3 * g])?;
        b.extend_from_slice(&vec![3; g])?;
        assert_eq!(homes(&b), expected, "after a failed {symbol}");
    }
    Ok(())
}

/// Class 7: a failed `SparseArray::commit` under `Placement::RoundRobin` (a failed map
/// after its chunk was obtained) kept its turn in the rotation: the next committed tile
/// landed on the device the failed one would have used twice in a row.
#[test]
fn failed_round_robin_sparse_commit_gives_its_turn_back() -> TestResult {
    let Some((d0, d1, g)) = two_simulated_devices_and_granule()? else {
        return Ok(());
    };
    let _memory = crate::memory_shared();
    let mut a = SparseArray::<u32>::new(
        &d0,
        8 * g / 4,
        SparseConfig {
            tile_bytes: g,
            placement: Placement::RoundRobin(vec![d0.clone(), d1.clone()]),
            ..Default::default()
        },
    )?;
    let tile = |a: &SparseArray<u32>, t: usize| a.tile_allocation(t).map(|x| x.device().ordinal());
    let per_tile = g / 4;
    a.commit(0..per_tile)?;
    assert_eq!(tile(&a, 0), Some(0));
    // One failed commit of one tile at a time (a kept turn shows with two devices).
    for (t, symbol, device) in [(1, "cuMemMap", 1), (2, "cuMemSetAccess", 0)] {
        let range = t * per_tile..(t + 1) * per_tile;
        let guard = inject_fault(symbol, 1, CUresult::CUDA_ERROR_OUT_OF_MEMORY);
        let failed = a.commit(range.clone());
        drop(guard);
        assert!(failed.is_err(), "{symbol}: the injected fault");
        assert_eq!(tile(&a, t), None);
        a.commit(range)?;
        assert_eq!(
            tile(&a, t),
            Some(device),
            "tile {t} after a failed {symbol}"
        );
    }
    Ok(())
}

/// Class 7: the prefetch worker kept its own copy of the rotation, moved only by the steps
/// it committed; an append that committed chunks in line (more than the queued steps) moved
/// the buffer's rotation alone, and the worker's next steps landed on the wrong devices.
/// The buffer's rotation is the only one: prefetched chunks land where it says.
#[test]
fn prefetched_chunks_follow_the_buffers_rotation_after_a_large_append() -> TestResult {
    let Some((d0, d1, g)) = two_simulated_devices_and_granule()? else {
        return Ok(());
    };
    let _memory = crate::memory_shared();
    let mut b = striped(&d0, &d1, g, true)?;
    // Two one-chunk steps are queued; this append takes both and commits three in line.
    b.extend_from_slice(&vec![1; 5 * g])?;
    assert_eq!(homes(&b), [0, 1, 0, 1, 0]);
    // These take the steps queued after the large append, then more, one at a time.
    for round in 0..5u8 {
        b.extend_from_slice(&vec![round; g])?;
    }
    let expected: Vec<usize> = (0..10).map(|k| k % 2).collect();
    assert_eq!(homes(&b), expected);
    // And again after a large append that fails: its turns are given back.
    let guard = inject_fault("cuMemcpyHtoDAsync", 1, CUresult::CUDA_ERROR_INVALID_VALUE);
    let failed = b.extend_from_slice(&vec![9; 5 * g]);
    drop(guard);
    assert!(failed.is_err(), "the injected copy fault");
    for round in 0..3u8 {
        b.extend_from_slice(&vec![round; g])?;
    }
    let expected: Vec<usize> = (0..13).map(|k| k % 2).collect();
    assert_eq!(homes(&b), expected);
    assert!(b.prefetch());
    Ok(())
}

/// Panics unless the pool's cache is within `max_chunks` chunks of `chunk` bytes.
#[track_caller]
fn within(stats: PoolStats, max_chunks: usize, chunk: usize, what: &str) {
    assert!(
        stats.chunks_held <= max_chunks && stats.bytes_held <= max_chunks * chunk,
        "{what}: {} chunks ({} bytes) cached, limit {max_chunks}: {stats:?}",
        stats.chunks_held,
        stats.bytes_held
    );
}

/// Class 9: `ChunkPool::prefill(usize::MAX)` on a pool with unbounded limits sized a `Vec`
/// by the count and aborted the process. A count the device could never hold is an error,
/// nothing is created, and the pool keeps working.
#[test]
fn prefill_of_a_huge_count_is_an_error() -> TestResult {
    let _memory = crate::memory_shared();
    let d = cuda()?.device(0)?;
    let p = pool(&d, usize::MAX, usize::MAX)?;
    for count in [usize::MAX, usize::MAX / 2] {
        let err = p
            .prefill(count)
            .expect_err("a count past the device's memory");
        assert!(matches!(err, Error::InvalidConfig { .. }), "{err}");
        assert_eq!(p.stats(), PoolStats::default(), "nothing was created");
    }
    assert_eq!(p.prefill(2)?, 2);
    assert_eq!(p.stats().chunks_held, 2);
    // Bounded limits bound the work instead.
    let bounded = pool(&d, 3, usize::MAX)?;
    assert_eq!(bounded.prefill(usize::MAX)?, 3);
    Ok(())
}

/// Class 9: concurrent `prefill`s read the cached count, created chunks without the lock
/// and cached them ignoring the limits: 6 threads x `prefill(16)` with `max_chunks = 16`
/// left 96 chunks cached. Prefills reserve their slots under the lock: 16 in all, and the
/// byte limit holds the same way.
#[test]
fn racing_prefills_stay_within_the_limits() -> TestResult {
    let _memory = crate::memory_shared();
    let d = cuda()?.device(0)?;
    let g = gran(&d)?;
    for (max_chunks, max_bytes, limit) in [(16, usize::MAX, 16), (usize::MAX, 8 * g, 8)] {
        let p = pool(&d, max_chunks, max_bytes)?;
        let start = Arc::new(Barrier::new(6));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (p, start) = (p.clone(), start.clone());
                std::thread::spawn(move || {
                    // Slow creates (on the simulator) hold the race open.
                    let _slow = cuda_vmm_sim::model_create_cost(Duration::from_millis(1));
                    start.wait();
                    let created = p.prefill(16);
                    within(p.stats(), limit, g, "after a prefill");
                    created
                })
            })
            .collect();
        let mut created = 0;
        for t in threads {
            created += t.join().expect("a prefill thread panicked")?;
        }
        assert_eq!(created, limit, "created in all");
        assert_eq!(p.stats().chunks_held, limit);
        assert_eq!(p.stats().bytes_held, limit * g);
    }
    Ok(())
}

/// Class 9: the limits held for neither prefills nor chunks returned by `put_back` while
/// other threads acquired, recycled and trimmed. Four threads race every operation; each
/// checks the cache after each one, and at the end it is within the limits.
#[test]
fn racing_pool_operations_never_exceed_the_limits() -> TestResult {
    let _memory = crate::memory_shared();
    let d = cuda()?.device(0)?;
    let g = gran(&d)?;
    const LIMIT: usize = 6;
    let p = pool(&d, LIMIT, LIMIT * g)?;
    let start = Arc::new(Barrier::new(4));
    let threads: Vec<_> = (0..4)
        .map(|i: usize| {
            let (p, start) = (p.clone(), start.clone());
            std::thread::spawn(move || -> cuda_vmm_alloc::Result<()> {
                let _slow = cuda_vmm_sim::model_create_cost(Duration::from_micros(500));
                start.wait();
                for round in 0..60 {
                    p.prefill(LIMIT)?;
                    within(p.stats(), LIMIT, g, "after a prefill");
                    let held: Vec<_> = (0..1 + (round + i) % 3)
                        .map(|_| p.acquire())
                        .collect::<cuda_vmm_alloc::Result<_>>()?;
                    within(p.stats(), LIMIT, g, "after an acquire");
                    for chunk in held {
                        p.recycle(chunk)?;
                        within(p.stats(), LIMIT, g, "after a recycle");
                    }
                    if (round + i).is_multiple_of(7) {
                        p.trim()?;
                        within(p.stats(), LIMIT, g, "after a trim");
                    }
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a pool thread panicked")?;
    }
    within(p.stats(), LIMIT, g, "at the end");
    Ok(())
}

/// Class 9: a failed commit handed the chunks it took from the cache back through
/// `put_back`, which ignored the limits: when another thread had filled the pool
/// meanwhile, the pool held more than `max_chunks`. Chunks returned past the limits are
/// released instead (and every byte of the device comes back).
#[test]
fn failed_commit_returns_to_a_full_pool_within_the_limits() -> TestResult {
    let Some((d, g)) = crate::simulated_device(crate::FAULT_INJECTION)? else {
        return Ok(());
    };
    let _memory = crate::memory_exclusive();
    let free_before = d.memory_info()?.free;
    let p = pool(&d, 2, usize::MAX)?;
    assert_eq!(p.prefill(2)?, 2);
    let mut b = GrowableBuffer::<u8>::new(
        &d,
        BufferConfig {
            max_capacity: Some(8 * g),
            pool: Some(p.clone()),
            ..Default::default()
        },
    )?;
    // Another thread fills the pool again as soon as this growth has taken its two cached
    // chunks, while the growth still creates its third (slowly, as modelled).
    let refill = {
        let p = p.clone();
        std::thread::spawn(move || -> cuda_vmm_alloc::Result<usize> {
            let deadline = Instant::now() + Duration::from_secs(10);
            while p.stats().chunks_held != 0 && Instant::now() < deadline {
                std::thread::yield_now();
            }
            p.prefill(2)
        })
    };
    let slow =
        cuda_vmm_sim::model_create_cost(Duration::from_millis(200 / (g >> 20).max(1) as u64));
    // The third chunk's map fails: the two cached chunks go back to a full pool.
    let guard = inject_fault("cuMemMap", 3, CUresult::CUDA_ERROR_OUT_OF_MEMORY);
    let failed = b.extend_from_slice(&vec![7; 3 * g]);
    drop(guard);
    drop(slow);
    assert!(failed.is_err(), "the injected map fault");
    assert_eq!(refill.join().expect("the refill thread panicked")?, 2);
    within(p.stats(), 2, g, "after the failed commit's return");
    assert_eq!(b.committed_bytes(), 0);
    drop(b);
    p.trim()?;
    drop(p);
    assert_eq!(
        d.memory_info()?.free,
        free_before,
        "every chunk was released"
    );
    Ok(())
}
