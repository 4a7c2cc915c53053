//! The allocator (`cuda-vmm-alloc`): growable buffers, sparse arrays and the chunk pool, on
//! whichever backend `Cuda::new()` picks.
//!
//! Contents are checked byte for byte against host copies. Driver-call counts come from the
//! containers' own `stats()` and, on the simulator, from its per-thread call counters, which
//! other tests running in parallel cannot disturb. Fault-injection tests run on the simulator
//! only. Free-memory checks (`memory_info`) are simulator-only and retried, because tests in
//! other modules allocate concurrently on the same device.

use cuda_vmm::sys::{entry, CUresult};
use cuda_vmm::{AllocationProps, Backend, Cuda, Device, HandleTypes};
use cuda_vmm_alloc::{
    BufferConfig, ChunkPool, Error, GrowableBuffer, GrowthPolicy, HoleBehavior, PoolConfig,
    PoolStats, SparseArray, SparseConfig,
};
use cuda_vmm_sim::{call_count, inject_fault};

/// The backend under test, printed once per run.
use crate::{cuda, device};
use cuda_vmm_tests::helpers::{gran, raw_read, words_added, TestResult};

pub(crate) fn on_simulator() -> cuda_vmm::Result<bool> {
    Ok(cuda()?.backend() == Backend::Simulator)
}

/// The error of a call expected to fail.
#[track_caller]
pub(crate) fn fails<T>(r: cuda_vmm_alloc::Result<T>) -> Error {
    match r {
        Ok(_) => panic!("expected an error, the call succeeded"),
        Err(e) => e,
    }
}

/// Per-thread simulator call counts of the named entry points (zeros on the real driver).
pub(crate) fn counts(symbols: &[&str]) -> Vec<u64> {
    symbols.iter().map(|s| call_count(s)).collect()
}

pub(crate) fn delta(before: &[u64], after: &[u64]) -> Vec<u64> {
    before.iter().zip(after).map(|(b, a)| a - b).collect()
}

/// Writes host bytes to a raw device address with `cuMemcpyHtoD`; the raw result code.
pub(crate) fn raw_write(cuda: &Cuda, ptr: u64, data: &[u8]) -> Result<CUresult, String> {
    let f = entry!(cuda.sys().table(), cuMemcpyHtoD_v2).map_err(|e| e.to_string())?;
    cuda.device(0)
        .and_then(|d| d.make_current())
        .map_err(|e| e.to_string())?;
    // SAFETY: `data` is readable for its length; the driver validates the device address.
    Ok(unsafe { f(ptr, data.as_ptr().cast(), data.len()) })
}

/// A policy that makes many small chunks, to exercise chunk boundaries.
fn small_chunks(g: usize) -> GrowthPolicy {
    GrowthPolicy {
        min_chunk: g,
        max_chunk: g,
        factor: 0.5,
        max_allocation: 0,
        churn_allocation: 0,
    }
}

// ---------------------------------------------------------------- growable buffer

#[test]
fn buffer_grows_in_place_and_keeps_contents() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let mut buf = GrowableBuffer::<u32>::new(
        &d,
        BufferConfig {
            max_capacity: Some(16 << 20),
            policy: small_chunks(g),
            ..BufferConfig::default()
        },
    )?;
    assert!(buf.is_empty());
    assert_eq!(buf.capacity(), 0);
    assert_eq!(buf.committed_bytes(), 0);
    assert_eq!(buf.reserved_bytes(), 64 << 20);
    assert_eq!(buf.max_capacity(), 16 << 20);
    let ptr = buf.ptr();
    let mut host = Vec::new();
    buf.push(7)?;
    host.push(7);
    // Irregular appends that cross many chunk boundaries.
    for (i, n) in [1usize, 1000, 300_000, 777_777, 3, 1_500_000]
        .iter()
        .enumerate()
    {
        let data = words_added(host.len()..host.len() + n, i as u32);
        buf.extend_from_slice(&data)?;
        host.extend_from_slice(&data);
        assert_eq!(buf.ptr(), ptr, "the pointer moved");
        assert_eq!(buf.len(), host.len());
        assert!(buf.capacity() >= buf.len());
    }
    assert_eq!(buf.to_vec()?, host);
    let stats = buf.stats();
    assert!(stats.chunks >= 4, "{stats:?}");
    assert_eq!(stats.creates, stats.chunks as u64);
    assert_eq!(stats.maps, stats.chunks as u64);
    assert_eq!(stats.peak_committed_bytes, buf.committed_bytes());
    assert_eq!(buf.committed_bytes() % g, 0);

    // Overwrite a window spanning a chunk boundary, read a window back.
    let window = words_added(0..100_000, 99);
    buf.write(1_000_000, &window)?;
    host[1_000_000..1_100_000].copy_from_slice(&window);
    let mut out = vec![0u32; 200_000];
    buf.read(950_000..1_150_000, &mut out)?;
    assert_eq!(out, host[950_000..1_150_000]);
    assert_eq!(buf.to_vec()?, host);
    Ok(())
}

