//! The release queue against held streams (a modelled long kernel): a decommit returns at
//! once and its release waits on the worker, never on the caller; the worker's wait is
//! what keeps the context healthy (with it faulted away, the same program poisons); a
//! commit over a queued range completes that entry only; a failed unmap on the worker is
//! kept and retried, never lost.
//!
//! Each test runs in its own process: a hold blocks context synchronisation process-wide.

use std::time::{Duration, Instant};

use cuda_vmm::{Cuda, Device, Stream, UnmapWait};
use cuda_vmm_alloc::{SparseArray, SparseConfig};

use super::asynchrony::in_own_process;
use super::*;

/// Long enough for any release of these tests to complete.
const FLUSH: Duration = Duration::from_secs(20);
/// How long a release that must stay queued is watched.
const STAYS_QUEUED_FOR: Duration = Duration::from_millis(200);

/// A simulator `Cuda` with the default queue, device 0, a stream, and an array of four
/// tiles with tiles 0 and 2 committed and written on the stream.
struct Setup {
    cuda: Cuda,
    device: Device,
    stream: Stream,
    array: SparseArray<u8>,
    tile: usize,
}

fn setup() -> Setup {
    let cuda = Cuda::simulator().expect("simulator");
    assert!(!cuda.releases_complete_inline());
    let device = cuda.device(0).expect("device");
    let stream = Stream::new(&device).expect("stream");
    let config = SparseConfig {
        uninit_tiles: true,
        ..SparseConfig::default()
    };
    let tile = granularity(0);
    let mut array = SparseArray::<u8>::new(&device, 4 * tile, config).expect("array");
    array.commit(0..tile).expect("commit tile 0");
    array.commit(2 * tile..3 * tile).expect("commit tile 2");
    Setup {
        cuda,
        device,
        stream,
        array,
        tile,
    }
}

/// Waits (bounded) until the worker has entered `symbol` `n` times.
fn until_worker_called(cuda: &Cuda, symbol: &str, n: u64) {
    let deadline = Instant::now() + FLUSH;
    while cuda_vmm_sim::call_count_on_thread(cuda.release_worker_name(), symbol) < n {
        assert!(
            Instant::now() < deadline,
            "the worker never called {symbol}"
        );
        std::thread::yield_now();
    }
}

/// This thread's calls of the symbols a caller would wait with.
fn caller_waits() -> [u64; 3] {
    ["cuCtxSynchronize", "cuEventSynchronize", "cuEventQuery"].map(cuda_vmm_sim::call_count)
}

in_own_process!(
    held_work_keeps_a_release_queued_on_the_worker_and_never_poisons,
    held_release_child,
    [],
    {
        let Setup {
            cuda,
            device,
            stream,
            mut array,
            tile,
        } = setup();
        let hold = cuda_vmm_sim::hold_stream(stream.raw());
        assert!(hold.is_active());
        let data = pattern_cycle(tile, 5);
        array.write_async(&stream, 0, &data).expect("write tile 0");
        array
            .write_async(&stream, 2 * tile, &data)
            .expect("write tile 2");
        let before = caller_waits();
        let unmaps = cuda_vmm_sim::call_count_all("cuMemUnmap");
        assert_eq!(array.decommit(0..tile).expect("decommit"), 1);
        assert_eq!(caller_waits(), before, "the caller waited for the device");
        assert_eq!(array.pending_release_bytes(), tile);
        // The worker is inside its wait, and stays there while the stream is held.
        until_worker_called(&cuda, "cuEventSynchronize", 1);
        std::thread::sleep(STAYS_QUEUED_FOR);
        let stats = cuda.release_stats();
        assert_eq!((stats.pending_entries, stats.completed), (1, 0));
        assert_eq!(cuda_vmm_sim::call_count_all("cuMemUnmap"), unmaps);
        assert!(cuda_vmm_sim::pending_work_on(0) > 0);
        drop(hold);
        assert!(cuda.flush_releases(FLUSH).expect("flush"));
        assert!(cuda.take_release_errors().is_empty());
        let stats = cuda.release_stats();
        assert_eq!((stats.completed, stats.completed_by_callers), (1, 0));
        assert_eq!(array.pending_release_bytes(), 0);
        // Nothing was poisoned: the context runs work and the kept tile holds its bytes.
        stream.synchronize().expect("stream");
        device.synchronize().expect("context");
        let mut out = vec![0u8; tile];
        array.read(2 * tile..3 * tile, &mut out).expect("read");
        assert_eq!(out, data);
    }
);

