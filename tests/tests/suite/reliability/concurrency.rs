//! Concurrency: threads grow and shrink buffers and commit and decommit tiles against one
//! shared `ChunkPool`, with faults injected (per thread), and use the pool directly. Each
//! structure is checked against its host model after every operation (`cuda_vmm_tests::ops`).
//! Bounded in time: a thread that does not finish by the deadline is reported as a deadlock.
//! At the end no chunk is lost or duplicated: the threads' net allocations (created less
//! released, from the simulator's per-thread call counts) equal the chunks the pool holds,
//! the held chunks are distinct and uniquely owned, and after a trim the device's free
//! memory has not dropped.
//!
//! `CUDA_VMM_STRESS_OPS` sets the operations per thread (default 40).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use cuda_vmm_alloc::{ChunkPool, HoleBehavior, PoolConfig};
use cuda_vmm_tests::ops::buffer::{BufferModel, BufferSetup};
use cuda_vmm_tests::ops::sparse::{SparseModel, SparseSetup};
use cuda_vmm_tests::ops::{under_fault, Ledger, Step, Tally, FAULT, GROW_PATH};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use super::props::{buf_op, fault, sparse_op};
use super::{cuda, device};

const THREADS: usize = 6;
/// Every thread must be done by then.
const DEADLINE: Duration = Duration::from_secs(300);
/// Threads stop starting new operations after this long.
const BUSY: Duration = Duration::from_secs(60);

fn draw<S: Strategy>(runner: &mut TestRunner, s: &S) -> Result<S::Value, String> {
    Ok(s.new_tree(runner).map_err(|e| e.to_string())?.current())
}

/// One thread's work: its own buffer and sparse array on the shared pool, and direct pool
/// use. Returns its tally and its net `[allocations, mappings, reservations]`.
fn worker(id: usize, pool: ChunkPool, ops: usize) -> Result<(Tally, [i64; 3]), String> {
    let mut ledger = Ledger::new();
    let mut tally = Tally::default();
    let mut seed = [0u8; 32];
    seed[0] = id as u8;
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed),
    );
    let (buf_ops, sparse_ops, faults) = (buf_op(), sparse_op(), fault());
    {
        let mut buffer = BufferModel::new(
            BufferSetup {
                pooled: true,
                proportional: id.is_multiple_of(2),
            },
            Some(pool.clone()),
        )?;
        let mut array = SparseModel::new(
            SparseSetup {
                holes: if id.is_multiple_of(2) {
                    HoleBehavior::Zeros
                } else {
                    HoleBehavior::Error
                },
                pooled: true,
            },
            Some(pool.clone()),
        )?;
        let start = Instant::now();
        for i in 0..ops {
            if start.elapsed() > BUSY {
                break;
            }
            let fault = draw(&mut runner, &faults)?;
            match i % 5 {
                0 | 1 => {
                    let op = draw(&mut runner, &buf_ops)?;
                    buffer.apply(&Step { op, fault }, &mut ledger, &mut tally)?;
                }
                2 | 3 => {
                    let op = draw(&mut runner, &sparse_ops)?;
                    array.apply(&Step { op, fault }, &mut ledger, &mut tally)?;
                }
                _ => {
                    let (r, fired) = under_fault(fault, GROW_PATH, &mut ledger, &mut tally, || {
                        let chunk = pool.acquire()?;
                        Ok::<bool, cuda_vmm_alloc::Error>(pool.recycle(chunk)?)
                    });
                    match r {
                        Ok(_) => {}
                        Err(e) if fired && e.code() == Some(FAULT.0) => tally.errors += 1,
                        Err(e) => return Err(format!("thread {id}: acquire and recycle: {e}")),
                    }
                }
            }
        }
    }
    tally.sequences = 1;
    Ok((tally, ledger.live()))
}

/// What the threads share or move is `Send + Sync`: the handles are plain driver handles
/// (see each `unsafe impl` in `cuda-vmm`), state behind them sits behind locks.
#[test]
fn public_handles_are_send_and_sync() {
    fn both<T: Send + Sync>() {}
    both::<cuda_vmm::Cuda>();
    both::<cuda_vmm::Device>();
    both::<cuda_vmm::Reservation>();
    both::<cuda_vmm::Allocation>();
    both::<cuda_vmm::Mapping>();
    both::<cuda_vmm::Stream>();
    both::<cuda_vmm::Event>();
    both::<ChunkPool>();
    both::<cuda_vmm_alloc::GrowableBuffer<u32>>();
    both::<cuda_vmm_alloc::SparseArray<u8>>();
}

#[test]
fn threads_share_one_pool_under_faults() {
    let _memory = crate::memory_exclusive();
    let ops = std::env::var("CUDA_VMM_STRESS_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let d = device().unwrap();
    let _keep = cuda().unwrap();
    let free_before = d.memory_info().unwrap().free;
    let main = Ledger::new();
    let pool = ChunkPool::new(
        &d,
        PoolConfig {
            max_chunks: 8,
            ..PoolConfig::default()
        },
    )
    .unwrap();
    pool.prefill(4).unwrap();
    let (tx, rx) = mpsc::channel();
    let handles: Vec<_> = (0..THREADS)
        .map(|id| {
            let (pool, tx) = (pool.clone(), tx.clone());
            std::thread::spawn(move || {
                let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    worker(id, pool, ops)
                }))
                .unwrap_or_else(|_| Err(format!("thread {id} panicked")));
                let _ = tx.send((id, out));
            })
        })
        .collect();
    drop(tx);
    let deadline = Instant::now() + DEADLINE;
    let mut total = Tally::default();
    let mut net = [0i64; 3];
    for _ in 0..THREADS {
        let left = deadline.saturating_duration_since(Instant::now());
        let (id, out) = rx
            .recv_timeout(left)
            .expect("a thread did not finish in time: deadlock");
        let (tally, live) = out.unwrap_or_else(|e| panic!("thread {id}: {e}"));
        total.add(&tally);
        for k in 0..3 {
            net[k] += live[k];
        }
    }
    for h in handles {
        h.join().unwrap();
    }
    let main_live = main.live();
    let held = pool.stats();
    eprintln!("concurrency: {THREADS} threads, {total}; pool {held:?}");
    assert_eq!(held.bytes_held, held.chunks_held * pool.chunk_size());
    assert_eq!(
        [
            net[0] + main_live[0],
            net[1] + main_live[1],
            net[2] + main_live[2]
        ],
        [held.chunks_held as i64, 0, 0],
        "net allocations of all threads must be the pool's chunks"
    );
    // Every held chunk is a distinct, uniquely owned allocation.
    let chunks: Vec<_> = (0..held.chunks_held)
        .map(|_| pool.acquire().unwrap())
        .collect();
    let mut raw: Vec<u64> = chunks.iter().map(|c| c.raw_handle()).collect();
    raw.sort_unstable();
    raw.dedup();
    assert_eq!(raw.len(), chunks.len(), "the pool held a chunk twice");
    assert!(chunks.iter().all(|c| c.holders() == 1));
    assert_eq!(pool.stats().misses, held.misses, "a held chunk was missing");
    for c in chunks {
        pool.recycle(c).unwrap();
    }
    pool.trim().unwrap();
    assert_eq!(main.live().iter().sum::<i64>() + net.iter().sum::<i64>(), 0);
    drop(pool);
    // Every other test that allocates holds the memory lock shared, so the device is this
    // test's alone: free memory is exactly as before.
    let free = d.memory_info().unwrap().free;
    assert_eq!(
        free,
        free_before,
        "device memory leaked: {} bytes",
        free_before as i64 - free as i64
    );
}
