//! Adversarial tests of sleep and wake by tag, through the public API only: tags with no
//! blocks, the untagged blocks, duplicates, blocks pending on other streams and work queued
//! before the sleep, trims and budgets while asleep, peers granted while asleep, the host
//! arena across several sleeping tags, snapshots, dropping the allocator asleep, and many
//! threads racing allocations against sleeps. Bugs found are kept as `#[ignore = "BUG: .."]`.

use std::num::NonZeroUsize;
use std::time::Duration;

use cuda_vmm::raw::bare;
use cuda_vmm::{Device, Stream};
use cuda_vmm_alloc::{Backup, CachedBlock, CachingAllocator, CachingConfig, Error};
use cuda_vmm_sys::{entry, CUresult};

use crate::alloc::raw_write;
use crate::{cuda, device};
use cuda_vmm_tests::helpers::{gran, raw_read, TestResult};

const FLUSH: Duration = Duration::from_secs(30);

/// A byte pattern of `len` bytes, different per `seed`.
pub(super) fn pattern(len: usize, seed: u64) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64).wrapping_mul(13).wrapping_add(seed * 104_729) % 253) as u8)
        .collect()
}

pub(super) fn fill(block: &CachedBlock, seed: u64) -> TestResult {
    let r = raw_write(&cuda()?, block.ptr(), &pattern(block.len(), seed))?;
    assert_eq!(r, CUresult::CUDA_SUCCESS);
    Ok(())
}

pub(super) fn check(block: &CachedBlock, seed: u64) -> TestResult {
    let got = raw_read(&cuda()?, block.ptr(), block.len())?;
    assert!(
        got == pattern(block.len(), seed),
        "block {:#x}",
        block.ptr()
    );
    Ok(())
}

/// An allocator with large pages of one granule and 1 GiB segments.
pub(super) fn paged(d: &Device, config: CachingConfig) -> Result<CachingAllocator, Error> {
    let g = gran(d).map_err(|e| Error::InvalidConfig {
        message: e.to_string(),
    })?;
    CachingAllocator::with_config(
        d,
        CachingConfig {
            large_page: NonZeroUsize::new(g),
            segment_size: Some(1 << 30),
            ..config
        },
    )
}

fn asleep_error(r: Result<CachedBlock, Error>, want: &str) {
    match r {
        Err(Error::Asleep { tag, operation }) => {
            assert_eq!((tag.as_str(), operation), (want, "alloc"))
        }
        other => panic!("allocated in sleeping tag {want:?}: {other:?}"),
    }
}

/// The access flags `device` has at `addr` (`cuMemGetAccess`).
pub(crate) fn access_at(addr: u64, device: &Device) -> Result<u64, Box<dyn std::error::Error>> {
    let get = entry!(cuda()?.sys().table(), cuMemGetAccess)?;
    let location = cuda_vmm_sys::CUmemLocation {
        type_: cuda_vmm_sys::CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
        id: i32::try_from(device.ordinal())?,
    };
    let mut flags = 0u64;
    // SAFETY: a valid out-pointer and location; the caller holds the block at `addr`.
    let r = unsafe { get(&mut flags, &location, addr) };
    assert_eq!(r, CUresult::CUDA_SUCCESS, "cuMemGetAccess at {addr:#x}");
    Ok(flags)
}

const READ_WRITE: u64 = 3;

