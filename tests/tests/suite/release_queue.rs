//! The release queue, as `Cuda` has it by default: an end of life (decommit, drop) returns
//! at once while device work still uses the memory; the memory is unmapped, reused and
//! handed back to a pool only after that work; the queue stays bounded in tight loops.
//!
//! Each test opens a `Cuda` of its own with the default queue (the suite's shared one
//! completes releases inline). Kernel tests need the real driver; the tests that hold a
//! simulated stream, inject faults into the worker and count its calls are in
//! `sim::release_queue`.

use std::time::{Duration, Instant};

use cuda_vmm::release::DEFAULT_MAX_PENDING_RELEASE_BYTES;
use cuda_vmm::{Cuda, Device, Stream};
use cuda_vmm_alloc::{ChunkPool, GrowableBuffer, PoolConfig, SparseArray, SparseConfig};
use cuda_vmm_tests::helpers::{pattern_cycle, TestResult};

use cuda_vmm_tests::ptx::SlowFill;

const MIB: usize = 1 << 20;
/// Long enough for every queued release of a test to complete.
const FLUSH: Duration = Duration::from_secs(60);
/// How long the test kernels run.
const KERNEL_NS: u64 = 50_000_000;
const VALUE: u32 = 0xC0FF_EE01;

/// A `Cuda` of its own on the suite's backend, with the default release queue and worker.
fn queued() -> cuda_vmm::Result<Cuda> {
    crate::cuda()?; // prints the backend once
    let cuda = Cuda::new()?;
    assert!(!cuda.releases_complete_inline());
    Ok(cuda)
}

/// The slow-fill kernel on `device`, or `None` (after saying so) on the simulator.
fn kernel(device: &Device) -> Result<Option<SlowFill>, Box<dyn std::error::Error>> {
    if crate::on_simulator()? {
        eprintln!("skipped: kernels need the real driver");
        return Ok(None);
    }
    Ok(Some(SlowFill::load(device)?))
}

/// Everything queued completes, with no error, and the context is healthy.
fn drained(cuda: &Cuda, device: &Device) -> TestResult {
    assert!(cuda.flush_releases(FLUSH)?, "the queue did not drain");
    let errors = cuda.take_release_errors();
    assert!(errors.is_empty(), "release errors: {errors:?}");
    let stats = cuda.release_stats();
    assert_eq!((stats.pending_entries, stats.pending_bytes), (0, 0));
    device.synchronize()?;
    Ok(())
}

fn all_equal(values: &[u32], want: u32) -> bool {
    values.iter().all(|&v| v == want)
}

/// A decommit while a 50 ms kernel writes the tiles returns before the kernel ends; a
/// commit over the queued tiles waits for that kernel, then zero-fills; the tiles the
/// kernel kept hold every value it wrote.
#[test]
fn decommit_during_a_kernel_returns_before_it_ends_and_reuse_waits() -> TestResult {
    let _memory = crate::memory_shared();
    let cuda = queued()?;
    let d = cuda.device(0)?;
    let Some(k) = kernel(&d)? else {
        return Ok(());
    };
    let stream = Stream::new(&d)?;
    let mut a = SparseArray::<u32>::new(&d, 64 * MIB / 4, SparseConfig::default())?;
    let tile = a.tile_bytes() / 4;
    a.commit(0..4 * tile)?;
    // SAFETY: tiles 0..4 are committed read-write; their decommit is queued behind the
    // recorded use.
    unsafe { k.launch(&stream, a.ptr(), 4 * tile as u64, VALUE, KERNEL_NS)? };
    a.record_use(&stream)?;
    let done = stream.record()?;

    let start = Instant::now();
    assert_eq!(a.decommit(0..2 * tile)?, 2);
    let took = start.elapsed();
    let running = !done.is_complete()?;
    eprintln!("decommit of 2 tiles during a 50 ms kernel: {took:?}, kernel running: {running}");
    assert!(running, "the decommit waited for the kernel ({took:?})");
    assert_eq!(a.pending_release_bytes(), 2 * a.tile_bytes());
    assert_eq!(a.committed_bytes(), 2 * a.tile_bytes());

    a.commit(0..tile)?;
    assert!(
        done.is_complete()?,
        "a commit reused queued addresses before the kernel ended"
    );
    let mut out = vec![1u32; tile];
    a.read(0..tile, &mut out)?;
    assert!(all_equal(&out, 0), "the recommitted tile is not zero");
    let mut out = vec![0u32; 2 * tile];
    a.read(2 * tile..4 * tile, &mut out)?;
    assert!(
        all_equal(&out, VALUE),
        "the kernel's writes are not all there"
    );
    drained(&cuda, &d)
}

