//! Adversarial review of the class 9 fixes: a [`ChunkPool`] keeps its invariants under
//! bad counts and limits, failed creates and eight racing threads, and hands every chunk
//! it refuses back unchanged. Each test names the class and the defect it guards.

use std::os::fd::AsFd;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use cuda_vmm::{Allocation, AllocationProps, Backend, HandleTypes, Reservation, ReserveOptions};
use cuda_vmm_alloc::{
    BufferConfig, ChunkPool, Error, GrowableBuffer, PoolConfig, PoolStats, SparseArray,
    SparseConfig,
};
use cuda_vmm_sim::inject_fault;
use cuda_vmm_sys::CUresult;

use crate::cuda;
use crate::limited_pool as pool;
use cuda_vmm_tests::helpers::{gran, TestResult};

/// Panics unless the pool's counters are consistent and its cache within both limits.
#[track_caller]
fn invariants(p: &ChunkPool, max_chunks: usize, max_bytes: usize, what: &str) {
    let s = p.stats();
    let chunk = p.chunk_size();
    assert_eq!(s.bytes_held, s.chunks_held * chunk, "{what}: {s:?}");
    assert!(
        s.chunks_held <= max_chunks,
        "{what}: over max_chunks {max_chunks}: {s:?}"
    );
    assert!(
        s.bytes_held <= max_bytes,
        "{what}: over max_bytes {max_bytes}: {s:?}"
    );
}

/// Class 9: counts and limits at their edges (limits of 0, a byte limit that is no
/// multiple of the chunk size, prefill counts of 0, 1, `usize::MAX / 2`, `usize::MAX`):
/// every operation keeps the cache within the limits, and the counters are exact.
#[test]
fn pool_counts_and_limits_at_their_edges() -> TestResult {
    let _memory = crate::memory_shared();
    let d = cuda()?.device(0)?;
    let g = gran(&d)?;
    // (max_chunks, max_bytes, the chunks the cache can hold)
    for (max_chunks, max_bytes, capacity) in [
        (0, usize::MAX, 0),
        (usize::MAX, 0, 0),
        (usize::MAX, g - 1, 0),
        (usize::MAX, 2 * g + g / 2, 2),
        (3, 3 * g - 1, 2),
        (1, usize::MAX, 1),
    ] {
        let what = format!("max_chunks {max_chunks}, max_bytes {max_bytes}");
        let p = pool(&d, max_chunks, max_bytes)?;
        assert_eq!(p.prefill(0)?, 0, "{what}");
        assert_eq!(p.prefill(1)?, capacity.min(1), "{what}");
        assert_eq!(
            p.prefill(usize::MAX / 2)?,
            capacity - capacity.min(1),
            "{what}"
        );
        assert_eq!(p.prefill(usize::MAX)?, 0, "{what}: already full");
        invariants(&p, max_chunks, max_bytes, &what);
        assert_eq!(p.stats().chunks_held, capacity, "{what}");
        let held: Vec<Allocation> = (0..=capacity)
            .map(|_| p.acquire())
            .collect::<cuda_vmm_alloc::Result<_>>()?;
        invariants(&p, max_chunks, max_bytes, &what);
        for (i, chunk) in held.into_iter().enumerate() {
            assert_eq!(p.recycle(chunk)?, i < capacity, "{what}: recycle {i}");
            invariants(&p, max_chunks, max_bytes, &what);
        }
        let expected = PoolStats {
            hits: capacity as u64,
            misses: 1,
            returns: capacity as u64,
            releases: 1,
            chunks_held: capacity,
            bytes_held: capacity * g,
            pending_returns: 0,
        };
        assert_eq!(p.stats(), expected, "{what}");
        assert_eq!(p.trim()?, capacity, "{what}");
        assert_eq!(p.trim()?, 0, "{what}");
        assert_eq!(p.stats().releases, 1 + capacity as u64, "{what}");
        invariants(&p, max_chunks, max_bytes, &what);
    }
    // Chunk sizes that are no multiple of the granularity, and a huge one.
    for chunk_size in [g + 1, g / 2, usize::MAX] {
        let config = PoolConfig {
            chunk_size,
            ..PoolConfig::default()
        };
        let err = ChunkPool::new(&d, config).expect_err("a chunk size off the granularity");
        assert!(
            matches!(err, Error::InvalidConfig { .. }),
            "{chunk_size}: {err}"
        );
    }
    let huge = ChunkPool::new(
        &d,
        PoolConfig {
            chunk_size: (usize::MAX / 2 + 1) / g * g,
            max_chunks: usize::MAX,
            max_bytes: usize::MAX,
            props: None,
        },
    )?;
    let err = huge
        .prefill(1)
        .expect_err("a chunk past the device's memory");
    assert!(matches!(err, Error::InvalidConfig { .. }), "{err}");
    assert_eq!(huge.stats(), PoolStats::default());
    Ok(())
}

