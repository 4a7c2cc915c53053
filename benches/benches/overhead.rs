//! The safe layer's own cost per call, on a driver whose VMM entry points return at once.
//!
//! Ids: `overhead/{reserve_free,create_release,map_unmap,set_access}/{safe,raw}`. The
//! difference `safe - raw` is what the safe layer adds (validation, bookkeeping, RAII);
//! `cargo xtask bench-report` holds it against max(2%, 0.1 µs) of the real driver's latency
//! measured in the same run.
//!
//! `tracing/span/disabled`: what one of the library's debug spans around a driver call costs
//! with no subscriber installed (the case of every user who does not trace): creating and
//! entering a span shaped like `cuMemMap`'s. The safe layer makes one per driver call that
//! changes the address space.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use cuda_vmm::{AccessFlags, Allocation, AllocationProps, Reservation, ReserveOptions};
use cuda_vmm_benches::{env, stub_device, StubRaw, CHUNK};

fn overhead(c: &mut Criterion) {
    let env = env();
    let device = stub_device();
    let raw = StubRaw;
    let props = AllocationProps::device(&device);
    let raw_props = props.to_raw();
    let rw = [(&device, AccessFlags::ReadWrite)];

    let mut group = env.fast_group(c, "overhead/reserve_free");
    group.bench_function("safe", |b| {
        b.iter(|| {
            let r = Reservation::new(&device, CHUNK, ReserveOptions::default()).expect("reserve");
            r.free().expect("free");
        })
    });
    group.bench_function("raw", |b| b.iter(|| raw.reserve_free(black_box(CHUNK))));
    group.finish();

    let mut group = env.fast_group(c, "overhead/create_release");
    group.bench_function("safe", |b| {
        b.iter(|| {
            let a = Allocation::new(&device, CHUNK, &props).expect("create");
            a.release().expect("release");
        })
    });
    group.bench_function("raw", |b| {
        b.iter(|| raw.create_release(black_box(CHUNK), &raw_props))
    });
    group.finish();

    let reservation = Reservation::new(&device, CHUNK, ReserveOptions::default()).expect("reserve");
    let allocation = Allocation::new(&device, CHUNK, &props).expect("create");
    let mut group = env.fast_group(c, "overhead/map_unmap");
    group.bench_function("safe", |b| {
        b.iter(|| {
            let m = reservation.map(0, &allocation, 0, CHUNK).expect("map");
            m.unmap().expect("unmap");
        })
    });
    let (ptr, handle) = (reservation.ptr(), allocation.raw_handle());
    group.bench_function("raw", |b| {
        b.iter(|| raw.map_unmap(black_box(ptr), CHUNK, handle))
    });
    group.finish();

    let mapping = reservation.map(0, &allocation, 0, CHUNK).expect("map");
    let mut group = env.fast_group(c, "overhead/set_access");
    group.bench_function("safe", |b| {
        b.iter(|| mapping.set_access(black_box(&rw)).expect("set access"))
    });
    let mut desc = cuda_vmm_sys::CUmemAccessDesc::default();
    desc.location.type_ = cuda_vmm_sys::CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE;
    desc.location.id = 0;
    desc.flags = cuda_vmm_sys::CUmemAccess_flags::CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    group.bench_function("raw", |b| {
        b.iter(|| raw.set_access(black_box(ptr), CHUNK, &desc))
    });
    group.finish();

    let mut group = env.fast_group(c, "tracing/span");
    group.bench_function("disabled", |b| {
        b.iter(|| {
            let span = tracing::debug_span!(
                "cuMemMap",
                address = %format_args!("{:#x}", black_box(ptr)),
                size = black_box(CHUNK),
                handle = %format_args!("{:#x}", handle),
            )
            .entered();
            black_box(&span);
        })
    });
    group.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
