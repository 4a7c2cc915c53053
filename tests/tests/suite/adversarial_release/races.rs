//! Failures that meet a flush in progress, the budget's flush of queued releases when one
//! of them is kept, and entries that fence two devices.
//!
//! Each test runs in its own process: they hold streams or compare free memory exactly.

use std::time::Instant;

use cuda_vmm::Stream;
use cuda_vmm_alloc::{Error, MemoryBudget, SparseArray, SparseConfig};
use cuda_vmm_tests::helpers::{gran, pattern_cycle};

use super::{
    drop_later, free, own_process, simulated, simulated_array, take_one_unknown_error,
    until_worker_called, with_failing_worker_unmap, FLUSH, STAYS_QUEUED_FOR, UNKNOWN,
};

own_process!(
    a_flush_that_meets_a_failure_on_the_worker_retries_it_before_answering,
    failure_during_flush_child,
    {
        let (cuda, device, tile, mut array) = simulated_array(2, 1);
        let stream = Stream::new(&device).expect("stream");
        let worker = cuda.release_worker_name().to_owned();
        let _fault = cuda_vmm_sim::inject_fault_on_thread(&worker, "cuMemUnmap", 1, UNKNOWN);
        let before = free(&device);
        let hold = cuda_vmm_sim::hold_stream(stream.raw());
        array
            .write_async(&stream, 0, &pattern_cycle(tile, 2))
            .expect("write");
        assert_eq!(array.decommit(0..tile).expect("decommit"), 1);
        until_worker_called(&cuda, "cuEventSynchronize", 1);
        // The flush starts before the worker's unmap fails.
        let release = drop_later(hold, STAYS_QUEUED_FOR);
        let drained = cuda.flush_releases(FLUSH);
        release.join().expect("thread");
        take_one_unknown_error(&cuda, true, false);
        let stats = cuda.release_stats();
        assert_eq!(
            (stats.pending_entries, stats.pending_bytes),
            (0, 0),
            "flush answered {drained:?} with a kept entry pending"
        );
        assert!(drained.expect("flush"));
        assert_eq!(free(&device), before + tile);
    }
);

/// A budget of one tile, two arrays charging it, and the first array's tile decommitted
/// with the worker's unmap failing: the entry is kept, the tile still charged.
fn kept_budget_setup() -> (
    cuda_vmm::Cuda,
    cuda_vmm::Device,
    usize,
    MemoryBudget,
    SparseArray<u8>,
    SparseArray<u8>,
) {
    let (cuda, device) = simulated();
    let tile = gran(&device).expect("granularity");
    let budget = MemoryBudget::new(tile);
    let config = SparseConfig {
        budget: Some(budget.clone()),
        ..SparseConfig::default()
    };
    let mut a = SparseArray::<u8>::new(&device, 2 * tile, config.clone()).expect("array");
    let b = SparseArray::<u8>::new(&device, 2 * tile, config).expect("array");
    a.commit(0..tile).expect("commit");
    with_failing_worker_unmap(&cuda, || {
        assert_eq!(a.decommit(0..tile).expect("decommit"), 1);
    });
    assert_eq!((budget.used(), a.pending_release_bytes()), (tile, tile));
    (cuda, device, tile, budget, a, b)
}

own_process!(
    an_over_budget_commit_retries_a_kept_release_of_the_budget,
    budget_retries_kept_child,
    {
        let (cuda, device, tile, budget, a, mut b) = kept_budget_setup();
        let before = free(&device);
        // The charge fails; the flush it makes retries the kept entry on this thread,
        // which gives the tile back; the charge then fits.
        assert_eq!(b.commit(0..tile).expect("commit after the retry"), 1);
        assert_eq!((budget.used(), a.pending_release_bytes()), (tile, 0));
        assert_eq!(free(&device), before);
        let stats = cuda.release_stats();
        assert_eq!((stats.pending_entries, stats.completed_by_callers), (0, 1));
        assert_eq!(cuda.take_release_errors().len(), 1);
    }
);

own_process!(
    an_over_budget_commit_whose_flush_fails_again_is_refused_as_over_budget,
    budget_retry_fails_child,
    {
        let (cuda, _device, tile, budget, _a, mut b) = kept_budget_setup();
        let _here = cuda_vmm_sim::inject_fault("cuMemUnmap", 1, UNKNOWN);
        assert_eq!(
            b.commit(0..tile),
            Err(Error::BudgetExceeded {
                requested: tile,
                used: tile,
                limit: tile,
            })
        );
        assert_eq!(budget.used(), tile);
        assert_eq!(cuda.release_stats().pending_entries, 1);
    }
);

own_process!(
    an_entry_of_memory_a_peer_reaches_fences_both_devices_and_reports_a_peer_failure,
    peer_fence_child,
    {
        let (cuda, device) = simulated();
        if cuda.device_count().expect("count") < 2 {
            eprintln!("skipped: needs two devices (CUDA_VMM_SIM_DEVICES=2)");
            return;
        }
        let peer = cuda.device(1).expect("device 1");
        if !device.can_access_peer(&peer).expect("peer query") {
            eprintln!("skipped: device 1 cannot reach device 0");
            return;
        }
        let tile = gran(&device).expect("granularity");
        let mut array =
            SparseArray::<u8>::new(&device, 2 * tile, SparseConfig::default()).expect("array");
        array
            .grant_access(std::slice::from_ref(&peer))
            .expect("grant");
        array.commit(0..tile).expect("commit");
        let worker = cuda.release_worker_name().to_owned();
        let fences = cuda_vmm_sim::call_count_on_thread(&worker, "cuCtxSynchronize");
        // The second fence of the batch (the peer's) fails.
        let _fault = cuda_vmm_sim::inject_fault_on_thread(&worker, "cuCtxSynchronize", 2, UNKNOWN);
        let before = free(&device);
        let start = Instant::now();
        assert_eq!(array.decommit(0..tile).expect("decommit"), 1);
        assert!(cuda.flush_releases(FLUSH).expect("flush"));
        assert!(start.elapsed() < FLUSH);
        assert_eq!(
            cuda_vmm_sim::call_count_on_thread(&worker, "cuCtxSynchronize"),
            fences + 2
        );
        take_one_unknown_error(&cuda, false, true);
        assert_eq!(free(&device), before + tile);
        peer.synchronize().expect("peer context");
    }
);
