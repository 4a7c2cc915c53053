//! The caching allocator (issue 20): stream-ordered reuse with no driver call, cross-stream
//! reuse only after the recorded use, growth, budgets, trims, statistics and snapshots, and
//! a trace replay whose every block's bytes are checked at its free.
//!
//! Call counts come from the simulator's per-thread counters (other tests cannot disturb
//! them) and are asserted on the simulator only; on the GPU the allocator's own statistics
//! stand in for them.

use cuda_vmm::{Device, Stream};
use cuda_vmm_alloc::{CachedBlock, CachingAllocator, CachingConfig, Error};

use crate::alloc::{counts, delta, raw_write};
use crate::{cuda, device, on_simulator};
use cuda_vmm_tests::helpers::{gran, raw_read, TestResult};

mod adversarial;
pub(crate) mod adversarial_sleep;
mod adversarial_sleep_pages;
mod adversarial_streams;
mod gpu_kernels;
mod page_cache;
mod replay;
mod sleep;

/// Every entry point a cache hit or a same-stream free must not call.
const DRIVER_CALLS: [&str; 12] = [
    "cuMemCreate",
    "cuMemMap",
    "cuMemSetAccess",
    "cuMemUnmap",
    "cuMemRelease",
    "cuMemAddressReserve",
    "cuEventCreate",
    "cuEventRecord",
    "cuEventQuery",
    "cuStreamSynchronize",
    "cuCtxSynchronize",
    "cuStreamIsCapturing",
];

const MIB: usize = 1 << 20;

/// Where the stamps go: the first 8 bytes, and the last 8 when they do not overlap those.
fn stamp_offsets(len: usize) -> Vec<usize> {
    if len >= 16 {
        vec![0, len - 8]
    } else {
        vec![0]
    }
}

/// Writes an 8-byte stamp at the first and last 8 bytes of `block`.
pub(crate) fn stamp(block: &CachedBlock, id: u64) -> TestResult {
    let cuda = cuda()?;
    let bytes = id.to_le_bytes();
    for at in stamp_offsets(block.len()) {
        let r = raw_write(&cuda, block.ptr() + at as u64, &bytes[..8.min(block.len())])?;
        assert_eq!(r, cuda_vmm::sys::CUresult::CUDA_SUCCESS);
    }
    Ok(())
}

/// Checks the stamps [`stamp`] wrote.
pub(crate) fn check_stamp(block: &CachedBlock, id: u64) -> TestResult {
    let cuda = cuda()?;
    let want = id.to_le_bytes();
    let n = 8.min(block.len());
    for at in stamp_offsets(block.len()) {
        let got = raw_read(&cuda, block.ptr() + at as u64, n)?;
        assert_eq!(got, want[..n], "block {id} at {:#x}+{at}", block.ptr());
    }
    Ok(())
}

fn allocator(d: &Device, config: CachingConfig) -> cuda_vmm_alloc::Result<CachingAllocator> {
    CachingAllocator::with_config(
        d,
        CachingConfig {
            // Small segments, so the tests do not reserve the device's whole memory.
            segment_size: Some(1 << 30),
            ..config
        },
    )
}

#[test]
fn same_stream_reuse_makes_no_driver_call() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let stream = Stream::new(&d)?;
    let a = allocator(&d, CachingConfig::default())?;
    let first = a.alloc(3 * MIB, &stream)?;
    let small = a.alloc(4096, &stream)?;
    let (ptr, small_ptr) = (first.ptr(), small.ptr());
    assert_eq!(ptr % 512, 0);
    stamp(&first, 1)?;
    check_stamp(&first, 1)?;
    drop((first, small));
    let grown = a.stats().growths;
    let before = counts(&DRIVER_CALLS);
    for i in 0..1000 {
        let big = a.alloc(3 * MIB - 512 * (i % 4), &stream)?;
        let tiny = a.alloc(100 + i, &stream)?;
        assert_eq!((big.ptr(), tiny.ptr()), (ptr, small_ptr));
    }
    if on_simulator()? {
        assert_eq!(delta(&before, &counts(&DRIVER_CALLS)), [0; 12]);
    }
    let stats = a.stats();
    assert_eq!(stats.growths, grown);
    assert_eq!((stats.allocs, stats.cache_hits), (2002, 2000));
    assert_eq!((stats.allocated_bytes, stats.active_blocks), (0, 0));
    assert_eq!(stats.peak_allocated_bytes, 3 * MIB + 4096);
    Ok(())
}