#[test]
fn buffer_range_errors_name_the_values() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let mut buf = GrowableBuffer::<u32>::with_max_capacity(&d, 1 << 20)?;
    buf.extend_from_slice(&[1, 2, 3])?;
    let mut out = [0u32; 2];
    assert_eq!(
        fails(buf.read(2..4, &mut out)),
        Error::OutOfRange {
            what: "read",
            start: 2,
            end: 4,
            len: 3
        }
    );
    assert_eq!(
        fails(buf.read(0..3, &mut out)),
        Error::LengthMismatch {
            expected: 3,
            actual: 2
        }
    );
    assert_eq!(
        fails(buf.write(2, &[9, 9])).to_string(),
        "write range 2..4 is out of bounds for length 3"
    );
    assert_eq!(buf.to_vec()?, [1, 2, 3]);
    Ok(())
}

#[test]
fn resize_fills_on_the_device() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let mut buf = GrowableBuffer::<u32>::new(
        &d,
        BufferConfig {
            max_capacity: Some(8 << 20),
            policy: small_chunks(g),
            ..BufferConfig::default()
        },
    )?;
    // memset paths (all bytes equal), then the staged pattern path (> 64 KiB of data).
    buf.resize(100_000, 0)?;
    buf.resize(250_001, u32::MAX)?;
    buf.resize(1_300_000, 0x0102_0304)?;
    let mut host = vec![0u32; 100_000];
    host.resize(250_001, u32::MAX);
    host.resize(1_300_000, 0x0102_0304);
    assert_eq!(buf.to_vec()?, host);
    // Shrinking with resize truncates.
    buf.resize(10, 5)?;
    assert_eq!(buf.to_vec()?, host[..10]);

    // Odd-sized elements: the pattern straddles chunk boundaries.
    let mut odd = GrowableBuffer::<[u8; 3]>::new(
        &d,
        BufferConfig {
            max_capacity: Some(4 << 20),
            policy: small_chunks(g),
            ..BufferConfig::default()
        },
    )?;
    odd.resize(1_000_003, [1, 2, 3])?;
    odd.resize(1_000_010, [4, 4, 4])?;
    let mut expect = vec![[1u8, 2, 3]; 1_000_003];
    expect.resize(1_000_010, [4, 4, 4]);
    assert_eq!(odd.to_vec()?, expect);
    Ok(())
}

#[test]
fn reserve_truncate_and_clear_keep_memory() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let mut buf = GrowableBuffer::<u64>::new(
        &d,
        BufferConfig {
            max_capacity: Some(4 << 20),
            initial_capacity: 1,
            policy: GrowthPolicy::fixed(g),
            ..BufferConfig::default()
        },
    )?;
    assert_eq!(buf.committed_bytes(), g);
    assert_eq!(buf.len(), 0);
    buf.reserve(g / 8 * 3)?;
    assert_eq!(buf.committed_bytes(), 3 * g);
    assert_eq!(buf.capacity(), g / 8 * 3);
    assert_eq!(buf.len(), 0);
    buf.extend_from_slice(&[1, 2, 3, 4])?;
    buf.truncate(2);
    assert_eq!(buf.to_vec()?, [1, 2]);
    buf.truncate(10);
    assert_eq!(buf.len(), 2);
    buf.clear();
    assert!(buf.is_empty());
    assert_eq!(buf.committed_bytes(), 3 * g);
    Ok(())
}

#[test]
fn capacity_exceeded_leaves_the_buffer_alone() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    // 1000 u32s round up to one granule of address space.
    let mut buf = GrowableBuffer::<u32>::with_max_capacity(&d, 1000)?;
    let max = g / 4;
    assert_eq!(buf.max_capacity(), max);
    buf.resize(max - 1, 3)?;
    let before = buf.stats();
    assert_eq!(
        fails(buf.extend_from_slice(&[1, 2])),
        Error::CapacityExceeded {
            requested: max + 1,
            max
        }
    );
    assert_eq!(
        fails(buf.reserve(usize::MAX)),
        Error::CapacityExceeded {
            requested: usize::MAX,
            max
        }
    );
    assert_eq!(
        fails(buf.resize(max + 5, 0)).to_string(),
        format!(
            "a capacity of {} elements exceeds the reserved maximum of {max} elements",
            max + 5
        )
    );
    assert_eq!(buf.len(), max - 1);
    assert_eq!(buf.stats(), before);
    buf.push(9)?;
    assert_eq!(buf.len(), max);
    let mut last = [0u32; 2];
    buf.read(max - 2..max, &mut last)?;
    assert_eq!(last, [3, 9]);
    Ok(())
}

#[test]
fn zero_sized_elements_and_bad_policies_are_refused() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let err = fails(GrowableBuffer::<[u32; 0]>::with_max_capacity(&d, 10));
    assert_eq!(
        err,
        Error::ZeroSizedElement {
            type_name: "[u32; 0]"
        }
    );
    let err = fails(GrowableBuffer::<u8>::new(
        &d,
        BufferConfig {
            policy: GrowthPolicy {
                min_chunk: 0,
                max_chunk: 0,
                factor: 0.25,
                max_allocation: 0,
                churn_allocation: 0,
            },
            ..BufferConfig::default()
        },
    ));
    assert_eq!(
        err.to_string(),
        "invalid growth policy: max_chunk 0 must be nonzero and at least min_chunk 0"
    );
    Ok(())
}

