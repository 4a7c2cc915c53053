//! `set_max_pending_release_bytes` changed while entries are queued behind held device work
//! (a modelled long kernel): turning the queue off leaves queued entries to the worker and
//! completes new ends inline; lowering the bound makes the next end complete the oldest
//! queued entries on its caller's thread.
//!
//! Each test runs in its own process: a hold blocks context synchronisation process-wide.

use cuda_vmm::release::DEFAULT_MAX_PENDING_RELEASE_BYTES;
use cuda_vmm::{Stream, UnmapWait};
use cuda_vmm_alloc::{SparseArray, SparseConfig};
use cuda_vmm_tests::helpers::{gran, pattern_cycle};

use super::{
    flush_cleanly, own_process, simulated, simulated_array, until_worker_called,
    waits_for_the_hold, FLUSH,
};

own_process!(
    turning_the_queue_off_while_entries_are_queued_leaves_them_to_the_worker,
    queue_off_child,
    {
        let (cuda, device, tile, mut a) = simulated_array(4, 2);
        let stream = Stream::new(&device).expect("stream");
        let mut b =
            SparseArray::<u8>::new(&device, 2 * tile, SparseConfig::default()).expect("array");
        b.commit(0..tile).expect("commit");
        // SAFETY: b has no device use but its synchronous copies.
        unsafe { b.set_unmap_wait(UnmapWait::RecordedUse) };
        let hold = cuda_vmm_sim::hold_stream(stream.raw());
        a.write_async(&stream, 0, &pattern_cycle(2 * tile, 4))
            .expect("write");
        assert_eq!(a.decommit(0..tile).expect("decommit"), 1);
        until_worker_called(&cuda, "cuEventSynchronize", 1);
        assert_eq!(a.decommit(tile..2 * tile).expect("decommit"), 1);
        let queued = cuda.release_stats().queued;
        assert_eq!(queued, 2);
        cuda.set_max_pending_release_bytes(0);
        assert!(cuda.releases_complete_inline());
        // A new end completes inline, before the call returns, and queues nothing.
        assert_eq!(b.decommit(0..tile).expect("inline decommit"), 1);
        assert_eq!(b.pending_release_bytes(), 0);
        let stats = cuda.release_stats();
        assert_eq!((stats.queued, stats.pending_entries), (2, 2));
        assert_eq!(a.pending_release_bytes(), 2 * tile);
        // A commit over the second queued tile completes that entry on this thread, which
        // waits for the held write.
        waits_for_the_hold(hold, "the commit", || {
            assert_eq!(a.commit(tile..2 * tile).expect("commit over queued"), 1);
        });
        assert_eq!(cuda.release_stats().completed_by_callers, 1);
        flush_cleanly(&cuda);
        let stats = cuda.release_stats();
        assert_eq!(
            (stats.pending_entries, stats.pending_bytes, stats.completed),
            (0, 0, 2)
        );
        assert_eq!(a.pending_release_bytes(), 0);
        // Back on: ends are queued again.
        cuda.set_max_pending_release_bytes(DEFAULT_MAX_PENDING_RELEASE_BYTES);
        assert_eq!(a.decommit(tile..2 * tile).expect("decommit"), 1);
        assert!(cuda.flush_releases(FLUSH).expect("flush"));
        assert_eq!(cuda.release_stats().queued, 3);
        assert_eq!(a.committed_bytes(), 0);
        device.synchronize().expect("no poison");
    }
);

