//! Growing a device array to 256 MiB, 2 GiB and 16 GiB by 2 MiB appends: library layouts
//! and the raw-table floors they are measured against, in one process.
//!
//! An append makes room for `len + 2 MiB` bytes and bumps `len`; no data comes from the host,
//! so the driver work dominates. Ids: `growth/LAYOUT/SIZE`.
//! - `growable`: a [`GrowableBuffer`] with the default policy (steps of a quarter of the
//!   committed size, one allocation per step, 32 MiB pieces for a second after a slow
//!   create); `growable_speed`: [`GrowthPolicy::speed`] (doubling, same switch);
//!   `growable_whole`: the default steps, always one allocation each (no switch);
//!   `growable_alloc{32,128,512}MiB`: the default steps backed by allocations of at most
//!   that size (no switch);
//! - `growable_pooled`: the default buffer drawing 256 MiB chunks from a warm [`ChunkPool`]
//!   (chunks recycled from the previous buffer, as a caching allocator would), so growth is
//!   map + set access only;
//! - `growable_cached`: the default buffer on a [`CachingAllocator`]'s page cache (256 MiB
//!   chunks the previous buffer gave back, nothing prefilled); its floor is `growable_pooled`;
//! - `realloc`: realloc-doubling through the safe layer's `cuMemAlloc` blocks;
//! - `naive`: one `cuMemCreate` + `cuMemMap` + `cuMemSetAccess` per 2 MiB;
//! - the floors, straight through the raw table: `raw_steps` (the default policy's steps, one
//!   allocation each: bound 1.25x), `raw_steps_32MiB` (the same steps in allocations of at
//!   most 32 MiB, one set access per step: bound 1.25x), `raw_doubling` (the speed profile's steps: bound 2x) and
//!   `raw_realloc` (realloc-doubling with VMM calls: reserve, create, map, set access, copy,
//!   synchronize, unmap, release, free).
//!
//! The timed part ends with a `cuCtxSynchronize` and excludes tearing down;
//! `growth_cycle/{raw_steps,raw_steps_32MiB,growable,growable_churn}/SIZE` (largest size only)
//! times growth plus tearing down, the cycle of a program that builds and drops buffers. Criterion's
//! iterations run back to back, so each one reuses memory the previous one released moments
//! before (the *steady state*). Two other regimes are printed (not on the simulator): the
//! median of runs that start after the device has been idle for a while (`settled`), and,
//! with `CUDA_VMM_GROWTH_FIRST_USE=LAYOUT`, one run as the process's first use of device
//! memory (then the process exits; run it with the main run's `CUDA_VMM_BENCH_SESSION` so that
//! its side key joins that run). A create probe times `cuMemCreate` right after releasing
//! the same size and after an idle pause. Peak committed memory, whether the pointer moved,
//! the worst committed/length ratio past 1 GiB, the ratio to the floor, the settled and
//! first-use medians (`growth/LAYOUT/SIZE/{settled_median_s,first_use_s}`) and the create
//! probe (`create_probe/SIZE/{after_release,after_idle}_s`) go to the report's side file.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion};
use cuda_vmm::{
    AccessFlags, Allocation, AllocationProps, LinearAllocation, Reservation, ReserveOptions,
};
use cuda_vmm_alloc::{
    BufferConfig, CachingAllocator, ChunkPool, DriverStats, GrowableBuffer, GrowthPolicy,
    PoolConfig,
};
use cuda_vmm_benches::{
    env, fmt_size, record_extra, size_id, Env, Raw, RawGrowth, CHUNK, GIB, MIB,
};

/// What one growth run observed.
#[derive(Default, Debug)]
struct Probe {
    peak_committed: usize,
    pointer_moved: bool,
    /// Worst committed / length once the length passed 1 GiB (0 if it never did).
    max_ratio_past_1gib: f64,
    driver_calls: u64,
    /// Growth plus tearing down, from the same start.
    cycle: Duration,
    /// The buffer's own statistics, with time per entry point (buffers only).
    stats: Option<DriverStats>,
}