#[test]
fn growth_makes_one_set_access_per_run() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let names = ["cuMemCreate", "cuMemMap", "cuMemSetAccess"];
    let mut buf = GrowableBuffer::<u8>::new(
        &d,
        BufferConfig {
            max_capacity: Some(64 << 20),
            policy: GrowthPolicy::fixed(g),
            ..BufferConfig::default()
        },
    )?;
    let before = counts(&names);
    buf.reserve(5 * g)?; // five one-granule chunks, one run
    let stats = buf.stats();
    assert_eq!(
        (
            stats.creates,
            stats.maps,
            stats.set_access_calls,
            stats.chunks
        ),
        (5, 5, 1, 5)
    );
    if on_simulator()? {
        assert_eq!(delta(&before, &counts(&names)), [5, 5, 1]);
    }

    // The default policy: growth steps that grow with the buffer, one allocation and one
    // set-access call per step.
    let mut fast = GrowableBuffer::<u8>::with_max_capacity(&d, 1 << 30)?;
    let before = counts(&names);
    // Grow one granule at a time to 100 granules (reserve: no fill needed).
    for step in 1..=100 {
        fast.reserve(step * g)?;
    }
    let stats = fast.stats();
    // With 2 MiB granules: steps of 16,16,16,16,16,20,24,30,38,48 MiB.
    assert_eq!(fast.committed_bytes(), 240 << 20, "{stats:?}");
    assert_eq!(
        (stats.set_access_calls, stats.creates, stats.maps),
        (10, 10, 10)
    );
    assert_eq!(stats.chunks, 10);
    assert!(fast.committed_bytes() as f64 <= 1.25 * (100 * g) as f64);
    if on_simulator()? {
        assert_eq!(delta(&before, &counts(&names)), [10, 10, 10]);
    }
    Ok(())
}

#[test]
fn shrink_to_fit_returns_memory() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let mut buf = GrowableBuffer::<u32>::new(
        &d,
        BufferConfig {
            max_capacity: Some(32 << 20),
            policy: GrowthPolicy {
                min_chunk: 4 * g,
                max_chunk: 4 * g,
                factor: 0.0,
                max_allocation: 0,
                churn_allocation: 0,
            },
            ..BufferConfig::default()
        },
    )?;
    let ptr = buf.ptr();
    buf.reserve(3 * g)?; // 12 granules: three 4-granule chunks
    let host = words_added(0..(10 * g / 4), 5);
    buf.extend_from_slice(&host)?;
    assert_eq!(buf.committed_bytes(), 12 * g); // three 4-granule chunks
                                               // Keep 5 granules + 4 bytes: chunk 2 goes, chunk 1 is split to 2 granules.
    let keep = 5 * g / 4 + 1;
    buf.truncate(keep);
    let names = ["cuMemRelease", "cuMemCreate"];
    let before = counts(&names);
    buf.shrink_to_fit()?;
    assert_eq!(buf.committed_bytes(), 6 * g);
    assert_eq!(buf.capacity(), 6 * g / 4);
    assert_eq!(buf.ptr(), ptr);
    assert_eq!(buf.to_vec()?, host[..keep]);
    assert_eq!(buf.stats().chunks, 2);
    if on_simulator()? {
        // Released: the dropped chunk and the split chunk; created: its replacement.
        assert_eq!(delta(&before, &counts(&names)), [2, 1]);
    }
    // Grows again from the shrunk size, contents intact.
    buf.extend_from_slice(&host[keep..])?;
    assert_eq!(buf.to_vec()?, host);

    buf.clear();
    buf.shrink_to_fit()?;
    assert_eq!(buf.committed_bytes(), 0);
    assert_eq!(buf.stats().chunks, 0);
    assert_eq!(buf.stats().peak_committed_bytes, 12 * g);
    Ok(())
}

#[test]
fn shrink_gives_memory_back_to_the_device() -> TestResult {
    // Exclusive: every allocating test holds the lock shared, so one measurement is
    // undisturbed.
    let _memory = crate::memory_exclusive();
    if !on_simulator()? {
        eprintln!("skipped: free-memory accounting is checked on the simulator only");
        return Ok(());
    }
    let d = device()?;
    let g = gran(&d)?;
    let mut buf = GrowableBuffer::<u8>::new(
        &d,
        BufferConfig {
            max_capacity: Some(64 << 20),
            policy: GrowthPolicy::fixed(8 * g),
            ..BufferConfig::default()
        },
    )?;
    buf.resize(24 * g, 1)?;
    buf.truncate(8 * g);
    let free_before = d.memory_info()?.free;
    buf.shrink_to_fit()?;
    let free_after = d.memory_info()?.free;
    assert_eq!(buf.committed_bytes(), 8 * g);
    assert_eq!(
        free_after.wrapping_sub(free_before),
        16 * g,
        "shrink_to_fit did not return 16 granules to free memory"
    );
    Ok(())
}

