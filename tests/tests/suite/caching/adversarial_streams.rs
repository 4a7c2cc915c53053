//! Adversarial tests of the caching allocator's stream handling: every kind of stream on
//! both devices, uses recorded on several streams (and another device's), the allocator
//! dropped under live and pending blocks, blocks dropped on other threads, and threads
//! racing on one allocator.

use std::sync::Arc;
use std::time::Duration;

use cuda_vmm::{Device, Stream};
use cuda_vmm_alloc::{CachedBlock, CachingAllocator, CachingConfig};

use super::adversarial::{check_invariants, paged};
use super::{check_stamp, stamp};
use cuda_vmm_tests::helpers::{gran, TestResult};

fn kinds(d: &Device) -> Result<Vec<(&'static str, Stream)>, cuda_vmm::Error> {
    Ok(vec![
        ("new", Stream::new(d)?),
        ("blocking", Stream::blocking(d)?),
        ("legacy", Stream::legacy(d)),
        ("per_thread", Stream::per_thread(d)),
    ])
}

fn each_stream_kind_gets_its_own_pool_on(d: &Device) -> TestResult {
    let g = gran(d)?;
    let a = paged(d, g, CachingConfig::default())?;
    let streams = kinds(d)?;
    let mut ptrs = Vec::new();
    for (name, s) in &streams {
        let b = a.alloc(4096, s)?;
        if d.ordinal() == 0 {
            stamp(&b, 1)?;
            check_stamp(&b, 1)?;
        }
        ptrs.push((*name, b.ptr()));
        drop(b);
        // Same stream: the same block at once.
        assert_eq!(
            a.alloc(4096, s)?.ptr(),
            ptrs.last().map(|p| p.1).unwrap_or(0),
            "{name}"
        );
    }
    let snap = a.snapshot();
    assert_eq!(snap.device, d.ordinal());
    assert_eq!(snap.segments.len(), 4, "{:?}", snap.segments);
    for (i, (n1, p1)) in ptrs.iter().enumerate() {
        for (n2, p2) in &ptrs[i + 1..] {
            assert_ne!(p1, p2, "{n1} and {n2} share a pool");
        }
    }
    let mut raw: Vec<u64> = snap.segments.iter().map(|s| s.stream).collect();
    raw.sort();
    assert_eq!(&raw[..2], &[1, 2]);
    // The null stream is the legacy stream: the same pool.
    // SAFETY: null names the legacy stream of the device's primary context.
    let null = unsafe { Stream::from_raw(d, std::ptr::null_mut()) };
    assert_eq!(a.alloc(4096, &null)?.ptr(), ptrs[2].1);
    assert_eq!(a.snapshot().segments.len(), 4);
    // Per-thread streams of two other threads: two more pools.
    let per_thread: Vec<u64> = (0..2)
        .map(|_| {
            let (a, d) = (a.clone(), d.clone());
            std::thread::spawn(move || {
                let b = a.alloc(4096, &Stream::per_thread(&d)).unwrap();
                b.ptr()
            })
            .join()
            .unwrap()
        })
        .collect();
    assert_ne!(
        per_thread[0], per_thread[1],
        "per-thread streams of two threads share a pool"
    );
    assert!(!ptrs.iter().any(|p| per_thread.contains(&p.1)));
    let snap = a.snapshot();
    assert_eq!(snap.segments.len(), 6);
    assert_eq!(snap.segments.iter().filter(|s| s.stream == 2).count(), 3);
    check_invariants(&snap);
    Ok(())
}

#[test]
fn each_stream_kind_gets_its_own_pool_on_both_devices() -> TestResult {
    let _memory = crate::memory_shared();
    let cuda = crate::cuda()?;
    each_stream_kind_gets_its_own_pool_on(&cuda.device(0)?)?;
    if cuda.device_count()? > 1 {
        each_stream_kind_gets_its_own_pool_on(&cuda.device(1)?)?;
    }
    Ok(())
}

