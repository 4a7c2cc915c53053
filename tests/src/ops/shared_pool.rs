//! One `ChunkPool` shared by two buffers and two sparse arrays (one of each hole mode), with
//! the pool's own operations between theirs.

use cuda_vmm_alloc::{ChunkPool, HoleBehavior, PoolConfig};

use super::buffer::{BufOp, BufferModel, BufferSetup};
use super::sparse::{SparseModel, SparseOp, SparseSetup};
use super::{under_fault, Ledger, Step, Tally, FAULT, GROW_PATH, SHRINK_PATH};

/// One operation on the shared pool or one of its users.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolOp {
    /// An operation on buffer `0` or `1`.
    Buffer(u8, BufOp),
    /// An operation on sparse array `0` (holes are errors) or `1` (holes read as zeros).
    Sparse(u8, SparseOp),
    /// `prefill(n)`.
    Prefill(u8),
    /// `trim()`.
    Trim,
    /// `acquire()` then `recycle()` of the chunk.
    AcquireRecycle,
}

/// Most chunks the pool caches.
pub const MAX_CHUNKS: usize = 4;

/// Runs `steps`, checking each user against its model and the pool's counters, then that
/// the pool holds every chunk still allocated once the users are dropped, and nothing once
/// it is dropped too.
pub fn run(steps: &[Step<PoolOp>]) -> Result<Tally, String> {
    let mut tally = Tally {
        sequences: 1,
        ..Tally::default()
    };
    let mut ledger = Ledger::new();
    {
        let d = super::sim_device()?;
        let pool = ChunkPool::new(
            &d,
            PoolConfig {
                max_chunks: MAX_CHUNKS,
                ..PoolConfig::default()
            },
        )
        .map_err(|e| e.to_string())?;
        let mut buffers = [false, true]
            .map(|proportional| {
                BufferModel::new(
                    BufferSetup {
                        pooled: true,
                        proportional,
                    },
                    Some(pool.clone()),
                )
            })
            .into_iter()
            .collect::<Result<Vec<_>, String>>()?;
        let mut arrays = [HoleBehavior::Error, HoleBehavior::Zeros]
            .map(|holes| {
                SparseModel::new(
                    SparseSetup {
                        holes,
                        pooled: true,
                    },
                    Some(pool.clone()),
                )
            })
            .into_iter()
            .collect::<Result<Vec<_>, String>>()?;
        for step in steps {
            let what = format!("{step:?}");
            match &step.op {
                PoolOp::Buffer(i, op) => {
                    let s = Step {
                        op: op.clone(),
                        fault: step.fault,
                    };
                    buffers[usize::from(*i) % 2].apply(&s, &mut ledger, &mut tally)?;
                }
                PoolOp::Sparse(i, op) => {
                    let s = Step {
                        op: op.clone(),
                        fault: step.fault,
                    };
                    arrays[usize::from(*i) % 2].apply(&s, &mut ledger, &mut tally)?;
                }
                PoolOp::Prefill(n) => {
                    let n = usize::from(*n) % (MAX_CHUNKS + 2);
                    let held = pool.stats().chunks_held;
                    let (r, fired) = under_fault(
                        step.fault,
                        &["cuMemCreate", "cuMemRelease"],
                        &mut ledger,
                        &mut tally,
                        || pool.prefill(n),
                    );
                    let after = pool.stats().chunks_held;
                    match r {
                        Ok(made) => {
                            if fired {
                                tally.tolerated += 1;
                            }
                            let want = n.min(MAX_CHUNKS).max(held);
                            if after != want || made != want - held {
                                return Err(format!(
                                    "{what}: held {held} -> {after}, created {made}, expected {want}"
                                ));
                            }
                        }
                        Err(e) if fired && e.code() == Some(FAULT.0) => {
                            tally.errors += 1;
                            if after != held {
                                return Err(format!("{what}: failed prefill changed the cache"));
                            }
                        }
                        Err(e) => return Err(format!("{what}: {e}")),
                    }
                }
                PoolOp::Trim => {
                    let held = pool.stats().chunks_held;
                    let (r, fired) =
                        under_fault(step.fault, SHRINK_PATH, &mut ledger, &mut tally, || {
                            pool.trim()
                        });
                    match r {
                        Ok(n) if n == held => {
                            if fired {
                                tally.tolerated += 1;
                            }
                        }
                        // A refused release is retried as the handle drops: the cache is
                        // empty either way.
                        Err(e) if fired && e.code() == Some(FAULT.0) => tally.errors += 1,
                        other => return Err(format!("{what}: {other:?} with {held} held")),
                    }
                    if pool.stats().chunks_held != 0 {
                        return Err(format!("{what}: chunks left after a trim"));
                    }
                }
                PoolOp::AcquireRecycle => {
                    let held = pool.stats().chunks_held;
                    let (r, fired) =
                        under_fault(step.fault, GROW_PATH, &mut ledger, &mut tally, || {
                            let chunk = pool.acquire()?;
                            Ok::<bool, cuda_vmm_alloc::Error>(pool.recycle(chunk)?)
                        });
                    match r {
                        Ok(true) => {
                            if fired {
                                tally.tolerated += 1;
                            }
                            if pool.stats().chunks_held != held.max(1) {
                                return Err(format!("{what}: held {held} -> {:?}", pool.stats()));
                            }
                        }
                        Err(e) if fired && e.code() == Some(FAULT.0) => tally.errors += 1,
                        other => return Err(format!("{what}: {other:?}")),
                    }
                }
            }
            let s = pool.stats();
            if s.chunks_held > MAX_CHUNKS || s.bytes_held != s.chunks_held * pool.chunk_size() {
                return Err(format!("{what}: pool counters {s:?}"));
            }
            // No chunk is in two places: every buffer chunk is a distinct handle.
            let mut handles: Vec<u64> = buffers
                .iter()
                .flat_map(|b| b.buf.chunk_allocations().map(|(_, a)| a.raw_handle()))
                .collect();
            let n = handles.len();
            handles.sort_unstable();
            handles.dedup();
            if handles.len() != n {
                return Err(format!("{what}: a chunk is mapped by two buffers"));
            }
        }
        drop(buffers);
        drop(arrays);
        let held = pool.stats().chunks_held as i64;
        super::check_live(&ledger, [held, 0, 0], "users dropped, pool alive")?;
    }
    super::check_live(&ledger, [0, 0, 0], "after the sequence")?;
    Ok(tally)
}
