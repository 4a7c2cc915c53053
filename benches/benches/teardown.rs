//! What tearing big structures down costs, and zero-hole sparse arrays at terabyte scale.
//!
//! Ids:
//! - `zero_holes/{create,drop}/{errors,zeros_256MiB,zeros_64MiB}/1TiB`: creating, or
//!   dropping, a 1 TiB `SparseArray` of 2 MiB tiles (the other half untimed), with holes as
//!   errors or zero-mapped from warm zero memory (blocks of at most 256 or 64 MiB).
//! - `zero_holes/one_tile_commit/{errors,zeros_split,zeros_again,errors_sequential,
//!   zeros_sequential,zeros_split_64MiB,errors_spares,zeros_spares,errors_spares7,
//!   zeros_spares7}/{pooled,unpooled}`:
//!   committing one tile of a 1 TiB array (zero blocks of 256 MiB, or 64 MiB), the decommit
//!   untimed: a random tile (in zero mode: the split of a largest block), the same tile again
//!   next to a committed one (in zero mode: the tile has a block of its own), or the next
//!   tile (spans of a largest block freed once full); `*_spares` take the next tile with 15
//!   spare tiles (`SparseConfig::spare_tiles`), so one commit in 16 makes driver calls
//!   (`*_spares7`: 7 spares, one in 8).
//! - `teardown/{growable,growable_pooled}/16GiB`: dropping a buffer grown to 16 GiB as 2 MiB
//!   appends grow it (pooled: 32 MiB chunks handed back to a pool with room for all of them).
//! - `teardown/{raw_release,raw_unmap}/16GiB_in_32MiB`, `teardown/raw_release/16GiB_in_1`:
//!   the raw floor: `cuCtxSynchronize`, then one `cuMemUnmap` per allocation (and one
//!   `cuMemRelease`), for 512 allocations of 32 MiB or one of 16 GiB.
//!
//! Quick runs (simulator, `cargo test --benches`) use a 1 GiB array, blocks of 16 and 4 MiB,
//! and 64 MiB buffers. The zero memory's size is printed and recorded as an extra.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode};
use cuda_vmm_alloc::{
    BufferConfig, ChunkPool, GrowableBuffer, HoleBehavior, PoolConfig, SparseArray, SparseConfig,
    ZeroMemory,
};
use cuda_vmm_benches::{
    env, fmt_size, record_extra, size_id, time_op, Env, Lcg, Raw, CHUNK, GIB, MIB, QUICK_CAP,
};

/// The zero-hole array's size.
fn array_bytes(env: &Env) -> usize {
    if env.quick {
        GIB
    } else {
        1 << 40
    }
}

/// Largest zero blocks compared: the default and a quarter of it.
fn block_sizes(env: &Env) -> [usize; 2] {
    if env.quick {
        [16 * MIB, 4 * MIB]
    } else {
        [ZeroMemory::DEFAULT_MAX_BLOCK_BYTES, 64 * MIB]
    }
}

/// Buffers torn down: 16 GiB, or the quick cap.
fn buffer_bytes(env: &Env) -> usize {
    if env.quick {
        QUICK_CAP
    } else {
        16 * GIB
    }
}

/// Chunks of the pooled buffer and of the raw floor's layout.
const POOL_CHUNK: usize = 32 * MIB;

/// Few samples of equal iteration counts: one iteration takes up to a second with its
/// untimed half.
fn slow_group<'c>(c: &'c mut Criterion, env: &Env, name: &str) -> BenchmarkGroup<'c, WallTime> {
    let mut group = c.benchmark_group(name);
    let measure = if env.quick { 300 } else { 1500 };
    group
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_millis(measure))
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat);
    group
}

/// Spare tiles of the `*_spares` one-tile commit cases (batches of 16 tiles), and of the
/// `*_spares7` ones (batches of 8).
const SPARES: usize = 15;
const FEWER_SPARES: usize = 7;

fn array(
    env: &Env,
    zeros: Option<&ZeroMemory>,
    pool: Option<&ChunkPool>,
    spare_tiles: usize,
) -> SparseArray<u8> {
    let config = SparseConfig {
        spare_tiles,
        tile_bytes: CHUNK,
        holes: if zeros.is_some() {
            HoleBehavior::Zeros
        } else {
            HoleBehavior::Error
        },
        zeros: zeros.cloned(),
        pool: pool.cloned(),
        ..SparseConfig::default()
    };
    SparseArray::new(&env.device, array_bytes(env), config).expect("sparse array")
}

