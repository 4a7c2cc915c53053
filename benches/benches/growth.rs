//! Growing a device array to 256 MiB, 2 GiB and 16 GiB by 2 MiB appends, three ways.
//!
//! An append makes room for `len + 2 MiB` bytes and bumps `len`; no data comes from the host,
//! so the driver work dominates. Ids: `growth/{growable,realloc,naive}/SIZE`.
//! - `growable`: a [`GrowableBuffer`] with the default growth policy (steps of a quarter of
//!   the committed size, backed by allocations of at most 32 MiB), reserved for SIZE;
//! - `growable_pooled`: the same buffer drawing 256 MiB chunks from a warm [`ChunkPool`]
//!   (chunks recycled from the previous buffer, as a caching allocator would), so growth is
//!   map + set access only;
//! - `growable_whole_steps`, `growable_alloc128MiB`: the default steps backed by one
//!   allocation each, or by allocations of at most 128 MiB (the default is 32 MiB);
//! - `realloc`: realloc-doubling like a `Vec` on the device: `cuMemAlloc` twice the capacity,
//!   `cuMemcpyDtoD` the live bytes, `cuMemFree` the old block;
//! - `naive`: one reservation of SIZE and one `cuMemCreate` + `cuMemMap` + `cuMemSetAccess`
//!   per 2 MiB.
//!
//! The timed part ends with a `cuCtxSynchronize` and excludes tearing down. Peak committed
//! memory, whether the pointer moved and (for `growable`) the worst committed/length ratio
//! past 1 GiB go to the report's side file.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use cuda_vmm::{
    AccessFlags, Allocation, AllocationProps, LinearAllocation, Reservation, ReserveOptions,
};
use cuda_vmm_alloc::{
    BufferConfig, ChunkPool, DriverStats, GrowableBuffer, GrowthPolicy, PoolConfig,
};
use cuda_vmm_benches::{env, fmt_size, record_extra, size_id, Env, Raw, CHUNK, GIB};

/// What one growth run observed.
#[derive(Default, Debug)]
struct Probe {
    peak_committed: usize,
    pointer_moved: bool,
    /// Worst committed / length once the length passed 1 GiB (0 if it never did).
    max_ratio_past_1gib: f64,
    driver_calls: u64,
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
}

/// The growable buffer: `reserve` makes room for the new length (its length field stays 0,
/// which makes no difference to the driver work).
fn growable(env: &Env, raw: &Raw, size: usize, probe: &mut Probe) -> Duration {
    grow_with(env, raw, size, probe, GrowthPolicy::default())
}

/// One allocation per growth step (`max_allocation: 0`): fewer handles, dearer creates.
fn growable_whole_steps(env: &Env, raw: &Raw, size: usize, probe: &mut Probe) -> Duration {
    let policy = GrowthPolicy {
        max_allocation: 0,
        ..GrowthPolicy::default()
    };
    grow_with(env, raw, size, probe, policy)
}

/// Growth steps backed by allocations of at most 128 MiB.
fn growable_alloc128mib(env: &Env, raw: &Raw, size: usize, probe: &mut Probe) -> Duration {
    let policy = GrowthPolicy {
        max_allocation: 128 << 20,
        ..GrowthPolicy::default()
    };
    grow_with(env, raw, size, probe, policy)
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
    elapsed
}

/// Chunk size of the warm pool behind `growable_pooled`.
const POOL_CHUNK: usize = 256 << 20;

thread_local! {
    /// One warm pool per final size, kept across iterations.
    static POOLS: std::cell::RefCell<std::collections::HashMap<usize, ChunkPool>> =
        Default::default();
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

type Strategy = fn(&Env, &Raw, usize, &mut Probe) -> Duration;

/// (id, function, peak memory as a multiple of the final size, for the fit check).
const STRATEGIES: [(&str, Strategy, f64); 6] = [
    ("growable", growable, 1.25),
    ("growable_whole_steps", growable_whole_steps, 1.25),
    ("growable_alloc128MiB", growable_alloc128mib, 1.25),
    ("growable_pooled", growable_pooled, 1.25),
    ("realloc", realloc, 1.5),
    ("naive", naive, 1.0),
];

fn growth(c: &mut Criterion) {
    let env = env();
    let raw = Raw::new(env);
    let mut group = env.slow_group(c, "growth");
    for (name, strategy, peak_factor) in STRATEGIES {
        for size in env.sizes(&format!("growth/{name}"), env.growth_sizes(), peak_factor) {
            let mut probe = Probe::default();
            group.bench_function(BenchmarkId::new(name, size_id(size)), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| {
                            probe = Probe::default();
                            strategy(env, &raw, size, &mut probe)
                        })
                        .sum()
                })
            });
            if probe.peak_committed > 0 {
                report(name, size, &probe);
            }
        }
    }
    group.finish();
}

/// Prints the probe and records it for `cargo xtask bench-report`.
fn report(name: &str, size: usize, probe: &Probe) {
    println!(
        "growth/{name}/{}: peak committed {} ({:.2}x), pointer {}, {} driver calls{}",
        size_id(size),
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
            "growth/{name}/{}: {} creates ({} pool hits), {} maps, {} set-access calls; time in \
             create {:?}, map {:?}, set access {:?} (total {:?})",
            size_id(size),
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
    let key = format!("growth/{name}/{}", size_id(size));
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

criterion_group!(benches, growth);
criterion_main!(benches);
