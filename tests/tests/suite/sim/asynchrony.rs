//! The simulator: asynchrony: streams, events, poisoning.

use super::*;

//
// Every test that queues work runs in its own process: another test's
// cuCtxSynchronize would complete it, and a poisoned context would fail the
// other tests.

const LAUNCH_FAILED: CUresult = answers::UNMAP_WITH_PENDING_WORK;
pub(super) const NON_BLOCKING: u32 = 1;

/// Runs `$body` only in a child process spawned by the `$parent` test.
macro_rules! in_own_process_impl {
    ($parent:ident, $child:ident, $env:expr, $body:block) => {
        #[test]
        fn $parent() {
            let _memory = crate::memory_shared();
            announce();
            run_own_process(&cuda_vmm_tests::test_name!($child), &$env);
        }

        #[test]
        #[ignore = "child process; its parent test spawns it"]
        fn $child() {
            if !is_child(&cuda_vmm_tests::test_name!($child)) {
                return;
            }
            $body
        }
    };
}

pub(super) use in_own_process_impl as in_own_process;

/// A mapped, read-write buffer of `size` bytes on device 0.
pub(super) fn buffer(size: usize) -> (CUdeviceptr, CUmemGenericAllocationHandle) {
    let va = reserve(size);
    let h = create(size, &prop(0, CUmemAllocationHandleType(0))).expect("create");
    ok(map(va, size, 0, h));
    set_rw(va, size, 0);
    (va, h)
}

pub(super) fn stream(flags: u32) -> CUstream {
    ok_out(bare::stream_create(api(), flags))
}

pub(super) fn stream_sync(s: CUstream) -> CUresult {
    // SAFETY: a stream of this simulator, or null.
    rc(unsafe { bare::stream_synchronize(api(), s) })
}

pub(super) fn stream_query(s: CUstream) -> CUresult {
    // SAFETY: as above.
    rc(unsafe { bare::stream_query(api(), s) })
}

pub(super) fn memset_async(va: CUdeviceptr, value: u8, n: usize, s: CUstream) -> CUresult {
    // SAFETY: device-side only.
    rc(unsafe { bare::memset_d8_async(api(), va, value, n, s) })
}

fn htod_async(va: CUdeviceptr, data: &[u8], s: CUstream) -> CUresult {
    // SAFETY: `data` is readable for its length (pageable: snapshotted now).
    rc(unsafe { bare::memcpy_htod_async(api(), va, data.as_ptr().cast(), data.len(), s) })
}

fn dtod_async(dst: CUdeviceptr, src: CUdeviceptr, n: usize, s: CUstream) -> CUresult {
    // SAFETY: device-side only.
    rc(unsafe { bare::memcpy_dtod_async(api(), dst, src, n, s) })
}

pub(super) fn event() -> CUevent {
    ok_out(bare::event_create(api(), 0))
}

pub(super) fn record(e: CUevent, s: CUstream) -> CUresult {
    // SAFETY: an event and a stream of this simulator.
    rc(unsafe { bare::event_record(api(), e, s) })
}

pub(super) fn wait(s: CUstream, e: CUevent) -> CUresult {
    // SAFETY: as above.
    rc(unsafe { bare::stream_wait_event(api(), s, e, 0) })
}

fn mem_info_rc() -> CUresult {
    out(bare::mem_get_info(api())).err().unwrap_or(OK)
}

in_own_process!(
    pageable_htod_then_unmap_poisons_until_the_context_is_destroyed,
    poison_child,
    [],
    {
        let ctx = Ctx::open(0);
        let g = granularity(0);
        for round in 0..3 {
            let (va, h) = buffer(g);
            ok(htod(va, &pattern_cycle(4096, round)));
            assert_eq!(cuda_vmm_sim::pending_work(), 1, "the copy is queued");
            // The driver neither waits nor fails the unmap ...
            ok(unmap(va, g));
            // ... but the context is poisoned, every time.
            assert_eq!(sync(), LAUNCH_FAILED);
            assert_eq!(sync(), LAUNCH_FAILED);
            assert_eq!(mem_info_rc(), LAUNCH_FAILED);
            assert_eq!(htod(va, &[1]), LAUNCH_FAILED);
            assert_eq!(cuda_vmm_sim::pending_work(), 0, "the work is discarded");
            // VMM calls keep working.
            ok(release(h));
            ok(address_free(va, g));
            // Destroying the primary context (references to 0) clears it.
            ctx.make_current();
            let release_primary = entry!(t(), cuDevicePrimaryCtxRelease_v2).expect("release");
            // SAFETY: plain value; `Ctx::open` holds the one reference.
            ok(unsafe { release_primary(0) });
            let fresh = Ctx::open(0);
            ok(sync());
            ok(mem_info_rc());
            std::mem::forget(fresh);
        }
        drop(ctx);
    }
);

in_own_process!(synchronised_htod_then_unmap_is_clean, sync_child, [], {
    let _ctx = Ctx::open(0);
    let g = granularity(0);
    let (va, h) = buffer(g);
    let data = pattern_cycle(4096, 7);
    ok(htod(va, &data));
    ok(sync());
    assert_eq!(cuda_vmm_sim::pending_work(), 0);
    assert_eq!(read(va, 4096), data);
    ok(unmap(va, g));
    ok(sync());
    ok(mem_info_rc());
    ok(release(h));
    ok(address_free(va, g));
});