#[test]
fn growth_is_transactional_under_faults() -> TestResult {
    let _memory = crate::memory_shared();
    if !on_simulator()? {
        eprintln!("skipped: fault injection needs the simulator");
        return Ok(());
    }
    let d = device()?;
    let g = gran(&d)?;
    let mut buf = GrowableBuffer::<u32>::new(
        &d,
        BufferConfig {
            max_capacity: Some(32 << 20),
            policy: GrowthPolicy::fixed(g),
            ..BufferConfig::default()
        },
    )?;
    let host = words_added(0..(g / 4 + 3), 1);
    buf.extend_from_slice(&host)?;
    let ptr = buf.ptr();
    let committed = buf.committed_bytes();
    let chunks = buf.stats().chunks;
    // Growing by 3 granules needs 3 creates, 3 maps and 1 set-access: fail each in turn.
    let faults = [
        ("cuMemCreate", 2, CUresult::CUDA_ERROR_OUT_OF_MEMORY),
        ("cuMemCreate", 3, CUresult::CUDA_ERROR_OUT_OF_MEMORY),
        ("cuMemMap", 2, CUresult::CUDA_ERROR_OUT_OF_MEMORY),
        ("cuMemSetAccess", 1, CUresult::CUDA_ERROR_INVALID_VALUE),
    ];
    let extra = words_added(host.len()..host.len() + 3 * g / 4, 2);
    for (symbol, nth, code) in faults {
        let names = ["cuMemCreate", "cuMemRelease", "cuMemMap", "cuMemUnmap"];
        let before = counts(&names);
        let guard = inject_fault(symbol, nth, code);
        assert!(guard.is_armed());
        let err = fails(buf.extend_from_slice(&extra));
        assert!(guard.fired(), "{symbol} #{nth} did not fire");
        drop(guard);
        assert_eq!(err.code(), Some(code.0), "{symbol} #{nth}: {err}");
        assert_eq!(buf.len(), host.len());
        assert_eq!(buf.ptr(), ptr);
        assert_eq!(buf.committed_bytes(), committed);
        assert_eq!(buf.stats().chunks, chunks);
        // Everything created was released, everything mapped unmapped.
        let d = delta(&before, &counts(&names));
        let created_ok = d[0] - u64::from(symbol == "cuMemCreate");
        let mapped_ok = d[2] - u64::from(symbol == "cuMemMap");
        assert_eq!(d[1], created_ok, "{symbol} #{nth}: releases {d:?}");
        assert_eq!(d[3], mapped_ok, "{symbol} #{nth}: unmaps {d:?}");
        assert_eq!(buf.to_vec()?, host);
    }
    // And the same growth then succeeds.
    buf.extend_from_slice(&extra)?;
    let mut all = host.clone();
    all.extend_from_slice(&extra);
    assert_eq!(buf.to_vec()?, all);
    Ok(())
}

#[test]
fn grant_access_covers_old_and_new_memory() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let devices = cuda()?.devices()?;
    let mut buf = GrowableBuffer::<u8>::new(
        &d,
        BufferConfig {
            max_capacity: Some(16 << 20),
            policy: GrowthPolicy::fixed(g),
            ..BufferConfig::default()
        },
    )?;
    buf.resize(g, 1)?;
    let before = counts(&["cuMemSetAccess"]);
    buf.grant_access(&devices)?;
    assert_eq!(buf.stats().set_access_calls, 2);
    if on_simulator()? {
        assert_eq!(delta(&before, &counts(&["cuMemSetAccess"])), [1]);
    }
    buf.resize(3 * g, 2)?;
    assert_eq!(buf.stats().set_access_calls, 3);
    let mut out = vec![0u8; 2];
    buf.read(g - 1..g + 1, &mut out)?;
    assert_eq!(out, [1, 2]);
    Ok(())
}

// ---------------------------------------------------------------- chunk pool

#[test]
fn pooled_buffers_reuse_chunks() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let pool = ChunkPool::new(&d, PoolConfig::default())?;
    assert_eq!(pool.chunk_size(), g);
    let config = BufferConfig {
        max_capacity: Some(16 << 20),
        policy: GrowthPolicy::fixed(g),
        pool: Some(pool.clone()),
        ..BufferConfig::default()
    };
    let mut first = GrowableBuffer::<u8>::new(&d, config.clone())?;
    first.resize(4 * g, 1)?;
    assert_eq!(first.stats().creates, 4);
    assert_eq!(pool.stats().misses, 4);
    first.truncate(g);
    first.shrink_to_fit()?;
    assert_eq!(first.committed_bytes(), g);
    assert_eq!(first.stats().releases, 0);
    assert_eq!(pool.stats().chunks_held, 3);
    drop(first);
    assert_eq!(
        pool.stats(),
        PoolStats {
            hits: 0,
            misses: 4,
            returns: 4,
            releases: 0,
            chunks_held: 4,
            bytes_held: 4 * g,
        }
    );
    let before = counts(&["cuMemCreate", "cuMemRelease"]);
    let mut second = GrowableBuffer::<u8>::new(&d, config)?;
    second.resize(5 * g, 2)?;
    assert_eq!(second.stats().pool_hits, 4);
    assert_eq!(second.stats().creates, 1);
    assert_eq!(second.stats().set_access_calls, 1);
    if on_simulator()? {
        assert_eq!(
            delta(&before, &counts(&["cuMemCreate", "cuMemRelease"])),
            [1, 0]
        );
    }
    assert_eq!(second.to_vec()?, vec![2u8; 5 * g]);
    let stats = pool.stats();
    assert_eq!((stats.hits, stats.misses, stats.chunks_held), (4, 5, 0));
    Ok(())
}