#[test]
fn a_tag_without_blocks_the_untagged_blocks_and_duplicate_tags_sleep_exactly() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let s = Stream::new(&d)?;
    let a = paged(&d, CachingConfig::default())?;
    // A tag nothing was ever allocated in sleeps (releasing nothing) and refuses allocations.
    let empty = a.sleep(&["never-used"], Backup::Host)?;
    assert_eq!((empty.released_bytes, empty.backed_up_bytes), (0, 0));
    assert!(a.is_asleep("never-used"));
    asleep_error(a.alloc_tagged(4096, &s, "never-used"), "never-used");
    assert_eq!(a.wake(&["never-used"])?.mapped_bytes, 0);
    // The untagged blocks sleep alone; a tagged one stays usable.
    let u = a.alloc(3 * g, &s)?;
    let w = a.alloc_tagged(2 * g, &s, "w")?;
    fill(&u, 1)?;
    fill(&w, 2)?;
    let slept = a.sleep(&[""], Backup::Host)?;
    assert_eq!(
        (slept.released_bytes, slept.backed_up_bytes),
        (3 * g, 3 * g)
    );
    assert!(a.is_asleep("") && !a.is_asleep("w"));
    asleep_error(a.alloc(4096, &s), "");
    asleep_error(a.alloc_tagged(4096, &s, ""), "");
    check(&w, 2)?;
    let extra = a.alloc_tagged(g, &s, "w")?;
    assert_eq!(a.wake(&[""])?.restored_bytes, 3 * g);
    check(&u, 1)?;
    // A tag named twice in one call is one tag.
    drop(extra);
    let twice = a.sleep(&["w", "w"], Backup::Host)?;
    assert_eq!(twice.backed_up_bytes, 2 * g);
    assert_eq!(a.stats().asleep_bytes, 3 * g);
    let woke = a.wake(&["w", "w"])?;
    assert_eq!((woke.mapped_bytes, woke.restored_bytes), (3 * g, 2 * g));
    check(&w, 2)?;
    // A refusal for a tag awake, even beside a sleeping one, changes nothing.
    a.sleep(&["w"], Backup::Discard)?;
    let before = a.stats();
    assert!(matches!(
        a.wake(&["w", ""]),
        Err(Error::InvalidRequest { .. })
    ));
    assert!(matches!(
        a.sleep(&["", "w"], Backup::Host),
        Err(Error::InvalidRequest { .. })
    ));
    assert_eq!(a.stats(), before);
    assert!(a.is_asleep("w") && !a.is_asleep(""));
    a.wake(&["w"])?;
    Ok(())
}

#[test]
fn zero_and_huge_requests_in_a_tag_are_refused_and_change_nothing() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let s = Stream::new(&d)?;
    let a = paged(&d, CachingConfig::default())?;
    let w = a.alloc_tagged(4096, &s, "w")?;
    a.sleep(&["w"], Backup::Host)?;
    let before = a.stats();
    for bytes in [0, usize::MAX, isize::MAX as usize + 1] {
        for tag in ["w", "fresh"] {
            assert!(
                matches!(
                    a.alloc_tagged(bytes, &s, tag),
                    Err(Error::InvalidRequest { .. })
                ),
                "{bytes} in {tag}"
            );
        }
    }
    // Larger than the segment: out of memory, and no segment left behind.
    match a.alloc_tagged(2 << 30, &s, "fresh") {
        Err(Error::AllocatorOutOfMemory { requested, .. }) => assert_eq!(requested, 2 << 30),
        other => panic!("{other:?}"),
    }
    let mut after = a.stats();
    after.out_of_memory -= 1;
    assert_eq!(after, before);
    assert!(!a.is_asleep("fresh"));
    a.wake(&["w"])?;
    drop(w);
    Ok(())
}

#[test]
fn a_very_long_tag_name_and_a_thousand_tags_sleep_and_wake_in_one_call() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let s = Stream::new(&d)?;
    let a = CachingAllocator::with_config(
        &d,
        CachingConfig {
            segment_size: Some(gran(&d)?),
            ..CachingConfig::default()
        },
    )?;
    let long = "x".repeat(1 << 20);
    let b = a.alloc_tagged(1000, &s, &long)?;
    fill(&b, 5)?;
    a.sleep(&[long.as_str()], Backup::Host)?;
    asleep_error(a.alloc_tagged(1, &s, &long), &long);
    assert!(!a.is_asleep(&long[1..]));
    a.wake(&[long.as_str()])?;
    check(&b, 5)?;
    let names: Vec<String> = (0..1000).map(|i| format!("tag-{i}")).collect();
    let tags: Vec<&str> = names.iter().map(String::as_str).collect();
    let blocks: Vec<CachedBlock> = tags
        .iter()
        .map(|t| a.alloc_tagged(512, &s, t))
        .collect::<Result<_, _>>()?;
    for (i, b) in blocks.iter().enumerate() {
        fill(b, i as u64)?;
    }
    let reserved = a.stats().reserved_bytes;
    let slept = a.sleep(&tags, Backup::Host)?;
    assert_eq!(slept.backed_up_bytes, 512 * 1000);
    assert_eq!(a.stats().reserved_bytes, reserved - slept.released_bytes);
    assert!(tags.iter().all(|t| a.is_asleep(t)));
    let woke = a.wake(&tags)?;
    assert_eq!(woke.mapped_bytes, slept.released_bytes);
    for (i, b) in blocks.iter().enumerate() {
        check(b, i as u64)?;
    }
    Ok(())
}

