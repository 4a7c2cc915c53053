//! Set access on 64 contiguous 2 MiB chunks: one `cuMemSetAccess` per chunk vs one for the run.
//!
//! Ids: `set_access/{per_chunk,per_run}/64x2MiB`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use cuda_vmm::{AccessFlags, Allocation, AllocationProps, Mapping, Reservation, ReserveOptions};
use cuda_vmm_benches::{env, CHUNK};

const CHUNKS: usize = 64;

fn set_access(c: &mut Criterion) {
    let env = env();
    let device = &env.device;
    let props = AllocationProps::device(device);
    let rw = [(device, AccessFlags::ReadWrite)];

    // 64 separate allocations mapped back to back into one reservation.
    let reservation =
        Reservation::new(device, CHUNKS * CHUNK, ReserveOptions::default()).expect("reserve");
    let mappings: Vec<Mapping> = (0..CHUNKS)
        .map(|i| {
            let allocation = Allocation::new(device, CHUNK, &props).expect("create");
            reservation
                .map(i * CHUNK, &allocation, 0, CHUNK)
                .expect("map")
        })
        .collect();

    let id = format!("{CHUNKS}x2MiB");
    let mut group = env.fast_group(c, "set_access");
    group.bench_function(BenchmarkId::new("per_chunk", &id), |b| {
        b.iter(|| {
            for mapping in &mappings {
                mapping.set_access(&rw).expect("set access");
            }
        })
    });
    group.bench_function(BenchmarkId::new("per_run", &id), |b| {
        b.iter(|| {
            reservation
                .set_access(0, CHUNKS * CHUNK, &rw)
                .expect("set access")
        })
    });
    group.finish();
}

criterion_group!(benches, set_access);
criterion_main!(benches);