#[test]
fn pooled_growth_is_transactional_under_faults() -> TestResult {
    let _memory = crate::memory_shared();
    if !on_simulator()? {
        eprintln!("skipped: fault injection needs the simulator");
        return Ok(());
    }
    let d = device()?;
    let g = gran(&d)?;
    let pool = ChunkPool::new(&d, PoolConfig::default())?;
    assert_eq!(pool.prefill(2)?, 2);
    let mut buf = GrowableBuffer::<u8>::new(
        &d,
        BufferConfig {
            max_capacity: Some(16 << 20),
            policy: GrowthPolicy::fixed(g),
            pool: Some(pool.clone()),
            ..BufferConfig::default()
        },
    )?;
    let held = PoolStats {
        chunks_held: 2,
        bytes_held: 2 * g,
        ..PoolStats::default()
    };
    assert_eq!(pool.stats(), held);
    // Growing by 4 chunks takes the 2 cached ones and creates 2: fail the second create.
    let before = counts(&["cuMemRelease"]);
    let guard = inject_fault("cuMemCreate", 2, CUresult::CUDA_ERROR_OUT_OF_MEMORY);
    let err = fails(buf.resize(4 * g, 1));
    assert!(guard.fired());
    drop(guard);
    assert_eq!(err.code(), Some(CUresult::CUDA_ERROR_OUT_OF_MEMORY.0));
    assert_eq!(pool.stats(), held);
    assert_eq!(delta(&before, &counts(&["cuMemRelease"])), [1]);
    assert_eq!((buf.len(), buf.committed_bytes()), (0, 0));
    assert_eq!(buf.stats().pool_hits, 0);
    // Fail the third map: cached chunks go back to the pool, created ones are released.
    let before = counts(&["cuMemRelease", "cuMemUnmap"]);
    let guard = inject_fault("cuMemMap", 3, CUresult::CUDA_ERROR_OUT_OF_MEMORY);
    let err = fails(buf.resize(4 * g, 1));
    assert!(guard.fired());
    drop(guard);
    assert_eq!(err.code(), Some(CUresult::CUDA_ERROR_OUT_OF_MEMORY.0));
    assert_eq!(pool.stats(), held);
    assert_eq!(
        delta(&before, &counts(&["cuMemRelease", "cuMemUnmap"])),
        [2, 2]
    );
    // Calls count when attempted: the failed growth's two creates (one failed, one
    // released), then this one's two creates and their two releases.
    let s = buf.stats();
    assert_eq!((s.creates, s.releases, s.pool_hits, s.chunks), (4, 3, 0, 0));
    assert_eq!((buf.len(), buf.committed_bytes()), (0, 0));
    // Then it succeeds.
    buf.resize(4 * g, 1)?;
    let stats = pool.stats();
    assert_eq!((stats.hits, stats.misses, stats.chunks_held), (2, 2, 0));
    assert_eq!(buf.to_vec()?, vec![1u8; 4 * g]);
    Ok(())
}

#[test]
fn pool_limits_trim_and_mismatch() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let pool = ChunkPool::new(
        &d,
        PoolConfig {
            max_chunks: 2,
            ..PoolConfig::default()
        },
    )?;
    let chunks = [pool.acquire()?, pool.acquire()?, pool.acquire()?];
    assert_eq!(pool.stats().misses, 3);
    let kept: Vec<bool> = chunks
        .into_iter()
        .map(|c| pool.recycle(c))
        .collect::<Result<_, _>>()?;
    assert_eq!(kept, [true, true, false]);
    let stats = pool.stats();
    assert_eq!(
        (
            stats.returns,
            stats.releases,
            stats.chunks_held,
            stats.bytes_held
        ),
        (2, 1, 2, 2 * g)
    );
    let again = pool.acquire()?;
    assert_eq!(pool.stats().hits, 1);
    assert!(pool.recycle(again)?);
    assert_eq!(pool.trim()?, 2);
    let stats = pool.stats();
    assert_eq!(
        (stats.releases, stats.chunks_held, stats.bytes_held),
        (3, 0, 0)
    );
    assert_eq!(pool.prefill(5)?, 2); // bounded by max_chunks
    assert_eq!(pool.stats().chunks_held, 2);

    let fd_props = AllocationProps::device(&d).handle_types(HandleTypes::POSIX_FD);
    let err = fails(GrowableBuffer::<u8>::new(
        &d,
        BufferConfig {
            pool: Some(pool.clone()),
            props: Some(fd_props),
            ..BufferConfig::default()
        },
    ));
    match err {
        Error::PoolMismatch { message } => assert!(
            message.starts_with("the buffer has properties "),
            "{message}"
        ),
        other => panic!("expected a pool mismatch, got {other:?}"),
    }
    let big = cuda_vmm::Allocation::new(&d, 2 * g, &AllocationProps::device(&d))?;
    assert_eq!(
        fails(pool.recycle(big).map_err(Error::from)).to_string(),
        format!(
            "chunk pool mismatch: allocation size {} differs from the pool's chunk size {g}",
            2 * g
        )
    );
    let err = fails(ChunkPool::new(
        &d,
        PoolConfig {
            chunk_size: g + 4096,
            ..PoolConfig::default()
        },
    ));
    assert_eq!(
        err.to_string(),
        format!(
            "invalid configuration: pool chunk size {} is not a multiple of the allocation granularity {g}",
            g + 4096
        )
    );
    Ok(())
}

