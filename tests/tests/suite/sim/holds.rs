//! The simulator: holds (a modelled long-running kernel), queries without side
//! effects, device progress (`advance`), and faults and counts aimed at other threads.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::asynchrony::{
    buffer, event, in_own_process, memset_async, record, stream, stream_query, stream_sync, wait,
    NON_BLOCKING,
};
use super::*;

/// Long enough for a blocked call that should return to have returned.
const RETURNS_WITHIN: Duration = Duration::from_secs(20);
/// How long a call that must stay blocked is watched for returning early.
const STAYS_BLOCKED_FOR: Duration = Duration::from_millis(200);

fn event_query(e: CUevent) -> CUresult {
    // SAFETY: an event of this simulator.
    rc(unsafe { bare::event_query(api(), e) })
}

fn event_sync(e: CUevent) -> CUresult {
    // SAFETY: as above.
    rc(unsafe { bare::event_synchronize(api(), e) })
}

/// A stream handle that can cross threads (the simulator's handles are plain values).
#[derive(Clone, Copy)]
struct Handle(usize);

impl Handle {
    fn stream(self) -> CUstream {
        self.0 as CUstream
    }
}

/// Waits (bounded) until threads named `name` have entered `symbol` `n` times.
fn until_called(name: &str, symbol: &str, n: u64) {
    let deadline = Instant::now() + RETURNS_WITHIN;
    while cuda_vmm_sim::call_count_on_thread(name, symbol) < n {
        assert!(
            Instant::now() < deadline,
            "{name} never called {symbol} {n} times"
        );
        std::thread::yield_now();
    }
}

/// Spawns a thread named `name` (device 0's context current) that runs `call`
/// and sends its answer.
fn spawn_call(
    name: &str,
    call: impl FnOnce() -> CUresult + Send + 'static,
) -> (mpsc::Receiver<CUresult>, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let ctx = Ctx::open(0);
            let answer = call();
            drop(ctx);
            let _ = tx.send(answer);
        })
        .expect("spawn");
    (rx, worker)
}

in_own_process!(
    a_hold_blocks_synchronize_on_another_thread_until_dropped,
    hold_blocks_child,
    [],
    {
        let _ctx = Ctx::open(0);
        let g = granularity(0);
        let (va, h) = buffer(g);
        let s = stream(NON_BLOCKING);
        let handle = Handle(s as usize);
        ok(memset_async(va, 7, 4096, s));
        let hold = cuda_vmm_sim::hold_stream(s);
        assert!(hold.is_active());
        let (stream_rx, stream_waiter) =
            spawn_call("hold-stream-waiter", move || stream_sync(handle.stream()));
        let (ctx_rx, ctx_waiter) = spawn_call("hold-ctx-waiter", sync);
        until_called("hold-stream-waiter", "cuStreamSynchronize", 1);
        until_called("hold-ctx-waiter", "cuCtxSynchronize", 1);
        // Both waiters are inside their synchronize and stay there ...
        assert_eq!(
            stream_rx.recv_timeout(STAYS_BLOCKED_FOR),
            Err(mpsc::RecvTimeoutError::Timeout),
            "cuStreamSynchronize returned while the stream was held"
        );
        assert_eq!(
            ctx_rx.try_recv(),
            Err(mpsc::TryRecvError::Empty),
            "cuCtxSynchronize returned while a stream of the context was held"
        );
        // ... while this thread keeps calling the driver (no global lock held).
        let _ = mem_info();
        assert_eq!(stream_query(s), answers::NOT_READY);
        assert_eq!(cuda_vmm_sim::pending_work_on(0), 1);
        assert_eq!(read(va, 16), vec![0; 16], "held work ran");
        drop(hold);
        assert_eq!(stream_rx.recv_timeout(RETURNS_WITHIN), Ok(OK));
        assert_eq!(ctx_rx.recv_timeout(RETURNS_WITHIN), Ok(OK));
        stream_waiter.join().expect("waiter");
        ctx_waiter.join().expect("waiter");
        assert_eq!(cuda_vmm_sim::pending_work_on(0), 0);
        assert_eq!(read(va, 4096), vec![7; 4096]);
        ok(unmap(va, g));
        ok(release(h));
        ok(address_free(va, g));
    }
);

in_own_process!(
    queries_under_a_hold_say_not_ready_and_change_nothing,
    hold_queries_child,
    [],
    {
        let _ctx = Ctx::open(0);
        let g = granularity(0);
        let (va, h) = buffer(g);
        let (a, b) = (stream(NON_BLOCKING), stream(NON_BLOCKING));
        let (before, after) = (event(), event());
        ok(record(before, a));
        let hold = cuda_vmm_sim::hold_stream(a);
        // Recorded after the hold began: the modelled kernel precedes it, even
        // though no work is queued on `a`.
        ok(record(after, a));
        ok(event_query(before));
        ok(memset_async(va, 3, 4096, a));
        // Work on `b` that waits for `a`'s held kernel.
        ok(wait(b, after));
        ok(memset_async(va + 4096, 4, 4096, b));
        let pending = cuda_vmm_sim::pending_work_on(0);
        assert_eq!(pending, 3, "two memsets and a wait");
        // Past the query progress rule's count: a hold is never polled away.
        for _ in 0..2 * cuda_vmm_sim::DEFAULT_QUERY_PROGRESS {
            assert_eq!(stream_query(a), answers::NOT_READY);
            assert_eq!(stream_query(b), answers::NOT_READY);
            assert_eq!(event_query(after), answers::NOT_READY);
        }
        cuda_vmm_sim::advance();
        assert_eq!(cuda_vmm_sim::pending_work_on(0), pending, "held work ran");
        assert_eq!(read(va, 8192), vec![0; 8192]);
        drop(hold);
        // Without the hold, the device may progress: nothing is pending any more.
        cuda_vmm_sim::advance();
        assert_eq!(cuda_vmm_sim::pending_work_on(0), 0);
        ok(stream_query(b));
        ok(event_sync(after));
        let mut expected = vec![3; 4096];
        expected.extend([4; 4096]);
        assert_eq!(read(va, 8192), expected);
        ok(unmap(va, g));
        ok(release(h));
        ok(address_free(va, g));
    }
);