/// Queues `cuMemsetD8Async` of `len` bytes at `ptr` on `stream`.
pub(crate) fn memset_async(
    d: &Device,
    stream: &Stream,
    ptr: u64,
    byte: u8,
    len: usize,
) -> TestResult {
    d.make_current()?;
    // SAFETY: the caller passes a block it holds (mapped read-write) and a live stream.
    let rc = unsafe { bare::memset_d8_async(d.cuda().api(), ptr, byte, len, stream.raw()) }?;
    assert_eq!(rc, CUresult::CUDA_SUCCESS);
    Ok(())
}

/// Work queued before the sleep on another stream (held, as a long kernel) is waited for:
/// the backup holds what it wrote; a block freed after a use there is free, not backed up.
#[test]
fn sleep_waits_for_work_queued_on_other_streams_and_frees_pending_blocks() -> TestResult {
    let Some((d, g)) = crate::simulated_device("needs the simulator's stream holds")? else {
        return Ok(());
    };
    let _memory = crate::memory_shared();
    let (s1, s2) = (Stream::new(&d)?, Stream::new(&d)?);
    let a = paged(&d, CachingConfig::default())?;
    let keep = a.alloc_tagged(g, &s1, "t")?;
    let mut gone = a.alloc_tagged(g, &s1, "t")?;
    let hold = cuda_vmm_sim::hold_stream(s2.raw());
    assert!(hold.is_active());
    memset_async(&d, &s2, keep.ptr(), 0x5A, keep.len())?;
    gone.record_use(&s2)?;
    drop(gone);
    assert_eq!(a.stats().pending_blocks, 1);
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        drop(hold);
    });
    let slept = a.sleep(&["t"], Backup::Host)?;
    release.join().map_err(|_| "release thread")?;
    assert_eq!(a.stats().pending_blocks, 0);
    assert_eq!(
        slept.backed_up_bytes, g,
        "only the block still held is copied"
    );
    a.wake(&["t"])?;
    assert_eq!(
        raw_read(&cuda()?, keep.ptr(), keep.len())?,
        vec![0x5A; keep.len()]
    );
    let again = a.alloc_tagged(g, &s1, "t")?;
    assert_eq!(
        again.ptr(),
        keep.ptr() + g as u64,
        "the freed block is free again"
    );
    Ok(())
}

#[test]
fn trims_and_the_release_threshold_leave_sleeping_memory_alone() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let s = Stream::new(&d)?;
    let a = paged(
        &d,
        CachingConfig {
            release_threshold: Some(0),
            ..CachingConfig::default()
        },
    )?;
    let w1 = a.alloc_tagged(2 * g, &s, "w")?;
    let w2 = a.alloc_tagged(2 * g, &s, "w")?;
    let u = a.alloc(g, &s)?;
    fill(&w1, 1)?;
    fill(&w2, 2)?;
    fill(&u, 3)?;
    a.sleep(&["w"], Backup::Host)?;
    drop(w1); // a free while asleep, with the threshold crossed
    assert_eq!(a.trim(0), 0);
    assert_eq!(a.empty_cache(), 0);
    assert!(a.flush_releases(FLUSH)?);
    let stats = a.stats();
    assert_eq!((stats.reserved_bytes, stats.asleep_bytes), (g, 4 * g));
    let woke = a.wake(&["w"])?;
    assert_eq!(woke.mapped_bytes, 4 * g);
    check(&w2, 2)?;
    check(&u, 3)?;
    // The block freed while asleep is free memory now, given back by a trim.
    assert_eq!(a.trim(0), 2 * g);
    assert_eq!(a.stats().reserved_bytes, 3 * g);
    Ok(())
}