#[test]
fn pool_is_shared_between_threads() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let pool = ChunkPool::new(&d, PoolConfig::default())?;
    std::thread::scope(|s| {
        for _ in 0..2 {
            let pool = pool.clone();
            s.spawn(move || {
                for _ in 0..4 {
                    let c = pool.acquire().expect("acquire");
                    pool.recycle(c).expect("recycle");
                }
            });
        }
    });
    let stats = pool.stats();
    assert_eq!(stats.hits + stats.misses, 8);
    assert_eq!(stats.returns, 8);
    assert_eq!(stats.chunks_held as u64, stats.misses);
    Ok(())
}

// ---------------------------------------------------------------- sparse array

/// A sparse array of `tiles` one-granule tiles of u32.
fn sparse(
    d: &Device,
    tiles: usize,
    holes: HoleBehavior,
) -> cuda_vmm_alloc::Result<SparseArray<u32>> {
    let g = gran(d)?;
    SparseArray::new(
        d,
        tiles * g / 4,
        SparseConfig {
            holes,
            ..SparseConfig::default()
        },
    )
}

/// Committed tile runs as `(start, end)` pairs.
pub(crate) fn runs<T: cuda_vmm_alloc::DevicePod>(a: &SparseArray<T>) -> Vec<(usize, usize)> {
    a.committed_runs().map(|r| (r.start, r.end)).collect()
}

#[test]
fn sparse_commit_and_decommit_round_out_and_in() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let per = g / 4; // elements per tile
    let mut a = sparse(&d, 16, HoleBehavior::Error)?;
    assert_eq!(a.tile_count(), 16);
    assert_eq!(a.tile_bytes(), g);
    assert_eq!(a.reserved_bytes(), 16 * g);
    // Rounded out: the range touches tiles 1..3.
    assert_eq!(a.commit(per + 5..3 * per - 5)?, 2);
    assert_eq!(a.commit(per..2 * per)?, 0);
    assert_eq!(a.commit(8 * per - 1..8 * per + 1)?, 2);
    assert_eq!(a.commit(15 * per..16 * per)?, 1);
    assert_eq!(runs(&a), [(1, 3), (7, 9), (15, 16)]);
    assert_eq!(a.committed_bytes(), 5 * g);
    assert!(a.is_committed(per));
    assert!(!a.is_committed(per - 1));
    assert!(!a.is_committed(16 * per));
    // Rounded in: only tile 7 lies wholly inside.
    assert_eq!(a.decommit(7 * per - 1..8 * per + 1)?, 1);
    assert_eq!(a.decommit(8 * per + 1..9 * per)?, 0);
    assert_eq!(runs(&a), [(1, 3), (8, 9), (15, 16)]);
    let stats = a.stats();
    assert_eq!((stats.creates, stats.releases, stats.chunks), (5, 1, 4));
    assert_eq!(
        a.to_string(),
        format!(
            "4/16 tiles committed ({} MiB of {} MiB, tile {} MiB)\n.##..... #......#",
            (4 * g) >> 20,
            (16 * g) >> 20,
            g >> 20
        )
    );
    assert_eq!(
        fails(a.commit(0..16 * per + 1)),
        Error::OutOfRange {
            what: "commit",
            start: 0,
            end: 16 * per + 1,
            len: 16 * per
        }
    );
    Ok(())
}

#[test]
fn sparse_contents_and_hole_errors() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let per = g / 4;
    let mut a = sparse(&d, 8, HoleBehavior::Error)?;
    a.commit(2 * per..5 * per)?;
    let data = words_added(2 * per + 10..5 * per - 10, 3);
    a.write(2 * per + 10, &data)?;
    let mut out = vec![0u32; data.len()];
    a.read(2 * per + 10..5 * per - 10, &mut out)?;
    assert_eq!(out, data);
    // New tiles read as zero.
    let mut head = vec![1u32; 10];
    a.read(2 * per..2 * per + 10, &mut head)?;
    assert_eq!(head, [0; 10]);
    // Holes: exact element and tile named, nothing copied.
    let mut out = vec![7u32; 20];
    assert_eq!(
        fails(a.read(5 * per - 10..5 * per + 10, &mut out)),
        Error::NotCommitted {
            index: 5 * per,
            tile: 5
        }
    );
    assert_eq!(out, [7; 20]);
    assert_eq!(
        fails(a.write(per, &[1, 2])).to_string(),
        format!("element {per} lies in tile 1, which is not committed")
    );
    // Decommitting the middle tile makes it a hole again.
    a.decommit(3 * per..4 * per)?;
    let mut one = [0u32; 1];
    assert_eq!(
        fails(a.read(3 * per + 5..3 * per + 6, &mut one)),
        Error::NotCommitted {
            index: 3 * per + 5,
            tile: 3
        }
    );
    a.read(2 * per + 10..2 * per + 11, &mut one)?;
    assert_eq!(one[0], data[0]);
    Ok(())
}

