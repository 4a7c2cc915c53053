//! A paged KV cache as serving engines build it, on `SparseArray`s and one shared `ChunkPool`.
//!
//! One huge reservation per layer holds a slot of up to 8192 tokens for each of
//! `MAX_SEQS` sequences; pages (tiles) are committed from the shared pool as sequences grow
//! and decommitted when they finish. A mixed workload of sequences arriving and finishing
//! with variable lengths runs for 400 decode steps (on the simulator, which holds device
//! memory in host memory, slots of 2048 tokens and 200 steps). Every token written is checked when
//! its sequence finishes. With feature `cudarc` on a real GPU a kernel writes the tokens;
//! otherwise the library's host copies do.
//!
//! ```text
//! cargo run --release -p cuda-vmm-alloc --example kv_cache                      # GPU or simulator
//! cargo run --release -p cuda-vmm-alloc --example kv_cache --features cudarc    # kernels on the GPU
//! ```
//!
//! It reports the peak memory in use against a static pre-allocation for the maximum length,
//! the memory time of each step as the caller sees it (commits and decommits: p50, p99,
//! max, and what the slowest steps did), the caller's and the driver's time per page, the
//! driver calls per step and the release worker's time. On a GPU it runs three regimes:
//! the default `UnmapWait::Devices` and `UnmapWait::RecordedUse` with a cold pool, and
//! `RecordedUse` with a pool prefilled as a warmed-up server's is.

use std::time::{Duration, Instant};

use cuda_vmm::{AllocationProps, Cuda, Device};
use cuda_vmm_alloc::{ChunkPool, DriverStats, PoolConfig, SparseArray, SparseConfig};

const LAYERS: usize = 4;
const MAX_SEQS: usize = 64;
/// K and V of one token in one layer: 8 heads x 128 dims x 2 (K, V) x 2 bytes (bf16).
const TOKEN_BYTES: usize = 8 * 128 * 2 * 2;

/// A small deterministic generator (SplitMix64) so runs are comparable; no crate needed
/// for a dozen random lengths per step.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

struct Sequence {
    slot: usize,
    /// Byte offset of the slot in each layer.
    base: usize,
    len: usize,
    target: usize,
    seed: u8,
}

/// The byte a token's K/V data is filled with.
fn token_byte(seed: u8, token: usize) -> u8 {
    seed.wrapping_add((token % 251) as u8)
}

/// Writes tokens `from..to` of a sequence (every layer).
trait TokenWriter {
    fn write(
        &mut self,
        layers: &mut [SparseArray<u8>],
        seq: &Sequence,
        from: usize,
        to: usize,
    ) -> Result<(), Box<dyn std::error::Error>>;
}

/// The library's host-to-device copies.
struct HostWriter;

impl TokenWriter for HostWriter {
    fn write(
        &mut self,
        layers: &mut [SparseArray<u8>],
        seq: &Sequence,
        from: usize,
        to: usize,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let mut bytes = Vec::with_capacity((to - from) * TOKEN_BYTES);
        for t in from..to {
            bytes.resize(bytes.len() + TOKEN_BYTES, token_byte(seq.seed, t));
        }
        let start = seq.base + from * TOKEN_BYTES;
        for layer in layers.iter_mut() {
            layer.write(start, &bytes)?;
        }
        Ok(())
    }
}

#[cfg(feature = "cudarc")]
mod kernel {
    //! Tokens written by a kernel compiled with NVRTC, through `CudarcView`s.
    use std::sync::Arc;

    use cuda_vmm_alloc::SparseArray;
    use cudarc::driver::{CudaContext, CudaFunction, CudaStream, LaunchConfig, PushKernelArg};

    use super::{Sequence, TokenWriter, TOKEN_BYTES};