#[test]
fn a_peer_granted_while_asleep_has_access_after_wake() -> TestResult {
    let Some((d0, d1)) = crate::two_simulated_devices()? else {
        return Ok(());
    };
    let _memory = crate::memory_shared();
    let g = gran(&d0)?;
    let s = Stream::new(&d0)?;
    let a = paged(&d0, CachingConfig::default())?;
    let w = a.alloc_tagged(2 * g, &s, "w")?;
    let u = a.alloc(g, &s)?;
    fill(&w, 7)?;
    a.sleep(&["w"], Backup::Host)?;
    a.grant_access(&d1)?;
    assert_eq!(access_at(u.ptr(), &d1)?, READ_WRITE);
    a.wake(&["w"])?;
    assert_eq!(access_at(w.ptr(), &d1)?, READ_WRITE);
    assert_eq!(access_at(w.ptr() + g as u64, &d1)?, READ_WRITE);
    check(&w, 7)?;
    // Sleeping again and waking keeps the peer.
    a.sleep(&["w"], Backup::Discard)?;
    a.wake(&["w"])?;
    assert_eq!(access_at(w.ptr(), &d1)?, READ_WRITE);
    Ok(())
}

/// Two tags asleep at once, woken in the other order, slept again: every backup stays
/// intact (no host range given to two backups), and `release_host_backup` never frees a
/// backup in use.
#[test]
fn host_backups_of_several_tags_never_overlap_and_are_never_released_in_use() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let s = Stream::new(&d)?;
    let a = paged(&d, CachingConfig::default())?;
    let x = a.alloc_tagged(3 * g, &s, "x")?;
    let y = a.alloc_tagged(5 * g + 512, &s, "y")?;
    fill(&x, 1)?;
    fill(&y, 2)?;
    a.sleep(&["x"], Backup::Host)?;
    a.sleep(&["y"], Backup::Host)?;
    let held = a.stats().host_backup_bytes;
    assert_eq!(a.release_host_backup(), 0, "both backups are in use");
    a.wake(&["x"])?;
    check(&x, 1)?;
    fill(&x, 3)?;
    assert_eq!(a.release_host_backup(), 0, "y's backup is in use");
    a.sleep(&["x"], Backup::Host)?; // while y sleeps
    a.wake(&["y"])?;
    check(&y, 2)?;
    fill(&y, 4)?;
    a.sleep(&["y"], Backup::Host)?; // while x sleeps
    a.release_host_backup();
    a.wake(&["x"])?;
    check(&x, 3)?;
    a.release_host_backup();
    a.wake(&["y"])?;
    check(&y, 4)?;
    let now = a.stats().host_backup_bytes;
    assert!(now >= held);
    assert_eq!(a.release_host_backup(), now, "no backup is in use");
    assert_eq!(a.stats().host_backup_bytes, 0);
    Ok(())
}

#[test]
fn cycles_of_one_tag_while_another_sleeps_reuse_the_host_backup() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let s = Stream::new(&d)?;
    let a = paged(&d, CachingConfig::default())?;
    let x = a.alloc_tagged(g, &s, "x")?;
    let y = a.alloc_tagged(4 * g, &s, "y")?;
    fill(&x, 1)?;
    fill(&y, 2)?;
    a.sleep(&["x"], Backup::Host)?;
    let mut host = None;
    for cycle in 0..4 {
        let report = a.sleep(&["y"], Backup::Host)?;
        let held = a.stats().host_backup_bytes;
        assert_eq!(
            *host.get_or_insert(held),
            held,
            "cycle {cycle}: host memory grew"
        );
        if cycle > 0 {
            assert_eq!(report.host_prepared_bytes, 0, "cycle {cycle} pinned again");
        }
        a.wake(&["y"])?;
        check(&y, 2)?;
    }
    a.wake(&["x"])?;
    check(&x, 1)?;
    Ok(())
}

