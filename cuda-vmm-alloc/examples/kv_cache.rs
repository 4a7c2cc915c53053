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
//! the per-step commit latency (p50, p99) and the driver calls per step.

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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cuda = Cuda::new()?;
    println!("kv_cache on {}", cuda.describe());
    let device = cuda.device(0)?;
    let (max_tokens, steps) = match cuda.backend() {
        cuda_vmm::Backend::Simulator => (2048, 200),
        _ => (8192, 400),
    };
    let page = device.min_granularity(&AllocationProps::device(&device))?;
    let tokens_per_page = page / TOKEN_BYTES;
    let pool = ChunkPool::new(
        &device,
        PoolConfig {
            chunk_size: page,
            max_chunks: 4096,
            max_bytes: 8 << 30,
            props: None,
        },
    )?;
    let layer_bytes = MAX_SEQS * max_tokens * TOKEN_BYTES;
    let mut layers = (0..LAYERS)
        .map(|_| {
            let config = SparseConfig {
                pool: Some(pool.clone()),
                uninit_tiles: true,
                ..SparseConfig::default()
            };
            SparseArray::<u8>::new(&device, layer_bytes, config)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut write = writer(&cuda, &device);

    let mut rng = SplitMix(0x5EED);
    let mut free_slots: Vec<usize> = (0..MAX_SEQS).rev().collect();
    let mut active: Vec<Sequence> = Vec::new();
    let (mut commit_times, mut calls_per_step) = (Vec::new(), Vec::new());
    let (mut peak, mut finished, mut tokens_checked) = (0usize, 0usize, 0usize);
    let started = Instant::now();
    for step in 0..steps {
        let before: u64 = layers.iter().map(|l| calls(&l.stats())).sum();
        let mut commit = Duration::ZERO;
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
            commit += t.elapsed();
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
                commit += t.elapsed();
            }
            write.write(&mut layers, seq, seq.len, to)?;
            seq.len = to;
        }
        peak = peak.max(layers.iter().map(SparseArray::committed_bytes).sum());
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
            for layer in &mut layers {
                layer.decommit(base..base + max_tokens * TOKEN_BYTES)?;
            }
            free_slots.push(seq.slot);
            finished += 1;
        }
        let after: u64 = layers.iter().map(|l| calls(&l.stats())).sum();
        commit_times.push(commit);
        calls_per_step.push(after - before);
    }
    let elapsed = started.elapsed();
    commit_times.sort();
    let static_bytes = LAYERS * layer_bytes;
    let total_calls: u64 = calls_per_step.iter().sum();
    let pool_stats = pool.stats();
    println!(
        "{steps} steps in {elapsed:.2?}: {finished} sequences finished, {tokens_checked} tokens checked"
    );
    println!(
        "peak memory in use: {:.1} MiB vs {:.1} MiB static pre-allocation ({:.1}%)",
        peak as f64 / (1 << 20) as f64,
        static_bytes as f64 / (1 << 20) as f64,
        100.0 * peak as f64 / static_bytes as f64
    );
    println!(
        "commit latency per step: p50 {:.1?}, p99 {:.1?}, max {:.1?}",
        percentile(&commit_times, 0.50),
        percentile(&commit_times, 0.99),
        commit_times.last().copied().unwrap_or_default()
    );
    println!(
        "driver calls per step (create, map, set access, unmap, release): mean {:.1}, max {}",
        total_calls as f64 / steps as f64,
        calls_per_step.iter().max().copied().unwrap_or(0)
    );
    println!("pool: {pool_stats:?}");
    Ok(())
}