in_own_process!(
    syncing_another_stream_does_not_save_an_unmap,
    no_flush_child,
    [],
    {
        let _ctx = Ctx::open(0);
        let g = granularity(0);
        let (va, h) = buffer(g);
        let (a, b) = (stream(NON_BLOCKING), stream(NON_BLOCKING));
        ok(memset_async(va, 5, g, a));
        ok(htod_async(va + 4096, &[1, 2, 3], b));
        // Completes b's work only: a's memset is still pending.
        ok(stream_sync(b));
        assert_eq!(cuda_vmm_sim::pending_work(), 1);
        ok(unmap(va, g));
        // A memset is device work: ILLEGAL_ADDRESS, as on the H200.
        assert_eq!(stream_sync(a), CUresult::CUDA_ERROR_ILLEGAL_ADDRESS);
        assert_eq!(sync(), CUresult::CUDA_ERROR_ILLEGAL_ADDRESS);
        ok(release(h));
        ok(address_free(va, g));
    }
);

in_own_process!(
    stream_wait_event_orders_work_across_streams,
    wait_child,
    [],
    {
        let _ctx = Ctx::open(0);
        let g = granularity(0);
        let (x, hx) = buffer(g);
        let (y, hy) = buffer(g);
        let (a, b) = (stream(NON_BLOCKING), stream(NON_BLOCKING));
        let data = pattern_cycle(4096, 3);
        let e = event();
        ok(htod_async(x, &data, a));
        ok(record(e, a));
        ok(memset_async(x, 0xee, 4096, a)); // after the event: must not be seen
        ok(wait(b, e));
        ok(dtod_async(y, x, 4096, b));
        // Syncing b completes a's work up to the event, then the copy.
        ok(stream_sync(b));
        assert_eq!(
            cuda_vmm_sim::pending_work(),
            1,
            "a's memset is still queued"
        );
        assert_eq!(read(y, 4096), data);
        // A query reports and changes nothing; the device moving on completes it.
        assert_eq!(stream_query(a), answers::NOT_READY);
        assert_eq!(stream_query(a), answers::NOT_READY);
        assert_eq!(cuda_vmm_sim::pending_work(), 1, "queries ran nothing");
        cuda_vmm_sim::advance();
        assert_eq!(cuda_vmm_sim::pending_work(), 0);
        ok(stream_query(a));
        assert_eq!(read(x, 4096), vec![0xee; 4096]);
        ok(unmap(x, g));
        ok(unmap(y, g));
        ok(sync());
        for (va, h) in [(x, hx), (y, hy)] {
            ok(release(h));
            ok(address_free(va, g));
        }
    }
);

in_own_process!(
    the_legacy_stream_waits_for_blocking_streams_only,
    legacy_child,
    [],
    {
        let _ctx = Ctx::open(0);
        let g = granularity(0);
        let (va, h) = buffer(g);
        let blocking = stream(0);
        let non_blocking = stream(NON_BLOCKING);
        ok(memset_async(va, 1, 4096, blocking));
        ok(memset_async(va + 4096, 2, 4096, non_blocking));
        // cuMemcpyDtoH runs on the legacy stream: it waits for the blocking
        // stream's earlier work, not the non-blocking stream's.
        assert_eq!(read(va, 4096), vec![1; 4096]);
        assert_eq!(read(va + 4096, 4096), vec![0; 4096]);
        ok(stream_sync(non_blocking));
        assert_eq!(read(va + 4096, 4096), vec![2; 4096]);
        // Destroying a stream with work pending: the work still completes.
        ok(memset_async(va, 3, 4096, non_blocking));
        let destroy = entry!(t(), cuStreamDestroy_v2).expect("destroy");
        // SAFETY: a stream of this simulator.
        ok(unsafe { destroy(non_blocking) });
        assert_eq!(stream_sync(non_blocking), answers::BAD_STREAM_OR_EVENT);
        ok(sync());
        assert_eq!(read(va, 4096), vec![3; 4096]);
        ok(unmap(va, g));
        ok(release(h));
        ok(address_free(va, g));
    }
);

in_own_process!(
    asynchrony_off_completes_work_in_the_call,
    sync_mode_child,
    [(cuda_vmm_sim::ENV_ASYNC, "0".to_string())],
    {
        let _ctx = Ctx::open(0);
        assert_eq!(
            cuda_vmm_sim::active_config().map(|c| c.is_asynchronous()),
            Some(false)
        );
        let g = granularity(0);
        let (va, h) = buffer(g);
        let s = stream(NON_BLOCKING);
        ok(htod(va, &pattern_cycle(4096, 1)));
        ok(memset_async(va, 9, 4096, s));
        assert_eq!(cuda_vmm_sim::pending_work(), 0);
        ok(unmap(va, g));
        ok(sync());
        ok(mem_info_rc());
        ok(release(h));
        ok(address_free(va, g));
    }
);

#[test]
fn context_stack_push_and_pop() {
    let _memory = crate::memory_shared();
    announce();
    let ctx = Ctx::open(0);
    let push = entry!(t(), cuCtxPushCurrent_v2).expect("push");
    let pop = entry!(t(), cuCtxPopCurrent_v2).expect("pop");
    let get = entry!(t(), cuCtxGetCurrent).expect("get current");
    let mut current = std::ptr::null_mut();
    // SAFETY: valid out-pointers; contexts returned by the simulator.
    unsafe {
        ok(get(&mut current));
        let top = current;
        ok(push(top));
        let mut popped = std::ptr::null_mut();
        ok(pop(&mut popped));
        assert_eq!(popped, top);
        ok(pop(std::ptr::null_mut()));
        ok(get(&mut current));
        assert!(current.is_null());
        assert_eq!(pop(&mut popped), answers::POP_EMPTY_STACK);
        assert_eq!(push(std::ptr::null_mut()), answers::INACTIVE_CONTEXT);
        ok(push(top));
    }
    drop(ctx);
}
