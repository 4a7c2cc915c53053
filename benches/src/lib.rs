//! Shared set-up for the cuda-vmm benchmarks.
//!
//! ```text
//! cargo bench -p cuda-vmm-benches                  # everything (about 6 minutes on an H100)
//! cargo bench -p cuda-vmm-benches --bench latency  # one file: latency growth prefetch sparse access pool
//! CUDA_VMM_BENCH_QUICK=1 cargo bench ...           # reduced sizes, short measurements
//! cargo test -p cuda-vmm-benches --benches         # CI: every bench once, quick sizes
//! cargo xtask bench-report                         # BENCHMARKS.md + docs/bench/<gpu-date>/*.svg + README table
//! ```
//!
//! `cargo bench` also writes criterion's HTML report with plots (plotters, SVG) to
//! `target/criterion/report/index.html`; `-- --noplot` skips the plots (e.g. on a GPU machine
//! whose output is copied back: `cargo xtask bench-report` needs only the JSON files).
//!
//! Bench binaries run without cargo (e.g. built by `scripts/gpu-bundle.sh`) need `--bench`, and
//! write to `target/criterion` under the current directory unless `CRITERION_HOME` is set.
//! Binaries run by separate commands form one run when they share `CUDA_VMM_BENCH_SESSION`.
//!
//! - [`env()`]: the backend (real GPU when present, else the simulator; `CUDA_VMM_BACKEND=sim|cuda`
//!   forces one), device 0 made current, and whether the run is *quick* (simulator,
//!   `cargo test --benches`, or `CUDA_VMM_BENCH_QUICK=1`): quick runs cap sizes at
//!   [`QUICK_CAP`] and measure briefly.
//! - [`Raw`]: the same driver calls made straight through the raw table, as the baseline.
//! - Side files for `cargo xtask bench-report`, next to criterion's output (serde JSON):
//!   `cuda-vmm-run.json` (GPU, driver, date) and `cuda-vmm-extra.json` (peak committed memory...).
//!
//! Benchmark ids (the report relies on them):
//! - `latency/OP/{safe,raw}/SIZE`, OP one of `reserve`, `free`, `reserve_free`, `create`,
//!   `release`, `create_release`, `map`, `unmap`, `map_unmap`, `set_access`;
//! - `growth/LAYOUT/SIZE`, LAYOUT one of `growable`, `growable_speed`,
//!   `growable_alloc{32,128,512}MiB`, `growable_pooled`, `realloc`, `naive` and the raw floors
//!   `raw_steps`, `raw_steps_32MiB`, `raw_doubling`, `raw_realloc` (see `benches/growth.rs`);
//! - `prefetch/{off,on}/SIZE` (background commit, blocked time in the side file);
//! - `sparse/commit_decommit/{pooled,unpooled}/k{1,4,16}`,
//!   `sparse/one_tile/{pooled_commit,pooled_commit_uninit,raw_map_set_access}`;
//! - `set_access/{per_chunk,per_run}/64x2MiB`;
//! - `alloc_free/{pool,pool_mapped,cuMemAlloc}/2MiB`;
//! - `overhead/{reserve_free,create_release,map_unmap,set_access}/{safe,raw}` (stub driver);
//! - `ordering/write_drop/{default,opt_out}/2MiB`, `ordering/commit_decommit/{default,opt_out}/1tile`;
//! - `zero_holes/{create,drop}/{errors,zeros_256MiB,zeros_64MiB}/1TiB`,
//!   `zero_holes/one_tile_commit/{errors,zeros_split,zeros_again,errors_sequential,zeros_sequential,zeros_split_64MiB,errors_spares,zeros_spares,errors_spares7,zeros_spares7}/{pooled,unpooled}` (spares: 15 spare tiles, spares7: 7);
//! - `teardown/{growable,growable_pooled}/16GiB`, `teardown/{raw_release,raw_unmap}/16GiB_in_32MiB`,
//!   `teardown/raw_release/16GiB_in_1`.

#![warn(missing_docs)]

mod raw;
mod raw_copy;
mod raw_growth;
mod side;
mod stub;
mod write_drop;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{Bencher, BenchmarkGroup, Criterion, SamplingMode};
use cuda_vmm::{Backend, Cuda, Device};

pub use raw::{Raw, RawAllocation, RawChunks, RawLinear, RawRange, RawReservation};
pub use raw_copy::RawCopier;
pub use raw_growth::{RawGrowth, RawMapping};
pub use side::{criterion_dir, record_extra};
pub use stub::{stub_device, stub_driver, StubRaw};
pub use write_drop::{raw_write_drop, write_drop, write_drop_committed};