own_process!(
    lowering_the_bound_makes_the_next_end_complete_the_oldest_queued_entries,
    lower_bound_child,
    {
        let (cuda, device) = simulated();
        let tile = gran(&device).expect("granularity");
        let (s1, s2) = (
            Stream::new(&device).expect("stream"),
            Stream::new(&device).expect("stream"),
        );
        let mut a1 =
            SparseArray::<u8>::new(&device, 2 * tile, SparseConfig::default()).expect("array");
        let mut a2 =
            SparseArray::<u8>::new(&device, 2 * tile, SparseConfig::default()).expect("array");
        a1.commit(0..tile).expect("commit");
        a2.commit(0..2 * tile).expect("commit");
        // SAFETY: every device use of the arrays is recorded (the writes below). Each entry
        // then waits for its own array's stream only, not the context.
        unsafe {
            a1.set_unmap_wait(UnmapWait::RecordedUse);
            a2.set_unmap_wait(UnmapWait::RecordedUse);
        }
        let hold1 = cuda_vmm_sim::hold_stream(s1.raw());
        let hold2 = cuda_vmm_sim::hold_stream(s2.raw());
        a1.write_async(&s1, 0, &pattern_cycle(tile, 6))
            .expect("write");
        a2.write_async(&s2, 0, &pattern_cycle(2 * tile, 8))
            .expect("write");
        // The first entry is the worker's (waiting for the held write on s1); the second
        // is queued behind it.
        assert_eq!(a1.decommit(0..tile).expect("decommit"), 1);
        until_worker_called(&cuda, "cuEventSynchronize", 1);
        assert_eq!(a2.decommit(0..tile).expect("decommit"), 1);
        assert_eq!(cuda.release_stats().completed_by_callers, 0);
        cuda.set_max_pending_release_bytes(tile);
        // Three tiles pending over a one-tile bound: this caller completes the queued two,
        // oldest first (waiting for the held write on s2); the worker keeps the one it
        // holds, which alone fits the bound.
        waits_for_the_hold(hold2, "the caller", || {
            assert_eq!(a2.decommit(tile..2 * tile).expect("decommit"), 1);
        });
        let stats = cuda.release_stats();
        assert_eq!((stats.completed_by_callers, stats.completed), (2, 2));
        assert_eq!((stats.pending_entries, stats.pending_bytes), (1, tile));
        assert_eq!(
            (a1.pending_release_bytes(), a2.pending_release_bytes()),
            (tile, 0)
        );
        drop(hold1);
        flush_cleanly(&cuda);
        let stats = cuda.release_stats();
        assert_eq!(
            (stats.queued, stats.completed, stats.completed_by_callers),
            (3, 3, 2)
        );
        assert_eq!((stats.pending_entries, stats.pending_bytes), (0, 0));
        assert_eq!(stats.peak_pending_bytes, 3 * tile);
        device.synchronize().expect("no poison");
    }
);

/// With the queue off, an end's unmap failure comes back from the call that ended the
/// memory (the tile stays committed), and the queue reports and counts nothing.
#[test]
fn with_the_queue_off_an_unmap_failure_comes_back_from_the_decommit() {
    let _memory = crate::memory_shared();
    let (cuda, device) = simulated();
    cuda.set_max_pending_release_bytes(0);
    let tile = gran(&device).expect("granularity");
    let mut array =
        SparseArray::<u8>::new(&device, 2 * tile, SparseConfig::default()).expect("array");
    array.commit(0..tile).expect("commit");
    let data = pattern_cycle(tile, 3);
    array.write(0, &data).expect("write");
    let fault =
        cuda_vmm_sim::inject_fault("cuMemUnmap", 1, cuda_vmm_sys::CUresult::CUDA_ERROR_UNKNOWN);
    let failed = array.decommit(0..tile).expect_err("the unmap failed");
    assert!(fault.fired());
    drop(fault);
    match &failed {
        cuda_vmm_alloc::Error::Vmm(e) => assert_eq!(
            super::code(e),
            Some(cuda_vmm_sys::CUresult::CUDA_ERROR_UNKNOWN)
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(array.committed_bytes(), tile);
    assert!(cuda.take_release_errors().is_empty());
    let stats = cuda.release_stats();
    assert_eq!(
        (stats.queued, stats.errors, stats.pending_entries),
        (0, 0, 0)
    );
    let mut out = vec![0u8; tile];
    array.read(0..tile, &mut out).expect("read");
    assert_eq!(out, data);
    assert_eq!(array.decommit(0..tile).expect("decommit"), 1);
    assert_eq!(array.committed_bytes(), 0);
}
