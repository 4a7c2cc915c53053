//! `flush_releases` at the extremes of its timeout, and sizes at `usize::MAX`.

use std::time::{Duration, Instant};

use cuda_vmm::Stream;
use cuda_vmm_alloc::{Error, SparseArray, SparseConfig};
use cuda_vmm_tests::helpers::{pattern_cycle, TestResult};

use super::{
    flush_cleanly, own_process, queued, queued_device, simulated_array, FLUSH, STAYS_QUEUED_FOR,
};

/// With nothing queued, a zero timeout still answers "drained".
#[test]
fn a_zero_timeout_flush_of_an_empty_queue_is_drained() -> TestResult {
    let _memory = crate::memory_shared();
    let cuda = queued()?;
    assert!(cuda.flush_releases(Duration::ZERO)?);
    assert_eq!(cuda.release_stats().pending_entries, 0);
    Ok(())
}

/// `Duration::MAX` is the natural "no timeout"; the flush must wait as long as it takes
/// (here: not at all) instead of panicking on `Instant + Duration` overflow.
#[test]
fn a_duration_max_flush_waits_without_a_deadline() -> TestResult {
    let _memory = crate::memory_shared();
    let (cuda, device, tile) = queued_device()?;
    let mut array = SparseArray::<u8>::new(&device, 2 * tile, SparseConfig::default())?;
    array.commit(0..tile)?;
    array.decommit(0..tile)?;
    assert!(cuda.flush_releases(Duration::MAX)?);
    assert_eq!(array.pending_release_bytes(), 0);
    Ok(())
}

/// A timeout near the limit of `Instant` (but still representable) is a plain long wait.
#[test]
fn a_timeout_of_a_thousand_years_flushes_normally() -> TestResult {
    let _memory = crate::memory_shared();
    let (cuda, device, tile) = queued_device()?;
    let mut array = SparseArray::<u8>::new(&device, 2 * tile, SparseConfig::default())?;
    array.commit(0..2 * tile)?;
    assert_eq!(array.decommit(0..2 * tile)?, 2);
    let thousand_years = Duration::from_secs(1000 * 365 * 24 * 3600);
    assert!(cuda.flush_releases(thousand_years)?);
    let stats = cuda.release_stats();
    assert_eq!((stats.pending_entries, stats.pending_bytes), (0, 0));
    assert_eq!(array.pending_release_bytes(), 0);
    assert!(cuda.take_release_errors().is_empty());
    Ok(())
}

/// Ranges reaching `usize::MAX` are refused exactly, and queue nothing.
#[test]
fn usize_max_ranges_are_refused_exactly_and_queue_nothing() -> TestResult {
    let _memory = crate::memory_shared();
    let (cuda, device, tile) = queued_device()?;
    let len = 2 * tile / 4;
    let mut array = SparseArray::<u32>::new(&device, len, SparseConfig::default())?;
    array.commit(0..len)?;
    let queued_before = cuda.release_stats().queued;
    let out = |what, start, end| Error::OutOfRange {
        what,
        start,
        end,
        len,
    };
    assert_eq!(
        array.decommit(0..usize::MAX),
        Err(out("decommit", 0, usize::MAX))
    );
    assert_eq!(
        array.decommit(usize::MAX..usize::MAX),
        Err(out("decommit", usize::MAX, usize::MAX))
    );
    assert_eq!(
        array.commit(usize::MAX - 1..usize::MAX),
        Err(out("commit", usize::MAX - 1, usize::MAX))
    );
    assert_eq!(cuda.release_stats().queued, queued_before);
    assert_eq!(array.pending_release_bytes(), 0);
    assert_eq!(array.committed_bytes(), 2 * tile);
    // A bound of usize::MAX queues everything and never makes the caller complete any.
    cuda.set_max_pending_release_bytes(usize::MAX);
    assert!(!cuda.releases_complete_inline());
    assert_eq!(array.decommit(0..len)?, 2);
    assert!(cuda.flush_releases(FLUSH)?);
    let stats = cuda.release_stats();
    assert_eq!(stats.queued, queued_before + 1);
    assert_eq!((stats.completed_by_callers, stats.pending_bytes), (0, 0));
    assert_eq!(array.committed_bytes(), 0);
    Ok(())
}

own_process!(
    a_zero_timeout_flush_answers_false_at_once_while_device_work_holds_an_entry,
    zero_timeout_held_child,
    {
        let (cuda, device, tile, mut array) = simulated_array(2, 1);
        let stream = Stream::new(&device).expect("stream");
        let hold = cuda_vmm_sim::hold_stream(stream.raw());
        array
            .write_async(&stream, 0, &pattern_cycle(tile, 3))
            .expect("write");
        assert_eq!(array.decommit(0..tile).expect("decommit"), 1);
        let start = Instant::now();
        assert!(!cuda.flush_releases(Duration::ZERO).expect("flush"));
        assert!(!cuda
            .flush_releases(Duration::from_millis(50))
            .expect("flush"));
        assert!(
            start.elapsed() < STAYS_QUEUED_FOR * 5,
            "a bounded flush waited for the held work"
        );
        let stats = cuda.release_stats();
        assert_eq!((stats.pending_entries, stats.completed), (1, 0));
        assert_eq!(array.pending_release_bytes(), tile);
        drop(hold);
        flush_cleanly(&cuda);
        assert_eq!(array.pending_release_bytes(), 0);
        device.synchronize().expect("no poison");
    }
);
