//! The caching allocator on the serving trace (issue 20; `cuda_vmm_tests::alloc_trace`).
//!
//! Ids: `caching/trace/{1stream,4streams,1stream_compact,4streams_compact,
//! 1stream_compact_small_pages}` (compaction with 8 MiB large pages), one full replay per iteration on
//! an allocator kept across iterations (warm: its cache already holds the trace's memory);
//! throughput is in operations. Side records (`cuda-vmm-extra.json`), from one cold replay on
//! a fresh allocator each: `caching.<id>.cold_us_per_op`, `.peak_ratio` (peak reserved over
//! the trace's peak requested), `.growths`, `.pages_released`.
//!
//! The driver's pool on the same traces: `caching/trace/driver_pool_{1stream,4streams}`
//! replay through the raw checked tier (`cuMemAllocAsync` / `cuMemFreeAsync` on the
//! device's default pool, `CU_MEMPOOL_ATTR_RELEASE_THRESHOLD` at `u64::MAX` so the pool
//! keeps what it reserved across synchronisations); a free after a use on another stream
//! first makes the block's stream wait for an event recorded on that stream. Each replay
//! ends by synchronising its streams. Side records from one cold replay (the pool trimmed
//! to nothing, `CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH` reset first):
//! `caching.driver_pool_<n>.cold_us_per_op` (the replay without the final synchronisation)
//! and `.peak_ratio` (the reserved high-water mark over the trace's peak requested).
//!
//! The traces are written to `alloc-trace-{1,4}.txt` next to criterion's output, for the
//! peers (`scripts/peers/alloc_trace_torch.py`, `scripts/peers/alloc_trace_pool.cu`), and
//! the cold one-stream replay's allocated and reserved bytes are plotted to
//! `caching-trace.svg`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use cuda_vmm::raw::{self, Api};
use cuda_vmm::sys::{CUdeviceptr, CUmemPool_attribute, CUmemoryPool};
use cuda_vmm::{Event, Stream};
use cuda_vmm_alloc::{CachedBlock, CachingAllocator, CachingConfig};
use cuda_vmm_benches::{criterion_dir, env, record_extra};
use cuda_vmm_tests::alloc_trace::{generate, Trace, TraceConfig, TraceOp};
use plotters::prelude::*;

/// Replays `trace` once; returns `(op index, allocated, reserved)` every `sample_every` ops
/// (none when 0).
fn replay(
    allocator: &CachingAllocator,
    streams: &[Stream],
    trace: &Trace,
    sample_every: usize,
) -> Vec<(usize, usize, usize)> {
    let mut live: Vec<Option<CachedBlock>> = Vec::new();
    let mut samples = Vec::new();
    for (i, op) in trace.ops.iter().enumerate() {
        match *op {
            TraceOp::Alloc { id, size, stream } => {
                let block = allocator
                    .alloc(size as usize, &streams[usize::from(stream)])
                    .expect("alloc");
                let id = id as usize;
                if live.len() <= id {
                    live.resize_with(id + 1, || None);
                }
                live[id] = Some(block);
            }
            TraceOp::Free { id, used_on } => {
                let mut block = live[id as usize].take().expect("live");
                if let Some(s) = used_on {
                    block
                        .record_use(&streams[usize::from(s)])
                        .expect("record use");
                }
            }
        }
        if sample_every > 0 && i % sample_every == 0 {
            let s = allocator.stats();
            samples.push((i, s.allocated_bytes, s.reserved_bytes + s.releasing_bytes));
        }
    }
    samples
}

/// The device's default pool, set to keep what it reserves, for [`replay_pool`].
struct DriverPool {
    api: Api,
    pool: CUmemoryPool,
}

impl DriverPool {
    fn open(env: &cuda_vmm_benches::Env) -> DriverPool {
        let api = env.cuda.api();
        let ordinal = i32::try_from(env.device.ordinal()).expect("ordinal");
        let dev = raw::device_get(api, ordinal).expect("cuDeviceGet");
        let pool = raw::device_get_default_mem_pool(api, dev).expect("default pool");
        let pool = DriverPool { api, pool };
        pool.set(
            CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
            u64::MAX,
        );
        pool
    }

    fn get(&self, attr: CUmemPool_attribute) -> u64 {
        // SAFETY: a device's default pool lives as long as its context.
        unsafe { raw::mem_pool_get_attribute(self.api, self.pool, attr) }.expect("pool attribute")
    }

    fn set(&self, attr: CUmemPool_attribute, value: u64) {
        // SAFETY: as in `get`.
        unsafe { raw::mem_pool_set_attribute(self.api, self.pool, attr, value) }
            .expect("set pool attribute");
    }

