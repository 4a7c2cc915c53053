//! Background commit: growing to 256 MiB .. 16 GiB by 2 MiB appends with 5 µs of other host
//! work per append, with and without [`GrowableBuffer::set_prefetch`].
//!
//! Ids: `prefetch/{off,on}/SIZE`, the whole workload timed (host work included, tearing down
//! excluded). What matters is the time appends spend blocked in the allocator, from the
//! buffer's [`BlockedStats`]: per-append p50 and p99 of the median run, the max over all runs and the median
//! total over the runs are printed and recorded, with the on/off ratio of the totals.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use cuda_vmm_alloc::{BlockedStats, BufferConfig, GrowableBuffer};
use cuda_vmm_benches::{env, record_extra, size_id, Env, Raw, CHUNK};

/// Other host work per append.
const HOST_WORK: Duration = Duration::from_micros(5);

/// Busy host work for `d` (a sleep would yield the core and take far longer).
fn host_work(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// One run: returns the elapsed time and the buffer's blocked-time statistics.
fn run(env: &Env, raw: &Raw, size: usize, prefetch: bool) -> (Duration, BlockedStats) {
    let config = BufferConfig {
        max_capacity: Some(size),
        prefetch,
        ..BufferConfig::default()
    };
    let start = Instant::now();
    let mut buffer = GrowableBuffer::<u8>::new(&env.device, config).expect("buffer");
    let mut len = 0;
    while len < size {
        host_work(HOST_WORK);
        len += CHUNK;
        buffer.reserve(len).expect("grow");
    }
    raw.synchronize();
    let elapsed = start.elapsed();
    (elapsed, buffer.blocked_stats())
}

fn prefetch(c: &mut Criterion) {
    let env = env();
    let raw = Raw::new(env);
    let mut group = env.slow_group(c, "prefetch");
    for size in env.sizes("prefetch", env.growth_sizes(), 1.5) {
        let mut totals = [Duration::ZERO; 2];
        for (i, on) in [false, true].into_iter().enumerate() {
            let name = if on { "on" } else { "off" };
            let runs = RefCell::new(Vec::new());
            group.bench_function(BenchmarkId::new(name, size_id(size)), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| {
                            let (t, stats) = run(env, &raw, size, on);
                            runs.borrow_mut().push(stats);
                            t
                        })
                        .sum()
                })
            });
            let mut runs = runs.into_inner();
            runs.sort_by_key(|s| s.total);
            let Some(mid) = runs.get(runs.len() / 2).copied() else {
                continue;
            };
            let max = runs.iter().map(|s| s.max).max().unwrap_or_default();
            totals[i] = mid.total;
            let key = format!("prefetch/{name}/{}", size_id(size));
            println!(
                "{key}: blocked per append p50 {:?}, p99 {:?} (median run), max {max:?} (all \
                 runs); total blocked {:?} (median of {} runs), {} appends, {} grew, {} \
                 prefetched",
                mid.p50,
                mid.p99,
                mid.total,
                runs.len(),
                mid.calls,
                mid.grew,
                mid.prefetched
            );
            record_extra(&format!("{key}/blocked_p50_s"), mid.p50.as_secs_f64());
            record_extra(&format!("{key}/blocked_p99_s"), mid.p99.as_secs_f64());
            record_extra(&format!("{key}/blocked_max_s"), max.as_secs_f64());
            record_extra(&format!("{key}/blocked_total_s"), mid.total.as_secs_f64());
        }
        if !totals[0].is_zero() {
            let ratio = totals[1].as_secs_f64() / totals[0].as_secs_f64();
            println!(
                "prefetch/{}: blocked with prefetch = {:.3}x without",
                size_id(size),
                ratio
            );
            record_extra(&format!("prefetch/{}/blocked_ratio", size_id(size)), ratio);
        }
    }
    group.finish();
}

criterion_group!(benches, prefetch);
criterion_main!(benches);
