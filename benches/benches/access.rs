//! Set access on 64 freshly mapped, contiguous 2 MiB chunks: one `cuMemSetAccess` per chunk vs
//! one for the run.
//!
//! Ids: `set_access/{per_chunk,per_run}/64x2MiB`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use cuda_vmm::{AccessFlags, Allocation, AllocationProps, Mapping, Reservation, ReserveOptions};
use cuda_vmm_benches::{env, time_op, CHUNK};

const CHUNKS: usize = 64;

fn set_access(c: &mut Criterion) {
    let env = env();
    let device = &env.device;
    let props = AllocationProps::device(device);
    let rw = [(device, AccessFlags::ReadWrite)];

    // 64 separate allocations mapped back to back into one reservation; each iteration maps
    // them (untimed), sets access (timed: a fresh mapping is where the driver does the work)
    // and unmaps them again (untimed).
    let reservation =
        Reservation::new(device, CHUNKS * CHUNK, ReserveOptions::default()).expect("reserve");
    let allocations: Vec<Allocation> = (0..CHUNKS)
        .map(|_| Allocation::new(device, CHUNK, &props).expect("create"))
        .collect();
    let map_all = || -> Vec<Mapping> {
        allocations
            .iter()
            .enumerate()
            .map(|(i, a)| reservation.map(i * CHUNK, a, 0, CHUNK).expect("map"))
            .collect()
    };
    let unmap_all = |mappings: Vec<Mapping>| {
        for m in mappings {
            m.unmap().expect("unmap");
        }
    };

    let id = format!("{CHUNKS}x2MiB");
    let mut group = env.fast_group(c, "set_access");
    group.bench_function(BenchmarkId::new("per_chunk", &id), |b| {
        b.iter_custom(|n| {
            time_op(
                n,
                map_all,
                |mappings| {
                    for mapping in &mappings {
                        mapping.set_access(&rw).expect("set access");
                    }
                    mappings
                },
                unmap_all,
            )
        })
    });
    group.bench_function(BenchmarkId::new("per_run", &id), |b| {
        b.iter_custom(|n| {
            time_op(
                n,
                map_all,
                |mappings| {
                    reservation
                        .set_access(0, CHUNKS * CHUNK, &rw)
                        .expect("set access");
                    mappings
                },
                unmap_all,
            )
        })
    });
    group.finish();
}

criterion_group!(benches, set_access);
criterion_main!(benches);
