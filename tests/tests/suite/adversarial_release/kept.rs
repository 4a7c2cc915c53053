//! Entries kept after a failed unmap on the worker, seen from a pool and a buffer: a kept
//! pooled chunk is neither in the pool nor handed out until a flush completes it; a buffer
//! that grows back over a kept tail is refused as an overlap until then.
//!
//! Each test runs in its own process: they compare the simulator's free memory exactly.

use cuda_vmm_alloc::{BufferConfig, GrowableBuffer, SparseArray, SparseConfig};
use cuda_vmm_tests::helpers::{gran, pattern_cycle};

use super::{
    assert_overlap, code, flush_cleanly, free, own_process, simulated, simulated_pool,
    take_one_unknown_error, with_failing_worker_unmap, FLUSH, UNKNOWN,
};

own_process!(
    a_kept_pooled_chunk_is_not_handed_out_until_a_flush_completes_its_release,
    kept_pooled_child,
    {
        let (cuda, device, tile, pool) = simulated_pool();
        let config = SparseConfig {
            pool: Some(pool.clone()),
            ..SparseConfig::default()
        };
        let mut a = SparseArray::<u8>::new(&device, 2 * tile, config.clone()).expect("array");
        let mut b = SparseArray::<u8>::new(&device, 2 * tile, config).expect("array");
        a.commit(0..tile).expect("commit");
        let data = pattern_cycle(tile, 11);
        a.write(0, &data).expect("write");
        with_failing_worker_unmap(&cuda, || {
            assert_eq!(a.decommit(0..tile).expect("decommit"), 1);
        });
        take_one_unknown_error(&cuda, true, false);
        let stats = pool.stats();
        assert_eq!(
            (stats.pending_returns, stats.chunks_held),
            (1, 0),
            "{stats:?}"
        );
        // Another array of the pool gets a new chunk, not the kept one.
        let misses = stats.misses;
        let before = free(&device);
        assert_eq!(b.commit(0..tile).expect("commit"), 1);
        assert_eq!(pool.stats().misses, misses + 1);
        assert_eq!(free(&device), before - tile);
        b.write(0, &pattern_cycle(tile, 13)).expect("write");
        // The flush completes the kept release: the chunk arrives in the pool.
        flush_cleanly(&cuda);
        let stats = pool.stats();
        assert_eq!(
            (stats.pending_returns, stats.chunks_held),
            (0, 1),
            "{stats:?}"
        );
        assert_eq!(a.pending_release_bytes(), 0);
        // It is handed out again now, and zeroed.
        let hits = stats.hits;
        assert_eq!(a.commit(tile..2 * tile).expect("commit"), 1);
        assert_eq!(pool.stats().hits, hits + 1);
        let mut out = vec![1u8; tile];
        a.read(tile..2 * tile, &mut out).expect("read");
        assert!(
            out.iter().all(|&x| x == 0),
            "a recycled chunk was not zeroed"
        );
        b.read(0..tile, &mut out).expect("read");
        assert_eq!(out, pattern_cycle(tile, 13));
    }
);

own_process!(
    a_buffer_growing_back_over_a_kept_tail_is_refused_until_a_flush,
    kept_tail_child,
    {
        // One-tile chunks (a pool's), so the shrink releases exactly the second.
        let (cuda, device, tile, pool) = simulated_pool();
        let config = BufferConfig {
            max_capacity: Some(4 * tile),
            pool: Some(pool.clone()),
            ..BufferConfig::default()
        };
        let mut buffer = GrowableBuffer::<u8>::new(&device, config).expect("buffer");
        let data = pattern_cycle(2 * tile, 5);
        buffer.extend_from_slice(&data).expect("extend");
        // The growth policy may commit ahead: everything past the first tile goes.
        let tail = buffer.committed_bytes() - tile;
        assert!(tail >= tile);
        with_failing_worker_unmap(&cuda, || {
            buffer.truncate(tile);
            buffer.shrink_to_fit().expect("shrink");
        });
        assert_eq!(cuda.take_release_errors().len(), 1);
        assert_eq!(buffer.pending_release_bytes(), tail);
        assert_eq!(buffer.committed_bytes(), tile);
        assert_eq!(pool.stats().pending_returns, tail / tile);
        let before = free(&device);
        // Growing back over the kept tile: its range is still mapped.
        let refused = buffer
            .extend_from_slice(&data[tile..])
            .expect_err("the kept tail is still mapped");
        assert_overlap(&refused);
        assert_eq!(buffer.len(), tile);
        assert_eq!(free(&device), before, "the refused grow kept memory");
        assert!(cuda.flush_releases(FLUSH).expect("flush"));
        assert_eq!(buffer.pending_release_bytes(), 0);
        let stats = pool.stats();
        assert_eq!(
            (stats.pending_returns, stats.chunks_held),
            (0, tail / tile),
            "{stats:?}"
        );
        assert_eq!(free(&device), before);
        buffer.extend_from_slice(&data[tile..]).expect("extend");
        assert!(buffer.to_vec().expect("read") == data);
    }
);

own_process!(
    a_partly_failed_caller_policy_decommit_refunds_the_tiles_it_released,
    caller_partial_child,
    {
        let (_cuda, device) = simulated();
        let tile = gran(&device).expect("granularity");
        let budget = cuda_vmm_alloc::MemoryBudget::new(4 * tile);
        let config = SparseConfig {
            budget: Some(budget.clone()),
            ..SparseConfig::default()
        };
        let mut array = SparseArray::<u8>::new(&device, 4 * tile, config).expect("array");
        array.commit(0..2 * tile).expect("commit");
        // SAFETY: nothing runs on the device over the array.
        unsafe { array.set_unmap_wait(cuda_vmm::UnmapWait::Caller) };
        let before = free(&device);
        let fault = cuda_vmm_sim::inject_fault("cuMemUnmap", 2, UNKNOWN);
        let failed = array
            .decommit(0..2 * tile)
            .expect_err("the second unmap failed");
        assert!(fault.fired());
        drop(fault);
        match &failed {
            cuda_vmm_alloc::Error::Vmm(e) => assert_eq!(code(e), Some(UNKNOWN), "{e:?}"),
            other => panic!("{other:?}"),
        }
        // Tile 0 is gone (released), tile 1 kept.
        assert_eq!(array.committed_bytes(), tile);
        assert_eq!(free(&device), before + tile);
        assert_eq!(array.pending_release_bytes(), 0);
        assert_eq!(budget.used(), tile, "the released tile is still charged");
        drop(array);
        assert_eq!(budget.used(), 0);
    }
);