/// Class 9: a prefill or an acquire whose `cuMemCreate` fails leaves the pool as it was:
/// no slot stays promised to the failed prefill (a later one fills the pool up), no counter
/// moved.
#[test]
fn failed_prefill_and_acquire_leave_the_pool_as_it_was() -> TestResult {
    let cuda = cuda()?;
    if !crate::simulator_or_skip(crate::FAULT_INJECTION)? {
        return Ok(());
    }
    let _memory = crate::memory_shared();
    let d = cuda.device(0)?;
    let code = CUresult::CUDA_ERROR_OUT_OF_MEMORY;
    for nth in 1..=3 {
        let p = pool(&d, 3, usize::MAX)?;
        let guard = inject_fault("cuMemCreate", nth, code);
        let err = p.prefill(3).expect_err("the injected create fault");
        drop(guard);
        assert_eq!(err.code(), Some(code.0), "prefill, create #{nth}: {err}");
        assert!(
            err.is_out_of_memory() && !err.is_not_supported(),
            "prefill: {err}"
        );
        assert_eq!(p.stats(), PoolStats::default(), "prefill, create #{nth}");
        assert_eq!(
            p.prefill(3)?,
            3,
            "the failed prefill's slots were given back"
        );
        let held: Vec<Allocation> = (0..3).map(|_| p.acquire()).collect::<Result<_, _>>()?;
        let before = p.stats();
        let guard = inject_fault("cuMemCreate", 1, code);
        let err = p.acquire().expect_err("the injected create fault");
        drop(guard);
        assert_eq!(err.code(), Some(code.0), "acquire: {err}");
        assert!(err.is_out_of_memory(), "acquire: {err}");
        assert_eq!(p.stats(), before, "acquire");
        drop(held);
    }
    Ok(())
}

/// The refusal of `chunk` by `p`, checked to hand the very chunk back unchanged and to
/// leave the pool's counters alone.
#[track_caller]
fn refused(p: &ChunkPool, chunk: Allocation, what: &str) -> (Error, Allocation) {
    let (handle, size, props) = (chunk.raw_handle(), chunk.size(), chunk.props().clone());
    let (holders, wrappers) = (chunk.holders(), chunk.handle_wrappers());
    let before = p.stats();
    let err = p.recycle(chunk).expect_err(what);
    let (error, back) = err.into_parts();
    let back = back.unwrap_or_else(|| panic!("{what}: the refused chunk was not handed back"));
    assert_eq!(back.raw_handle(), handle, "{what}: another chunk came back");
    assert_eq!((back.size(), back.props()), (size, &props), "{what}");
    assert_eq!(
        (back.holders(), back.handle_wrappers()),
        (holders, wrappers),
        "{what}"
    );
    assert_eq!(p.stats(), before, "{what}: the counters moved");
    (error, back)
}

/// Class 9: `ChunkPool::recycle` refuses every chunk it cannot prove free or of its class
/// (wrong size, wrong device, wrong properties, a second wrapper of the handle from
/// `retain_allocation`, an imported one) with the exact error, and hands the very chunk
/// back unchanged; once the other wrapper is gone the chunk is taken.
#[test]
fn pool_refusals_hand_the_chunk_back_unchanged() -> TestResult {
    let _memory = crate::memory_shared();
    let cuda = cuda()?;
    let d = cuda.device(0)?;
    let g = gran(&d)?;
    let p = pool(&d, 8, usize::MAX)?;
    let mismatch = |e: &Error| matches!(e, Error::PoolMismatch { .. });
    let big = Allocation::new(&d, 2 * g, &AllocationProps::device(&d))?;
    let (e, _) = refused(&p, big, "a chunk of twice the size");
    assert!(mismatch(&e), "{e}");
    if cuda.device_count()? > 1 {
        let d1 = cuda.device(1)?;
        if gran(&d1)? == g {
            let other = Allocation::new(&d1, g, &AllocationProps::device(&d1))?;
            let (e, _) = refused(&p, other, "a chunk of another device");
            assert!(mismatch(&e), "{e}");
        }
    }
    let posix = d.capabilities()?.posix_fd_handles;
    if posix {
        let props = AllocationProps::device(&d).handle_types(HandleTypes::POSIX_FD);
        let shareable = Allocation::new(&d, g, &props)?;
        let (e, shareable) = refused(&p, shareable, "a chunk of other properties");
        assert!(mismatch(&e), "{e}");
        let fd = shareable.export_posix_fd()?;
        let imported = Allocation::import_posix_fd(&d, fd.as_fd(), g, &props)?;
        // The imported handle reports no handle types: a pool of these properties would
        // take it but for the import.
        let plain = ChunkPool::new(
            &d,
            PoolConfig {
                props: Some(imported.props().clone()),
                ..PoolConfig::default()
            },
        )?;
        let (e, _) = refused(&plain, imported, "an imported chunk");
        assert!(matches!(e, Error::ChunkInUse { .. }), "{e}");
    }
    // A second wrapper of the handle, retained from a mapping that is gone since.
    let chunk = p.acquire()?;
    let range = Reservation::new(&d, g, ReserveOptions::default())?;
    let mapping = range.map(0, &chunk, 0, g)?;
    let retained = mapping.retain_allocation()?;
    mapping.unmap()?;
    assert_eq!((chunk.holders(), chunk.handle_wrappers()), (1, 2));
    let (e, chunk) = refused(&p, chunk, "a chunk another wrapper holds");
    assert!(matches!(e, Error::ChunkInUse { holders: 2, .. }), "{e}");
    let (e, retained) = refused(&p, retained, "the retained wrapper");
    assert!(matches!(e, Error::ChunkInUse { holders: 2, .. }), "{e}");
    drop(retained);
    assert!(p.recycle(chunk)?, "the only wrapper is taken");
    assert_eq!(p.stats().chunks_held, 1);
    invariants(&p, 8, usize::MAX, "at the end");
    Ok(())
}