impl Probe {
    /// Notes the state after an append.
    fn step(&mut self, len: usize, committed: usize, moved: bool) {
        self.peak_committed = self.peak_committed.max(committed);
        self.pointer_moved |= moved;
        if len > GIB {
            self.max_ratio_past_1gib = self.max_ratio_past_1gib.max(committed as f64 / len as f64);
        }
    }

    /// The probe of a raw loop.
    fn raw(&mut self, run: RawGrowth) -> Duration {
        self.peak_committed = run.peak_committed;
        self.max_ratio_past_1gib = run.max_ratio_past_1gib;
        self.driver_calls = run.driver_calls;
        self.cycle = run.cycle;
        run.elapsed
    }
}

/// The growable buffer with the default policy: `reserve` makes room for the new length (its
/// length field stays 0, which makes no difference to the driver work).
fn growable(env: &Env, raw: &Raw, size: usize, probe: &mut Probe) -> Duration {
    grow_with(env, raw, size, probe, GrowthPolicy::default())
}

/// The speed profile: doubling steps.
fn growable_speed(env: &Env, raw: &Raw, size: usize, probe: &mut Probe) -> Duration {
    grow_with(env, raw, size, probe, GrowthPolicy::speed())
}

/// The default steps backed by allocations of at most `cap` bytes (0: one per step),
/// whatever creates cost (no switch to churn pieces).
fn capped(env: &Env, raw: &Raw, size: usize, probe: &mut Probe, cap: usize) -> Duration {
    let policy = GrowthPolicy {
        max_allocation: cap,
        churn_allocation: 0,
        ..GrowthPolicy::default()
    };
    grow_with(env, raw, size, probe, policy)
}

fn growable_whole(env: &Env, raw: &Raw, size: usize, probe: &mut Probe) -> Duration {
    capped(env, raw, size, probe, 0)
}

/// The default steps, switching to 32 MiB pieces for a second after a slow create
/// (`churn_allocation`).
fn growable_churn(env: &Env, raw: &Raw, size: usize, probe: &mut Probe) -> Duration {
    let policy = GrowthPolicy {
        churn_allocation: 32 * MIB,
        ..GrowthPolicy::default()
    };
    grow_with(env, raw, size, probe, policy)
}

fn growable_alloc32mib(env: &Env, raw: &Raw, size: usize, probe: &mut Probe) -> Duration {
    capped(env, raw, size, probe, 32 * MIB)
}

fn growable_alloc128mib(env: &Env, raw: &Raw, size: usize, probe: &mut Probe) -> Duration {
    capped(env, raw, size, probe, 128 * MIB)
}

fn growable_alloc512mib(env: &Env, raw: &Raw, size: usize, probe: &mut Probe) -> Duration {
    capped(env, raw, size, probe, 512 * MIB)
}

fn grow_with(
    env: &Env,
    raw: &Raw,
    size: usize,
    probe: &mut Probe,
    policy: GrowthPolicy,
) -> Duration {
    let config = BufferConfig {
        max_capacity: Some(size),
        policy,
        ..BufferConfig::default()
    };
    grow_buffer(env, raw, size, probe, config)
}

/// Grows one buffer made from `config` to `size` bytes in 2 MiB appends, timing it.
fn grow_buffer(
    env: &Env,
    raw: &Raw,
    size: usize,
    probe: &mut Probe,
    config: BufferConfig,
) -> Duration {
    let start = Instant::now();
    let mut buffer = GrowableBuffer::<u8>::new(&env.device, config).expect("growable buffer");
    let ptr = buffer.ptr();
    let mut len = 0;
    while len < size {
        len += CHUNK;
        buffer.reserve(len).expect("grow");
        probe.step(len, buffer.committed_bytes(), buffer.ptr() != ptr);
    }
    raw.synchronize();
    let elapsed = start.elapsed();
    let stats = buffer.stats();
    probe.driver_calls =
        stats.creates + stats.maps + stats.set_access_calls + stats.unmaps + stats.releases;
    probe.stats = Some(stats);
    drop(buffer);
    probe.cycle = start.elapsed();
    elapsed
}