in_own_process!(
    queries_without_a_hold_change_nothing_until_the_progress_rule,
    query_progress_child,
    [(cuda_vmm_sim::ENV_QUERY_PROGRESS, "5".to_string())],
    {
        let _ctx = Ctx::open(0);
        let g = granularity(0);
        let (va, h) = buffer(g);
        let s = stream(NON_BLOCKING);
        let e = event();
        ok(memset_async(va, 9, 4096, s));
        ok(record(e, s));
        // Four answers change nothing ...
        for _ in 0..4 {
            assert_eq!(event_query(e), answers::NOT_READY);
        }
        assert_eq!(cuda_vmm_sim::pending_work_on(0), 1);
        assert_eq!(read(va, 16), vec![0; 16]);
        // ... the fifth for the same point lets the device progress.
        ok(event_query(e));
        assert_eq!(cuda_vmm_sim::pending_work_on(0), 0);
        assert_eq!(read(va, 16), vec![9; 16]);
        ok(stream_query(s));
        ok(unmap(va, g));
        ok(release(h));
        ok(address_free(va, g));
    }
);

in_own_process!(
    unmapping_under_a_holds_work_poisons_and_wakes_the_waiter,
    hold_poison_child,
    [],
    {
        let ctx = Ctx::open(0);
        let g = granularity(0);
        let (va, h) = buffer(g);
        let s = stream(NON_BLOCKING);
        let handle = Handle(s as usize);
        ok(memset_async(va, 1, 4096, s));
        let hold = cuda_vmm_sim::hold_stream(s);
        let (rx, waiter) = spawn_call("hold-poison-waiter", move || stream_sync(handle.stream()));
        until_called("hold-poison-waiter", "cuStreamSynchronize", 1);
        assert_eq!(
            rx.recv_timeout(STAYS_BLOCKED_FOR),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        // The unmap neither waits nor fails; the memset's context is poisoned
        // and its work discarded, so the waiter returns while the hold lives.
        ok(unmap(va, g));
        assert_eq!(
            rx.recv_timeout(RETURNS_WITHIN),
            Ok(answers::UNMAPPED_BY_DEVICE_WORK)
        );
        waiter.join().expect("waiter");
        assert_eq!(
            answers::UNMAPPED_BY_DEVICE_WORK,
            CUresult::CUDA_ERROR_ILLEGAL_ADDRESS
        );
        assert_eq!(sync(), answers::UNMAPPED_BY_DEVICE_WORK);
        assert_eq!(cuda_vmm_sim::pending_work_on(0), 0);
        drop(hold);
        ok(release(h));
        ok(address_free(va, g));
        // Destroying the context clears the poison.
        drop(ctx);
        let _ctx = Ctx::open(0);
        ok(sync());
    }
);

#[test]
fn a_fault_aimed_at_a_thread_name_fires_only_there() {
    let (_memory, _ctx, _g) = open_device0();
    let name = "sim-holds-targeted-worker";
    let all_before = cuda_vmm_sim::call_count_all("cuMemGetInfo");
    let named_before = cuda_vmm_sim::call_count_on_thread(name, "cuMemGetInfo");
    let mine_before = cuda_vmm_sim::call_count("cuMemGetInfo");
    let fault =
        cuda_vmm_sim::inject_fault_on_thread(name, "cuMemGetInfo", 2, CUresult::CUDA_ERROR_UNKNOWN);
    assert!(fault.is_armed());
    // This thread (another name) is neither failed nor counted against it.
    for _ in 0..3 {
        ok(out(bare::mem_get_info(api())).err().unwrap_or(OK));
    }
    assert!(!fault.fired());
    // Another thread of another name neither.
    let (rx, other) = spawn_call("sim-holds-other-worker", || {
        out(bare::mem_get_info(api())).err().unwrap_or(OK)
    });
    assert_eq!(rx.recv_timeout(RETURNS_WITHIN), Ok(OK));
    other.join().expect("thread");
    // The named thread: its first call works, its second fails.
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let ctx = Ctx::open(0);
            let answers: Vec<CUresult> = (0..3)
                .map(|_| out(bare::mem_get_info(api())).err().unwrap_or(OK))
                .collect();
            drop(ctx);
            let _ = tx.send(answers);
        })
        .expect("spawn");
    assert_eq!(
        rx.recv_timeout(RETURNS_WITHIN),
        Ok(vec![OK, CUresult::CUDA_ERROR_UNKNOWN, OK])
    );
    worker.join().expect("worker");
    assert!(fault.fired());
    assert_eq!(
        cuda_vmm_sim::call_count_on_thread(name, "cuMemGetInfo_v2"),
        named_before + 3
    );
    assert_eq!(cuda_vmm_sim::call_count("cuMemGetInfo"), mine_before + 3);
    assert!(cuda_vmm_sim::call_count_all("cuMemGetInfo") >= all_before + 7);
    assert_eq!(
        cuda_vmm_sim::call_count_on_thread("no-such-thread", "cuMemGetInfo"),
        0
    );
    assert!(!cuda_vmm_sim::inject_fault_on_thread(name, "cuNoSuchCall", 1, OK).is_armed());
}
