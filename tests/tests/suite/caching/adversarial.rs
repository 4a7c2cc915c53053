//! Adversarial tests of the caching allocator through its public API: every fault point
//! of growth and of `record_use`, refusals that must change nothing, configuration edge
//! values, and the split/coalesce invariants as the snapshot shows them.

use std::num::NonZeroUsize;
use std::time::Duration;

use cuda_vmm::{Device, Stream};
use cuda_vmm_alloc::{CachedBlock, CachingAllocator, CachingConfig, CachingStats, Error, Snapshot};
use cuda_vmm_sys::CUresult;

use super::{check_stamp, stamp};
use crate::adversarial::calls_made_of;
use cuda_vmm_tests::helpers::TestResult;

/// The driver calls a growth on a new stream makes.
const GROWTH_CALLS: &[&str] = &[
    "cuMemAddressReserve",
    "cuMemCreate",
    "cuMemMap",
    "cuMemSetAccess",
];

/// An allocator with pages of one granule (small and large) and 1 GiB segments.
pub(super) fn paged(
    d: &Device,
    g: usize,
    config: CachingConfig,
) -> Result<CachingAllocator, Error> {
    CachingAllocator::with_config(
        d,
        CachingConfig {
            small_page: NonZeroUsize::new(g),
            large_page: NonZeroUsize::new(g),
            segment_size: Some(1 << 30),
            ..config
        },
    )
}

/// Whether `e` is the driver error `code` of `call`.
pub(super) fn driver_error(e: &Error, call: &str, code: CUresult) -> bool {
    matches!(e, Error::Vmm(cuda_vmm::Error::Driver { call: c, error }) if *c == call && error.result() == code)
}

/// `stats` with the counter of segments (address reservations) taken out.
fn without_segments(stats: &CachingStats) -> CachingStats {
    CachingStats {
        segments: 0,
        ..stats.clone()
    }
}

/// Checks the split/coalesce invariants of `snap`: blocks of a segment in order, never
/// overlapping, gaps (unmapped stretches) on page boundaries, mapped bytes covered exactly,
/// no two touching free blocks, sizes and offsets multiples of 512, the stats' reserved and
/// allocated bytes equal to the mapped and active bytes.
pub(super) fn check_invariants(snap: &Snapshot) {
    let mut active = 0;
    let mut mapped = 0;
    for seg in &snap.segments {
        let mut end = 0;
        let mut covered = 0;
        let mut prev_free = false;
        for b in &seg.blocks {
            assert_eq!((b.offset % 512, b.size % 512), (0, 0), "{b:?}");
            assert!(b.size > 0, "{b:?}");
            assert!(b.offset >= end, "overlap at {b:?} (end {end})");
            if b.offset > end {
                assert_eq!(
                    (end % seg.page, b.offset % seg.page),
                    (0, 0),
                    "gap {end}..{} not on page boundaries",
                    b.offset
                );
            }
            let free = match b.state {
                "active" => {
                    active += b.size;
                    false
                }
                "free" => true,
                other => panic!("state {other} in a snapshot: {b:?}"),
            };
            assert!(
                !(free && prev_free && b.offset == end),
                "two touching free blocks at {}: {seg:?}",
                b.offset
            );
            prev_free = free;
            covered += b.size;
            end = b.offset + b.size;
        }
        assert_eq!(covered, seg.mapped_bytes, "{seg:?}");
        mapped += seg.mapped_bytes;
    }
    assert_eq!(snap.stats.reserved_bytes, mapped, "reserved vs mapped");
    assert_eq!(
        snap.stats.allocated_bytes, active,
        "allocated vs active blocks"
    );
    assert_eq!(
        snap.stats.inactive_bytes,
        snap.stats.reserved_bytes - snap.stats.allocated_bytes
    );
    assert_eq!(snap.stats.segments, snap.segments.len());
}

fn free_now(d: &Device) -> Result<usize, cuda_vmm::Error> {
    Ok(d.memory_info()?.free)
}

