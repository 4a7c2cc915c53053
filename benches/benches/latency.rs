//! Per-entry-point latency, safe layer vs raw table, at 2 MiB .. 1 GiB.
//!
//! Ids: `latency/OP/{safe,raw}/SIZE`. Each make/undo pair gives three benches: the pair timed
//! whole (`reserve_free`, `create_release`, `map_unmap`) and each call timed alone with its
//! partner run untimed, so no iteration leaves anything behind. `map_unmap` is the whole
//! cycle (map, set access, unmap); `set_access` is timed on a fresh mapping and `unmap` on a
//! mapping with access set, since that is where the driver does its work.

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion};
use cuda_vmm::{AccessFlags, Allocation, AllocationProps, Mapping, Reservation, ReserveOptions};
use cuda_vmm_benches::{env, size_id, time_op, Env, Part, Raw, LATENCY_SIZES};

fn reserve(env: &Env, size: usize) -> Reservation {
    Reservation::new(&env.device, size, ReserveOptions::default()).expect("reserve")
}

fn create(env: &Env, size: usize) -> Allocation {
    Allocation::new(&env.device, size, &AllocationProps::device(&env.device)).expect("create")
}

fn map(reservation: &Reservation, allocation: &Allocation) -> Mapping {
    let size = allocation.size();
    reservation.map(0, allocation, 0, size).expect("map")
}

/// Calls `bench(group, part, size)` for each part of a pair (groups `latency/{names[i]}`,
/// named pair, make, undo) and each size.
fn pair_groups(
    c: &mut Criterion,
    env: &Env,
    names: [&str; 3],
    sizes: &[usize],
    mut bench: impl FnMut(&mut BenchmarkGroup<'_, WallTime>, Part, usize),
) {
    for (name, part) in names.into_iter().zip(Part::ALL) {
        let mut group = env.fast_group(c, &format!("latency/{name}"));
        for &size in sizes {
            env.tune(&mut group, size);
            bench(&mut group, part, size);
        }
        group.finish();
    }
}

fn reserve_free(c: &mut Criterion, env: &Env, raw: &Raw, sizes: &[usize]) {
    let names = ["reserve_free", "reserve", "free"];
    pair_groups(c, env, names, sizes, |group, part, size| {
        let id = size_id(size);
        group.bench_function(BenchmarkId::new("safe", &id), |b| {
            part.bench(b, || reserve(env, size), |r| r.free().expect("free"))
        });
        group.bench_function(BenchmarkId::new("raw", &id), |b| {
            part.bench(b, || raw.reserve(size), |r| raw.free(r))
        });
    });
}

fn create_release(c: &mut Criterion, env: &Env, raw: &Raw, sizes: &[usize]) {
    let names = ["create_release", "create", "release"];
    pair_groups(c, env, names, sizes, |group, part, size| {
        let id = size_id(size);
        group.bench_function(BenchmarkId::new("safe", &id), |b| {
            part.bench(b, || create(env, size), |a| a.release().expect("release"))
        });
        group.bench_function(BenchmarkId::new("raw", &id), |b| {
            part.bench(b, || raw.create(size), |a| raw.release(a))
        });
    });
}

/// Map, set access and unmap, the way a mapping is really used: `set_access` is
/// timed on a fresh mapping and `unmap` on one with access set (re-applying
/// access to a live mapping, or unmapping one that never had access, costs the
/// driver almost nothing and would hide the real price).
fn map_unmap(c: &mut Criterion, env: &Env, raw: &Raw, sizes: &[usize]) {
    let rw = [(&env.device, AccessFlags::ReadWrite)];
    let names = ["map_unmap", "map", "unmap"];
    pair_groups(c, env, names, sizes, |group, part, size| {
        let id = size_id(size);
        let (reservation, allocation) = (reserve(env, size), create(env, size));
        // The pair is the whole cycle: map, set access, unmap.
        let make = || {
            let m = map(&reservation, &allocation);
            if part != Part::Make {
                m.set_access(&rw).expect("set access");
            }
            m
        };
        group.bench_function(BenchmarkId::new("safe", &id), |b| {
            part.bench(b, make, |m| m.unmap().expect("unmap"))
        });
        let range = raw.range(size);
        let make_raw = || {
            range.map();
            if part != Part::Make {
                range.set_access();
            }
        };
        group.bench_function(BenchmarkId::new("raw", &id), |b| {
            part.bench(b, make_raw, |()| range.unmap())
        });
    });
}

fn set_access(c: &mut Criterion, env: &Env, raw: &Raw, sizes: &[usize]) {
    let mut group = env.fast_group(c, "latency/set_access");
    let rw = [(&env.device, AccessFlags::ReadWrite)];
    for &size in sizes {
        let id = size_id(size);
        env.tune(&mut group, size);
        let (reservation, allocation) = (reserve(env, size), create(env, size));
        group.bench_function(BenchmarkId::new("safe", &id), |b| {
            b.iter_custom(|n| {
                time_op(
                    n,
                    || map(&reservation, &allocation),
                    |m| {
                        m.set_access(&rw).expect("set access");
                        m
                    },
                    |m| m.unmap().expect("unmap"),
                )
            })
        });
        let range = raw.range(size);
        group.bench_function(BenchmarkId::new("raw", &id), |b| {
            b.iter_custom(|n| {
                time_op(
                    n,
                    || range.map(),
                    |()| range.set_access(),
                    |()| range.unmap(),
                )
            })
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
