//! Fault-injection sweeps over every operation of the allocator and the safe layer (see
//! `harness`). Each test holds device memory exclusively, because it compares free memory.

use cuda_vmm::{AccessFlags, Allocation, AllocationProps, Mapping, Reservation, ReserveOptions};
use cuda_vmm_alloc::{
    BufferConfig, ChunkPool, GrowableBuffer, GrowthPolicy, HoleBehavior, PoolConfig, SparseArray,
    SparseConfig,
};

use super::harness::{digest, sweep, Coverage, OnErr, Res, Scenario, State};
use super::{cuda, device, gran, pattern_hashed, raw_read};

fn g() -> usize {
    device().and_then(|d| gran(&d)).unwrap_or(2 << 20)
}

pub(super) fn report(what: &str, covs: &[Coverage]) {
    let total = covs.iter().fold(Coverage::default(), |a, c| Coverage {
        operations: a.operations + c.operations,
        calls: a.calls + c.calls,
        fired: a.fired + c.fired,
        errors: a.errors + c.errors,
        tolerated: a.tolerated + c.tolerated,
    });
    eprintln!(
        "fault injection, {what}: {} operations, {} calls tried, {} faults injected, {} reported as errors, {} tolerated",
        total.operations, total.calls, total.fired, total.errors, total.tolerated
    );
}

/// With `pooled`, a default chunk pool of `d` holding one prefilled chunk.
fn prefilled_pool(d: &cuda_vmm::Device, pooled: bool) -> Res<Option<ChunkPool>> {
    if !pooled {
        return Ok(None);
    }
    let p = ChunkPool::new(d, PoolConfig::default())?;
    p.prefill(1)?;
    Ok(Some(p))
}

// ------------------------------------------------------------------ growable buffer

struct Buf {
    buf: GrowableBuffer<u8>,
    ptr0: u64,
    _pool: Option<ChunkPool>,
}

/// A buffer of `g + 5` bytes; with `slack`, 9 more granules committed and the length cut
/// to `g / 2 + 3`, for a shrink.
fn buf_setup(pooled: bool, slack: bool) -> Res<Buf> {
    let d = device()?;
    let g = gran(&d)?;
    let pool = prefilled_pool(&d, pooled)?;
    let mut buf = GrowableBuffer::new(
        &d,
        BufferConfig {
            max_capacity: Some(32 * g),
            policy: GrowthPolicy {
                min_chunk: g,
                max_chunk: 4 * g,
                factor: 0.5,
                max_allocation: 2 * g,
                churn_allocation: 0,
            },
            pool: pool.clone(),
            ..BufferConfig::default()
        },
    )?;
    buf.extend_from_slice(&pattern_hashed(g + 5, 1))?;
    if slack {
        buf.reserve(9 * g)?;
        buf.truncate(g / 2 + 3);
    }
    let ptr0 = buf.ptr();
    Ok(Buf {
        buf,
        ptr0,
        _pool: pool,
    })
}

fn buf_observe(b: &Buf) -> Res<State> {
    let pool = b._pool.as_ref().map_or(0, |p| p.stats().chunks_held as u64);
    Ok(State {
        words: vec![
            b.buf.len() as u64,
            b.buf.committed_bytes() as u64,
            u64::from(b.buf.ptr() == b.ptr0),
            pool,
        ],
        parts: vec![Some(digest(&b.buf.to_vec()?))],
    })
}

fn buf_after(b: &mut Buf) -> Res<()> {
    let len = b.buf.len();
    let more = pattern_hashed(3 * g(), 2);
    b.buf.extend_from_slice(&more)?;
    let all = b.buf.to_vec()?;
    if all[len..] != more[..] {
        return Err(failure("the later append did not land"));
    }
    Ok(())
}

fn failure(text: &str) -> super::harness::Failure {
    super::harness::Failure {
        code: None,
        text: text.into(),
    }
}