/// One kibibyte.
pub const KIB: usize = 1 << 10;
/// One mebibyte.
pub const MIB: usize = 1 << 20;
/// One gibibyte.
pub const GIB: usize = 1 << 30;
/// The unit everything is measured in: the H100/H200 allocation granularity.
pub const CHUNK: usize = 2 * MIB;
/// Chunk sizes of the per-entry-point latency benches.
pub const LATENCY_SIZES: [usize; 4] = [2 * MIB, 32 * MIB, 512 * MIB, GIB];
/// Final sizes of the growth benches.
pub const GROWTH_SIZES: [usize; 3] = [256 * MIB, 2 * GIB, 16 * GIB];
/// Final sizes of the growth benches in quick mode.
pub const QUICK_GROWTH_SIZES: [usize; 2] = [16 * MIB, 64 * MIB];
/// Largest size a quick run uses.
pub const QUICK_CAP: usize = 64 * MIB;

/// The benchmark environment, set up once per process.
pub struct Env {
    /// The driver (real or simulated).
    pub cuda: Cuda,
    /// Device 0, current on the benchmarking thread.
    pub device: Device,
    /// Reduced sizes and short measurements.
    pub quick: bool,
    /// Run by `cargo test --benches` (criterion runs each bench once and writes nothing).
    pub test_mode: bool,
}

/// The process-wide [`Env`]; the first call prints the backend and device.
///
/// # Panics
/// When no backend can be opened: a benchmark cannot run without one.
pub fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| match Env::open() {
        Ok(env) => env,
        Err(e) => panic!("cuda-vmm benches: cannot open a backend: {e}"),
    })
}

impl Env {
    fn open() -> cuda_vmm::Result<Env> {
        let cuda = Cuda::new()?;
        let device = cuda.device(0)?;
        device.make_current()?;
        let test_mode = !std::env::args().any(|a| a == "--bench");
        let forced = std::env::var("CUDA_VMM_BENCH_QUICK").is_ok_and(|v| v != "0");
        let quick = test_mode || forced || cuda.backend() == Backend::Simulator;
        println!("cuda-vmm benches on {}", cuda.describe());
        if quick {
            println!(
                "quick mode ({}): sizes capped at {}, growth to {} and {}, short measurements",
                if cuda.backend() == Backend::Simulator {
                    "simulator"
                } else if test_mode {
                    "test run"
                } else {
                    "CUDA_VMM_BENCH_QUICK"
                },
                fmt_size(QUICK_CAP),
                fmt_size(QUICK_GROWTH_SIZES[0]),
                fmt_size(QUICK_GROWTH_SIZES[1]),
            );
        }
        let env = Env {
            cuda,
            device,
            quick,
            test_mode,
        };
        if !test_mode {
            side::write_run_meta(&env);
        }
        Ok(env)
    }

    /// Free device memory in bytes (0 if the driver will not say).
    pub fn free_memory(&self) -> usize {
        self.device.memory_info().map_or(0, |m| m.free)
    }

    /// `sizes` that fit this run: at most [`QUICK_CAP`] when quick, and whose estimated peak
    /// memory (`size * peak_factor`) fits in 90% of free device memory. Prints what it skips.
    pub fn sizes(&self, what: &str, sizes: &[usize], peak_factor: f64) -> Vec<usize> {
        let free = self.free_memory();
        sizes
            .iter()
            .copied()
            .filter(|&size| {
                let peak = size as f64 * peak_factor;
                if self.quick && size > QUICK_CAP {
                    println!("{what}: skipping {} in quick mode", fmt_size(size));
                    false
                } else if peak > free as f64 * 0.9 {
                    println!(
                        "{what}: skipping {}: needs about {} but only {} is free",
                        fmt_size(size),
                        fmt_size(peak as usize),
                        fmt_size(free)
                    );
                    false
                } else {
                    true
                }
            })
            .collect()
    }