#[test]
fn cross_stream_use_delays_reuse_until_its_event_completes() -> TestResult {
    let Some((d, _g)) = crate::simulated_device("needs the simulator's stream holds")? else {
        return Ok(());
    };
    let _memory = crate::memory_shared();
    let (s1, s2) = (Stream::new(&d)?, Stream::new(&d)?);
    let a = allocator(&d, CachingConfig::default())?;
    let mut x = a.alloc(4096, &s1)?;
    let x_ptr = x.ptr();
    let hold = cuda_vmm_sim::hold_stream(s2.raw());
    assert!(hold.is_active());
    x.record_use(&s2)?;
    // Recording on the block's own stream is a no-op: no event.
    let before = counts(&["cuEventRecord"]);
    x.record_use(&s1)?;
    assert_eq!(delta(&before, &counts(&["cuEventRecord"])), [0]);
    drop(x);
    assert_eq!(a.stats().pending_blocks, 1);
    let y = a.alloc(4096, &s1)?;
    assert_ne!(
        y.ptr(),
        x_ptr,
        "reused while a use on another stream may still run"
    );
    drop(hold);
    s2.synchronize()?;
    let z = a.alloc(4096, &s1)?;
    assert_eq!(z.ptr(), x_ptr);
    assert_eq!(a.stats().pending_blocks, 0);
    Ok(())
}

#[test]
fn requests_are_validated_and_change_nothing() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let stream = Stream::new(&d)?;
    let a = allocator(&d, CachingConfig::default())?;
    let keep = a.alloc(MIB, &stream)?;
    let before = a.stats();
    for bytes in [0, usize::MAX, isize::MAX as usize + 1] {
        let e = a.alloc(bytes, &stream).unwrap_err();
        assert!(matches!(e, Error::InvalidRequest { .. }), "{bytes}: {e}");
        assert!(
            e.to_string().contains(&bytes.to_string()) || bytes == 0,
            "{e}"
        );
    }
    let cuda = cuda()?;
    if cuda.device_count()? > 1 {
        let other = Stream::new(&cuda.device(1)?)?;
        let e = a.alloc(MIB, &other).unwrap_err();
        assert_eq!(
            e,
            Error::InvalidRequest {
                message: "a stream of device 1 for an allocator of device 0".into()
            }
        );
    }
    assert_eq!(a.stats(), before);
    drop(keep);
    let g = gran(&d)?;
    for (config, field) in [
        (
            CachingConfig {
                small_page: std::num::NonZeroUsize::new(g + 512),
                ..CachingConfig::default()
            },
            "small_page",
        ),
        (
            CachingConfig {
                small_limit: 2 * g,
                ..CachingConfig::default()
            },
            "small_limit",
        ),
        (
            CachingConfig {
                compact_above: Some(f64::NAN),
                ..CachingConfig::default()
            },
            "compact_above",
        ),
    ] {
        match CachingAllocator::with_config(&d, config) {
            Err(Error::InvalidConfig { message }) => assert!(message.contains(field), "{message}"),
            other => panic!("{field}: {other:?}"),
        }
    }
    Ok(())
}

#[test]
fn a_full_budget_empties_the_cache_retries_then_names_the_request() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let stream = Stream::new(&d)?;
    let page = 16 * g;
    let a = allocator(
        &d,
        CachingConfig {
            max_reserved: Some(2 * page),
            ..CachingConfig::default()
        },
    )?;
    let x = a.alloc(page, &stream)?;
    let y = a.alloc(page / 2, &stream)?;
    // A second stream's pool cannot use the first stream's cache.
    let other = Stream::new(&d)?;
    drop(y);
    let before = a.stats();
    assert_eq!(before.reserved_bytes, 2 * page);
    // Past the budget: the free page of the first stream is given back, then it fits.
    let z = a.alloc(page, &other)?;
    let after = a.stats();
    assert_eq!((after.reserved_bytes, after.pages_released), (2 * page, 1));
    // Nothing left to give back: refused, naming the request and what is held.
    let e = a.alloc(page, &stream).unwrap_err();
    assert!(e.is_out_of_memory());
    match e {
        Error::AllocatorOutOfMemory {
            requested,
            reserved,
            allocated,
            releasing,
            max_reserved,
            ..
        } => assert_eq!(
            (requested, reserved, allocated, releasing, max_reserved),
            (page, 2 * page, 2 * page, 0, Some(2 * page))
        ),
        other => panic!("{other}"),
    }
    let refused = a.stats();
    assert_eq!(refused.out_of_memory, 1);
    assert_eq!(
        (refused.reserved_bytes, refused.allocated_bytes),
        (after.reserved_bytes, after.allocated_bytes)
    );
    drop((x, z));
    Ok(())
}

#[test]
fn empty_cache_gives_every_free_page_back() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let stream = Stream::new(&d)?;
    let a = allocator(&d, CachingConfig::default())?;
    let blocks: Vec<CachedBlock> = (1..=8)
        .map(|i| a.alloc(i * MIB + 512, &stream))
        .collect::<Result<_, _>>()?;
    let small: Vec<CachedBlock> = (0..100)
        .map(|i| a.alloc(512 * (i + 1), &stream))
        .collect::<Result<_, _>>()?;
    let reserved = a.stats().reserved_bytes;
    assert_eq!(reserved % g, 0);
    let keep = a.alloc(700, &stream)?;
    drop((blocks, small));
    // One small page stays: it holds `keep`.
    let given = a.empty_cache();
    assert_eq!(given, reserved - g);
    assert!(a.flush_releases(std::time::Duration::from_secs(10))?);
    let stats = a.stats();
    assert_eq!(
        (
            stats.reserved_bytes,
            stats.releasing_bytes,
            stats.allocated_bytes
        ),
        (g, 0, 1024)
    );
    check_stamp_roundtrip(&keep)?;
    drop(keep);
    assert_eq!(a.trim(0), g);
    assert_eq!(a.stats().reserved_bytes, 0);
    Ok(())
}

