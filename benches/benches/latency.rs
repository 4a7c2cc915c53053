//! Per-entry-point latency, safe layer vs raw table, at 2 MiB .. 1 GiB.
//!
//! Ids: `latency/OP/{safe,raw}/SIZE`. Pairs (`reserve_free`, `create_release`, `map_unmap`)
//! are timed whole; single calls are timed alone, their partner run untimed, so no iteration
//! leaves anything behind. `set_access` re-applies read-write access to one live mapping.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use cuda_vmm::{AccessFlags, Allocation, AllocationProps, Mapping, Reservation, ReserveOptions};
use cuda_vmm_benches::{env, size_id, time_op, Env, Raw, LATENCY_SIZES};

fn reserve(env: &Env, size: usize) -> Reservation {
    Reservation::new(&env.device, size, ReserveOptions::default()).expect("reserve")
}

fn create(env: &Env, size: usize) -> Allocation {
    Allocation::new(&env.device, size, &AllocationProps::device(&env.device)).expect("create")
}

fn map(res: &Reservation, alloc: &Allocation) -> Mapping {
    res.map(0, alloc, 0, alloc.size()).expect("map")
}

fn reserve_free(c: &mut Criterion, env: &Env, raw: &Raw, sizes: &[usize]) {
    for (op, name) in [
        ("reserve_free", "pair"),
        ("reserve", "first"),
        ("free", "second"),
    ] {
        let mut group = env.fast_group(c, &format!("latency/{op}"));
        for &size in sizes {
            let id = size_id(size);
            group.bench_function(BenchmarkId::new("safe", &id), |b| match name {
                "pair" => b.iter(|| reserve(env, size).free().expect("free")),
                "first" => b.iter_custom(|n| {
                    time_op(
                        n,
                        || (),
                        |()| reserve(env, size),
                        |r| r.free().expect("free"),
                    )
                }),
                _ => b.iter_custom(|n| {
                    time_op(
                        n,
                        || reserve(env, size),
                        |r| r.free().expect("free"),
                        |()| (),
                    )
                }),
            });
            group.bench_function(BenchmarkId::new("raw", &id), |b| match name {
                "pair" => b.iter(|| raw.reserve_free(size)),
                "first" => b.iter_custom(|n| raw.time_reserve(n, size)),
                _ => b.iter_custom(|n| raw.time_free(n, size)),
            });
        }
        group.finish();
    }
}

fn create_release(c: &mut Criterion, env: &Env, raw: &Raw, sizes: &[usize]) {
    for (op, name) in [
        ("create_release", "pair"),
        ("create", "first"),
        ("release", "second"),
    ] {
        let mut group = env.fast_group(c, &format!("latency/{op}"));
        for &size in sizes {
            let id = size_id(size);
            group.bench_function(BenchmarkId::new("safe", &id), |b| match name {
                "pair" => b.iter(|| create(env, size).release().expect("release")),
                "first" => b.iter_custom(|n| {
                    time_op(
                        n,
                        || (),
                        |()| create(env, size),
                        |a| a.release().expect("release"),
                    )
                }),
                _ => b.iter_custom(|n| {
                    time_op(
                        n,
                        || create(env, size),
                        |a| a.release().expect("release"),
                        |()| (),
                    )
                }),
            });
            group.bench_function(BenchmarkId::new("raw", &id), |b| match name {
                "pair" => b.iter(|| raw.create_release(size)),
                "first" => b.iter_custom(|n| raw.time_create(n, size)),
                _ => b.iter_custom(|n| raw.time_release(n, size)),
            });
        }
        group.finish();
    }
}

fn map_unmap(c: &mut Criterion, env: &Env, raw: &Raw, sizes: &[usize]) {
    for (op, name) in [("map_unmap", "pair"), ("map", "first"), ("unmap", "second")] {
        let mut group = env.fast_group(c, &format!("latency/{op}"));
        for &size in sizes {
            let id = size_id(size);
            let (res, alloc) = (reserve(env, size), create(env, size));
            group.bench_function(BenchmarkId::new("safe", &id), |b| match name {
                "pair" => b.iter(|| map(&res, &alloc).unmap().expect("unmap")),
                "first" => b.iter_custom(|n| {
                    time_op(
                        n,
                        || (),
                        |()| map(&res, &alloc),
                        |m| m.unmap().expect("unmap"),
                    )
                }),
                _ => b.iter_custom(|n| {
                    time_op(
                        n,
                        || map(&res, &alloc),
                        |m| m.unmap().expect("unmap"),
                        |()| (),
                    )
                }),
            });
            let range = raw.range(size);
            group.bench_function(BenchmarkId::new("raw", &id), |b| match name {
                "pair" => b.iter(|| {
                    range.map();
                    range.unmap();
                }),
                "first" => {
                    b.iter_custom(|n| time_op(n, || (), |()| range.map(), |()| range.unmap()))
                }
                _ => b.iter_custom(|n| time_op(n, || range.map(), |()| range.unmap(), |()| ())),
            });
        }
        group.finish();
    }
}

fn set_access(c: &mut Criterion, env: &Env, raw: &Raw, sizes: &[usize]) {
    let mut group = env.fast_group(c, "latency/set_access");
    let rw = [(&env.device, AccessFlags::ReadWrite)];
    for &size in sizes {
        let id = size_id(size);
        let res = reserve(env, size);
        let mapping = map(&res, &create(env, size));
        group.bench_function(BenchmarkId::new("safe", &id), |b| {
            b.iter(|| res.set_access(0, size, &rw).expect("set access"))
        });
        drop(mapping);
        let range = raw.range(size);
        range.map();
        group.bench_function(BenchmarkId::new("raw", &id), |b| {
            b.iter(|| range.set_access())
        });
    }
    group.finish();
}

fn latency(c: &mut Criterion) {
    let env = env();
    let raw = Raw::new(env);
    let sizes = env.sizes("latency", &LATENCY_SIZES, 1.0);
    reserve_free(c, env, &raw, &sizes);
    create_release(c, env, &raw, &sizes);
    map_unmap(c, env, &raw, &sizes);
    set_access(c, env, &raw, &sizes);
}

criterion_group!(benches, latency);
criterion_main!(benches);
