//! The `Cuda`, its `Device` and the structures dropped while entries are queued: the queued
//! entries still complete and give their memory back; a kept entry, though, has nobody
//! left to retry it.
//!
//! Each test runs in its own process: they hold streams and compare free memory exactly.

use std::time::Duration;

use cuda_vmm::{Cuda, Stream};
use cuda_vmm_alloc::{SparseArray, SparseConfig};
use cuda_vmm_sys::CUresult;
use cuda_vmm_tests::helpers::{gran, pattern_cycle};

use super::{eventually, free, own_process, simulated, STAYS_QUEUED_FOR};

own_process!(
    dropping_every_handle_while_entries_are_queued_still_gives_the_memory_back,
    dropped_handles_child,
    {
        // An observer of the same simulated device.
        let observer = Cuda::simulator().expect("simulator");
        let seen = observer.device(0).expect("device");
        let baseline = free(&seen);
        let (cuda, device) = simulated();
        let stream = Stream::new(&device).expect("stream");
        let tile = gran(&device).expect("granularity");
        let mut array =
            SparseArray::<u8>::new(&device, 4 * tile, SparseConfig::default()).expect("array");
        array.commit(0..2 * tile).expect("commit");
        let hold = cuda_vmm_sim::hold_stream(stream.raw());
        array
            .write_async(&stream, 0, &pattern_cycle(2 * tile, 1))
            .expect("write");
        assert_eq!(array.decommit(0..tile).expect("decommit"), 1);
        assert_eq!(cuda.release_stats().pending_entries, 1);
        // The drop queues the other tile.
        drop(array);
        assert_eq!(cuda.release_stats().pending_entries, 2);
        let release = std::thread::spawn(move || {
            std::thread::sleep(2 * STAYS_QUEUED_FOR);
            drop(hold);
        });
        drop(stream);
        drop(device);
        drop(cuda);
        assert_eq!(free(&seen), baseline - 2 * tile, "released under held work");
        release.join().expect("thread");
        eventually("the queued tiles came back", || free(&seen) == baseline);
        seen.synchronize().expect("no poison");
    }
);

own_process!(
    a_kept_entry_is_not_leaked_when_the_last_cuda_handle_drops,
    kept_leak_child,
    {
        let observer = Cuda::simulator().expect("simulator");
        let seen = observer.device(0).expect("device");
        let baseline = free(&seen);
        let (cuda, device) = simulated();
        let tile = gran(&device).expect("granularity");
        let mut array =
            SparseArray::<u8>::new(&device, 2 * tile, SparseConfig::default()).expect("array");
        array.commit(0..tile).expect("commit");
        let worker = cuda.release_worker_name().to_owned();
        let fault = cuda_vmm_sim::inject_fault_on_thread(
            &worker,
            "cuMemUnmap",
            1,
            CUresult::CUDA_ERROR_UNKNOWN,
        );
        assert_eq!(array.decommit(0..tile).expect("decommit"), 1);
        eventually("the unmap failed", || cuda.release_stats().errors == 1);
        drop(fault);
        drop(array);
        drop(device);
        drop(cuda);
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(free(&seen), baseline, "the kept tile leaked");
    }
);