#[test]
fn every_growth_fault_changes_nothing_and_leaks_nothing() -> TestResult {
    let Some((d, g)) = crate::simulated_device(crate::FAULT_INJECTION)? else {
        return Ok(());
    };
    let _memory = crate::memory_exclusive();
    let s1 = Stream::new(&d)?;
    let want = 2 * g + g / 2;
    // The calls a 3-page growth on a new stream makes.
    let calls = {
        let a = paged(&d, g, CachingConfig::default())?;
        let _keep = a.alloc(g, &s1)?;
        let s2 = Stream::new(&d)?;
        calls_made_of(GROWTH_CALLS, || drop(a.alloc(want, &s2).unwrap()))
    };
    assert_eq!(calls.len(), 1 + 3 + 3 + 1, "{calls:?}");
    for code in [
        CUresult::CUDA_ERROR_UNKNOWN,
        CUresult::CUDA_ERROR_INVALID_VALUE,
    ] {
        for &(symbol, nth) in &calls {
            let free0 = free_now(&d)?;
            let a = paged(&d, g, CachingConfig::default())?;
            let keep = a.alloc(g, &s1)?;
            stamp(&keep, 7)?;
            let s2 = Stream::new(&d)?;
            let before = a.stats();
            let free_before = free_now(&d)?;
            let result = {
                let _f = cuda_vmm_sim::inject_fault(symbol, nth, code);
                a.alloc(want, &s2)
            };
            let e = result.expect_err(&format!("{symbol} #{nth} did not fail"));
            assert!(driver_error(&e, symbol, code), "{symbol} #{nth}: {e:?}");
            let after = a.stats();
            assert_eq!(
                (
                    after.reserved_bytes,
                    after.allocated_bytes,
                    after.active_blocks
                ),
                (
                    before.reserved_bytes,
                    before.allocated_bytes,
                    before.active_blocks
                ),
                "{symbol} #{nth}"
            );
            assert_eq!(
                without_segments(&after),
                without_segments(&before),
                "{symbol} #{nth}"
            );
            assert_eq!(free_now(&d)?, free_before, "{symbol} #{nth}: pages leaked");
            check_invariants(&a.snapshot());
            // The next one succeeds, and the old block kept its bytes.
            let b = a.alloc(want, &s2)?;
            stamp(&b, 8)?;
            check_stamp(&b, 8)?;
            check_stamp(&keep, 7)?;
            assert_eq!(a.stats().reserved_bytes, before.reserved_bytes + 3 * g);
            drop((b, keep));
            a.empty_cache();
            assert!(a.flush_releases(Duration::from_secs(10))?);
            drop(a);
            assert_eq!(free_now(&d)?, free0, "{symbol} #{nth}: leaked after drop");
        }
    }
    Ok(())
}

#[test]
fn device_out_of_memory_twice_is_the_allocator_s_out_of_memory() -> TestResult {
    let Some((d, g)) = crate::simulated_device(crate::FAULT_INJECTION)? else {
        return Ok(());
    };
    let _memory = crate::memory_shared();
    let s = Stream::new(&d)?;
    let a = paged(&d, g, CachingConfig::default())?;
    let keep = a.alloc(g, &s)?;
    let spare = a.alloc(g, &s)?;
    drop(spare);
    // One out-of-memory answer: the free page is given back and the retry succeeds.
    {
        let _f = cuda_vmm_sim::inject_fault("cuMemCreate", 1, CUresult::CUDA_ERROR_OUT_OF_MEMORY);
        let b = a.alloc(2 * g, &s)?;
        check_stamp_roundtrip(&b)?;
    }
    let stats = a.stats();
    // The free page went back; the 2-page block was mapped after `keep`.
    assert_eq!((stats.pages_released, stats.out_of_memory), (1, 0));
    assert_eq!(stats.reserved_bytes, 3 * g);
    // Out of memory on both tries: the documented error, counted.
    let before = a.stats();
    let e = {
        let _f: Vec<_> = (1..=8)
            .map(|n| {
                cuda_vmm_sim::inject_fault("cuMemCreate", n, CUresult::CUDA_ERROR_OUT_OF_MEMORY)
            })
            .collect();
        a.alloc(4 * g, &s).unwrap_err()
    };
    assert!(e.is_out_of_memory(), "{e:?}");
    assert!(
        matches!(e, Error::AllocatorOutOfMemory { requested, reserved, allocated, releasing: 0, max_reserved: None, .. }
            if (requested, reserved, allocated) == (4 * g, g, g)),
        "{e:?}"
    );
    let after = a.stats();
    assert_eq!(after.out_of_memory, before.out_of_memory + 1);
    drop(keep);
    Ok(())
}

