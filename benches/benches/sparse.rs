//! Sparse arrays: commit + decommit of runs of k adjacent random 2 MiB tiles, pooled vs
//! unpooled, and one pooled tile commit vs the raw `cuMemMap` + `cuMemSetAccess` it stands for.
//!
//! Ids: `sparse/commit_decommit/{pooled,unpooled}/k{1,4,16}`,
//! `sparse/one_tile/{pooled_commit,pooled_commit_uninit,raw_map_set_access}` (the decommit / unmap is untimed).

use std::cell::RefCell;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use cuda_vmm_alloc::{ChunkPool, PoolConfig, SparseArray, SparseConfig};
use cuda_vmm_benches::{env, time_op, Env, Lcg, Raw, CHUNK};

/// Run lengths, in tiles.
const RUNS: [usize; 3] = [1, 4, 16];

/// Tiles in each array: 512 MiB of address space (64 MiB when quick).
fn tile_count(env: &Env) -> usize {
    if env.quick {
        32
    } else {
        256
    }
}

/// A pool holding `chunks` ready 2 MiB chunks.
fn pool(env: &Env, chunks: usize) -> ChunkPool {
    let pool = ChunkPool::new(
        &env.device,
        PoolConfig {
            chunk_size: CHUNK,
            ..PoolConfig::default()
        },
    )
    .expect("pool");
    pool.prefill(chunks).expect("prefill");
    pool
}

fn array(env: &Env, pool: Option<ChunkPool>) -> SparseArray<u8> {
    array_with(env, pool, false, tile_count(env))
}

/// `uninit`: skip zero-filling new tiles (like the raw map + set-access baseline).
fn array_with(env: &Env, pool: Option<ChunkPool>, uninit: bool, tiles: usize) -> SparseArray<u8> {
    let config = SparseConfig {
        tile_bytes: CHUNK,
        pool,
        uninit_tiles: uninit,
        ..SparseConfig::default()
    };
    SparseArray::new(&env.device, tiles * CHUNK, config).expect("sparse array")
}

fn commit_decommit(c: &mut Criterion, env: &Env) {
    let mut group = env.fast_group(c, "sparse/commit_decommit");
    let tiles = tile_count(env);
    for (variant, pooled) in [("pooled", true), ("unpooled", false)] {
        for k in RUNS {
            let mut array = array(env, pooled.then(|| pool(env, k)));
            let mut rng = Lcg::new(k as u64);
            group.bench_function(BenchmarkId::new(variant, format!("k{k}")), |b| {
                b.iter(|| {
                    let start = rng.below(tiles - k + 1) * CHUNK;
                    let run = start..start + k * CHUNK;
                    array.commit(run.clone()).expect("commit");
                    array.decommit(run).expect("decommit");
                })
            });
        }
    }
    group.finish();
}

fn one_tile(c: &mut Criterion, env: &Env, raw: &Raw) {
    let mut group = env.fast_group(c, "sparse/one_tile");
    for (name, uninit) in [("pooled_commit", false), ("pooled_commit_uninit", true)] {
        // A one-tile array: the same 2 MiB reservation shape and address every time, like
        // the raw baseline (set-access cost depends on where in the address space it lands).
        let array = RefCell::new(array_with(env, Some(pool(env, 1)), uninit, 1));
        group.bench_function(name, |b| {
            b.iter_custom(|n| {
                time_op(
                    n,
                    || 0,
                    |start| {
                        array
                            .borrow_mut()
                            .commit(start..start + CHUNK)
                            .expect("commit");
                        start
                    },
                    |start| {
                        array
                            .borrow_mut()
                            .decommit(start..start + CHUNK)
                            .expect("decommit");
                    },
                )
            })
        });
        let st = array.borrow().stats();
        let t = st.time;
        println!(
            "sparse/one_tile/{name}: {} maps, {} set-access calls; average per commit+decommit: \
             take {:?}, map {:?}, set access {:?}, unmap {:?}, give back {:?}",
            st.maps,
            st.set_access_calls,
            t.create / st.maps.max(1) as u32,
            t.map / st.maps.max(1) as u32,
            t.set_access / st.set_access_calls.max(1) as u32,
            t.unmap / st.unmaps.max(1) as u32,
            t.release / st.unmaps.max(1) as u32,
        );
    }
    let range = raw.range(CHUNK);
    group.bench_function("raw_map_set_access", |b| {
        b.iter_custom(|n| {
            time_op(
                n,
                || (),
                |()| {
                    range.map();
                    range.set_access();
                },
                |()| range.unmap(),
            )
        })
    });
    group.finish();
}

fn sparse(c: &mut Criterion) {
    let env = env();
    let raw = Raw::new(env);
    commit_decommit(c, env);
    one_tile(c, env, &raw);
}

criterion_group!(benches, sparse);
criterion_main!(benches);