/// Chunk size of the warm pool behind `growable_pooled`.
const POOL_CHUNK: usize = 256 << 20;

thread_local! {
    /// One warm pool per final size, kept across iterations.
    static POOLS: RefCell<HashMap<usize, ChunkPool>> = Default::default();
    /// Every timed iteration per bench id, for the in-process medians and ratios.
    static TIMES: RefCell<HashMap<String, Vec<Duration>>> = Default::default();
}

/// The growable buffer on a warm pool: the chunks a previous buffer gave back are mapped
/// again, so growing makes no `cuMemCreate` (the first, untimed iteration fills the pool).
fn growable_pooled(env: &Env, raw: &Raw, size: usize, probe: &mut Probe) -> Duration {
    let chunk = POOL_CHUNK.min(size);
    let pool = POOLS.with(|pools| {
        pools
            .borrow_mut()
            .entry(size)
            .or_insert_with(|| {
                let pool = ChunkPool::new(
                    &env.device,
                    PoolConfig {
                        chunk_size: chunk,
                        max_chunks: size / chunk,
                        max_bytes: size,
                        ..PoolConfig::default()
                    },
                )
                .expect("pool");
                pool.prefill(size / chunk).expect("prefill the pool");
                pool
            })
            .clone()
    });
    let config = BufferConfig {
        max_capacity: Some(size),
        pool: Some(pool),
        ..BufferConfig::default()
    };
    grow_buffer(env, raw, size, probe, config)
}

thread_local! {
    /// One caching allocator per final size, kept across iterations: its page cache.
    static CACHES: RefCell<HashMap<usize, CachingAllocator>> = Default::default();
}

/// The growable buffer on a caching allocator's page cache ([`CachingAllocator::chunk_pool`],
/// 256 MiB chunks): each buffer maps the chunks the previous one gave back (the first,
/// untimed iteration fills the cache; nothing is prefilled).
fn growable_cached(env: &Env, raw: &Raw, size: usize, probe: &mut Probe) -> Duration {
    let chunk = POOL_CHUNK.min(size);
    let allocator = CACHES.with(|caches| {
        caches
            .borrow_mut()
            .entry(size)
            .or_insert_with(|| CachingAllocator::new(&env.device).expect("caching allocator"))
            .clone()
    });
    let config = BufferConfig {
        max_capacity: Some(size),
        pool: Some(allocator.chunk_pool(chunk).expect("the cache's pool")),
        ..BufferConfig::default()
    };
    grow_buffer(env, raw, size, probe, config)
}

/// Realloc-doubling: a new block of twice the capacity, the live bytes copied over.
fn realloc(env: &Env, raw: &Raw, size: usize, probe: &mut Probe) -> Duration {
    let start = Instant::now();
    let mut block: Option<LinearAllocation> = None;
    let mut first_ptr = None;
    let (mut len, mut capacity) = (0, 0);
    while len < size {
        let needed = len + CHUNK;
        if needed > capacity {
            let grown = (2 * capacity).max(needed);
            let next = LinearAllocation::new(&env.device, grown).expect("cuMemAlloc");
            probe.driver_calls += 1;
            if let Some(old) = block.take() {
                next.copy_from(&old, len).expect("cuMemcpyDtoD");
                probe.peak_committed = probe.peak_committed.max(capacity + grown);
                old.free().expect("cuMemFree");
                probe.driver_calls += 2;
            }
            first_ptr.get_or_insert(next.ptr());
            capacity = grown;
            block = Some(next);
        }
        len = needed;
        let moved = block.as_ref().map(LinearAllocation::ptr) != first_ptr;
        probe.step(len, capacity, moved);
    }
    raw.synchronize();
    start.elapsed()
}