fn check_stamp_roundtrip(b: &CachedBlock) -> TestResult {
    stamp(b, 0xAB)?;
    check_stamp(b, 0xAB)
}

#[test]
fn record_use_faults_change_nothing() -> TestResult {
    let Some((d, g)) = crate::simulated_device(crate::FAULT_INJECTION)? else {
        return Ok(());
    };
    let _memory = crate::memory_shared();
    let (s1, s2, s3) = (Stream::new(&d)?, Stream::new(&d)?, Stream::new(&d)?);
    for (symbol, nth) in [("cuEventCreate", 1), ("cuEventRecord", 1)] {
        let a = paged(&d, g, CachingConfig::default())?;
        let mut x = a.alloc(4096, &s1)?;
        let ptr = x.ptr();
        let before = a.stats();
        let e = {
            let _f = cuda_vmm_sim::inject_fault(symbol, nth, CUresult::CUDA_ERROR_UNKNOWN);
            x.record_use(&s2).unwrap_err()
        };
        assert!(
            driver_error(&e, symbol, CUresult::CUDA_ERROR_UNKNOWN),
            "{symbol}: {e:?}"
        );
        assert_eq!(a.stats(), before, "{symbol}");
        // No use was recorded: the block goes back at once.
        drop(x);
        assert_eq!(a.stats().pending_blocks, 0, "{symbol}");
        let mut y = a.alloc(4096, &s1)?;
        assert_eq!(y.ptr(), ptr, "{symbol}");
        // The next record works (with the spare event after a failed record).
        y.record_use(&s2)?;
        // A failed re-record on the same stream keeps the block recorded on it.
        {
            let _f = cuda_vmm_sim::inject_fault("cuEventRecord", 1, CUresult::CUDA_ERROR_UNKNOWN);
            let e = y.record_use(&s2).unwrap_err();
            assert!(
                driver_error(&e, "cuEventRecord", CUresult::CUDA_ERROR_UNKNOWN),
                "{e:?}"
            );
        }
        // A failed record on a second stream leaves the first one.
        {
            let _f = cuda_vmm_sim::inject_fault("cuEventRecord", 1, CUresult::CUDA_ERROR_UNKNOWN);
            assert!(y.record_use(&s3).is_err());
        }
        let hold = cuda_vmm_sim::hold_stream(s2.raw());
        assert!(hold.is_active());
        y.record_use(&s2)?;
        drop(y);
        assert_eq!(a.stats().pending_blocks, 1);
        let z = a.alloc(4096, &s1)?;
        assert_ne!(z.ptr(), ptr, "{symbol}: reused while s2 is held");
        drop(hold);
        s2.synchronize()?;
        let w = a.alloc(4096, &s1)?;
        assert_eq!(w.ptr(), ptr);
        drop((z, w));
    }
    Ok(())
}