/// A shrink that failed keeps length and contents; committed bytes lie between the target
/// and where they were.
fn shrink_partial(before: &State, ok: &State, after: &State) -> bool {
    after.words[0] == before.words[0]
        && after.parts == before.parts
        && after.words[1] <= before.words[1]
        && after.words[1] >= ok.words[1]
        && after.words[2] == 1
}

fn buf_scenario(
    name: &'static str,
    pooled: bool,
    op: fn(&mut Buf) -> Res<()>,
    on_err: OnErr,
) -> Scenario<Buf> {
    Scenario {
        name,
        setup: Box::new(move || buf_setup(pooled, name == "shrink_to_fit")),
        op: Box::new(op),
        observe: Box::new(buf_observe),
        after: Box::new(buf_after),
        on_err,
    }
}

#[test]
fn buffer_operations_roll_back_under_every_fault() {
    let _memory = crate::memory_exclusive();
    let mut covs = Vec::new();
    for pooled in [false, true] {
        let scenarios = [
            buf_scenario(
                "extend_from_slice",
                pooled,
                |b| Ok(b.buf.extend_from_slice(&pattern_hashed(5 * g(), 3))?),
                OnErr::Unchanged,
            ),
            buf_scenario(
                "resize (memset)",
                pooled,
                |b| Ok(b.buf.resize(5 * g(), 7)?),
                OnErr::Unchanged,
            ),
            buf_scenario(
                "reserve",
                pooled,
                |b| Ok(b.buf.reserve(6 * g())?),
                OnErr::Unchanged,
            ),
            buf_scenario(
                "shrink_to_fit",
                pooled,
                |b| Ok(b.buf.shrink_to_fit()?),
                OnErr::Partial(shrink_partial),
            ),
        ];
        for s in &scenarios {
            covs.push(sweep(s));
        }
    }
    report("growable buffer", &covs);
}

// ------------------------------------------------------------------ sparse array

const TILES: usize = 6;

struct Arr {
    array: SparseArray<u8>,
    pool: Option<ChunkPool>,
}

fn arr_setup(holes: HoleBehavior, pooled: bool) -> Res<Arr> {
    let d = device()?;
    let g = gran(&d)?;
    let pool = prefilled_pool(&d, pooled)?;
    let mut array = SparseArray::new(
        &d,
        TILES * g,
        SparseConfig {
            holes,
            pool: pool.clone(),
            ..SparseConfig::default()
        },
    )?;
    for t in [1, 2, 4] {
        array.commit(t * g..t * g + 1)?;
        array.write(t * g + 7, &pattern_hashed(100, t as u8))?;
    }
    Ok(Arr { array, pool })
}

fn arr_observe(a: &Arr) -> Res<State> {
    let tile = a.array.tile_bytes();
    let mut words = vec![a.array.committed_bytes() as u64];
    words.push(a.pool.as_ref().map_or(0, |p| p.stats().chunks_held as u64));
    let mut parts = Vec::new();
    for t in 0..TILES {
        if a.array.is_committed(t * tile) {
            let mut out = vec![0u8; tile];
            a.array.read(t * tile..(t + 1) * tile, &mut out)?;
            parts.push(Some(digest(&out)));
        } else {
            parts.push(None);
        }
    }
    if a.array.hole_behavior() == HoleBehavior::Zeros {
        // Residency as a kernel sees it: every tile readable, holes as zeros.
        for t in 0..TILES {
            let ok = cuda()
                .map_err(|e| e.to_string())
                .and_then(|c| raw_read(&c, a.array.ptr() + (t * tile) as u64, 64))
                .is_ok();
            words.push(u64::from(ok));
        }
    }
    Ok(State { words, parts })
}

/// A decommit that failed leaves each tile either as it was or a hole (where the fault-free
/// decommit makes one); zero-tile residency is repaired by the next operation.
pub(super) fn decommit_partial(before: &State, ok: &State, after: &State) -> bool {
    before
        .parts
        .iter()
        .zip(&ok.parts)
        .zip(&after.parts)
        .all(|((b, o), a)| a == b || (a.is_none() && o.is_none()))
}

