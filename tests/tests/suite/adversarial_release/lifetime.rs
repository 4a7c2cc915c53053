//! The `Cuda`, its `Device` and the structures dropped while entries are queued: the queued
//! entries still complete and give their memory back; a kept entry, though, has nobody
//! left to retry it.
//!
//! Each test runs in its own process: they hold streams and compare free memory exactly.

use std::time::Duration;

use cuda_vmm::Stream;
use cuda_vmm_tests::helpers::pattern_cycle;

use super::{
    drop_later, eventually, free, observer, own_process, simulated_array,
    with_failing_worker_unmap, STAYS_QUEUED_FOR,
};

own_process!(
    dropping_every_handle_while_entries_are_queued_still_gives_the_memory_back,
    dropped_handles_child,
    {
        // An observer of the same simulated device.
        let (_observer, seen, baseline) = observer();
        let (cuda, device, tile, mut array) = simulated_array(4, 2);
        let stream = Stream::new(&device).expect("stream");
        let hold = cuda_vmm_sim::hold_stream(stream.raw());
        array
            .write_async(&stream, 0, &pattern_cycle(2 * tile, 1))
            .expect("write");
        assert_eq!(array.decommit(0..tile).expect("decommit"), 1);
        assert_eq!(cuda.release_stats().pending_entries, 1);
        // The drop queues the other tile.
        drop(array);
        assert_eq!(cuda.release_stats().pending_entries, 2);
        let release = drop_later(hold, 2 * STAYS_QUEUED_FOR);
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
        let (_observer, seen, baseline) = observer();
        let (cuda, device, tile, mut array) = simulated_array(2, 1);
        with_failing_worker_unmap(&cuda, || {
            assert_eq!(array.decommit(0..tile).expect("decommit"), 1);
        });
        drop(array);
        drop(device);
        drop(cuda);
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(free(&seen), baseline, "the kept tile leaked");
    }
);
