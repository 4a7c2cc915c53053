//! Conformance cases for the special stream handles: the null stream, `CU_STREAM_LEGACY`
//! (0x1) and `CU_STREAM_PER_THREAD` (0x2). The per-thread stream is one per context and
//! thread, ordered with the legacy stream like a blocking stream and not with other
//! threads' per-thread streams. A long memset (2 GiB, queued twice: milliseconds of GPU
//! time) keeps the first operation pending while the others are checked.

use cuda_vmm_sys::*;

use super::cases::*;
use super::raw::*;

const BIG: usize = 2 << 30;
const LEGACY: CUstream = 0x1 as CUstream;
const PER_THREAD: CUstream = 0x2 as CUstream;
const NON_BLOCKING: u32 = 1;

/// Two memsets of the big buffer on `s`: the long operation.
fn keep_busy(bp: CUdeviceptr, s: CUstream) -> Result<(), String> {
    ok("cuMemsetD8Async", memset_d8_async(bp, 1, BIG, s))?;
    ok("cuMemsetD8Async", memset_d8_async(bp, 2, BIG, s))
}

/// Query, synchronise and destroy each special handle while idle.
pub fn special_streams_idle(_: &Env) -> CaseResult {
    let mut out = Vec::new();
    for (label, s) in [
        ("null", core::ptr::null_mut()),
        ("legacy", LEGACY),
        ("per_thread", PER_THREAD),
    ] {
        out.push(format!(
            "{label}:query={} sync={} destroy={}",
            name(stream_query(s)),
            name(stream_synchronize(s)),
            name(stream_destroy(s))
        ));
    }
    Ok(out.join(" "))
}

/// Work on this thread's per-thread stream; another thread's per-thread stream is idle.
pub fn per_thread_stream_is_per_thread(e: &Env) -> CaseResult {
    let (bp, bh) = mapped_rw(e, BIG)?;
    // Enough work that it is still running after the other thread's query (once was not,
    // on a loaded H200).
    for _ in 0..4 {
        keep_busy(bp, PER_THREAD)?;
    }
    let ctx = e.ctx as usize;
    let other = std::thread::spawn(move || {
        let set = ctx_set_current(ctx as CUcontext);
        (set, stream_query(PER_THREAD))
    })
    .join()
    .map_err(|_| "the other thread panicked".to_string())?;
    let own = stream_query(PER_THREAD);
    let sync = stream_synchronize(PER_THREAD);
    cleanup(bp, BIG, bh);
    Ok(format!(
        "other_set={} other_query={} own_query={} own_sync={}",
        name(other.0),
        name(other.1),
        name(own),
        name(sync)
    ))
}

/// Work queued on the legacy stream waits for the per-thread stream's earlier work.
pub fn legacy_waits_for_per_thread(e: &Env) -> CaseResult {
    let (bp, bh) = mapped_rw(e, BIG)?;
    let (tp, th) = mapped_rw(e, e.g)?;
    keep_busy(bp, PER_THREAD)?;
    ok("cuMemsetD8Async", memset_d8_async(tp, 3, e.g, LEGACY))?;
    let legacy_query = stream_query(LEGACY);
    let legacy_sync = stream_synchronize(LEGACY);
    let per_thread_after = stream_query(PER_THREAD);
    cleanup(tp, e.g, th);
    cleanup(bp, BIG, bh);
    Ok(format!(
        "legacy_query={} legacy_sync={} per_thread_after={}",
        name(legacy_query),
        name(legacy_sync),
        name(per_thread_after)
    ))
}

/// Work on the per-thread stream waits for the legacy stream's earlier work.
pub fn per_thread_waits_for_legacy(e: &Env) -> CaseResult {
    let (bp, bh) = mapped_rw(e, BIG)?;
    let (tp, th) = mapped_rw(e, e.g)?;
    keep_busy(bp, LEGACY)?;
    ok("cuMemsetD8Async", memset_d8_async(tp, 3, e.g, PER_THREAD))?;
    let query = stream_query(PER_THREAD);
    let sync = stream_synchronize(PER_THREAD);
    let legacy_after = stream_query(LEGACY);
    cleanup(tp, e.g, th);
    cleanup(bp, BIG, bh);
    Ok(format!(
        "per_thread_query={} per_thread_sync={} legacy_after={}",
        name(query),
        name(sync),
        name(legacy_after)
    ))
}

/// A non-blocking stream does not wait for the per-thread stream.
pub fn non_blocking_ignores_per_thread(e: &Env) -> CaseResult {
    let (bp, bh) = mapped_rw(e, BIG)?;
    let (tp, th) = mapped_rw(e, e.g)?;
    let (rc, s) = stream_create(NON_BLOCKING);
    ok("cuStreamCreate", rc)?;
    keep_busy(bp, PER_THREAD)?;
    ok("cuMemsetD8Async", memset_d8_async(tp, 3, e.g, s))?;
    let sync = stream_synchronize(s);
    let per_thread = stream_query(PER_THREAD);
    let per_thread_sync = stream_synchronize(PER_THREAD);
    stream_destroy(s);
    cleanup(tp, e.g, th);
    cleanup(bp, BIG, bh);
    Ok(format!(
        "non_blocking_sync={} per_thread_query={} per_thread_sync={}",
        name(sync),
        name(per_thread),
        name(per_thread_sync)
    ))
}