fn check_stamp_roundtrip(block: &CachedBlock) -> TestResult {
    stamp(block, 0xC0FFEE)?;
    check_stamp(block, 0xC0FFEE)
}

#[test]
fn blocks_split_coalesce_and_show_in_the_snapshot() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let stream = Stream::new(&d)?;
    let a = allocator(&d, CachingConfig::default())?;
    let x = a.alloc(2 * MIB, &stream)?;
    let y = a.alloc(2 * MIB, &stream)?;
    let z = a.alloc(2 * MIB, &stream)?;
    assert_eq!(
        (y.ptr() - x.ptr(), z.ptr() - y.ptr()),
        (2 * MIB as u64, 2 * MIB as u64)
    );
    drop((x, z));
    drop(y);
    // All three coalesced with the free tail: a 6 MiB request fits with no growth.
    let grown = a.stats().growths;
    let w = a.alloc(6 * MIB, &stream)?;
    assert_eq!(a.stats().growths, grown);
    let snapshot = a.snapshot();
    assert_eq!(snapshot.segments.len(), 1);
    let seg = &snapshot.segments[0];
    assert_eq!(seg.address, w.ptr());
    assert_eq!(seg.blocks[0].size, 6 * MIB);
    assert_eq!(seg.blocks[0].state, "active");
    let json = snapshot.to_json();
    let parsed: serde_json::Value = serde_json::from_str(&json)?;
    assert_eq!(parsed["stats"]["active_blocks"], 1);
    assert_eq!(parsed["segments"][0]["blocks"][0]["state"], "active");
    let classes = &a.stats().size_classes;
    assert_eq!(classes[3].allocs, 4, "{classes:?}");
    assert_eq!(classes[3].active, 1);
    Ok(())
}

#[test]
fn a_release_threshold_trims_after_frees() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let stream = Stream::new(&d)?;
    let a = allocator(
        &d,
        CachingConfig {
            release_threshold: Some(16 * g),
            ..CachingConfig::default()
        },
    )?;
    let x = a.alloc(40 * g, &stream)?;
    assert_eq!(a.stats().reserved_bytes, 48 * g);
    drop(x);
    assert_eq!(a.stats().reserved_bytes, 16 * g);
    Ok(())
}

#[test]
fn a_capturing_stream_is_refused_growth_and_record_use_and_with_the_check_every_alloc() -> TestResult
{
    let Some((d, _g)) = crate::simulated_device("needs the simulator's capture marks")? else {
        return Ok(());
    };
    let _memory = crate::memory_shared();
    let (s1, s2) = (Stream::new(&d)?, Stream::new(&d)?);
    let a = allocator(&d, CachingConfig::default())?;
    let warm = a.alloc(MIB, &s1)?;
    drop(warm);
    let before = a.stats();
    {
        let _capturing = cuda_vmm_sim::mark_capturing(s1.raw());
        // A cache hit makes no driver call: served (capture-safe in stream order).
        let hit = a.alloc(MIB, &s1)?;
        // Growth would call the driver inside the capture: refused, nothing changed.
        assert_eq!(
            a.alloc(64 * MIB, &s1).unwrap_err(),
            Error::StreamCapturing {
                operation: "growth"
            }
        );
        drop(hit);
        let mut stats = a.stats();
        stats.allocs -= 1;
        stats.cache_hits -= 1;
        stats.size_classes[2].allocs -= 1;
        assert_eq!(stats, before);
        // A new stream's first allocation during capture leaves no segment behind.
        let _also = cuda_vmm_sim::mark_capturing(s2.raw());
        assert_eq!(
            a.alloc(MIB, &s2).unwrap_err(),
            Error::StreamCapturing {
                operation: "growth"
            }
        );
        assert_eq!(a.stats().segments, before.segments);
        // record_use on a capturing stream: refused, and the block frees as before.
        let mut x = a.alloc(MIB, &s1)?;
        assert_eq!(
            x.record_use(&s2).unwrap_err(),
            Error::StreamCapturing {
                operation: "record_use"
            }
        );
        drop(x);
        assert_eq!(a.stats().pending_blocks, 0);
    }
    let strict = allocator(
        &d,
        CachingConfig {
            check_capture: true,
            ..CachingConfig::default()
        },
    )?;
    drop(strict.alloc(MIB, &s1)?);
    let _capturing = cuda_vmm_sim::mark_capturing(s1.raw());
    assert_eq!(
        strict.alloc(MIB, &s1).unwrap_err(),
        Error::StreamCapturing { operation: "alloc" }
    );
    Ok(())
}