#[test]
fn refusals_name_the_request_exactly_and_change_nothing() -> TestResult {
    let _memory = crate::memory_exclusive();
    let d = crate::device()?;
    let g = cuda_vmm_tests::helpers::gran(&d)?;
    let s = Stream::new(&d)?;
    let a = paged(
        &d,
        g,
        CachingConfig {
            max_reserved: Some(2 * g),
            ..CachingConfig::default()
        },
    )?;
    let keep = a.alloc(g, &s)?;
    let before = a.stats();
    let expect = [
        (
            0,
            "an allocation of 0 bytes: ask for at least 1".to_string(),
        ),
        (
            usize::MAX,
            format!(
                "an allocation of {} bytes is larger than isize::MAX",
                usize::MAX
            ),
        ),
        (
            isize::MAX as usize + 1,
            format!(
                "an allocation of {} bytes is larger than isize::MAX",
                isize::MAX as usize + 1
            ),
        ),
    ];
    for (bytes, message) in expect {
        let e = a.alloc(bytes, &s).unwrap_err();
        assert_eq!(e, Error::InvalidRequest { message }, "{bytes}");
        assert_eq!(a.stats(), before, "{bytes}");
    }
    let cuda = crate::cuda()?;
    if cuda.device_count()? > 1 {
        let other = Stream::new(&cuda.device(1)?)?;
        for stream in [other, Stream::legacy(&cuda.device(1)?)] {
            let e = a.alloc(512, &stream).unwrap_err();
            assert_eq!(
                e,
                Error::InvalidRequest {
                    message: "a stream of device 1 for an allocator of device 0".into()
                }
            );
        }
        assert_eq!(a.stats(), before);
    }
    // The budget: 2 pages, one held; 2 more refused, naming what is held.
    for (bytes, n) in [(2 * g, 1), (g + 1, 2), (isize::MAX as usize, 3)] {
        let e = a.alloc(bytes, &s).unwrap_err();
        let device_free = free_now(&d)?;
        assert_eq!(
            e,
            Error::AllocatorOutOfMemory {
                requested: bytes,
                reserved: g,
                allocated: g,
                releasing: 0,
                device_free,
                max_reserved: Some(2 * g),
            },
            "{bytes}"
        );
        let after = a.stats();
        assert_eq!(
            after,
            CachingStats {
                out_of_memory: before.out_of_memory + n,
                ..before.clone()
            },
            "{bytes}"
        );
    }
    // Exactly the budget fits.
    let b = a.alloc(g, &s)?;
    assert_eq!(a.stats().reserved_bytes, 2 * g);
    drop((b, keep));
    Ok(())
}

#[test]
fn max_reserved_edges() -> TestResult {
    let _memory = crate::memory_shared();
    let d = crate::device()?;
    let g = cuda_vmm_tests::helpers::gran(&d)?;
    let s = Stream::new(&d)?;
    for max in [0, 1, g - 1] {
        let a = paged(
            &d,
            g,
            CachingConfig {
                max_reserved: Some(max),
                ..CachingConfig::default()
            },
        )?;
        let e = a.alloc(1, &s).unwrap_err();
        assert!(
            matches!(e, Error::AllocatorOutOfMemory { requested: 1, reserved: 0, allocated: 0, releasing: 0, max_reserved: Some(m), .. } if m == max),
            "{max}: {e:?}"
        );
        assert_eq!((a.stats().reserved_bytes, a.stats().out_of_memory), (0, 1));
    }
    // Exactly one page: a large page, then a small page only once the large one is free.
    let a = paged(
        &d,
        g,
        CachingConfig {
            max_reserved: Some(g),
            ..CachingConfig::default()
        },
    )?;
    let big = a.alloc(g, &s)?;
    let e = a.alloc(512, &s).unwrap_err();
    assert!(
        matches!(e, Error::AllocatorOutOfMemory { requested: 512, reserved, .. } if reserved == g),
        "{e:?}"
    );
    drop(big);
    let small = a.alloc(512, &s)?;
    let stats = a.stats();
    assert_eq!((stats.reserved_bytes, stats.pages_released), (g, 1));
    check_stamp_roundtrip(&small)?;
    Ok(())
}