fn zero_memory(env: &Env, max_block: usize) -> ZeroMemory {
    ZeroMemory::new(&env.device, max_block).expect("zero memory")
}

fn create_drop(c: &mut Criterion, env: &Env) {
    let id = size_id(array_bytes(env));
    let mut variants: Vec<(String, Option<ZeroMemory>)> = vec![("errors".into(), None)];
    for max_block in block_sizes(env) {
        let zeros = zero_memory(env, max_block);
        // First use: the blocks are made and zero-filled with the first array.
        let start = Instant::now();
        let first = array(env, Some(&zeros), None, 0);
        let took = start.elapsed();
        println!(
            "zero_holes: first {} array with blocks of at most {}: created in {took:?} \
             ({} maps), zero memory {}",
            fmt_size(array_bytes(env)),
            fmt_size(max_block),
            first.stats().maps,
            fmt_size(zeros.physical_bytes())
        );
        drop(first);
        variants.push((format!("zeros_{}", size_id(max_block)), Some(zeros)));
    }
    let mut group = slow_group(c, env, "zero_holes/create");
    for (name, zeros) in &variants {
        group.bench_function(format!("{name}/{id}"), |b| {
            b.iter_custom(|n| time_op(n, || (), |()| array(env, zeros.as_ref(), None, 0), drop))
        });
    }
    group.finish();
    let mut group = slow_group(c, env, "zero_holes/drop");
    for (name, zeros) in &variants {
        group.bench_function(format!("{name}/{id}"), |b| {
            b.iter_custom(|n| time_op(n, || array(env, zeros.as_ref(), None, 0), drop, |()| ()))
        });
    }
    group.finish();
}

/// How the one-tile commit bench picks its tile.
#[derive(Clone, Copy)]
enum Pick {
    /// A random tile of the array, nothing else committed: in zero mode, the commit splits a
    /// block of the largest size and the (untimed) decommit merges it back.
    Random,
    /// The same tile every time, next to one that stays committed: in zero mode, the tile
    /// keeps a block of its own between commits.
    Again,
    /// The next tile, as a growing KV cache takes pages: the (untimed) decommit frees each
    /// span of a largest block once all its tiles are committed. In zero mode the first
    /// commit in a span splits its block, the next ones split what is left.
    Sequential,
}

fn one_tile_commit(c: &mut Criterion, env: &Env) {
    let [large, small] = block_sizes(env);
    let zeros = zero_memory(env, large);
    let zeros_small = zero_memory(env, small);
    let small_split = format!("zeros_split_{}", size_id(small));
    let tiles = array_bytes(env) / CHUNK;
    let mut group = env.fast_group(c, "zero_holes/one_tile_commit");
    let cases = [
        ("errors", None, Pick::Random, 0),
        ("zeros_split", Some(&zeros), Pick::Random, 0),
        (small_split.as_str(), Some(&zeros_small), Pick::Random, 0),
        ("zeros_again", Some(&zeros), Pick::Again, 0),
        ("errors_sequential", None, Pick::Sequential, 0),
        ("zeros_sequential", Some(&zeros), Pick::Sequential, 0),
        ("errors_spares", None, Pick::Sequential, SPARES),
        ("zeros_spares", Some(&zeros), Pick::Sequential, SPARES),
        ("errors_spares7", None, Pick::Sequential, FEWER_SPARES),
        (
            "zeros_spares7",
            Some(&zeros),
            Pick::Sequential,
            FEWER_SPARES,
        ),
    ];
    let span = (zeros.max_block_bytes() / CHUNK).max(1);
    for (mode, zero, pick, spares) in cases {
        for pooled in [true, false] {
            let pool = pooled.then(|| {
                let pool = ChunkPool::new(
                    &env.device,
                    PoolConfig {
                        chunk_size: CHUNK,
                        ..PoolConfig::default()
                    },
                )
                .expect("pool");
                pool.prefill(2).expect("prefill");
                pool
            });
            let mut array = array(env, zero, pool.as_ref(), spares);
            let fixed = tiles / 2 + 37;
            if let Pick::Again = pick {
                let next = (fixed + 1) * CHUNK;
                array.commit(next..next + 1).expect("neighbour");
            }
            let array = RefCell::new(array);
            let mut rng = Lcg::new(11);
            let mut next = 0;
            let name = format!("{mode}/{}", if pooled { "pooled" } else { "unpooled" });
            group.bench_function(&name, |b| {
                b.iter_custom(|n| {
                    time_op(
                        n,
                        || match pick {
                            Pick::Random => rng.below(tiles) * CHUNK,
                            Pick::Again => fixed * CHUNK,
                            Pick::Sequential => {
                                next = (next + 1) % tiles;
                                next * CHUNK
                            }
                        },
                        |at| {
                            array.borrow_mut().commit(at..at + 1).expect("commit");
                            at
                        },
                        |at| {
                            let tile = at / CHUNK;
                            let freed = match pick {
                                Pick::Sequential if (tile + 1).is_multiple_of(span) => {
                                    (tile + 1 - span) * CHUNK..at + CHUNK
                                }
                                Pick::Sequential => return,
                                _ => at..at + CHUNK,
                            };
                            array.borrow_mut().decommit(freed).expect("decommit");
                        },
                    )
                })
            });
            let st = array.borrow().stats();
            println!(
                "zero_holes/one_tile_commit/{name}: {} maps, {} unmaps, {} set-access calls, \
                 {} creates",
                st.maps, st.unmaps, st.set_access_calls, st.creates
            );
        }
    }
    group.finish();
    let held = zeros.physical_bytes();
    println!(
        "zero_holes: zero memory after the commits in a {} array: {}",
        fmt_size(array_bytes(env)),
        fmt_size(held)
    );
    record_extra("zero_holes/zero_memory_bytes", held as f64);
}

