//! The benchmark's allocation trace, scaled down, replayed through the caching allocator
//! with every block's first and last bytes stamped at its allocation and checked at its free:
//! two blocks that overlapped, or a block reused while a use on another stream was still
//! recorded, would fail a check.

use std::collections::HashMap;

use cuda_vmm::Stream;
use cuda_vmm_alloc::{CachedBlock, CachingAllocator, CachingConfig};
use cuda_vmm_tests::alloc_trace::{generate, TraceConfig, TraceOp};
use cuda_vmm_tests::helpers::TestResult;

use super::{check_stamp, stamp};
use crate::device;

fn replay(config: TraceConfig, caching: CachingConfig) -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let trace = generate(&config);
    let streams: Vec<Stream> = (0..trace.streams)
        .map(|_| Stream::new(&d))
        .collect::<Result<_, _>>()?;
    let a = CachingAllocator::with_config(&d, caching)?;
    let mut live: HashMap<u32, CachedBlock> = HashMap::new();
    for op in &trace.ops {
        match *op {
            TraceOp::Alloc { id, size, stream } => {
                let block = a.alloc(size as usize, &streams[usize::from(stream)])?;
                stamp(&block, u64::from(id))?;
                live.insert(id, block);
            }
            TraceOp::Free { id, used_on } => {
                let mut block = live.remove(&id).ok_or("freed twice")?;
                check_stamp(&block, u64::from(id))?;
                if let Some(s) = used_on {
                    block.record_use(&streams[usize::from(s)])?;
                }
            }
        }
    }
    let stats = a.stats();
    assert_eq!((stats.allocated_bytes, stats.active_blocks), (0, 0));
    assert_eq!(stats.allocs, u64::from(config.allocations));
    eprintln!(
        "replay of {} ops on {} stream(s): peak reserved {} / peak requested {} = {:.3}, \
         {} growths, {} cache hits, {} pages mapped ({} reused), {} pages released",
        trace.ops.len(),
        trace.streams,
        stats.peak_reserved_bytes,
        trace.peak_requested,
        stats.peak_reserved_bytes as f64 / trace.peak_requested as f64,
        stats.growths,
        stats.cache_hits,
        stats.pages_mapped,
        stats.pages_reused,
        stats.pages_released
    );
    assert!(stats.peak_reserved_bytes as u64 >= trace.peak_requested);
    a.empty_cache();
    Ok(())
}

fn scaled(streams: u8) -> TraceConfig {
    TraceConfig {
        allocations: 6_000,
        live_cap: 3 << 30,
        streams,
        cross_stream: if streams > 1 { 0.10 } else { 0.0 },
        seed: 7,
    }
}

#[test]
fn the_trace_keeps_every_block_s_bytes_on_one_stream() -> TestResult {
    replay(scaled(1), CachingConfig::default())
}

#[test]
fn the_trace_keeps_every_block_s_bytes_on_four_streams_with_cross_stream_uses() -> TestResult {
    replay(scaled(4), CachingConfig::default())
}

#[test]
fn the_trace_keeps_every_block_s_bytes_when_compacting() -> TestResult {
    replay(
        scaled(1),
        CachingConfig {
            compact_above: Some(0.05),
            ..CachingConfig::default()
        },
    )
}

/// The full serving trace (24 GiB live) on the simulator, stamps and all, with the
/// compaction share from `CUDA_VMM_COMPACT` and the large page from `CUDA_VMM_LARGE_PAGE`
/// (bytes; the defaults when unset): prints the peak ratio. Ignored:
/// it maps about 30 GiB of simulated memory.
#[test]
#[ignore]
fn the_full_trace_on_the_simulator() -> TestResult {
    let compact_above = std::env::var("CUDA_VMM_COMPACT")
        .ok()
        .and_then(|v| v.parse().ok());
    let large_page = std::env::var("CUDA_VMM_LARGE_PAGE")
        .ok()
        .and_then(|v| v.parse().ok())
        .and_then(std::num::NonZeroUsize::new);
    replay(
        TraceConfig::serving(),
        CachingConfig {
            compact_above,
            large_page,
            ..CachingConfig::default()
        },
    )
}