    /// Releases everything the pool holds (no allocation of it is live).
    fn trim(&self) {
        // SAFETY: as in `get`.
        unsafe { raw::mem_pool_trim_to(self.api, self.pool, 0) }.expect("trim pool");
    }
}

/// Replays `trace` once on the driver's default pool (see the module docs); `events` holds
/// one event per stream, re-recorded for each cross-stream free.
fn replay_pool(pool: &DriverPool, streams: &[Stream], events: &[Event], trace: &Trace) {
    let api = pool.api;
    let mut live: Vec<Option<(CUdeviceptr, usize)>> = Vec::new();
    for op in &trace.ops {
        match *op {
            TraceOp::Alloc { id, size, stream } => {
                let stream = usize::from(stream);
                // SAFETY: a live stream of the current context.
                let ptr =
                    unsafe { raw::mem_alloc_async(api, size as usize, streams[stream].raw()) }
                        .expect("cuMemAllocAsync");
                let id = id as usize;
                if live.len() <= id {
                    live.resize_with(id + 1, || None);
                }
                live[id] = Some((ptr, stream));
            }
            TraceOp::Free { id, used_on } => {
                let (ptr, stream) = live[id as usize].take().expect("live");
                if let Some(s) = used_on.map(usize::from).filter(|&s| s != stream) {
                    events[s].record(&streams[s]).expect("record event");
                    streams[stream].wait(&events[s]).expect("wait for event");
                }
                // SAFETY: a live allocation of the pool, on a live stream.
                unsafe { raw::mem_free_async(api, ptr, streams[stream].raw()) }
                    .expect("cuMemFreeAsync");
            }
        }
    }
    for (ptr, stream) in live.into_iter().flatten() {
        // SAFETY: as above.
        unsafe { raw::mem_free_async(api, ptr, streams[stream].raw()) }.expect("cuMemFreeAsync");
    }
}

fn synchronize(streams: &[Stream]) {
    for stream in streams {
        stream.synchronize().expect("synchronize");
    }
}

fn plot(samples: &[(usize, usize, usize)], path: &std::path::Path) {
    let gib = |b: usize| b as f64 / (1u64 << 30) as f64;
    let top = samples.iter().map(|s| gib(s.2)).fold(1.0, f64::max) * 1.05;
    let ops = samples.last().map_or(1, |s| s.0.max(1));
    let root = SVGBackend::new(path, (900, 400)).into_drawing_area();
    let drawn = (|| -> Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "caching allocator on the serving trace (GiB)",
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(40)
            .build_cartesian_2d(0..ops, 0.0..top)?;
        chart.configure_mesh().x_desc("operation").draw()?;
        chart
            .draw_series(LineSeries::new(
                samples.iter().map(|s| (s.0, gib(s.2))),
                &RED,
            ))?
            .label("reserved");
        chart
            .draw_series(LineSeries::new(
                samples.iter().map(|s| (s.0, gib(s.1))),
                &BLUE,
            ))?
            .label("allocated");
        chart.configure_series_labels().border_style(BLACK).draw()?;
        root.present()?;
        Ok(())
    })();
    if let Err(e) = drawn {
        eprintln!("plotting {}: {e}", path.display());
    }
}