#[test]
fn sparse_zero_holes_read_as_zero() -> TestResult {
    // Zero memory is allocated here: keep out of the free-memory sweeps' way.
    let _memory = crate::memory_shared();
    let cuda = cuda()?;
    let d = device()?;
    let g = gran(&d)?;
    let per = g / 4;
    let mut a = sparse(&d, 6, HoleBehavior::Zeros)?;
    // Creation: the 6 holes take zero blocks of 4 and 2 tiles, each made and zero-filled
    // (a create, a map and a set access each), then mapped, with one set access for the run.
    let stats = a.stats();
    assert_eq!(
        (stats.creates, stats.maps, stats.set_access_calls),
        (2, 4, 3)
    );
    a.commit(per..3 * per)?;
    let data = words_added(per..3 * per, 8);
    a.write(per, &data)?;
    let mut out = vec![9u32; 4 * per];
    a.read(0..4 * per, &mut out)?;
    assert_eq!(out[..per], vec![0u32; per]);
    assert_eq!(out[per..3 * per], data);
    assert_eq!(out[3 * per..], vec![0u32; per]);
    // Kernels see zeros in holes too.
    assert_eq!(raw_read(&cuda, a.ptr() + 5 * g as u64 - 4, 8)?, [0; 8]);
    a.decommit(per..2 * per)?;
    assert_eq!(raw_read(&cuda, a.ptr() + g as u64, 8)?, [0; 8]);
    a.read(0..4 * per, &mut out)?;
    assert_eq!(out[..2 * per], vec![0u32; 2 * per]);
    assert_eq!(out[2 * per..3 * per], data[per..]);
    if on_simulator()? {
        // Holes are mapped read-only: writes fault.
        let code = raw_write(&cuda, a.ptr() + g as u64, &[1, 2, 3, 4])?;
        assert_eq!(code, cuda_vmm_sim::answers::COPY_NO_ACCESS);
        assert_eq!(raw_read(&cuda, a.ptr() + g as u64, 4)?, [0; 4]);
    }
    Ok(())
}

#[test]
fn sparse_commit_makes_one_set_access_per_run() -> TestResult {
    // Zero memory is allocated here: keep out of the free-memory sweeps' way.
    let _memory = crate::memory_shared();
    let d = device()?;
    let names = ["cuMemCreate", "cuMemMap", "cuMemSetAccess", "cuMemUnmap"];
    let g = gran(&d)?;
    let per = g / 4;
    let mut a = sparse(&d, 16, HoleBehavior::Error)?;
    let before = counts(&names);
    a.commit(0..4 * per)?;
    let s = a.stats();
    assert_eq!((s.creates, s.maps, s.set_access_calls), (4, 4, 1));
    // Two runs: tiles 4..6 and 8..9 (tiles 6..8 are committed already).
    a.commit(6 * per..8 * per)?;
    let before_two = a.stats();
    a.commit(4 * per..9 * per)?;
    let s = a.stats();
    assert_eq!(s.set_access_calls - before_two.set_access_calls, 2);
    assert_eq!(s.creates, 9);
    if on_simulator()? {
        assert_eq!(delta(&before, &counts(&names)), [9, 9, 4, 0]);
    }

    // One zero block of 8 tiles covers the holes. Committing tiles 2..5 unmaps it and maps
    // blocks 0..2, 5..6 and 6..8 around the run (one set access per side); the blocks of 2
    // and 1 tiles are made and zero-filled on first use (a create, map, set access and
    // unmap each).
    let mut z = sparse(&d, 8, HoleBehavior::Zeros)?;
    let start = z.stats();
    let before = counts(&names);
    z.commit(2 * per..5 * per)?;
    let s = z.stats();
    assert_eq!(s.creates - start.creates, 3 + 2);
    assert_eq!(s.unmaps - start.unmaps, 1 + 2);
    assert_eq!(s.maps - start.maps, 3 + 3 + 2);
    assert_eq!(s.set_access_calls - start.set_access_calls, 1 + 2 + 2);
    if on_simulator()? {
        assert_eq!(delta(&before, &counts(&names)), [5, 8, 5, 3]);
    }
    // Decommitting merges the holes back into one block of 8 tiles (the three blocks around
    // the run are unmapped); committing tile 3 splits it into 0..2, 2..3 and 4..8 (the block
    // of 4 tiles is made on first use: a create, map, set access and unmap).
    z.decommit(2 * per..5 * per)?;
    let s = z.stats();
    assert_eq!(s.unmaps - start.unmaps, 3 + 3 + 3);
    assert_eq!(s.maps - start.maps, 8 + 1);
    let start = z.stats();
    let before = counts(&names);
    z.commit(3 * per..4 * per)?;
    let s = z.stats();
    assert_eq!(s.creates - start.creates, 1 + 1);
    assert_eq!(s.unmaps - start.unmaps, 1 + 1);
    assert_eq!(s.maps - start.maps, 3 + 1 + 1);
    assert_eq!(s.set_access_calls - start.set_access_calls, 2 + 1 + 1);
    if on_simulator()? {
        assert_eq!(delta(&before, &counts(&names)), [2, 5, 4, 2]);
    }
    Ok(())
}