/// A buffer grown to `bytes` the way 2 MiB appends grow it (capacity only: no copies).
fn grown(env: &Env, bytes: usize, pool: Option<&ChunkPool>) -> GrowableBuffer<u8> {
    let mut buffer = GrowableBuffer::new(
        &env.device,
        BufferConfig {
            max_capacity: Some(bytes),
            pool: pool.cloned(),
            ..BufferConfig::default()
        },
    )
    .expect("buffer");
    for len in (CHUNK..=bytes).step_by(CHUNK) {
        if buffer.capacity() < len {
            buffer.reserve(len).expect("grow");
        }
    }
    buffer
}

fn teardown(c: &mut Criterion, env: &Env, raw: &Raw) {
    let bytes = buffer_bytes(env);
    let id = size_id(bytes);
    let pool = ChunkPool::new(
        &env.device,
        PoolConfig {
            chunk_size: POOL_CHUNK,
            max_chunks: bytes / POOL_CHUNK,
            max_bytes: bytes,
            ..PoolConfig::default()
        },
    )
    .expect("pool");
    let mut group = slow_group(c, env, "teardown");
    // Each iteration builds 16 GiB untimed before the timed teardown: measure briefly.
    group.measurement_time(Duration::from_millis(if env.quick { 300 } else { 800 }));
    for (name, pool) in [("growable", None), ("growable_pooled", Some(&pool))] {
        let probe = grown(env, bytes, pool);
        println!("teardown/{name}/{id}: {} chunks", probe.stats().chunks);
        drop(probe);
        group.bench_function(format!("{name}/{id}"), |b| {
            b.iter_custom(|n| time_op(n, || grown(env, bytes, pool), drop, |()| ()))
        });
    }
    let stats = pool.stats();
    println!(
        "teardown/growable_pooled: pool releases {} (chunks held {})",
        stats.releases, stats.chunks_held
    );
    let count = bytes / POOL_CHUNK;
    let layout = format!("{id}_in_{}", size_id(POOL_CHUNK));
    group.bench_function(format!("raw_release/{layout}"), |b| {
        b.iter_custom(|n| {
            time_op(
                n,
                || raw.mapped_chunks(count, POOL_CHUNK),
                |mut chunks| {
                    raw.synchronize();
                    chunks.unmap_all();
                    chunks.release_all();
                    chunks
                },
                drop,
            )
        })
    });
    group.bench_function(format!("raw_unmap/{layout}"), |b| {
        b.iter_custom(|n| {
            time_op(
                n,
                || raw.mapped_chunks(count, POOL_CHUNK),
                |mut chunks| {
                    raw.synchronize();
                    chunks.unmap_all();
                    chunks
                },
                drop,
            )
        })
    });
    group.bench_function(format!("raw_release/{id}_in_1"), |b| {
        b.iter_custom(|n| {
            time_op(
                n,
                || raw.mapped_chunks(1, bytes),
                |mut chunks| {
                    raw.synchronize();
                    chunks.unmap_all();
                    chunks.release_all();
                    chunks
                },
                drop,
            )
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let env = env();
    let raw = Raw::new(env);
    create_drop(c, env);
    one_tile_commit(c, env);
    teardown(c, env, &raw);
}

criterion_group!(teardown_benches, benches);
criterion_main!(teardown_benches);
