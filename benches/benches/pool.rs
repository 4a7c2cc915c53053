//! 2 MiB alloc + free: a chunk from the pool vs `cuMemAlloc` + `cuMemFree`.
//!
//! Ids: `alloc_free/pool/2MiB` (acquire + recycle of a physical chunk),
//! `alloc_free/pool_mapped/2MiB` (the same, also mapped with access and unmapped, so the
//! memory is usable like `cuMemAlloc`'s), `alloc_free/cuMemAlloc/2MiB` (raw table).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use cuda_vmm::{AccessFlags, Reservation, ReserveOptions};
use cuda_vmm_alloc::{ChunkPool, PoolConfig};
use cuda_vmm_benches::{env, Raw, CHUNK};

fn alloc_free(c: &mut Criterion) {
    let env = env();
    let raw = Raw::new(env);
    let device = &env.device;
    let pool = ChunkPool::new(
        device,
        PoolConfig {
            chunk_size: CHUNK,
            ..PoolConfig::default()
        },
    )
    .expect("pool");
    pool.prefill(1).expect("prefill");
    let reservation = Reservation::new(device, CHUNK, ReserveOptions::default()).expect("reserve");
    let rw = [(device, AccessFlags::ReadWrite)];

    let mut group = env.fast_group(c, "alloc_free");
    group.bench_function(BenchmarkId::new("pool", "2MiB"), |b| {
        b.iter(|| {
            let chunk = pool.acquire().expect("acquire");
            pool.recycle(chunk).expect("recycle")
        })
    });
    group.bench_function(BenchmarkId::new("pool_mapped", "2MiB"), |b| {
        b.iter(|| {
            let chunk = pool.acquire().expect("acquire");
            let mapping = reservation.map(0, &chunk, 0, CHUNK).expect("map");
            mapping.set_access(&rw).expect("set access");
            mapping.unmap().expect("unmap");
            pool.recycle(chunk).expect("recycle")
        })
    });
    group.bench_function(BenchmarkId::new("cuMemAlloc", "2MiB"), |b| {
        b.iter(|| raw.mem_free(raw.mem_alloc(CHUNK)))
    });
    group.finish();
}

criterion_group!(benches, alloc_free);
criterion_main!(benches);