/// Naive VMM: one allocation, mapping and set-access per 2 MiB.
fn naive(env: &Env, raw: &Raw, size: usize, probe: &mut Probe) -> Duration {
    let props = AllocationProps::device(&env.device);
    let rw = [(&env.device, AccessFlags::ReadWrite)];
    let start = Instant::now();
    let reservation =
        Reservation::new(&env.device, size, ReserveOptions::default()).expect("reserve");
    let mut mappings = Vec::with_capacity(size / CHUNK);
    while mappings.len() * CHUNK < size {
        let offset = mappings.len() * CHUNK;
        let allocation = Allocation::new(&env.device, CHUNK, &props).expect("create");
        let mapping = reservation.map(offset, &allocation, 0, CHUNK).expect("map");
        mapping.set_access(&rw).expect("set access");
        mappings.push(mapping);
        probe.step(offset + CHUNK, offset + CHUNK, false);
    }
    raw.synchronize();
    let elapsed = start.elapsed();
    probe.driver_calls = 3 * mappings.len() as u64;
    elapsed
}

/// Floor: the default policy's steps, one raw allocation each.
fn raw_steps(_: &Env, raw: &Raw, size: usize, probe: &mut Probe) -> Duration {
    let policy = GrowthPolicy::default();
    probe.raw(raw.grow_in_steps(size, 0, |c, n| policy.grow_to(c, n, CHUNK)))
}

/// Floor: the default policy's steps in raw allocations of at most 32 MiB, one set access
/// per step.
fn raw_steps_32mib(_: &Env, raw: &Raw, size: usize, probe: &mut Probe) -> Duration {
    let policy = GrowthPolicy::default();
    probe.raw(raw.grow_in_steps(size, 32 * MIB, |c, n| policy.grow_to(c, n, CHUNK)))
}

/// Floor: the speed profile's doubling steps, one raw allocation each.
fn raw_doubling(_: &Env, raw: &Raw, size: usize, probe: &mut Probe) -> Duration {
    let policy = GrowthPolicy::speed();
    probe.raw(raw.grow_in_steps(size, 0, |c, n| policy.grow_to(c, n, CHUNK)))
}

/// Floor: realloc-doubling with raw VMM calls.
fn raw_realloc(_: &Env, raw: &Raw, size: usize, probe: &mut Probe) -> Duration {
    probe.raw(raw.grow_realloc(size))
}

type Strategy = fn(&Env, &Raw, usize, &mut Probe) -> Duration;

/// A layout: id, function, peak memory as a multiple of the final size (for the fit
/// check), and the floor it is compared with (itself for a floor).
struct Layout {
    name: &'static str,
    run: Strategy,
    peak: f64,
    floor: &'static str,
}

const fn layout(name: &'static str, run: Strategy, peak: f64, floor: &'static str) -> Layout {
    Layout {
        name,
        run,
        peak,
        floor,
    }
}

/// Floors first, so the ratios can be printed as the layouts finish.
const LAYOUTS: [Layout; 15] = [
    layout("raw_steps", raw_steps, 1.25, "raw_steps"),
    layout("raw_steps_32MiB", raw_steps_32mib, 1.25, "raw_steps_32MiB"),
    layout("raw_doubling", raw_doubling, 2.0, "raw_doubling"),
    layout("raw_realloc", raw_realloc, 1.5, "raw_realloc"),
    layout("growable", growable, 1.25, "raw_steps"),
    layout("growable_speed", growable_speed, 2.0, "raw_doubling"),
    layout("growable_whole", growable_whole, 1.25, "raw_steps"),
    layout("growable_churn", growable_churn, 1.25, "raw_steps_32MiB"),
    layout(
        "growable_alloc32MiB",
        growable_alloc32mib,
        1.25,
        "raw_steps",
    ),
    layout(
        "growable_alloc128MiB",
        growable_alloc128mib,
        1.25,
        "raw_steps",
    ),
    layout(
        "growable_alloc512MiB",
        growable_alloc512mib,
        1.25,
        "raw_steps",
    ),
    layout("growable_pooled", growable_pooled, 1.25, "raw_realloc"),
    layout("growable_cached", growable_cached, 1.25, "growable_pooled"),
    layout("realloc", realloc, 1.5, "raw_realloc"),
    layout("naive", naive, 1.0, "raw_steps"),
];