/// With a pool, decommitted tiles reach the pool only after the kernel that wrote them:
/// while it runs, another array's commit misses the pool; afterwards the tiles are there.
#[test]
fn decommitted_tiles_reach_the_pool_only_after_the_kernel() -> TestResult {
    let _memory = crate::memory_shared();
    let cuda = queued()?;
    let d = cuda.device(0)?;
    let Some(k) = kernel(&d)? else {
        return Ok(());
    };
    let pool = ChunkPool::new(&d, PoolConfig::default())?;
    let config = SparseConfig {
        pool: Some(pool.clone()),
        ..SparseConfig::default()
    };
    let stream = Stream::new(&d)?;
    let mut a = SparseArray::<u32>::new(&d, 64 * MIB / 4, config.clone())?;
    let mut b = SparseArray::<u32>::new(&d, 64 * MIB / 4, config)?;
    let tile = a.tile_bytes() / 4;
    a.commit(0..2 * tile)?;
    // SAFETY: both tiles committed; the decommit is queued behind the recorded use.
    unsafe { k.launch(&stream, a.ptr(), 2 * tile as u64, VALUE, KERNEL_NS)? };
    a.record_use(&stream)?;
    let done = stream.record()?;
    a.decommit(0..2 * tile)?;
    let while_running = pool.stats();
    b.commit(0..2 * tile)?;
    if !done.is_complete()? {
        assert_eq!(while_running.pending_returns, 2);
        assert_eq!(while_running.chunks_held, 0, "tiles pooled under a kernel");
        assert_eq!(pool.stats().hits, 0, "b reused a's tiles under a kernel");
    } else {
        eprintln!("the kernel ended before the pool was checked; nothing to compare");
    }
    drained(&cuda, &d)?;
    assert_eq!(pool.stats().chunks_held, 2);
    assert_eq!(pool.stats().pending_returns, 0);
    Ok(())
}

/// Dropping a buffer a kernel writes returns before the kernel ends; the buffer the same
/// kernel stream wrote first holds every value.
#[test]
fn drop_during_a_kernel_returns_before_it_ends() -> TestResult {
    let _memory = crate::memory_shared();
    let cuda = queued()?;
    let d = cuda.device(0)?;
    let Some(k) = kernel(&d)? else {
        return Ok(());
    };
    let stream = Stream::new(&d)?;
    let n = 8 * MIB; // u32 elements: 32 MiB
    let mut seen_running = 0;
    for round in 0..5u32 {
        let mut kept = GrowableBuffer::<u32>::with_max_capacity(&d, n)?;
        let mut dropped = GrowableBuffer::<u32>::with_max_capacity(&d, n)?;
        kept.resize(n, 0)?;
        dropped.resize(n, 0)?;
        // SAFETY: both buffers hold `n` committed elements; their uses are recorded.
        unsafe {
            k.launch(&stream, kept.ptr(), n as u64, VALUE + round, 0)?;
            k.launch(&stream, dropped.ptr(), n as u64, round, KERNEL_NS)?;
        }
        kept.record_use(&stream)?;
        dropped.record_use(&stream)?;
        let done = stream.record()?;
        let start = Instant::now();
        drop(dropped);
        let took = start.elapsed();
        let running = !done.is_complete()?;
        eprintln!("round {round}: drop during a 50 ms kernel: {took:?}, running: {running}");
        // The drop never waits for the kernel; that the kernel was still running after it
        // shows it (a loaded machine may deschedule this thread past the kernel's end, once
        // seen on an H200 running the suite: hence "in some round").
        assert!(
            took < std::time::Duration::from_nanos(KERNEL_NS / 2),
            "the drop waited for the kernel ({took:?})"
        );
        seen_running += usize::from(running);
        assert!(all_equal(&kept.to_vec()?, VALUE + round));
    }
    assert!(
        seen_running > 0,
        "the kernel never outlived the drop in 5 rounds"
    );
    drained(&cuda, &d)
}