/// One racing thread's work on `p` (limits `max_chunks`, `max_bytes`), by `role`: pool
/// operations, a pooled buffer growing (failing now and then) and shrinking, a pooled sparse
/// array committing and decommitting, or huge prefills with trims. Checks the pool after every operation and
/// the data the structures hold.
fn race(role: usize, p: &ChunkPool, max_chunks: usize, max_bytes: usize) -> TestResult {
    let d = p.device().clone();
    let g = p.chunk_size();
    let check = |what: &str| invariants(p, max_chunks, max_bytes, what);
    let sim = d.cuda().backend() == Backend::Simulator;
    for round in 0..24usize {
        let seed = (role * 31 + round) as u8;
        match role {
            0 => {
                p.prefill(3)?;
                check("prefill");
                let held: Vec<Allocation> = (0..1 + round % 3)
                    .map(|_| p.acquire())
                    .collect::<Result<_, _>>()?;
                check("acquire");
                for chunk in held {
                    p.recycle(chunk)?;
                    check("recycle");
                }
            }
            1 => {
                let mut b = GrowableBuffer::<u8>::new(
                    &d,
                    BufferConfig {
                        max_capacity: Some(8 * g),
                        pool: Some(p.clone()),
                        ..Default::default()
                    },
                )?;
                let data = vec![seed; g * (1 + round % 3) + 5];
                if round % 3 == 1 && sim {
                    // A failed commit hands its chunks back while the others race.
                    let code = CUresult::CUDA_ERROR_OUT_OF_MEMORY;
                    let guard = inject_fault("cuMemMap", 2, code);
                    let err = b
                        .extend_from_slice(&data)
                        .expect_err("the injected map fault");
                    drop(guard);
                    assert_eq!(err.code(), Some(code.0), "{err}");
                    assert_eq!((b.len(), b.committed_bytes()), (0, 0));
                    check("failed buffer growth");
                }
                b.extend_from_slice(&data)?;
                check("buffer growth");
                assert_eq!(b.to_vec()?, data, "the buffer's contents");
                b.truncate(3);
                b.shrink_to_fit()?;
                check("buffer shrink");
                assert_eq!(b.committed_bytes(), g);
                assert_eq!(b.to_vec()?, [seed; 3]);
            }
            2 => {
                let mut a = SparseArray::<u8>::new(
                    &d,
                    8 * g,
                    SparseConfig {
                        tile_bytes: g,
                        pool: Some(p.clone()),
                        ..Default::default()
                    },
                )?;
                let first = round % 6;
                let range = first * g..(first + 2) * g;
                assert_eq!(a.commit(range.clone())?, 2);
                check("sparse commit");
                let data = vec![seed; 2 * g];
                a.write(range.start, &data)?;
                let mut out = vec![0; 2 * g];
                a.read(range.clone(), &mut out)?;
                assert_eq!(out, data, "the sparse array's contents");
                assert_eq!(a.decommit(range.start..range.start + g)?, 1);
                check("sparse decommit");
            }
            _ => {
                p.prefill(usize::MAX)?;
                check("huge prefill");
                let chunk = p.acquire()?;
                check("acquire");
                p.recycle(chunk)?;
                check("recycle");
                if round % 4 == 0 {
                    p.trim()?;
                    check("trim");
                }
            }
        }
    }
    Ok(())
}