fn traces(quick: bool, granule: usize) -> [(&'static str, TraceConfig, CachingConfig); 5] {
    let scale = |mut t: TraceConfig| {
        if quick {
            t.allocations = 4_000;
            t.live_cap = 2 << 30;
        }
        t
    };
    let compact = CachingConfig {
        compact_above: Some(0.05),
        ..CachingConfig::default()
    };
    [
        (
            "1stream",
            scale(TraceConfig::serving()),
            CachingConfig::default(),
        ),
        (
            "4streams",
            scale(TraceConfig::serving_4_streams()),
            CachingConfig::default(),
        ),
        (
            "1stream_compact",
            scale(TraceConfig::serving()),
            compact.clone(),
        ),
        (
            "4streams_compact",
            scale(TraceConfig::serving_4_streams()),
            compact.clone(),
        ),
        (
            "1stream_compact_small_pages",
            scale(TraceConfig::serving()),
            CachingConfig {
                large_page: std::num::NonZeroUsize::new(4 * granule),
                ..compact
            },
        ),
    ]
}

fn caching(c: &mut Criterion) {
    let env = env();
    let device = &env.device;
    let mut group = env.slow_group(c, "caching");
    if !env.quick {
        group.measurement_time(Duration::from_secs(6));
    }
    let mut pool_traces = Vec::new();
    let granule = device
        .granularity(
            &cuda_vmm::AllocationProps::device(device),
            cuda_vmm::GranularityKind::Minimum,
        )
        .expect("granularity");
    for (name, trace_config, config) in traces(env.quick, granule) {
        let trace = generate(&trace_config);
        if !env.test_mode && !name.contains("_compact") {
            let path = criterion_dir().join(format!("alloc-trace-{}.txt", trace.streams));
            if let Err(e) = std::fs::create_dir_all(criterion_dir())
                .and_then(|()| std::fs::write(&path, trace.to_text()))
            {
                eprintln!("writing {}: {e}", path.display());
            }
        }
        let streams: Vec<Stream> = (0..trace.streams)
            .map(|_| Stream::new(device).expect("stream"))
            .collect();
        // Cold: a fresh allocator.
        let cold = CachingAllocator::with_config(device, config.clone()).expect("allocator");
        let start = Instant::now();
        let samples = replay(
            &cold,
            &streams,
            &trace,
            if name == "1stream" { 500 } else { 0 },
        );
        let cold_time = start.elapsed();
        let stats = cold.stats();
        let ratio = stats.peak_reserved_bytes as f64 / trace.peak_requested as f64;
        let per_op = cold_time.as_secs_f64() * 1e6 / trace.ops.len() as f64;
        eprintln!(
            "caching/{name}: cold {per_op:.3} us/op, peak reserved {} / requested {} = \
             {ratio:.4}, {} growths, {} pages mapped, {} released",
            stats.peak_reserved_bytes,
            trace.peak_requested,
            stats.growths,
            stats.pages_mapped,
            stats.pages_released
        );
        record_extra(&format!("caching.{name}.cold_us_per_op"), per_op);
        record_extra(&format!("caching.{name}.peak_ratio"), ratio);
        record_extra(&format!("caching.{name}.growths"), stats.growths as f64);
        record_extra(
            &format!("caching.{name}.pages_released"),
            stats.pages_released as f64,
        );
        if !samples.is_empty() && !env.test_mode {
            plot(&samples, &criterion_dir().join("caching-trace.svg"));
        }
        // Warm: the same allocator, its cache already holding the trace's memory.
        let growths = cold.stats().growths;
        group.throughput(Throughput::Elements(trace.ops.len() as u64));
        group.bench_function(BenchmarkId::new("trace", name), |b| {
            b.iter(|| replay(&cold, &streams, &trace, 0))
        });
        let warm = cold.stats();
        eprintln!(
            "caching/{name}: warm replays grew {} more times, {} cache hits of {} allocs",
            warm.growths - growths,
            warm.cache_hits,
            warm.allocs
        );
        record_extra(
            &format!("caching.{name}.warm_growths"),
            (warm.growths - growths) as f64,
        );
        cold.empty_cache();
        if !name.contains("_compact") {
            pool_traces.push((name, trace, streams));
        }
    }
    driver_pool(env, &mut group, &pool_traces);
    group.finish();
}

/// The driver-pool replays (`caching/trace/driver_pool_<n>`) of the non-compacting traces.
fn driver_pool(
    env: &cuda_vmm_benches::Env,
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    traces: &[(&str, Trace, Vec<Stream>)],
) {
    use CUmemPool_attribute as A;
    let pool = DriverPool::open(env);
    for (name, trace, streams) in traces {
        let events: Vec<Event> = streams
            .iter()
            .map(|_| Event::new(&env.device).expect("event"))
            .collect();
        // Cold: a pool holding nothing, its high-water mark reset.
        synchronize(streams);
        pool.trim();
        pool.set(A::CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH, 0);
        let start = Instant::now();
        replay_pool(&pool, streams, &events, trace);
        let cold_time = start.elapsed();
        synchronize(streams);
        let peak = pool.get(A::CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH);
        let ratio = peak as f64 / trace.peak_requested as f64;
        let per_op = cold_time.as_secs_f64() * 1e6 / trace.ops.len() as f64;
        eprintln!(
            "caching/driver_pool_{name}: cold {per_op:.3} us/op, peak reserved {peak} / \
             requested {} = {ratio:.4}, {} reserved after the replay",
            trace.peak_requested,
            pool.get(A::CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT)
        );
        record_extra(
            &format!("caching.driver_pool_{name}.cold_us_per_op"),
            per_op,
        );
        record_extra(&format!("caching.driver_pool_{name}.peak_ratio"), ratio);
        // Warm: the pool already holds the trace's memory.
        group.throughput(Throughput::Elements(trace.ops.len() as u64));
        group.bench_function(
            BenchmarkId::new("trace", format!("driver_pool_{name}")),
            |b| {
                b.iter(|| {
                    replay_pool(&pool, streams, &events, trace);
                    synchronize(streams);
                })
            },
        );
    }
    // Hand the memory back and restore the default threshold.
    pool.trim();
    pool.set(A::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, 0);
}

criterion_group!(benches, caching);
criterion_main!(benches);
