//! A device whose memory is all held by queued (or kept) releases: an allocation that runs
//! out of memory waits for them and tries once more.
//!
//! Each test runs in its own process, on a simulated device of 16 MiB.

use std::time::Instant;

use cuda_vmm::Stream;
use cuda_vmm_alloc::{SparseArray, SparseConfig};
use cuda_vmm_sys::CUresult;
use cuda_vmm_tests::helpers::{gran, pattern_cycle};

use super::{
    code, drop_later, flush_cleanly, free, own_process, simulated, with_failing_worker_unmap,
    STAYS_QUEUED_FOR, UNKNOWN,
};

/// Tiles that fill the device, and an array holding all of them.
fn fill() -> (
    cuda_vmm::Cuda,
    cuda_vmm::Device,
    usize,
    usize,
    SparseArray<u8>,
) {
    let (cuda, device) = simulated();
    let tile = gran(&device).expect("granularity");
    let n = free(&device) / tile;
    assert!(n >= 2, "a device of {} bytes", free(&device));
    let mut array =
        SparseArray::<u8>::new(&device, n * tile, SparseConfig::default()).expect("array");
    array.commit(0..n * tile).expect("commit all");
    assert!(free(&device) < tile);
    (cuda, device, tile, n, array)
}

own_process!(
    an_allocation_out_of_memory_waits_for_the_queued_releases_and_succeeds,
    oom_waits_child,
    env = [(cuda_vmm_sim::ENV_MEMORY, "16M".into())],
    {
        let (cuda, device, tile, n, mut a) = fill();
        let stream = Stream::new(&device).expect("stream");
        let hold = cuda_vmm_sim::hold_stream(stream.raw());
        a.write_async(&stream, 0, &pattern_cycle(n * tile, 2))
            .expect("write");
        assert_eq!(a.decommit(0..n * tile).expect("decommit"), n);
        assert_eq!(a.pending_release_bytes(), n * tile);
        let mut b = SparseArray::<u8>::new(&device, tile, SparseConfig::default()).expect("array");
        let release = drop_later(hold, STAYS_QUEUED_FOR);
        let start = Instant::now();
        assert_eq!(b.commit(0..tile).expect("commit after the flush"), 1);
        assert!(
            start.elapsed() >= STAYS_QUEUED_FOR,
            "the commit did not wait"
        );
        release.join().expect("thread");
        assert_eq!(a.pending_release_bytes(), 0);
        flush_cleanly(&cuda);
        device.synchronize().expect("no poison");
    }
);

own_process!(
    an_allocation_out_of_memory_retries_a_kept_release_and_reports_oom_if_it_fails_again,
    oom_kept_child,
    env = [(cuda_vmm_sim::ENV_MEMORY, "16M".into())],
    {
        let (cuda, device, tile, n, mut a) = fill();
        // Tile 0 alone: its entry is kept.
        with_failing_worker_unmap(&cuda, || {
            assert_eq!(a.decommit(0..tile).expect("decommit"), 1);
        });
        let mut b = SparseArray::<u8>::new(&device, tile, SparseConfig::default()).expect("array");
        // The retry fails again on this thread: out of memory, exactly.
        let here = cuda_vmm_sim::inject_fault("cuMemUnmap", 1, UNKNOWN);
        let refused = b.commit(0..tile).expect_err("no memory");
        assert!(here.fired());
        drop(here);
        match &refused {
            cuda_vmm_alloc::Error::Vmm(e) => {
                assert_eq!(code(e), Some(CUresult::CUDA_ERROR_OUT_OF_MEMORY), "{e:?}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(b.committed_bytes(), 0);
        assert_eq!(cuda.release_stats().pending_entries, 1);
        // Without the fault the next commit's retry gives the tile back and the commit fits.
        assert_eq!(b.commit(0..tile).expect("commit"), 1);
        assert_eq!(a.pending_release_bytes(), 0);
        assert_eq!(a.committed_bytes(), (n - 1) * tile);
        let errors = cuda.take_release_errors();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().all(|e| e.kept && !e.from_wait));
    }
);