/// Class 9: eight threads race every pool operation (prefill of 3 and of `usize::MAX`,
/// acquire, recycle, trim) on two pools sharing device 0 (one bounded by count, one by a
/// byte limit that is no multiple of the chunk size), while a pooled `GrowableBuffer` and
/// a pooled `SparseArray` use each pool at once (the buffers' commits failing now and then,
/// on the simulator, handing their chunks back). After every operation each pool's cache
/// is within its limits with consistent counters, the structures' data is intact, and
/// (on the simulator) every byte of the device comes back at the end.
#[test]
fn eight_threads_race_two_pools_shared_by_buffers_and_sparse_arrays() -> TestResult {
    let cuda = cuda()?;
    let _memory = crate::memory_exclusive();
    let d = cuda.device(0)?;
    let g = gran(&d)?;
    let free_before = d.memory_info()?.free;
    let limits = [(4, usize::MAX), (usize::MAX, 5 * g + 1)];
    let pools = [
        pool(&d, limits[0].0, limits[0].1)?,
        pool(&d, limits[1].0, limits[1].1)?,
    ];
    let start = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|i: usize| {
            let (p, (max_chunks, max_bytes)) = (pools[i % 2].clone(), limits[i % 2]);
            let start = start.clone();
            std::thread::spawn(move || -> Result<(), String> {
                // Slow creates (on the simulator) hold the races open.
                let _slow = cuda_vmm_sim::model_create_cost(Duration::from_micros(300));
                start.wait();
                race(i / 2, &p, max_chunks, max_bytes).map_err(|e| e.to_string())
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        let outcome = t
            .join()
            .map_err(|_| format!("racing thread {i} panicked"))?;
        outcome.map_err(|e| format!("racing thread {i}: {e}"))?;
    }
    for (p, (max_chunks, max_bytes)) in pools.iter().zip(limits) {
        invariants(p, max_chunks, max_bytes, "at the end");
        let held = p.stats().chunks_held;
        assert_eq!(p.trim()?, held);
        assert_eq!((p.stats().chunks_held, p.stats().bytes_held), (0, 0));
    }
    drop(pools);
    if cuda.backend() == Backend::Simulator {
        assert_eq!(
            d.memory_info()?.free,
            free_before,
            "every chunk was released"
        );
    }
    Ok(())
}

/// Class 9: a failed pooled `SparseArray::commit` (three tiles, two of them cached in the
/// pool) hands the cached chunks back and releases the created one at every fault point:
/// the pool's counters and cache are exactly as before, the array's too, and the same
/// commit then succeeds taking the cached chunks as a twin that never failed does.
#[test]
fn failed_pooled_sparse_commit_leaves_the_pool_as_it_was() -> TestResult {
    let Some((d, g)) = crate::simulated_device(crate::FAULT_INJECTION)? else {
        return Ok(());
    };
    let _memory = crate::memory_shared();
    let code = CUresult::CUDA_ERROR_OUT_OF_MEMORY;
    let setup = || -> cuda_vmm_alloc::Result<(ChunkPool, SparseArray<u8>)> {
        let p = pool(&d, 4, usize::MAX)?;
        assert_eq!(p.prefill(2)?, 2);
        let config = SparseConfig {
            tile_bytes: g,
            pool: Some(p.clone()),
            ..Default::default()
        };
        Ok((p.clone(), SparseArray::<u8>::new(&d, 8 * g, config)?))
    };
    let (twin_pool, mut twin) = setup()?;
    let before = twin_pool.stats();
    assert_eq!(twin.commit(g..4 * g)?, 3);
    let after = twin_pool.stats();
    assert_eq!((after.hits, after.misses, after.chunks_held), (2, 1, 0));
    let mut failures = 0;
    for symbol in [
        "cuMemCreate",
        "cuMemMap",
        "cuMemSetAccess",
        "cuMemsetD8",
        "cuMemUnmap",
    ] {
        for nth in 1..=3 {
            let what = format!("{symbol} #{nth}");
            let (p, mut a) = setup()?;
            let guard = inject_fault(symbol, nth, code);
            let result = a.commit(g..4 * g);
            drop(guard);
            if let Err(e) = result {
                failures += 1;
                assert_eq!(e.code(), Some(code.0), "{what}: {e}");
                assert_eq!(
                    p.stats(),
                    before,
                    "{what}: the pool after the failed commit"
                );
                assert_eq!(a.committed_bytes(), 0, "{what}");
                assert_eq!(a.stats().chunks, 0, "{what}");
                assert_eq!(a.commit(g..4 * g)?, 3, "{what}: retried");
            }
            assert_eq!(p.stats(), after, "{what}");
            assert_eq!(a.committed_bytes(), 3 * g, "{what}");
            invariants(&p, 4, usize::MAX, &what);
        }
    }
    assert!(
        failures >= 5,
        "only {failures} fault points failed the commit"
    );
    Ok(())
}
