//! The release queue (issue 19): what an end of life costs the caller.
//!
//! Ids:
//! - `release/write_drop/{queued,recorded_use,inline,raw}/2MiB`: a buffer created, 2 MiB
//!   written from the host, dropped. `queued`: the default (`UnmapWait::Devices`, the worker
//!   fences the context); `recorded_use`: the worker waits for the recorded uses only;
//!   `inline`: the queue turned off (`set_max_pending_release_bytes(0)`), the caller waits
//!   and unmaps; `raw`: the same driver calls through the raw table, synchronised the raw
//!   way. Run back to back, the queued loops measure the caller at the worker's pace once
//!   the queue is in its steady state.
//! - `release/decommit_during_kernel/{queued,inline}/2tiles` (real driver only): the time of
//!   the `decommit` call alone, while a 50 ms kernel writes the tiles on another stream.
//! - `release/drop_during_kernel/queued/2tiles` (real driver only): the same for dropping
//!   the array.
//!
//! After the groups it prints the worker's CPU time per completed entry.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use cuda_vmm::{Backend, Stream, UnmapWait};
use cuda_vmm_alloc::{SparseArray, SparseConfig};
use cuda_vmm_benches::{
    env, raw_write_drop, write_drop as write_drop_once, write_drop_committed, Env, Raw, CHUNK,
};
use cuda_vmm_tests::ptx::SlowFill;

/// How long the kernel of the `*_during_kernel` benches runs.
const KERNEL_NS: u64 = 50_000_000;
const FLUSH: Duration = Duration::from_secs(60);

fn write_drop(c: &mut Criterion, env: &Env) {
    let device = &env.device;
    let data = vec![0x5Au8; CHUNK];
    let mut group = env.fast_group(c, "release");
    for (name, policy, inline) in [
        ("queued", UnmapWait::Devices, false),
        ("recorded_use", UnmapWait::RecordedUse, false),
        ("inline", UnmapWait::Devices, true),
    ] {
        if inline {
            env.cuda.set_max_pending_release_bytes(0);
        }
        group.bench_function(
            BenchmarkId::new(format!("write_drop/{name}"), "2MiB"),
            |b| b.iter(|| write_drop_once(device, &data, policy)),
        );
        env.cuda
            .set_max_pending_release_bytes(cuda_vmm::release::DEFAULT_MAX_PENDING_RELEASE_BYTES);
        assert!(env.cuda.flush_releases(FLUSH).expect("flush"));
    }
    let committed = write_drop_committed(device, &data);
    let raw = Raw::new(env);
    device
        .make_current()
        .expect("current context for the raw calls");
    group.bench_function(BenchmarkId::new("write_drop/raw", "2MiB"), |b| {
        b.iter(|| raw_write_drop(&raw, committed, &data))
    });
    group.finish();
}

/// Times `end` (a decommit or a drop) while the slow-fill kernel writes the array's two
/// tiles on a stream of its own; the queue is flushed, untimed, after each iteration.
fn during_kernel(c: &mut Criterion, env: &Env) {
    if env.cuda.backend() == Backend::Simulator {
        println!("release/*_during_kernel: skipped on the simulator (no kernels)");
        return;
    }
    let device = &env.device;
    let kernel = SlowFill::load(device).expect("slow_fill kernel");
    let stream = Stream::new(device).expect("stream");
    let mut group = c.benchmark_group("release");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(2));
    let fresh = || {
        let mut array =
            SparseArray::<u32>::new(device, 2 * CHUNK / 4, SparseConfig::default()).expect("array");
        array.commit(0..2 * CHUNK / 4).expect("commit");
        // SAFETY: the two tiles are committed read-write; the use on `stream` is recorded
        // right after the launch, so their release waits for the kernel.
        unsafe {
            kernel
                .launch(&stream, array.ptr(), (2 * CHUNK / 4) as u64, 7, KERNEL_NS)
                .expect("launch")
        };
        array.record_use(&stream).expect("record");
        array
    };
    for (name, inline) in [("queued", false), ("inline", true)] {
        env.cuda
            .set_max_pending_release_bytes(if inline { 0 } else { 4 << 30 });
        group.bench_function(
            BenchmarkId::new(format!("decommit_during_kernel/{name}"), "2tiles"),
            |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let mut array = fresh();
                        let t = Instant::now();
                        array.decommit(0..2 * CHUNK / 4).expect("decommit");
                        total += t.elapsed();
                        assert!(env.cuda.flush_releases(FLUSH).expect("flush"));
                    }
                    total
                })
            },
        );
    }
    env.cuda.set_max_pending_release_bytes(4 << 30);
    group.bench_function(
        BenchmarkId::new("drop_during_kernel/queued", "2tiles"),
        |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let array = fresh();
                    let t = Instant::now();
                    drop(array);
                    total += t.elapsed();
                    assert!(env.cuda.flush_releases(FLUSH).expect("flush"));
                }
                total
            })
        },
    );
    group.finish();
}

fn release(c: &mut Criterion) {
    let env = env();
    let before = env.cuda.release_stats();
    write_drop(c, env);
    during_kernel(c, env);
    let after = env.cuda.release_stats();
    let entries = (after.completed - before.completed).max(1);
    println!(
        "release worker: {} entries, CPU {:.1?} ({:.2} us per entry), busy {:.1?}, {} \
         completed by callers, longest pending {:.1?}, peak pending {} MiB",
        after.completed - before.completed,
        after.worker_cpu - before.worker_cpu,
        (after.worker_cpu - before.worker_cpu).as_secs_f64() * 1e6 / entries as f64,
        after.worker_busy - before.worker_busy,
        after.completed_by_callers - before.completed_by_callers,
        after.max_pending_time,
        after.peak_pending_bytes >> 20,
    );
}

criterion_group!(benches, release);
criterion_main!(benches);