#[test]
fn sparse_commit_is_all_or_nothing_under_faults() -> TestResult {
    // Zero memory is allocated here: keep out of the free-memory sweeps' way.
    let _memory = crate::memory_shared();
    if !on_simulator()? {
        eprintln!("skipped: fault injection needs the simulator");
        return Ok(());
    }
    let cuda = cuda()?;
    let d = device()?;
    let g = gran(&d)?;
    let per = g / 4;
    let mut z = sparse(&d, 8, HoleBehavior::Zeros)?;
    z.commit(3 * per..4 * per)?;
    // Runs 1..3 and 4..6: the second run's second map fails.
    let guard = inject_fault("cuMemMap", 4, CUresult::CUDA_ERROR_OUT_OF_MEMORY);
    let names = ["cuMemCreate", "cuMemRelease"];
    let before = counts(&names);
    let err = fails(z.commit(per..6 * per));
    assert!(guard.fired());
    drop(guard);
    assert_eq!(err.code(), Some(CUresult::CUDA_ERROR_OUT_OF_MEMORY.0));
    let d_counts = delta(&before, &counts(&names));
    assert_eq!(d_counts, [4, 4]);
    assert_eq!(runs(&z), [(3, 4)]);
    assert_eq!(z.stats().chunks, 1);
    // Holes are zero-mapped again.
    for tile in [1u64, 2, 4, 5] {
        assert_eq!(raw_read(&cuda, z.ptr() + tile * g as u64, 4)?, [0; 4]);
    }
    assert_eq!(z.commit(per..6 * per)?, 4);
    assert_eq!(runs(&z), [(1, 6)]);
    Ok(())
}

#[test]
fn sparse_tiles_from_a_pool() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let pool = ChunkPool::new(
        &d,
        PoolConfig {
            chunk_size: 2 * g,
            ..PoolConfig::default()
        },
    )?;
    let per = 2 * g / 4;
    let config = SparseConfig {
        pool: Some(pool.clone()),
        ..SparseConfig::default()
    };
    let mut a = SparseArray::<u32>::new(&d, 8 * per, config.clone())?;
    assert_eq!(a.tile_bytes(), 2 * g);
    a.commit(0..4 * per)?;
    a.write(0, &words_added(0..4 * per, 4))?;
    assert_eq!(a.decommit(0..4 * per)?, 4);
    assert_eq!(a.stats().releases, 0);
    assert_eq!(pool.stats().chunks_held, 4);
    let mut b = SparseArray::<u32>::new(&d, 8 * per, config)?;
    let before = counts(&["cuMemCreate"]);
    b.commit(2 * per..7 * per)?;
    assert_eq!(b.stats().pool_hits, 4);
    assert_eq!(b.stats().creates, 1);
    if on_simulator()? {
        assert_eq!(delta(&before, &counts(&["cuMemCreate"])), [1]);
    }
    // Reused tiles are zeroed: no data leaks between users.
    let mut out = vec![1u32; 5 * per];
    b.read(2 * per..7 * per, &mut out)?;
    assert!(out.iter().all(|&x| x == 0));
    drop(b);
    let stats = pool.stats();
    assert_eq!((stats.hits, stats.misses, stats.chunks_held), (4, 5, 5));
    Ok(())
}

#[test]
fn sparse_bad_tile_sizes_are_refused() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let err = fails(SparseArray::<u8>::new(
        &d,
        1 << 20,
        SparseConfig {
            tile_bytes: g + 4096,
            ..SparseConfig::default()
        },
    ));
    assert_eq!(
        err,
        Error::BadTileSize {
            tile_size: g + 4096,
            granularity: g
        }
    );
    let pool = ChunkPool::new(&d, PoolConfig::default())?;
    let err = fails(SparseArray::<u8>::new(
        &d,
        1 << 20,
        SparseConfig {
            tile_bytes: 2 * g,
            pool: Some(pool),
            ..SparseConfig::default()
        },
    ));
    assert_eq!(
        err.to_string(),
        format!(
            "chunk pool mismatch: tile size {} differs from the pool's chunk size {g}",
            2 * g
        )
    );
    Ok(())
}

#[test]
fn sparse_residency_map_of_a_huge_array() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    // 4096 tiles (8 GiB at 2 MiB granularity): drawn as 1024 symbols of 4 tiles.
    let mut a = SparseArray::<u8>::new(&d, 4096 * g, SparseConfig::default())?;
    a.commit(0..6 * g)?;
    a.grant_access(&cuda()?.devices()?)?;
    let text = a.to_string();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            format!(
                "6/4096 tiles committed ({} MiB of {} GiB, tile {} MiB); one symbol per 4 tiles, + = partly committed",
                (6 * g) >> 20,
                (4 * g) >> 20,
                g >> 20
            )
            .as_str()
        )
    );
    assert_eq!(lines.next().map(|l| &l[..10]), Some("#+...... ."));
    assert_eq!(text.lines().count(), 17);
    Ok(())
}

/// A user struct that derives `bytemuck::Pod` is a buffer element with no unsafe code.
#[test]
fn bytemuck_pod_structs_are_elements() -> TestResult {
    let _memory = crate::memory_shared();
    use bytemuck::{Pod, Zeroable};
    #[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
    #[repr(C)]
    struct Particle {
        position: [f32; 3],
        id: u32,
    }
    let d = device()?;
    let mut b = GrowableBuffer::<Particle>::with_max_capacity(&d, 1 << 20)?;
    let p = Particle {
        position: [1.0, 2.0, 3.0],
        id: 7,
    };
    b.extend_from_slice(&[p; 1000])?;
    b.resize(5000, Particle::zeroed())?;
    let v = b.to_vec()?;
    assert_eq!(v[999], p);
    assert_eq!(v[4999], Particle::zeroed());
    Ok(())
}
