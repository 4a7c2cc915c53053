//! Faults aimed at the release worker's thread (the simulator's targeted injection): each
//! failure is reported exactly once with the right `from_wait`/`kept`, a failed unmap keeps
//! the entry (and its memory) until a flush retries it, and nothing is released twice.
//!
//! Each test runs in its own process: they compare the simulator's free memory exactly.

use std::time::Duration;

use cuda_vmm::{Cuda, Device, Stream};
use cuda_vmm_alloc::SparseArray;
use cuda_vmm_tests::helpers::pattern_cycle;

use super::{
    assert_overlap, code, decommit_first_tile_failing, eventually, flush_cleanly, free,
    own_process, simulated_array, take_one_unknown_error, FLUSH, UNKNOWN,
};

/// A simulator `Cuda`, its device 0, its granularity, and an array of four tiles with
/// tiles 0 and 1 committed and written.
fn setup() -> (Cuda, Device, usize, SparseArray<u8>) {
    let (cuda, device, tile, mut array) = simulated_array(4, 2);
    array.write(0, &pattern_cycle(2 * tile, 7)).expect("write");
    (cuda, device, tile, array)
}

/// Waits until the queue has reported `n` errors in all.
fn until_errors(cuda: &Cuda, n: u64) {
    eventually(&format!("{n} release errors"), || {
        cuda.release_stats().errors >= n
    });
}

own_process!(
    a_failed_second_unmap_keeps_the_rest_and_a_flush_gives_everything_back_once,
    second_unmap_child,
    {
        let (cuda, device, tile, mut array) = setup();
        let worker = cuda.release_worker_name().to_owned();
        let fault = cuda_vmm_sim::inject_fault_on_thread(&worker, "cuMemUnmap", 2, UNKNOWN);
        let before = free(&device);
        // One entry of two mappings: the first unmaps, the second fails.
        assert_eq!(array.decommit(0..2 * tile).expect("decommit"), 2);
        until_errors(&cuda, 1);
        let errors = take_one_unknown_error(&cuda, true, false);
        assert_eq!(errors[0].size, 2 * tile);
        let stats = cuda.release_stats();
        assert_eq!((stats.pending_entries, stats.completed), (1, 0));
        assert_eq!(stats.pending_bytes, 2 * tile);
        assert_eq!(array.pending_release_bytes(), 2 * tile);
        assert_eq!(free(&device), before, "a kept entry released memory");
        // Tile 0 was unmapped: committing over it needs nothing from the entry.
        assert_eq!(array.commit(0..tile).expect("commit tile 0"), 1);
        // Tile 1 is still mapped (and ending): a commit over it is refused as an overlap.
        let refused = array
            .commit(tile..2 * tile)
            .expect_err("tile 1 is still mapped");
        assert_overlap(&refused);
        drop(fault);
        flush_cleanly(&cuda);
        let stats = cuda.release_stats();
        assert_eq!((stats.pending_entries, stats.completed), (0, 1));
        assert_eq!((stats.completed_by_callers, stats.errors), (1, 1));
        assert_eq!(array.pending_release_bytes(), 0);
        // Two tiles came back, one was committed again.
        assert_eq!(free(&device), before + tile);
        assert_eq!(array.commit(tile..2 * tile).expect("commit tile 1"), 1);
        let mut out = vec![1u8; 2 * tile];
        array.read(0..2 * tile, &mut out).expect("read");
        assert!(out.iter().all(|&b| b == 0), "recommitted tiles not zeroed");
        device.synchronize().expect("context");
    }
);

own_process!(
    a_failed_release_on_the_worker_is_reported_once_and_the_memory_still_comes_back,
    failed_release_child,
    {
        let (cuda, device, tile, mut array) = setup();
        let worker = cuda.release_worker_name().to_owned();
        let releases = cuda_vmm_sim::call_count_on_thread(&worker, "cuMemRelease");
        let (_fault, before) =
            decommit_first_tile_failing(&cuda, &device, &mut array, tile, "cuMemRelease");
        take_one_unknown_error(&cuda, false, false);
        // The refused release is tried again as the handle drops: the memory is back.
        assert_eq!(
            cuda_vmm_sim::call_count_on_thread(&worker, "cuMemRelease"),
            releases + 2
        );
        assert_eq!(free(&device), before + tile);
        let stats = cuda.release_stats();
        assert_eq!(
            (stats.pending_entries, stats.completed, stats.errors),
            (0, 1, 1)
        );
        assert_eq!(array.pending_release_bytes(), 0);
        // The flush after has nothing to retry.
        assert!(cuda.flush_releases(Duration::ZERO).expect("flush"));
        assert!(cuda.take_release_errors().is_empty());
    }
);