fn growth(c: &mut Criterion) {
    let env = env();
    let raw = Raw::new(env);
    // `CUDA_VMM_GROWTH_NO_PROBES=1` skips the create probe and the settled runs (minutes of
    // idle pauses), for a filtered run of a few ids.
    if !env.quick && std::env::var_os("CUDA_VMM_GROWTH_NO_PROBES").is_none() {
        create_probe(&raw);
        settled(env, &raw);
    }
    let mut group = env.slow_group(c, "growth");
    for l in &LAYOUTS {
        for size in env.sizes(&format!("growth/{}", l.name), env.growth_sizes(), l.peak) {
            let mut probe = Probe::default();
            let id = format!("growth/{}/{}", l.name, size_id(size));
            TIMES.with(|t| t.borrow_mut().remove(&id));
            group.bench_function(BenchmarkId::new(l.name, size_id(size)), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| {
                            probe = Probe::default();
                            let t = (l.run)(env, &raw, size, &mut probe);
                            TIMES.with(|m| m.borrow_mut().entry(id.clone()).or_default().push(t));
                            t
                        })
                        .sum()
                })
            });
            if probe.peak_committed > 0 {
                report(l, size, &probe);
            }
        }
    }
    group.finish();
    cycle(c, env, &raw);
}

/// Layouts timed for the whole build-and-drop cycle.
const CYCLE_LAYOUTS: [&str; 4] = ["raw_steps", "raw_steps_32MiB", "growable", "growable_churn"];

/// `growth_cycle/LAYOUT/SIZE` at the largest size: growth plus tearing down, back to back,
/// the cycle a program that builds and drops buffers pays (teardown costs per allocation,
/// so it weighs against small pieces).
fn cycle(c: &mut Criterion, env: &Env, raw: &Raw) {
    let mut group = env.slow_group(c, "growth_cycle");
    let largest = env.growth_sizes().iter().copied().max().unwrap_or(CHUNK);
    for l in LAYOUTS.iter().filter(|l| CYCLE_LAYOUTS.contains(&l.name)) {
        for size in env.sizes(&format!("growth_cycle/{}", l.name), &[largest], l.peak) {
            group.bench_function(BenchmarkId::new(l.name, size_id(size)), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| {
                            let mut probe = Probe::default();
                            (l.run)(env, raw, size, &mut probe);
                            probe.cycle
                        })
                        .sum()
                })
            });
        }
    }
    group.finish();
}

/// The median of `times` (zero if empty).
fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

/// The in-process median of a bench id's iterations.
fn median_of(id: &str) -> Option<Duration> {
    TIMES.with(|t| t.borrow_mut().get_mut(id).map(|v| median(v)))
}

/// Prints the probe and the ratio to the floor, and records them for `cargo xtask
/// bench-report`.
fn report(l: &Layout, size: usize, probe: &Probe) {
    let key = format!("growth/{}/{}", l.name, size_id(size));
    let floor_key = format!("growth/{}/{}", l.floor, size_id(size));
    let ratio = match (median_of(&key), median_of(&floor_key)) {
        (Some(t), Some(f)) if !f.is_zero() => {
            let r = t.as_secs_f64() / f.as_secs_f64();
            record_extra(&format!("{key}/ratio_to_{}", l.floor), r);
            format!(", median {t:?} = {r:.3}x {}", l.floor)
        }
        _ => String::new(),
    };
    let slow = match probe.stats {
        Some(st) if st.slow_creates > 0 => {
            format!(" ({} slow creates: churn pieces followed)", st.slow_creates)
        }
        _ => String::new(),
    };
    println!(
        "{key}: peak committed {} ({:.2}x), pointer {}, {} driver calls{slow}{}{ratio}",
        fmt_size(probe.peak_committed),
        probe.peak_committed as f64 / size as f64,
        if probe.pointer_moved {
            "moved"
        } else {
            "stayed put"
        },
        probe.driver_calls,
        if probe.max_ratio_past_1gib > 0.0 {
            format!(
                ", committed <= {:.3}x length past 1 GiB",
                probe.max_ratio_past_1gib
            )
        } else {
            String::new()
        }
    );
    if let Some(st) = &probe.stats {
        let t = &st.time;
        println!(
            "{key}: {} creates ({} pool hits), {} maps, {} set-access calls; time in \
             create {:?}, map {:?}, set access {:?} (total {:?})",
            st.creates,
            st.pool_hits,
            st.maps,
            st.set_access_calls,
            t.create,
            t.map,
            t.set_access,
            t.total()
        );
    }
    record_extra(
        &format!("{key}/peak_committed_bytes"),
        probe.peak_committed as f64,
    );
    record_extra(
        &format!("{key}/pointer_moved"),
        f64::from(u8::from(probe.pointer_moved)),
    );
    record_extra(&format!("{key}/driver_calls"), probe.driver_calls as f64);
    if probe.max_ratio_past_1gib > 0.0 {
        record_extra(
            &format!("{key}/max_commit_ratio_past_1GiB"),
            probe.max_ratio_past_1gib,
        );
    }
}