in_own_process!(
    with_the_workers_wait_faulted_away_the_same_program_poisons,
    no_wait_child,
    [],
    {
        let Setup {
            cuda,
            stream,
            mut array,
            tile,
            ..
        } = setup();
        // The worker's waits answer at once, without waiting: an event's, and the context
        // fence it falls back to.
        let worker = cuda.release_worker_name().to_owned();
        let unknown = CUresult::CUDA_ERROR_UNKNOWN;
        let _faults = [
            cuda_vmm_sim::inject_fault_on_thread(&worker, "cuEventSynchronize", 1, unknown),
            cuda_vmm_sim::inject_fault_on_thread(&worker, "cuCtxSynchronize", 1, unknown),
        ];
        let hold = cuda_vmm_sim::hold_stream(stream.raw());
        let data = pattern_cycle(tile, 5);
        array.write_async(&stream, 0, &data).expect("write tile 0");
        assert_eq!(array.decommit(0..tile).expect("decommit"), 1);
        assert!(cuda.flush_releases(FLUSH).expect("flush"));
        let errors = cuda.take_release_errors();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().all(|e| e.from_wait && !e.kept));
        drop(hold);
        // The unmap ran under the held write: the context is poisoned.
        let poisoned = stream.synchronize().expect_err("the context is poisoned");
        assert_eq!(
            poisoned.cuda_error().map(|e| e.result()),
            Some(answers::UNMAP_WITH_PENDING_WORK)
        );
    }
);

in_own_process!(
    a_commit_over_a_queued_range_completes_that_entry_only,
    commit_over_queued_child,
    [],
    {
        let Setup {
            cuda,
            device,
            stream,
            mut array,
            tile,
        } = setup();
        // A second array, written on a second stream. Uses are recorded per array, so each
        // entry waits for its own array's stream only; events only, not the context.
        let mut second =
            SparseArray::<u8>::new(&device, 4 * tile, SparseConfig::default()).expect("array");
        second.commit(0..tile).expect("commit");
        // SAFETY: every use of the arrays' memory is recorded (the writes below).
        unsafe {
            array.set_unmap_wait(UnmapWait::RecordedUse);
            second.set_unmap_wait(UnmapWait::RecordedUse);
        }
        let other = Stream::new(&device).expect("stream");
        let first_hold = cuda_vmm_sim::hold_stream(stream.raw());
        let second_hold = cuda_vmm_sim::hold_stream(other.raw());
        let data = pattern_cycle(tile, 9);
        // The second array's entry is queued first: the worker meets it first.
        second.write_async(&other, 0, &data).expect("write");
        second.decommit(0..tile).expect("decommit the second array");
        array.write_async(&stream, 0, &data).expect("write tile 0");
        array.decommit(0..tile).expect("decommit tile 0");
        assert_eq!(cuda.release_stats().pending_entries, 2);
        let release_first = std::thread::spawn(move || {
            std::thread::sleep(STAYS_QUEUED_FOR);
            drop(first_hold);
        });
        let start = Instant::now();
        array.commit(0..tile).expect("commit over the queued tile");
        assert!(
            start.elapsed() >= STAYS_QUEUED_FOR,
            "the commit did not wait"
        );
        release_first.join().expect("thread");
        // The second array's entry is still queued behind its hold.
        let stats = cuda.release_stats();
        assert_eq!((stats.pending_entries, stats.completed_by_callers), (1, 1));
        assert_eq!(second.pending_release_bytes(), tile);
        assert_eq!(array.pending_release_bytes(), 0);
        drop(second_hold);
        assert!(cuda.flush_releases(FLUSH).expect("flush"));
        assert!(cuda.take_release_errors().is_empty());
        device.synchronize().expect("no poison");
    }
);