fn arr_after(a: &mut Arr) -> Res<()> {
    let tile = a.array.tile_bytes();
    a.array.commit(3 * tile..3 * tile + 1)?;
    a.array.write(3 * tile, &[9; 8])?;
    let mut out = [0u8; 8];
    a.array.read(3 * tile..3 * tile + 8, &mut out)?;
    if out != [9; 8] {
        return Err(failure("the later commit's data did not land"));
    }
    if a.array.hole_behavior() == HoleBehavior::Zeros {
        for t in 0..TILES {
            if cuda()
                .map_err(|e| e.to_string())
                .and_then(|c| raw_read(&c, a.array.ptr() + (t * tile) as u64, 64))
                .is_err()
            {
                return Err(failure(
                    "a hole has no zero mapping after the next operation",
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn sparse_operations_roll_back_under_every_fault() {
    let _memory = crate::memory_exclusive();
    let mut covs = Vec::new();
    for holes in [HoleBehavior::Error, HoleBehavior::Zeros] {
        for pooled in [false, true] {
            let commit = Scenario {
                name: "commit (two runs)",
                setup: Box::new(move || arr_setup(holes, pooled)),
                op: Box::new(|a: &mut Arr| {
                    let end = a.array.len();
                    Ok(a.array.commit(0..end).map(|_| ())?)
                }),
                observe: Box::new(arr_observe),
                after: Box::new(arr_after),
                on_err: OnErr::Unchanged,
            };
            let decommit = Scenario {
                name: "decommit (two runs)",
                setup: Box::new(move || arr_setup(holes, pooled)),
                op: Box::new(|a: &mut Arr| {
                    let end = a.array.len();
                    Ok(a.array.decommit(0..end).map(|_| ())?)
                }),
                observe: Box::new(arr_observe),
                after: Box::new(arr_after),
                on_err: OnErr::Partial(decommit_partial),
            };
            covs.push(sweep(&commit));
            covs.push(sweep(&decommit));
        }
    }
    report("sparse array", &covs);
}

// ------------------------------------------------------------------ chunk pool

struct Pool {
    pool: ChunkPool,
    out: Option<Allocation>,
    acquired: Option<Allocation>,
}

fn pool_setup(max_chunks: usize) -> Res<Pool> {
    let d = device()?;
    let pool = ChunkPool::new(
        &d,
        PoolConfig {
            max_chunks,
            ..PoolConfig::default()
        },
    )?;
    pool.prefill(2.min(max_chunks))?;
    let out = Some(Allocation::new(
        &d,
        gran(&d)?,
        &AllocationProps::device(&d),
    )?);
    Ok(Pool {
        pool,
        out,
        acquired: None,
    })
}

fn pool_observe(p: &Pool) -> Res<State> {
    let s = p.pool.stats();
    Ok(State {
        words: vec![
            s.chunks_held as u64,
            s.bytes_held as u64,
            u64::from(p.out.is_some()),
        ],
        parts: Vec::new(),
    })
}

fn pool_after(p: &mut Pool) -> Res<()> {
    let a = p.pool.acquire()?;
    p.pool.recycle(a)?;
    Ok(())
}

#[test]
fn pool_operations_roll_back_under_every_fault() {
    let _memory = crate::memory_exclusive();
    let scenario = |name, max, op: fn(&mut Pool) -> Res<()>, on_err| Scenario {
        name,
        setup: Box::new(move || pool_setup(max)),
        op: Box::new(op),
        observe: Box::new(pool_observe),
        after: Box::new(pool_after),
        on_err,
    };
    let scenarios = [
        scenario(
            "acquire (cache empty)",
            0,
            |p| {
                p.acquired = Some(p.pool.acquire()?);
                Ok(())
            },
            OnErr::Unchanged,
        ),
        scenario(
            "prefill",
            8,
            |p| Ok(p.pool.prefill(5).map(|_| ())?),
            OnErr::Unchanged,
        ),
        // The pool is full, so the recycled chunk is released.
        scenario(
            "recycle (full pool)",
            2,
            |p| {
                let a = p.out.take().ok_or_else(|| failure("no chunk"))?;
                Ok(p.pool.recycle(a).map(|_| ())?)
            },
            OnErr::AsOk,
        ),
        scenario("trim", 8, |p| Ok(p.pool.trim().map(|_| ())?), OnErr::AsOk),
    ];
    let covs: Vec<Coverage> = scenarios.iter().map(sweep).collect();
    report("chunk pool", &covs);
}

// ------------------------------------------------------------------ safe layer

struct Safe {
    range: Reservation,
    chunk: Allocation,
    mapping: Option<Mapping>,
}

fn safe_setup(mapped: bool) -> Res<Safe> {
    let d = device()?;
    let g = gran(&d)?;
    let range = Reservation::new(&d, 2 * g, ReserveOptions::default())?;
    let chunk = Allocation::new(&d, g, &AllocationProps::device(&d))?;
    let mapping = if mapped {
        let m = range.map(0, &chunk, 0, g)?;
        range.set_access(0, g, &[(&d, AccessFlags::Read)])?;
        Some(m)
    } else {
        None
    };
    Ok(Safe {
        range,
        chunk,
        mapping,
    })
}

fn safe_observe(s: &Safe) -> Res<State> {
    let d = device()?;
    let access = if s.range.is_mapped(0, s.chunk.size()) {
        s.range.access(0, &d)? as u64 + 1
    } else {
        0
    };
    Ok(State {
        words: vec![s.range.mapping_count() as u64, access],
        parts: Vec::new(),
    })
}

#[test]
fn safe_layer_operations_roll_back_under_every_fault() {
    let _memory = crate::memory_exclusive();
    let g = g();
    let scenarios = [
        Scenario {
            name: "Reservation::map",
            setup: Box::new(|| safe_setup(false)),
            op: Box::new(|s: &mut Safe| {
                s.mapping = Some(s.range.map(0, &s.chunk, 0, s.chunk.size())?);
                Ok(())
            }),
            observe: Box::new(safe_observe),
            after: Box::new(|s: &mut Safe| {
                s.mapping = None;
                s.mapping = Some(s.range.map(0, &s.chunk, 0, s.chunk.size())?);
                Ok(())
            }),
            on_err: OnErr::Unchanged,
        },
        Scenario {
            name: "Reservation::set_access",
            setup: Box::new(|| safe_setup(true)),
            op: Box::new(|s: &mut Safe| {
                let d = device()?;
                Ok(s.range
                    .set_access(0, s.chunk.size(), &[(&d, AccessFlags::ReadWrite)])?)
            }),
            observe: Box::new(safe_observe),
            after: Box::new(|s: &mut Safe| {
                let d = device()?;
                s.range
                    .set_access(0, s.chunk.size(), &[(&d, AccessFlags::ReadWrite)])?;
                Ok(s.range.write(0, b"after")?)
            }),
            on_err: OnErr::Unchanged,
        },
        // A refused unmap leaks the mapping, its allocation and its reservation by design
        // (nothing is freed under device work that may still run): exactly one chunk of
        // device memory stays allocated, and the mapping stays recorded and usable.
        Scenario {
            name: "Mapping::unmap",
            setup: Box::new(|| safe_setup(true)),
            op: Box::new(|s: &mut Safe| match s.mapping.take() {
                Some(m) => Ok(m.unmap()?),
                None => Ok(()),
            }),
            observe: Box::new(safe_observe),
            after: Box::new(move |s: &mut Safe| {
                let mut out = [0u8; 4];
                if s.range.is_mapped(0, g) {
                    s.range.read(0, &mut out)?;
                }
                Ok(())
            }),
            on_err: OnErr::Leaks(g),
        },
    ];
    let covs: Vec<Coverage> = scenarios.iter().map(sweep).collect();
    report("safe layer", &covs);
}