#[test]
fn release_threshold_edges() -> TestResult {
    let _memory = crate::memory_shared();
    let d = crate::device()?;
    let g = cuda_vmm_tests::helpers::gran(&d)?;
    let s = Stream::new(&d)?;
    // (threshold, pages mapped by the freed block, pages that must stay)
    for (threshold, pages, stay) in [
        (0, 3, 0),
        (g, 3, 1),
        (2 * g, 3, 2),
        (3 * g, 3, 3),
        (1, 1, 0),
        (g + 1, 3, 1),
    ] {
        let a = paged(
            &d,
            g,
            CachingConfig {
                release_threshold: Some(threshold),
                ..CachingConfig::default()
            },
        )?;
        let x = a.alloc(pages * g, &s)?;
        assert_eq!(a.stats().reserved_bytes, pages * g);
        drop(x);
        let stats = a.stats();
        assert_eq!(
            stats.reserved_bytes,
            stay * g,
            "threshold {threshold}: more than it stays reserved with a wholly free page"
        );
        assert!(stats.reserved_bytes <= threshold);
        check_invariants(&a.snapshot());
    }
    Ok(())
}

#[test]
fn trim_keeps_at_most_keep_bytes() -> TestResult {
    let _memory = crate::memory_shared();
    let d = crate::device()?;
    let g = cuda_vmm_tests::helpers::gran(&d)?;
    let s = Stream::new(&d)?;
    let a = paged(&d, g, CachingConfig::default())?;
    drop(a.alloc(4 * g, &s)?);
    assert_eq!(a.trim(4 * g), 0);
    assert_eq!(a.trim(3 * g), g);
    assert_eq!(a.stats().reserved_bytes, 3 * g);
    // Documented: "until at most `keep` bytes stay reserved (or no page is wholly free)".
    let given = a.trim(2 * g + 1);
    assert_eq!(
        (given, a.stats().reserved_bytes),
        (g, 2 * g),
        "trim(2g + 1)"
    );
    Ok(())
}

#[test]
fn compact_above_edges() -> TestResult {
    let _memory = crate::memory_shared();
    let d = crate::device()?;
    let g = cuda_vmm_tests::helpers::gran(&d)?;
    let s = Stream::new(&d)?;
    // Compaction moves the free page through the page cache: unmapped, then mapped again
    // by the growth (released 0, recycled 1, reused 1), with no page created for it.
    for (share, reserved, recycled) in [
        (None, 4 * g, 0),
        (Some(0.0), 3 * g, 1),
        (Some(0.99), 3 * g, 1),
        (Some(1.0), 4 * g, 0),
        (Some(1e9), 4 * g, 0),
    ] {
        let a = paged(
            &d,
            g,
            CachingConfig {
                compact_above: share,
                ..CachingConfig::default()
            },
        )?;
        let x = a.alloc(g, &s)?;
        let y = a.alloc(g, &s)?;
        drop(x);
        let z = a.alloc(2 * g, &s)?;
        let stats = a.stats();
        assert_eq!(
            (
                stats.reserved_bytes,
                stats.pages_released,
                stats.pages_recycled,
                stats.pages_reused
            ),
            (reserved, 0, recycled, recycled),
            "{share:?}"
        );
        assert_eq!(stats.cached_chunk_bytes, 0, "{share:?}");
        check_invariants(&a.snapshot());
        drop((y, z));
    }
    for share in [f64::INFINITY, -0.5, f64::NAN] {
        let e = paged(
            &d,
            g,
            CachingConfig {
                compact_above: Some(share),
                ..CachingConfig::default()
            },
        )
        .unwrap_err();
        assert_eq!(
            e,
            Error::InvalidConfig {
                message: format!("compact_above {share} is not a finite share >= 0")
            }
        );
    }
    Ok(())
}

fn is_small(a: &CachingAllocator, b: &CachedBlock) -> bool {
    let snap = a.snapshot();
    let seg = snap
        .segments
        .iter()
        .find(|s| s.address <= b.ptr() && b.ptr() < s.address + (1u64 << 30))
        .expect("a segment holds the block");
    seg.small
}