in_own_process!(
    a_failed_unmap_on_the_worker_is_kept_and_retried_once,
    failed_unmap_child,
    [],
    {
        let Setup {
            cuda,
            device,
            mut array,
            tile,
            ..
        } = setup();
        let worker = cuda.release_worker_name().to_owned();
        let fault = cuda_vmm_sim::inject_fault_on_thread(
            &worker,
            "cuMemUnmap",
            1,
            CUresult::CUDA_ERROR_UNKNOWN,
        );
        let free = || device.memory_info().expect("memory info").free;
        let before = free();
        assert_eq!(array.decommit(0..tile).expect("decommit"), 1);
        until_worker_called(&cuda, "cuMemUnmap", 1);
        // The worker reported the failure and kept the entry (and its memory).
        let deadline = Instant::now() + FLUSH;
        while cuda.release_stats().errors == 0 {
            assert!(Instant::now() < deadline, "no error reported");
            std::thread::yield_now();
        }
        let errors = cuda.take_release_errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].kept && !errors[0].from_wait);
        assert_eq!(
            errors[0].error.cuda_error().map(|e| e.result()),
            Some(CUresult::CUDA_ERROR_UNKNOWN)
        );
        assert_eq!(cuda.release_stats().pending_entries, 1);
        assert_eq!(array.pending_release_bytes(), tile);
        assert_eq!(free(), before, "memory of a kept entry was released");
        drop(fault);
        // The flush retries it on this thread; the memory comes back once.
        assert!(cuda.flush_releases(FLUSH).expect("flush"));
        assert!(cuda.take_release_errors().is_empty());
        let stats = cuda.release_stats();
        assert_eq!((stats.pending_entries, stats.completed), (0, 1));
        assert_eq!(free(), before + tile);
        device.synchronize().expect("context");
    }
);

in_own_process!(
    an_over_budget_commit_waits_for_queued_releases_of_the_budget,
    budget_flush_child,
    [],
    {
        let cuda = Cuda::simulator().expect("simulator");
        let device = cuda.device(0).expect("device");
        let stream = Stream::new(&device).expect("stream");
        let tile = granularity(0);
        let budget = cuda_vmm_alloc::MemoryBudget::new(2 * tile);
        let config = SparseConfig {
            budget: Some(budget.clone()),
            ..SparseConfig::default()
        };
        let mut a = SparseArray::<u8>::new(&device, 4 * tile, config.clone()).expect("array");
        let mut b = SparseArray::<u8>::new(&device, 4 * tile, config).expect("array");
        a.commit(0..2 * tile).expect("commit");
        // With nothing queued, a refusal is immediate and exact.
        let refused = cuda_vmm_alloc::Error::BudgetExceeded {
            requested: tile,
            used: 2 * tile,
            limit: 2 * tile,
        };
        assert_eq!(b.commit(0..tile), Err(refused));
        let hold = cuda_vmm_sim::hold_stream(stream.raw());
        a.write_async(&stream, 0, &pattern_cycle(tile, 3))
            .expect("write");
        a.decommit(0..tile).expect("decommit");
        // Still charged: the tile is held by the queue until the write ends.
        assert_eq!((budget.used(), a.pending_release_bytes()), (2 * tile, tile));
        let release = std::thread::spawn(move || {
            std::thread::sleep(STAYS_QUEUED_FOR);
            drop(hold);
        });
        let start = Instant::now();
        b.commit(0..tile)
            .expect("commit once the queued tile is given back");
        assert!(
            start.elapsed() >= STAYS_QUEUED_FOR,
            "the commit did not wait"
        );
        release.join().expect("thread");
        assert_eq!((budget.used(), a.pending_release_bytes()), (2 * tile, 0));
        assert_eq!(b.committed_bytes(), tile);
        assert!(cuda.take_release_errors().is_empty());
        device.synchronize().expect("no poison");
    }
);