/// Idle pause before each `settled` run and create probe.
const IDLE: Duration = Duration::from_millis(300);
/// Runs per layout in the settled regime.
const SETTLED_RUNS: usize = 5;

/// The settled regime: each run starts after the device has been idle for [`IDLE`], at the
/// largest growth size that fits.
fn settled(env: &Env, raw: &Raw) {
    for l in &LAYOUTS {
        let Some(&size) = env.sizes("settled", env.growth_sizes(), l.peak).last() else {
            continue;
        };
        let mut times: Vec<Duration> = (0..SETTLED_RUNS)
            .map(|_| {
                std::thread::sleep(IDLE);
                (l.run)(env, raw, size, &mut Probe::default())
            })
            .collect();
        let m = median(&mut times);
        let key = format!("growth/{}/{}", l.name, size_id(size));
        println!("{key} settled: median {m:?} of {SETTLED_RUNS} runs, each after {IDLE:?} idle");
        record_extra(&format!("{key}/settled_median_s"), m.as_secs_f64());
    }
}

/// `cuMemCreate` timed right after releasing an allocation of the same size (churn) and
/// after an idle pause: the driver's work on released memory shows as the difference.
fn create_probe(raw: &Raw) {
    for size in [512 * MIB, GIB, 4 * GIB] {
        for idle in [Duration::ZERO, IDLE] {
            let mut times: Vec<Duration> = (0..SETTLED_RUNS)
                .map(|_| {
                    raw.release(raw.create(size));
                    std::thread::sleep(idle);
                    let start = Instant::now();
                    let a = raw.create(size);
                    let t = start.elapsed();
                    raw.release(a);
                    t
                })
                .collect();
            let m = median(&mut times);
            let regime = if idle.is_zero() {
                "after_release"
            } else {
                "after_idle"
            };
            record_extra(
                &format!("create_probe/{}/{regime}_s", size_id(size)),
                m.as_secs_f64(),
            );
            println!(
                "create probe {}: cuMemCreate {m:?} (median of {SETTLED_RUNS}) {} a release \
                 of the same size",
                fmt_size(size),
                if idle.is_zero() {
                    "right after".to_string()
                } else {
                    format!("{idle:?} after")
                }
            );
        }
    }
}

/// One run of `name` at the largest growth size as the process's first use of device
/// memory, printed.
fn first_use(name: &str) {
    let env = env();
    let raw = Raw::new(env);
    let Some(l) = LAYOUTS.iter().find(|l| l.name == name) else {
        panic!("CUDA_VMM_GROWTH_FIRST_USE: no layout {name}");
    };
    let Some(&size) = env.sizes("first use", env.growth_sizes(), l.peak).last() else {
        return;
    };
    let t = (l.run)(env, &raw, size, &mut Probe::default());
    record_extra(
        &format!("growth/{name}/{}/first_use_s", size_id(size)),
        t.as_secs_f64(),
    );
    println!(
        "growth/{name}/{} first use: {t:?} (the process's first device memory)",
        size_id(size)
    );
}

criterion_group!(benches, growth);

fn main() {
    if let Ok(name) = std::env::var("CUDA_VMM_GROWTH_FIRST_USE") {
        first_use(&name);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