    /// The growth benches' final sizes for this run (before the memory check).
    pub fn growth_sizes(&self) -> &'static [usize] {
        if self.quick {
            &QUICK_GROWTH_SIZES
        } else {
            &GROWTH_SIZES
        }
    }

    /// A criterion group for benches whose iterations take microseconds.
    pub fn fast_group<'c>(&self, c: &'c mut Criterion, name: &str) -> BenchmarkGroup<'c, WallTime> {
        let mut group = c.benchmark_group(name);
        self.tune(&mut group, CHUNK);
        group
    }

    /// Sets `group`'s timing for operations on `size` bytes. Sizes of 256 MiB and more get a
    /// short warm-up and measurement: their calls take milliseconds, and the untimed partner
    /// call of a timed half (e.g. the unmap after a timed map) can cost ten times the timed one.
    pub fn tune(&self, group: &mut BenchmarkGroup<'_, WallTime>, size: usize) {
        let (warm_up, measure, samples) = if self.quick {
            (100, 300, 10)
        } else if size >= 256 * MIB {
            (100, 500, 10)
        } else {
            (500, 1500, 50)
        };
        group
            .warm_up_time(Duration::from_millis(warm_up))
            .measurement_time(Duration::from_millis(measure))
            .sample_size(samples);
    }

    /// A criterion group for benches whose iterations take up to seconds: ten samples of
    /// equal iteration counts.
    pub fn slow_group<'c>(&self, c: &'c mut Criterion, name: &str) -> BenchmarkGroup<'c, WallTime> {
        let mut group = c.benchmark_group(name);
        let measure = if self.quick {
            Duration::from_millis(300)
        } else {
            Duration::from_secs(3)
        };
        group
            .warm_up_time(Duration::from_millis(100))
            .measurement_time(measure)
            .sample_size(10)
            .sampling_mode(SamplingMode::Flat);
        group
    }
}

/// Criterion id component for a size: `2MiB`, `1GiB`. `cargo xtask bench-report` reads these
/// back with its `parse_size` (xtask/src/bench_report/format.rs), which accepts every id this
/// writes.
pub fn size_id(bytes: usize) -> String {
    if bytes >= GIB && bytes.is_multiple_of(GIB) {
        format!("{}GiB", bytes / GIB)
    } else if bytes < MIB {
        format!("{}KiB", bytes / KIB)
    } else {
        format!("{}MiB", bytes / MIB)
    }
}

/// Human-readable size: `2 MiB`, `1.50 GiB`.
///
/// Not shared with the workspace's other byte formatters, on purpose:
/// - xtask's `fmt_bytes` (xtask/src/bench_report/format.rs): xtask does not depend on this
///   crate and should not. This crate pulls in cuda-vmm-sys, whose `bindings.rs`
///   `cargo xtask bindgen` regenerates, and xtask must build even when `bindings.rs` does not
///   (which is why it reads the entry-point list as text). A shared function would have to
///   live in a new crate, which is not worth one function;
/// - cuda-vmm-alloc's `tiles::Bytes` (the tile maps' sizes): private to that library, where a
///   public formatter would be new API. It also prints one decimal (`1.5 GiB`), this two.
pub fn fmt_size(bytes: usize) -> String {
    if bytes >= GIB {
        let g = bytes as f64 / GIB as f64;
        if g.fract() == 0.0 {
            format!("{g:.0} GiB")
        } else {
            format!("{g:.2} GiB")
        }
    } else {
        format!("{} MiB", bytes / MIB)
    }
}

/// Times only `op` over `iters` rounds: `setup` prepares its input and `teardown` undoes its
/// effect, both untimed, so every round leaves nothing behind.
pub fn time_op<S, O>(
    iters: u64,
    mut setup: impl FnMut() -> S,
    mut op: impl FnMut(S) -> O,
    mut teardown: impl FnMut(O),
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let input = setup();
        let start = Instant::now();
        let output = op(input);
        total += start.elapsed();
        teardown(output);
    }
    total
}

/// Which part of a make/undo pair (reserve/free, create/release, map/unmap) a bench times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Both calls.
    Pair,
    /// The making call alone; the undoing one runs untimed.
    Make,
    /// The undoing call alone; the making one runs untimed.
    Undo,
}

impl Part {
    /// The three parts.
    pub const ALL: [Part; 3] = [Part::Pair, Part::Make, Part::Undo];

    /// Times this part of `undo(make())` with `b`; every iteration leaves nothing behind.
    pub fn bench<T>(self, b: &mut Bencher<'_>, make: impl Fn() -> T, undo: impl Fn(T)) {
        match self {
            Part::Pair => b.iter(|| undo(make())),
            Part::Make => b.iter_custom(|n| time_op(n, || (), |()| make(), &undo)),
            Part::Undo => b.iter_custom(|n| time_op(n, &make, &undo, |()| ())),
        }
    }
}

/// A small deterministic pseudo-random sequence (xorshift64*), so runs pick the same tiles.
pub struct Lcg(u64);

impl Lcg {
    /// A sequence from `seed`.
    pub fn new(seed: u64) -> Self {
        Lcg(seed | 1)
    }

    /// The next number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % bound.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_names() {
        assert_eq!(size_id(2 * MIB), "2MiB");
        assert_eq!(size_id(16 * GIB), "16GiB");
        assert_eq!(size_id(512 * MIB), "512MiB");
        assert_eq!(fmt_size(3 * GIB / 2), "1.50 GiB");
    }

    #[test]
    fn lcg_stays_in_bounds() {
        let mut r = Lcg::new(7);
        assert!((0..1000).all(|_| r.below(10) < 10));
    }
}
