//! What the copy rule costs: host copies through the library's pinned staging against the
//! copies it made before (straight into the caller's pageable memory) and the pinned floor.
//!
//! Ids: `copies/{read,write}/{4KiB,2MiB,64MiB}/{safe,raw_pageable,raw_pinned}`.
//! - `safe`: `Reservation::read`/`write` with a pageable `Vec` (staged in 4 MiB chunks,
//!   double-buffered; the host-side copy into or out of the caller's slice included);
//! - `raw_pageable`: one `cuMemcpy{DtoH,HtoD}Async` into or from the same pageable `Vec` on a
//!   stream of its own, then `cuStreamSynchronize`: what the safe layer did before staging;
//! - `raw_pinned`: the same copy into or from page-locked memory (no host-side copy): the
//!   floor of any staged copy.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use cuda_vmm::{Allocation, AllocationProps, Reservation, ReserveOptions};
use cuda_vmm_benches::{env, size_id, Raw, KIB, MIB};

fn copies(c: &mut Criterion) {
    let env = env();
    let device = &env.device;
    let raw = Raw::new(env);
    let sizes = [4 * KIB, 2 * MIB, 64 * MIB];
    let props = AllocationProps::device(device);
    let g = device
        .granularity(&props, cuda_vmm::GranularityKind::Minimum)
        .expect("granularity");
    let span = (64 * MIB).div_ceil(g) * g;
    let reservation = Reservation::new(device, span, ReserveOptions::default()).expect("reserve");
    let allocation = Allocation::new(device, span, &props).expect("create");
    let mapping = reservation.map(0, &allocation, 0, span).expect("map");
    mapping
        .set_access(&[(device, cuda_vmm::AccessFlags::ReadWrite)])
        .expect("access");
    let ptr = reservation.ptr();
    for dir in ["read", "write"] {
        let mut group = env.fast_group(c, &format!("copies/{dir}"));
        for &size in &sizes {
            env.tune(&mut group, size.max(8 * MIB));
            group.throughput(Throughput::Bytes(size as u64));
            let copier = raw.copier(size);
            let mut host = vec![0x5Au8; size];
            let id = size_id(size);
            if dir == "read" {
                group.bench_function(format!("{id}/safe"), |b| {
                    b.iter(|| reservation.read(0, &mut host).expect("read"))
                });
                group.bench_function(format!("{id}/raw_pageable"), |b| {
                    b.iter(|| copier.read_pageable(ptr, &mut host))
                });
                group.bench_function(format!("{id}/raw_pinned"), |b| {
                    b.iter(|| copier.read_pinned(ptr))
                });
            } else {
                group.bench_function(format!("{id}/safe"), |b| {
                    b.iter(|| reservation.write(0, &host).expect("write"))
                });
                group.bench_function(format!("{id}/raw_pageable"), |b| {
                    b.iter(|| copier.write_pageable(ptr, &host))
                });
                group.bench_function(format!("{id}/raw_pinned"), |b| {
                    b.iter(|| copier.write_pinned(ptr))
                });
            }
        }
        group.finish();
    }
    drop(mapping);
}

criterion_group!(benches, copies);
criterion_main!(benches);