#[test]
fn reuse_waits_for_every_recorded_stream() -> TestResult {
    let Some((d, g)) = crate::simulated_device("needs the simulator's stream holds")? else {
        return Ok(());
    };
    let _memory = crate::memory_shared();
    let (s1, s2, s3) = (Stream::new(&d)?, Stream::new(&d)?, Stream::blocking(&d)?);
    let a = paged(&d, g, CachingConfig::default())?;
    let mut x = a.alloc(4096, &s1)?;
    let ptr = x.ptr();
    let h2 = cuda_vmm_sim::hold_stream(s2.raw());
    let h3 = cuda_vmm_sim::hold_stream(s3.raw());
    assert!(h2.is_active() && h3.is_active());
    x.record_use(&s2)?;
    x.record_use(&s3)?;
    // The same stream twice moves the record; no second event.
    let events = crate::alloc::counts(&["cuEventCreate"]);
    x.record_use(&s2)?;
    assert_eq!(
        crate::alloc::delta(&events, &crate::alloc::counts(&["cuEventCreate"])),
        [0]
    );
    drop(x);
    assert_eq!(a.stats().pending_blocks, 1);
    let y = a.alloc(4096, &s1)?;
    assert_ne!(y.ptr(), ptr);
    drop(h2);
    s2.synchronize()?;
    let z = a.alloc(4096, &s1)?;
    assert_ne!(z.ptr(), ptr, "reused while s3's recorded use may still run");
    assert_eq!(a.stats().pending_blocks, 1);
    drop(h3);
    s3.synchronize()?;
    let w = a.alloc(4096, &s1)?;
    assert_eq!(w.ptr(), ptr);
    assert_eq!(a.stats().pending_blocks, 0);
    drop((y, z, w));
    Ok(())
}

#[test]
fn a_use_on_the_other_device_delays_reuse_and_its_event_is_not_reused_here() -> TestResult {
    let Some((d0, d1)) = crate::two_simulated_devices()? else {
        return Ok(());
    };
    let _memory = crate::memory_shared();
    let g = gran(&d0)?;
    let (s0, t0, s1) = (Stream::new(&d0)?, Stream::new(&d0)?, Stream::new(&d1)?);
    let a = paged(&d0, g, CachingConfig::default())?;
    let mut x = a.alloc(4096, &s0)?;
    let ptr = x.ptr();
    let hold = cuda_vmm_sim::hold_stream(s1.raw());
    assert!(hold.is_active());
    x.record_use(&s1)?;
    x.record_use(&s1)?;
    drop(x);
    let y = a.alloc(4096, &s0)?;
    assert_ne!(
        y.ptr(),
        ptr,
        "reused while device 1's recorded use may still run"
    );
    drop(hold);
    s1.synchronize()?;
    let mut z = a.alloc(4096, &s0)?;
    assert_eq!(z.ptr(), ptr);
    // Device 1's event must not serve a use on device 0.
    z.record_use(&t0)?;
    drop((y, z));
    t0.synchronize()?;
    assert_eq!(a.alloc(4096, &s0)?.ptr(), ptr);
    Ok(())
}

#[test]
fn the_allocator_dropped_under_live_and_pending_blocks() -> TestResult {
    let Some((d, g)) = crate::simulated_device("needs the simulator's stream holds")? else {
        return Ok(());
    };
    let _memory = crate::memory_exclusive();
    let free0 = d.memory_info()?.free;
    let (s1, s2) = (Stream::new(&d)?, Stream::new(&d)?);
    let a = paged(&d, g, CachingConfig::default())?;
    let live = a.alloc(3 * g, &s1)?;
    let mut pending = a.alloc(g + 512, &s1)?;
    stamp(&live, 1)?;
    stamp(&pending, 2)?;
    let hold = cuda_vmm_sim::hold_stream(s2.raw());
    pending.record_use(&s2)?;
    drop(a);
    check_stamp(&live, 1)?;
    check_stamp(&pending, 2)?;
    drop(live);
    // The last block holds the allocator: dropping it ends the allocator, whose pages
    // must not go before the held use on s2 is done. Dropped on another thread, which
    // waits for it.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let t = {
        let done = done.clone();
        std::thread::spawn(move || {
            drop(pending);
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let early = done.load(std::sync::atomic::Ordering::SeqCst);
    let free_held = d.memory_info()?.free;
    drop(hold);
    t.join().map_err(|_| "the dropping thread panicked")?;
    s2.synchronize()?;
    assert!(
        !early && free_held < free0,
        "the allocator's pages were released while a recorded use was held"
    );
    d.cuda().flush_releases(Duration::from_secs(10))?;
    assert_eq!(
        d.memory_info()?.free,
        free0,
        "the allocator's memory leaked"
    );
    Ok(())
}

#[test]
fn blocks_dropped_on_other_threads_go_back_to_their_stream() -> TestResult {
    let _memory = crate::memory_shared();
    let d = crate::device()?;
    let g = gran(&d)?;
    let s = Stream::new(&d)?;
    let a = paged(&d, g, CachingConfig::default())?;
    let blocks: Vec<CachedBlock> = (1..=6)
        .map(|i| a.alloc(i * 30_000, &s))
        .collect::<Result<_, _>>()?;
    let ptrs: Vec<u64> = blocks.iter().map(CachedBlock::ptr).collect();
    for (i, b) in blocks.iter().enumerate() {
        stamp(b, i as u64)?;
    }
    let threads: Vec<_> = blocks
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            std::thread::spawn(move || check_stamp(&b, i as u64).map_err(|e| e.to_string()))
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "panicked")??;
    }
    let stats = a.stats();
    assert_eq!(
        (
            stats.active_blocks,
            stats.allocated_bytes,
            stats.pending_blocks
        ),
        (0, 0, 0)
    );
    // All coalesced back: the same first address serves the sum.
    let sum: usize = (1..=6).map(|i| (i * 30_000usize).div_ceil(512) * 512).sum();
    let big = a.alloc(sum, &s)?;
    assert_eq!(big.ptr(), ptrs[0]);
    check_invariants(&a.snapshot());
    Ok(())
}