own_process!(
    a_failed_event_wait_falls_back_to_the_fence_and_completes_the_entry,
    failed_event_child,
    {
        let (cuda, device, tile, mut array) = setup();
        let stream = Stream::new(&device).expect("stream");
        array
            .write_async(&stream, 0, &pattern_cycle(tile, 9))
            .expect("write");
        let worker = cuda.release_worker_name().to_owned();
        let fences = cuda_vmm_sim::call_count_on_thread(&worker, "cuCtxSynchronize");
        let (_fault, before) =
            decommit_first_tile_failing(&cuda, &device, &mut array, tile, "cuEventSynchronize");
        let errors = take_one_unknown_error(&cuda, false, true);
        assert_eq!(errors[0].size, tile);
        assert!(cuda_vmm_sim::call_count_on_thread(&worker, "cuCtxSynchronize") > fences);
        assert_eq!(free(&device), before + tile);
        assert_eq!(array.pending_release_bytes(), 0);
        stream.synchronize().expect("stream");
        device.synchronize().expect("context");
    }
);

own_process!(
    a_failed_fence_is_reported_from_the_wait_and_the_entry_still_completes,
    failed_fence_child,
    {
        let (cuda, device, tile, mut array) = setup();
        let (_fault, before) =
            decommit_first_tile_failing(&cuda, &device, &mut array, tile, "cuCtxSynchronize");
        take_one_unknown_error(&cuda, false, true);
        let stats = cuda.release_stats();
        assert_eq!(
            (stats.pending_entries, stats.completed, stats.errors),
            (0, 1, 1)
        );
        assert_eq!(free(&device), before + tile);
        // The second tile still holds its bytes.
        let mut out = vec![0u8; tile];
        array.read(tile..2 * tile, &mut out).expect("read");
        assert_eq!(out, pattern_cycle(2 * tile, 7)[tile..]);
    }
);

own_process!(
    a_retry_that_fails_again_fails_the_flush_and_the_next_flush_completes_it,
    failed_retry_child,
    {
        let (cuda, device, tile, mut array) = setup();
        let worker = cuda.release_worker_name().to_owned();
        let on_worker = cuda_vmm_sim::inject_fault_on_thread(&worker, "cuMemUnmap", 1, UNKNOWN);
        let before = free(&device);
        assert_eq!(array.decommit(0..tile).expect("decommit"), 1);
        until_errors(&cuda, 1);
        drop(on_worker);
        // The flush retries on this thread: fail that one too.
        let here = cuda_vmm_sim::inject_fault("cuMemUnmap", 1, UNKNOWN);
        let failed = cuda
            .flush_releases(Duration::ZERO)
            .expect_err("the retry failed");
        assert!(
            matches!(failed, cuda_vmm::Error::InvalidArgument { .. }),
            "{failed:?}"
        );
        assert!(here.fired());
        let errors = cuda.take_release_errors();
        assert_eq!(errors.len(), 2, "{errors:?}");
        for e in &errors {
            assert!(e.kept && !e.from_wait, "{e:?}");
            assert_eq!(code(&e.error), Some(UNKNOWN));
            assert_eq!(e.size, tile);
        }
        assert_eq!(errors[0].address, errors[1].address);
        let stats = cuda.release_stats();
        assert_eq!((stats.pending_entries, stats.errors), (1, 2));
        assert_eq!(free(&device), before);
        drop(here);
        // Dropping the array leaves the kept entry to the queue; the next flush retries it.
        drop(array);
        flush_cleanly(&cuda);
        let stats = cuda.release_stats();
        assert_eq!((stats.pending_entries, stats.pending_bytes), (0, 0));
        assert_eq!(free(&device), before + 2 * tile);
    }
);

/// The worker exits when idle; the next end starts a new one, of the same name (so a fault
/// aimed at the name reaches it), and its failure is reported like the first worker's.
#[test]
fn a_worker_restarted_after_idling_keeps_its_name_and_its_reports() {
    let _memory = crate::memory_shared();
    let (cuda, device, tile, mut array) = setup();
    let worker = cuda.release_worker_name().to_owned();
    assert_eq!(array.decommit(0..tile).expect("decommit"), 1);
    assert!(cuda.flush_releases(FLUSH).expect("flush"));
    let unmaps = cuda_vmm_sim::call_count_on_thread(&worker, "cuMemUnmap");
    assert_eq!(unmaps, 1);
    // Longer than the worker's idle time: it has exited.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(cuda.release_worker_name(), worker);
    let fault = cuda_vmm_sim::inject_fault_on_thread(&worker, "cuMemUnmap", 1, UNKNOWN);
    assert_eq!(array.decommit(tile..2 * tile).expect("decommit"), 1);
    until_errors(&cuda, 1);
    drop(fault);
    take_one_unknown_error(&cuda, true, false);
    assert_eq!(cuda_vmm_sim::call_count_on_thread(&worker, "cuMemUnmap"), 2);
    assert!(cuda.flush_releases(FLUSH).expect("flush"));
    let stats = cuda.release_stats();
    assert_eq!(
        (stats.queued, stats.completed, stats.pending_entries),
        (2, 2, 0)
    );
    assert_eq!(array.committed_bytes(), 0);
    device.synchronize().expect("context");
}