#[test]
fn the_snapshot_shows_sleeping_segments_and_the_stats_add_up() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let s = Stream::new(&d)?;
    let a = paged(&d, CachingConfig::default())?;
    let w = a.alloc_tagged(3 * g, &s, "weights")?;
    let small = a.alloc_tagged(4096, &s, "weights")?;
    let _u = a.alloc(g, &s)?;
    let slept = a.sleep(&["weights"], Backup::Host)?;
    assert_eq!(slept.released_bytes, 4 * g);
    let snap = a.snapshot();
    let weights: Vec<_> = snap
        .segments
        .iter()
        .filter(|s| s.tag == "weights")
        .collect();
    assert_eq!(weights.len(), 2, "a small and a large segment");
    for seg in &weights {
        assert!(seg.asleep);
        assert_eq!(seg.mapped_bytes, 0);
        assert_eq!(seg.blocks.iter().filter(|b| b.state == "active").count(), 1);
    }
    let untagged: Vec<_> = snap.segments.iter().filter(|s| s.tag.is_empty()).collect();
    assert_eq!(untagged.len(), 1);
    assert!(!untagged[0].asleep);
    let mapped: usize = snap.segments.iter().map(|s| s.mapped_bytes).sum();
    assert_eq!(snap.stats.reserved_bytes, mapped);
    assert_eq!(snap.stats.asleep_bytes, 4 * g);
    assert_eq!(slept.backed_up_bytes, w.size() + small.size());
    assert!(snap.stats.host_backup_bytes >= slept.backed_up_bytes);
    a.wake(&["weights"])?;
    let snap = a.snapshot();
    assert!(snap.segments.iter().all(|s| !s.asleep));
    assert_eq!(snap.stats.reserved_bytes, 5 * g);
    Ok(())
}

#[test]
fn inactive_bytes_while_asleep_are_the_awake_free_bytes() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let s = Stream::new(&d)?;
    let a = paged(&d, CachingConfig::default())?;
    let _w = a.alloc_tagged(4 * g, &s, "w")?;
    let _u = a.alloc(g + 512, &s)?; // two pages, g - 512 bytes free
    assert_eq!(a.stats().inactive_bytes, g - 512);
    a.sleep(&["w"], Backup::Discard)?;
    assert_eq!(a.stats().inactive_bytes, g - 512);
    Ok(())
}

#[test]
fn compaction_while_a_tag_sleeps_does_not_panic() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let s = Stream::new(&d)?;
    let a = paged(
        &d,
        CachingConfig {
            compact_above: Some(0.0),
            ..CachingConfig::default()
        },
    )?;
    let w = a.alloc_tagged(4 * g, &s, "w")?;
    fill(&w, 3)?;
    a.sleep(&["w"], Backup::Host)?;
    let u = a.alloc(2 * g, &s)?;
    fill(&u, 4)?;
    a.wake(&["w"])?;
    check(&w, 3)?;
    check(&u, 4)?;
    Ok(())
}

#[test]
fn wake_counts_toward_the_peak() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let s = Stream::new(&d)?;
    let a = paged(&d, CachingConfig::default())?;
    let _w = a.alloc_tagged(4 * g, &s, "w")?;
    a.sleep(&["w"], Backup::Discard)?;
    let _u = a.alloc(4 * g, &s)?;
    a.wake(&["w"])?;
    let stats = a.stats();
    assert_eq!(stats.reserved_bytes, 8 * g);
    assert!(
        stats.peak_reserved_bytes >= stats.reserved_bytes,
        "{stats:?}"
    );
    Ok(())
}

#[test]
fn wake_over_the_budget_is_refused_and_the_tag_stays_asleep() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let s = Stream::new(&d)?;
    let a = paged(
        &d,
        CachingConfig {
            max_reserved: Some(6 * g),
            ..CachingConfig::default()
        },
    )?;
    let w = a.alloc_tagged(4 * g, &s, "w")?;
    fill(&w, 1)?;
    a.sleep(&["w"], Backup::Host)?;
    let u = a.alloc(4 * g, &s)?;
    assert!(matches!(
        a.wake(&["w"]),
        Err(Error::AllocatorOutOfMemory { .. })
    ));
    assert!(a.is_asleep("w"));
    assert_eq!(a.stats().reserved_bytes, 4 * g);
    drop(u);
    a.wake(&["w"])?;
    check(&w, 1)?;
    Ok(())
}

#[test]
fn refused_wakes_register_no_tag() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let s = Stream::new(&d)?;
    let a = paged(&d, CachingConfig::default())?;
    let names: Vec<String> = (0..u16::MAX).map(|i| format!("{i}")).collect();
    let tags: Vec<&str> = names.iter().map(String::as_str).collect();
    assert!(matches!(a.wake(&tags), Err(Error::InvalidRequest { .. })));
    a.alloc_tagged(4096, &s, "real")?;
    Ok(())
}