#[test]
fn small_limit_boundary() -> TestResult {
    let _memory = crate::memory_shared();
    let d = crate::device()?;
    let g = cuda_vmm_tests::helpers::gran(&d)?;
    let s = Stream::new(&d)?;
    let a = paged(&d, g, CachingConfig::default())?;
    let at = a.alloc(1 << 20, &s)?;
    let above = a.alloc((1 << 20) + 1, &s)?;
    assert!(is_small(&a, &at));
    assert!(!is_small(&a, &above));
    assert_eq!(above.size(), (1 << 20) + 512);
    // small_limit == the small page: a whole page is small.
    let a = paged(
        &d,
        g,
        CachingConfig {
            small_limit: g,
            ..CachingConfig::default()
        },
    )?;
    let page = a.alloc(g, &s)?;
    assert!(is_small(&a, &page));
    assert!(!is_small(&a, &a.alloc(g + 1, &s)?));
    // Limits that are no multiple of 512: "requests up to this many bytes go to the small
    // segments".
    for limit in [1, 1000] {
        let a = paged(
            &d,
            g,
            CachingConfig {
                small_limit: limit,
                ..CachingConfig::default()
            },
        )?;
        let b = a.alloc(limit, &s)?;
        assert!(
            is_small(&a, &b),
            "small_limit {limit}: a request of {limit} bytes went to a large segment"
        );
    }
    Ok(())
}

#[test]
fn random_ops_keep_the_split_coalesce_invariants() -> TestResult {
    let _memory = crate::memory_shared();
    let d = crate::device()?;
    let g = cuda_vmm_tests::helpers::gran(&d)?;
    let streams = [Stream::new(&d)?, Stream::new(&d)?];
    let a = paged(
        &d,
        g,
        CachingConfig {
            release_threshold: Some(8 * g),
            ..CachingConfig::default()
        },
    )?;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut live: Vec<(CachedBlock, u64)> = Vec::new();
    for id in 0..600u64 {
        let r = next();
        if live.len() < 24 && !r.is_multiple_of(3) {
            let size = match r % 5 {
                // At least 16 bytes: the two 8-byte stamps must not overlap.
                0 => (r >> 8) as usize % 4096 + 16,
                1 | 2 => (r >> 8) as usize % (1 << 20) + 16,
                _ => (r >> 8) as usize % (3 * g) + 16,
            };
            let b = a.alloc(size, &streams[(r >> 40) as usize % 2])?;
            stamp(&b, id)?;
            live.push((b, id));
        } else if !live.is_empty() {
            let (b, id) = live.swap_remove((r >> 8) as usize % live.len());
            check_stamp(&b, id)?;
            drop(b);
        }
        if id % 97 == 0 {
            a.trim((r >> 20) as usize % (6 * g));
        }
        check_invariants(&a.snapshot());
    }
    for (b, id) in live.drain(..) {
        check_stamp(&b, id)?;
    }
    let snap = a.snapshot();
    check_invariants(&snap);
    // Everything freed: each segment is at most one free block per mapped run.
    for seg in &snap.segments {
        assert!(seg.blocks.iter().all(|b| b.state == "free"), "{seg:?}");
    }
    Ok(())
}

#[test]
fn a_pending_block_is_not_shown_as_active() -> TestResult {
    let Some((d, g)) = crate::simulated_device("needs the simulator's stream holds")? else {
        return Ok(());
    };
    let _memory = crate::memory_shared();
    let (s1, s2) = (Stream::new(&d)?, Stream::new(&d)?);
    let a = paged(&d, g, CachingConfig::default())?;
    let mut x = a.alloc(4096, &s1)?;
    let hold = cuda_vmm_sim::hold_stream(s2.raw());
    x.record_use(&s2)?;
    drop(x);
    let snap = a.snapshot();
    assert_eq!(
        (snap.stats.pending_blocks, snap.stats.allocated_bytes),
        (1, 0)
    );
    let shown: usize = snap
        .segments
        .iter()
        .flat_map(|s| &s.blocks)
        .filter(|b| b.state == "active")
        .map(|b| b.size)
        .sum();
    drop(hold);
    s2.synchronize()?;
    assert_eq!(
        shown, snap.stats.allocated_bytes,
        "a pending block shows as \"active\""
    );
    Ok(())
}