/// Write then drop at once, in the tight loops: `threads` × `rounds` buffers of
/// `bytes`, each written on a stream (and by a kernel on the GPU) and dropped right away.
/// No error, the queue's peak stays within its bound, and everything drains.
fn tight_loop(threads: usize, rounds: usize, bytes: usize) -> TestResult {
    let _memory = crate::memory_shared();
    let cuda = queued()?;
    let d = cuda.device(0)?;
    let k = kernel(&d)?;
    let rounds = if crate::on_simulator()? {
        rounds / 4
    } else {
        rounds
    };
    let start = Instant::now();
    std::thread::scope(|s| -> TestResult {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (d, k) = (&d, &k);
                s.spawn(move || -> Result<(), String> {
                    let stream = Stream::new(d).map_err(|e| e.to_string())?;
                    let data = pattern_cycle(bytes, t as u8);
                    for _ in 0..rounds {
                        let mut b = GrowableBuffer::<u8>::with_max_capacity(d, bytes)
                            .map_err(|e| e.to_string())?;
                        b.extend_from_slice_async(&stream, &data)
                            .map_err(|e| e.to_string())?;
                        if let Some(k) = k {
                            // SAFETY: `bytes` committed bytes; the use is recorded.
                            unsafe { k.launch(&stream, b.ptr(), (bytes / 4) as u64, 7, 0)? };
                            b.record_use(&stream).map_err(|e| e.to_string())?;
                        }
                    }
                    stream.synchronize().map_err(|e| e.to_string())
                })
            })
            .collect();
        for w in workers {
            w.join().map_err(|_| "a worker panicked")??;
        }
        Ok(())
    })?;
    let looped = start.elapsed();
    let stats = cuda.release_stats();
    eprintln!(
        "{threads} thread(s) x {rounds} x {} MiB write+drop: {looped:?}; queue peak {} MiB, \
         {} queued, {} by callers, worker busy {:?}, worker cpu {:?}, longest pending {:?}",
        bytes / MIB,
        stats.peak_pending_bytes / MIB,
        stats.queued,
        stats.completed_by_callers,
        stats.worker_busy,
        stats.worker_cpu,
        stats.max_pending_time,
    );
    assert_eq!(stats.errors, 0);
    assert!(stats.queued >= (threads * rounds) as u64);
    assert!(stats.peak_pending_bytes <= DEFAULT_MAX_PENDING_RELEASE_BYTES);
    drained(&cuda, &d)
}

#[test]
fn tight_loop_one_thread_8mib() -> TestResult {
    tight_loop(1, 200, 8 * MIB)
}

#[test]
fn tight_loop_eight_threads_2mib() -> TestResult {
    tight_loop(8, 100, 2 * MIB)
}

/// A bound of one entry's bytes: a release past it completes on the caller's thread, so
/// the queue never holds more than the bound plus one release.
#[test]
fn a_small_bound_is_kept() -> TestResult {
    let _memory = crate::memory_shared();
    let cuda = queued()?;
    let d = cuda.device(0)?;
    let stream = Stream::new(&d)?;
    cuda.set_max_pending_release_bytes(4 * MIB);
    let data = pattern_cycle(4 * MIB, 3);
    for _ in 0..32 {
        let mut b = GrowableBuffer::<u8>::with_max_capacity(&d, 4 * MIB)?;
        b.extend_from_slice_async(&stream, &data)?;
    }
    let stats = cuda.release_stats();
    assert!(
        stats.peak_pending_bytes <= 8 * MIB,
        "peak {} bytes past a 4 MiB bound",
        stats.peak_pending_bytes
    );
    drained(&cuda, &d)
}