    const SRC: &str = r#"
extern "C" __global__ void write_tokens(unsigned char* p, unsigned long long tokens,
                                        unsigned long long first, unsigned char seed) {
    unsigned long long n = tokens * TOKEN_BYTES;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         i < n; i += (unsigned long long)gridDim.x * blockDim.x) {
        unsigned long long t = first + i / TOKEN_BYTES;
        p[i] = (unsigned char)(seed + (unsigned char)(t % 251));
    }
}
"#;

    pub struct KernelWriter {
        stream: Arc<CudaStream>,
        function: CudaFunction,
    }

    impl KernelWriter {
        pub fn new(ordinal: usize) -> Result<Self, Box<dyn std::error::Error>> {
            let ctx = CudaContext::new(ordinal)?;
            let stream = ctx.new_stream()?;
            let src = SRC.replace("TOKEN_BYTES", &format!("{TOKEN_BYTES}ULL"));
            let module = ctx.load_module(cudarc::nvrtc::compile_ptx(src)?)?;
            let function = module.load_function("write_tokens")?;
            Ok(KernelWriter { stream, function })
        }
    }

    impl TokenWriter for KernelWriter {
        fn write(
            &mut self,
            layers: &mut [SparseArray<u8>],
            seq: &Sequence,
            from: usize,
            to: usize,
        ) -> Result<(), Box<dyn std::error::Error>> {
            let start = seq.base + from * TOKEN_BYTES;
            let end = seq.base + to * TOKEN_BYTES;
            let (tokens, first, seed) = ((to - from) as u64, from as u64, seq.seed);
            for layer in layers.iter() {
                let mut view = layer.cudarc_view(&self.stream, start..end)?;
                let mut launch = self.stream.launch_builder(&self.function);
                launch.arg(&mut view).arg(&tokens).arg(&first).arg(&seed);
                let cfg = LaunchConfig::for_num_elems((end - start).min(1 << 20) as u32);
                // SAFETY: `write_tokens` takes (u8*, u64, u64, u8) and writes
                // `tokens * TOKEN_BYTES` bytes of the view, committed and read-write; the
                // view records the use, so decommitting waits for the kernel.
                unsafe { launch.launch(cfg) }?;
            }
            Ok(())
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn calls(s: &DriverStats) -> u64 {
    s.creates + s.maps + s.set_access_calls + s.unmaps + s.releases
}

fn writer(cuda: &Cuda, device: &Device) -> Box<dyn TokenWriter> {
    #[cfg(feature = "cudarc")]
    if cuda.backend() == cuda_vmm::Backend::RealDriver {
        match kernel::KernelWriter::new(device.ordinal()) {
            Ok(w) => {
                println!("tokens written by an NVRTC kernel through CudarcView");
                return Box::new(w);
            }
            Err(e) => println!("cudarc kernel unavailable ({e}); using host copies"),
        }
    }
    let _ = (cuda, device);
    println!("tokens written by the library's host copies");
    Box::new(HostWriter)
}

/// How a run ends a sequence's pages and gets new ones.
#[derive(Clone, Copy)]
struct Regime {
    name: &'static str,
    /// Decommits wait for the recorded uses only (`UnmapWait::RecordedUse`), not the
    /// whole context.
    recorded_use: bool,
    /// Pages created into the pool before the first step (a warmed-up server).
    prefill: usize,
    /// Releases completed on the caller's thread (the queue turned off).
    inline: bool,
    /// Granules (2 MiB on an H200) per page: the pool's chunk, one handle each.
    page_granules: usize,
    /// The next page of each sequence mapped ahead by the array's worker thread
    /// (`spare_tiles: 1, background_spares: true`).
    ahead: bool,
}

/// One step's memory work, as the caller saw it.
#[derive(Clone, Copy, Default)]
struct Step {
    /// Time in `commit` and `decommit` calls.
    memory: Duration,
    commit: Duration,
    decommit: Duration,
    /// Pages mapped (committed) and handed to the release queue (decommitted).
    committed: u64,
    decommitted: u64,
    /// Pages the pool did not have (a `cuMemCreate` each).
    created: u64,
    /// Driver time on the caller's thread (create, map, set access, unmap, release).
    driver: Duration,
    calls: u64,
}

fn driver_time(s: &DriverStats) -> Duration {
    let t = &s.time;
    t.create + t.map + t.set_access + t.unmap + t.release
}

fn totals(layers: &[SparseArray<u8>]) -> (u64, u64, u64, u64, Duration) {
    layers.iter().fold((0, 0, 0, 0, Duration::ZERO), |acc, l| {
        let s = l.stats();
        (
            acc.0 + calls(&s),
            acc.1 + s.maps,
            acc.2 + s.unmaps,
            acc.3 + s.creates,
            acc.4 + driver_time(&s),
        )
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cuda = Cuda::new()?;
    println!("kv_cache on {}", cuda.describe());
    let device = cuda.device(0)?;
    let mut write = writer(&cuda, &device);
    // (name, recorded_use, prefill, inline, page granules, next page mapped ahead)
    let table: &[(&'static str, bool, usize, bool, usize, bool)] = match cuda.backend() {
        cuda_vmm::Backend::Simulator => &[(
            "default (UnmapWait::Devices), cold pool",
            false,
            0,
            false,
            1,
            false,
        )],
        _ => &[
            (
                "default (UnmapWait::Devices), cold pool",
                false,
                0,
                false,
                1,
                false,
            ),
            (
                "UnmapWait::RecordedUse, cold pool",
                true,
                0,
                false,
                1,
                false,
            ),
            (
                "RecordedUse, pool prefilled with 1536 pages",
                true,
                1536,
                false,
                1,
                false,
            ),
            (
                "RecordedUse, prefilled, queue off (releases inline)",
                true,
                1536,
                true,
                1,
                false,
            ),
            (
                "RecordedUse, prefilled, 8 MiB pages (one handle per 4 granules)",
                true,
                512,
                false,
                4,
                false,
            ),
            (
                "RecordedUse, prefilled, next page mapped ahead in the background",
                true,
                1536,
                false,
                1,
                true,
            ),
            (
                "RecordedUse, prefilled, 8 MiB pages mapped ahead in the background",
                true,
                512,
                false,
                4,
                true,
            ),
        ],
    };
    let regimes = table.iter().map(
        |&(name, recorded_use, prefill, inline, page_granules, ahead)| Regime {
            name,
            recorded_use,
            prefill,
            inline,
            page_granules,
            ahead,
        },
    );
    for regime in regimes {
        run(&cuda, &device, &mut *write, regime)?;
    }
    Ok(())
}

fn run(
    cuda: &Cuda,
    device: &Device,
    write: &mut dyn TokenWriter,
    regime: Regime,
) -> Result<(), Box<dyn std::error::Error>> {
    println!("\n== {}", regime.name);
    let (max_tokens, steps) = match cuda.backend() {
        cuda_vmm::Backend::Simulator => (2048, 200),
        _ => (8192, 400),
    };
    let page = regime.page_granules * device.min_granularity(&AllocationProps::device(device))?;
    let tokens_per_page = page / TOKEN_BYTES;
    let pool = ChunkPool::new(
        device,
        PoolConfig {
            chunk_size: page,
            max_chunks: 4096,
            max_bytes: 8 << 30,
            props: None,
        },
    )?;
    if regime.prefill > 0 {
        let t = Instant::now();
        pool.prefill(regime.prefill)?;
        println!("prefilled {} pages in {:.1?}", regime.prefill, t.elapsed());
    }
    let layer_bytes = MAX_SEQS * max_tokens * TOKEN_BYTES;
    let mut layers = (0..LAYERS)
        .map(|_| {
            let config = SparseConfig {
                pool: Some(pool.clone()),
                uninit_tiles: true,
                spare_tiles: usize::from(regime.ahead),
                background_spares: regime.ahead,
                ..SparseConfig::default()
            };
            SparseArray::<u8>::new(device, layer_bytes, config)
        })
        .collect::<Result<Vec<_>, _>>()?;
    if regime.recorded_use {
        for layer in &mut layers {
            // SAFETY: every device use of the layers is recorded: the kernel writer's
            // views record their stream, and the host copies are complete on return.
            unsafe { layer.set_unmap_wait(cuda_vmm::UnmapWait::RecordedUse) };
        }
    }
    let release_before = cuda.release_stats();
    cuda.set_max_pending_release_bytes(if regime.inline {
        0
    } else {
        cuda_vmm::release::DEFAULT_MAX_PENDING_RELEASE_BYTES
    });

    let mut rng = SplitMix(0x5EED);
    let mut free_slots: Vec<usize> = (0..MAX_SEQS).rev().collect();
    let mut active: Vec<Sequence> = Vec::new();
    let mut record: Vec<Step> = Vec::new();
    let (mut peak, mut finished, mut tokens_checked) = (0usize, 0usize, 0usize);
    let started = Instant::now();
    for step in 0..steps {
        let before = totals(&layers);
        let mut this = Step::default();
        // Arrivals: a prompt of 16..2048 tokens, a target of up to max_tokens.
        for _ in 0..rng.below(4) {
            let Some(slot) = free_slots.pop() else { break };
            let prompt = 16 + rng.below(2032);
            let prompt = prompt.min(max_tokens / 2);
            let target = (prompt + 1 + rng.below(max_tokens / 2)).min(max_tokens);
            let seq = Sequence {
                slot,
                base: slot * max_tokens * TOKEN_BYTES,
                len: 0,
                target,
                seed: rng.below(256) as u8,
            };
            let t = Instant::now();
            for layer in &mut layers {
                layer.commit(seq.base..seq.base + prompt * TOKEN_BYTES)?;
            }
            this.commit += t.elapsed();
            write.write(&mut layers, &seq, 0, prompt)?;
            active.push(Sequence { len: prompt, ..seq });
        }
        // Decode: every active sequence gains up to 8 tokens (speculative decoding style).
        for seq in &mut active {
            let to = (seq.len + 1 + rng.below(8)).min(seq.target);
            if to <= seq.len {
                continue;
            }
            if to.div_ceil(tokens_per_page) > seq.len.div_ceil(tokens_per_page) {
                let t = Instant::now();
                let base = seq.base;
                for layer in &mut layers {
                    layer.commit(base + seq.len * TOKEN_BYTES..base + to * TOKEN_BYTES)?;
                }
                this.commit += t.elapsed();
            }
            write.write(&mut layers, seq, seq.len, to)?;
            seq.len = to;
        }
        // Spares hold memory too: counted.
        peak = peak.max(
            layers
                .iter()
                .map(|l| l.committed_bytes() + l.spare_bytes())
                .sum(),
        );
        // Completions: check the sequence's tokens in one layer, then decommit its pages.
        let (done, running): (Vec<_>, Vec<_>) = std::mem::take(&mut active)
            .into_iter()
            .partition(|s| s.len >= s.target || step == steps - 1);
        active = running;
        for seq in done {
            let base = seq.base;
            let mut back = vec![0u8; seq.len * TOKEN_BYTES];
            layers[seq.slot % LAYERS].read(base..base + back.len(), &mut back)?;
            for (t, token) in back.chunks(TOKEN_BYTES).enumerate() {
                let want = token_byte(seq.seed, t);
                if token.iter().any(|&b| b != want) {
                    return Err(format!("sequence in slot {} token {t} corrupted", seq.slot).into());
                }
            }
            tokens_checked += seq.len;
            let t = Instant::now();
            for layer in &mut layers {
                layer.decommit(base..base + max_tokens * TOKEN_BYTES)?;
            }
            this.decommit += t.elapsed();
            free_slots.push(seq.slot);
            finished += 1;
        }
        let after = totals(&layers);
        this.memory = this.commit + this.decommit;
        this.calls = after.0 - before.0;
        this.committed = after.1 - before.1;
        this.decommitted = after.2 - before.2;
        this.created = after.3 - before.3;
        this.driver = after.4 - before.4;
        record.push(this);
    }
    let elapsed = started.elapsed();
    cuda.flush_releases(Duration::from_secs(60))?;
    let release = cuda.release_stats();
    report(
        &record,
        &pool,
        page,
        peak,
        layer_bytes,
        (finished, tokens_checked),
    );
    println!(
        "{steps} steps in {elapsed:.2?}; release worker: busy {:.1?}, CPU {:.1?} for {} \
         entries, longest pending {:.1?}, completed by callers {}",
        release.worker_busy - release_before.worker_busy,
        release.worker_cpu - release_before.worker_cpu,
        release.completed - release_before.completed,
        release.max_pending_time,
        release.completed_by_callers - release_before.completed_by_callers,
    );
    Ok(())
}

/// Prints what a run measured: memory in use, the per-step memory time and its tail,
/// caller and driver time per page.
fn report(
    record: &[Step],
    pool: &ChunkPool,
    page: usize,
    peak: usize,
    layer_bytes: usize,
    (finished, tokens_checked): (usize, usize),
) {
    let static_bytes = LAYERS * layer_bytes;
    println!("{finished} sequences finished, {tokens_checked} tokens checked");
    println!(
        "peak memory in use: {:.1} MiB vs {:.1} MiB static pre-allocation ({:.1}%)",
        peak as f64 / (1 << 20) as f64,
        static_bytes as f64 / (1 << 20) as f64,
        100.0 * peak as f64 / static_bytes as f64
    );
    let series = |f: fn(&Step) -> Duration| {
        let mut v: Vec<Duration> = record.iter().map(f).collect();
        v.sort();
        (
            percentile(&v, 0.50),
            percentile(&v, 0.99),
            v.last().copied().unwrap_or_default(),
        )
    };
    for (what, f) in [
        (
            "memory (commit + decommit)",
            (|s: &Step| s.memory) as fn(&Step) -> Duration,
        ),
        ("commit", |s: &Step| s.commit),
        ("decommit", |s: &Step| s.decommit),
    ] {
        let (p50, p99, max) = series(f);
        println!("{what} time per step: p50 {p50:.1?}, p99 {p99:.1?}, max {max:.1?}");
    }
    let sum = |f: fn(&Step) -> u64| record.iter().map(f).sum::<u64>();
    let (committed, decommitted, created) = (
        sum(|s| s.committed),
        sum(|s| s.decommitted),
        sum(|s| s.created),
    );
    let commit: Duration = record.iter().map(|s| s.commit).sum();
    let decommit: Duration = record.iter().map(|s| s.decommit).sum();
    let driver: Duration = record.iter().map(|s| s.driver).sum();
    let per = |d: Duration, n: u64| d.as_secs_f64() * 1e6 / n.max(1) as f64;
    println!(
        "pages of {} MiB: {committed} committed ({created} created, the rest from the pool), \
         {decommitted} decommitted",
        page >> 20
    );
    // Per 2 MiB committed, so that page sizes compare.
    let two_mib = committed * (page as u64 / (2 << 20)).max(1);
    println!(
        "caller time per committed 2 MiB {:.1} us; driver time {:.1} us per 2 MiB (the \
         caller's, and the array's worker's when pages are mapped ahead); per decommitted \
         page {:.1} us",
        per(commit, two_mib),
        per(driver, two_mib),
        per(decommit, decommitted),
    );
    let total_calls = sum(|s| s.calls);
    println!(
        "driver calls per step (create, map, set access, unmap, release): mean {:.1}, max {}",
        total_calls as f64 / record.len().max(1) as f64,
        record.iter().map(|s| s.calls).max().unwrap_or(0)
    );
    // The tail: the slowest steps and what they did.
    let mut slow: Vec<(usize, &Step)> = record.iter().enumerate().collect();
    slow.sort_by_key(|(_, s)| std::cmp::Reverse(s.memory));
    for (i, s) in slow.iter().take(3) {
        println!(
            "  slow step {i}: {:.1?} ({} pages committed, {} created, {} decommitted, \
             driver {:.1?})",
            s.memory, s.committed, s.created, s.decommitted, s.driver
        );
    }
    println!("pool: {:?}", pool.stats());
}
