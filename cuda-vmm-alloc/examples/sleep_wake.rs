//! Sleep and wake, as an RL trainer does with its inference engine: a model's weights and
//! a KV cache in one caching allocator, under tags `weights` and `kv_cache`.
//!
//! 1. Both tags sleep: the weights with a host backup, the KV cache discarded. The driver
//!    has the memory back when `sleep` returns.
//! 2. Something else (the "trainer") takes most of the GPU, then frees it.
//! 3. Both wake at the same addresses; every weight byte is checked.
//!
//! It prints the time of each step and the device's free memory. On the GPU it uses 16 GiB
//! of weights and 16 GiB of KV cache (`CUDA_VMM_SLEEP_GIB` to change both); on the
//! simulator 64 MiB each.
//!
//!     cargo run --release -p cuda-vmm-alloc --example sleep_wake

use std::error::Error;
use std::num::NonZeroUsize;
use std::time::Instant;

use cuda_vmm::{Backend, Cuda, LinearAllocation, Stream};
use cuda_vmm_alloc::{Backup, CachedBlock, CachingAllocator, CachingConfig};

const MIB: usize = 1 << 20;

fn gib(bytes: usize) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// The bytes of weight `i` at `at` (a pattern that differs per block and per offset).
fn pattern(i: usize, at: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|k| (((at + k) as u64 * 2_654_435_761) ^ (i as u64 * 40_503)) as u8)
        .collect()
}

/// Writes (or, with `check`, compares) every byte of `blocks`, in pieces of 64 MiB.
fn stamp(blocks: &[CachedBlock], check: bool) -> Result<(), Box<dyn Error>> {
    let piece = 64 * MIB;
    let mut back = vec![0u8; piece];
    for (i, b) in blocks.iter().enumerate() {
        for at in (0..b.len()).step_by(piece) {
            let len = piece.min(b.len() - at);
            let want = pattern(i, at, len);
            if check {
                b.read(at, &mut back[..len])?;
                if back[..len] != want[..] {
                    return Err(format!("weight {i}: bytes at {at} differ after wake").into());
                }
            } else {
                b.write(at, &want)?;
            }
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let cuda = Cuda::new()?;
    let device = cuda.device(0)?;
    let each = match (cuda.backend(), std::env::var("CUDA_VMM_SLEEP_GIB")) {
        (_, Ok(v)) => v.parse::<usize>()? << 30,
        (Backend::RealDriver, _) => 16 << 30,
        (Backend::Simulator, _) => 64 * MIB,
    };
    println!("{} on {}", cuda.describe(), device.name()?);
    let free = || device.memory_info().map(|m| m.free);
    let free0 = free()?;
    // Weights: 8 blocks in pages as large as a block; the KV cache: 2 MiB pages.
    let block = each / 8;
    let allocator = CachingAllocator::with_config(
        &device,
        CachingConfig {
            tag_large_pages: vec![("weights".into(), NonZeroUsize::new(block).ok_or("size")?)],
            ..CachingConfig::default()
        },
    )?;
    let stream = Stream::new(&device)?;
    let weights = (0..8)
        .map(|_| allocator.alloc_tagged(block, &stream, "weights"))
        .collect::<Result<Vec<_>, _>>()?;
    let kv = (0..each / (2 * MIB))
        .map(|_| allocator.alloc_tagged(2 * MIB, &stream, "kv_cache"))
        .collect::<Result<Vec<_>, _>>()?;
    stamp(&weights, false)?;
    let ptrs: Vec<u64> = weights.iter().map(CachedBlock::ptr).collect();
    let awake = free()?;
    println!(
        "awake: weights {} + KV cache {}; free {} (was {} before)",
        gib(each),
        gib(each),
        gib(awake),
        gib(free0)
    );
    for round in 1..=2 {
        let start = Instant::now();
        let w = allocator.sleep(&["weights"], Backup::Host)?;
        let k = allocator.sleep(&["kv_cache"], Backup::Discard)?;
        let slept = start.elapsed();
        let asleep = free()?;
        println!(
            "round {round}: sleep {slept:?} (weights: pin {} in {:?}, backup {:?}, release {:?}; \
             KV cache: release {:?}); free {} = {} more",
            gib(w.host_prepared_bytes),
            w.host_prepare,
            w.backup,
            w.release,
            k.release,
            gib(asleep),
            gib(asleep - awake)
        );
        // The trainer: most of the free memory, used, then given back.
        let take = asleep / 10 * 9;
        let start = Instant::now();
        let other = LinearAllocation::new(&device, take)?;
        other.free()?;
        println!(
            "round {round}: the trainer took and freed {} in {:?}",
            gib(take),
            start.elapsed()
        );
        let start = Instant::now();
        let woke = allocator.wake(&["weights", "kv_cache"])?;
        let woken = start.elapsed();
        println!(
            "round {round}: wake {woken:?} (map {:?}, restore {:?} of {}); free {}",
            woke.map,
            woke.restore,
            gib(woke.restored_bytes),
            gib(free()?)
        );
        stamp(&weights, true)?;
        let same: Vec<u64> = weights.iter().map(CachedBlock::ptr).collect();
        if same != ptrs {
            return Err("a weight moved".into());
        }
        println!("round {round}: every weight byte is back, at the same address");
    }
    drop((weights, kv));
    let held = allocator.stats().host_backup_bytes;
    println!(
        "host backup kept for the next sleep: {}; giving it back",
        gib(held)
    );
    allocator.release_host_backup();
    Ok(())
}