fn worker(a: CachingAllocator, d: Device, shared: Arc<Stream>, t: u64, ops: u64) -> TestResult {
    let own = Stream::new(&d)?;
    let per_thread = Stream::per_thread(&d);
    let mut rng = 0x2545_F491_4F6C_DD1Du64 ^ (t + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut live: Vec<(CachedBlock, u64)> = Vec::new();
    for i in 0..ops {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        if live.len() < 6 && !rng.is_multiple_of(3) {
            let stream = match (rng >> 32) % 3 {
                0 => &own,
                1 => &per_thread,
                _ => &*shared,
            };
            let size = match (rng >> 8) % 4 {
                // At least 16 bytes: the two 8-byte stamps must not overlap.
                0 => (rng >> 12) as usize % 2048 + 16,
                1 | 2 => (rng >> 12) as usize % (1 << 20) + 16,
                _ => (rng >> 12) as usize % (5 << 20) + 16,
            };
            let id = (t << 32) | i;
            let b = a.alloc(size, stream)?;
            stamp(&b, id)?;
            live.push((b, id));
        } else if !live.is_empty() {
            let (b, id) = live.swap_remove((rng >> 16) as usize % live.len());
            check_stamp(&b, id)?;
        }
    }
    for (b, id) in live {
        check_stamp(&b, id)?;
    }
    Ok(())
}

#[test]
fn threads_racing_on_one_allocator_keep_every_block_s_bytes() -> TestResult {
    let _memory = crate::memory_shared();
    let d = crate::device()?;
    let g = gran(&d)?;
    let a = paged(
        &d,
        g,
        CachingConfig {
            release_threshold: Some(64 * g),
            ..CachingConfig::default()
        },
    )?;
    let shared = Arc::new(Stream::new(&d)?);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let janitor = {
        let (a, stop) = (a.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match n % 4 {
                    0 => drop(a.empty_cache()),
                    1 => drop(a.trim(8 * g)),
                    2 => {
                        let s = a.stats();
                        assert!(s.allocated_bytes <= s.reserved_bytes, "{s:?}");
                    }
                    _ => check_invariants(&a.snapshot()),
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            n
        })
    };
    let workers: Vec<_> = (0..6u64)
        .map(|t| {
            let (a, d, shared) = (a.clone(), d.clone(), shared.clone());
            std::thread::spawn(move || worker(a, d, shared, t, 250).map_err(|e| e.to_string()))
        })
        .collect();
    let mut failures = Vec::new();
    for w in workers {
        match w.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(_) => failures.push("a worker panicked".into()),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let rounds = janitor.join().map_err(|_| "the janitor panicked")?;
    assert!(failures.is_empty(), "{failures:?}");
    assert!(rounds > 0);
    let stats = a.stats();
    assert_eq!(
        (
            stats.allocated_bytes,
            stats.active_blocks,
            stats.requested_bytes
        ),
        (0, 0, 0)
    );
    assert!(
        stats.size_classes.iter().all(|c| c.active == 0),
        "{stats:?}"
    );
    check_invariants(&a.snapshot());
    a.empty_cache();
    assert_eq!(a.stats().reserved_bytes, 0);
    Ok(())
}
