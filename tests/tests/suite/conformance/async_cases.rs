//! Conformance cases for device asynchrony: streams, events, the context
//! stack, pinned host memory, async copies, and the unmap-with-work-in-flight
//! race that poisons the context.
//!
//! The race cases are written to be deterministic on a real GPU too: a long
//! operation (a 2 GiB memset, about 1 ms of GPU time) is queued first, so the
//! operation under test is certainly still pending when the target is
//! unmapped right after it is issued.

use core::ffi::c_void;

use cuda_vmm_sys::*;

use super::cases::*;
use super::raw::*;

const BIG: usize = 2 << 30;
const LEGACY_COPY: usize = 64 << 20;
const NON_BLOCKING: u32 = 1;

fn stream(flags: u32) -> Result<CUstream, String> {
    let (rc, s) = stream_create(flags);
    ok("cuStreamCreate", rc)?;
    Ok(s)
}

// ---- streams and events ---------------------------------------------------

pub fn stream_idle_lifecycle(_: &Env) -> CaseResult {
    idle_stream_lifecycle(0)
}

/// Create a stream with `flags`, query, synchronize and destroy it, idle throughout.
fn idle_stream_lifecycle(flags: u32) -> CaseResult {
    let (create, s) = stream_create(flags);
    let query = stream_query(s);
    let sync = stream_synchronize(s);
    let destroy = stream_destroy(s);
    Ok(format!(
        "create={} query={} sync={} destroy={}",
        name(create),
        name(query),
        name(sync),
        name(destroy)
    ))
}

pub fn stream_non_blocking_idle_lifecycle(_: &Env) -> CaseResult {
    idle_stream_lifecycle(NON_BLOCKING)
}

pub fn stream_create_bad_flags(_: &Env) -> CaseResult {
    let (rc, s) = stream_create(0x100);
    if rc == CUresult::CUDA_SUCCESS {
        stream_destroy(s);
    }
    Ok(name(rc))
}

pub fn event_create_bad_flags(_: &Env) -> CaseResult {
    // INTERPROCESS needs DISABLE_TIMING; 0x100 is no flag at all.
    let (a, ea) = event_create(4);
    let (b, eb) = event_create(0x100);
    for (rc, e) in [(a, ea), (b, eb)] {
        if rc == CUresult::CUDA_SUCCESS {
            event_destroy(e);
        }
    }
    Ok(format!(
        "interprocess_alone={} unknown_bit={}",
        name(a),
        name(b)
    ))
}

pub fn event_never_recorded(_: &Env) -> CaseResult {
    let (rc, e) = event_create(0);
    ok("cuEventCreate", rc)?;
    let query = event_query(e);
    let sync = event_synchronize(e);
    let destroy = event_destroy(e);
    Ok(format!(
        "query={} sync={} destroy={}",
        name(query),
        name(sync),
        name(destroy)
    ))
}

// ---- context stack --------------------------------------------------------

pub fn ctx_push_pop(e: &Env) -> CaseResult {
    let push = ctx_push(e.ctx);
    let (pop, popped) = ctx_pop();
    let (_, current) = ctx_get_current();
    Ok(format!(
        "push={} pop={} popped_same={} still_current={}",
        name(push),
        name(pop),
        popped == e.ctx,
        current == e.ctx
    ))
}

pub fn ctx_pop_empty_stack(e: &Env) -> CaseResult {
    let (first, popped) = ctx_pop();
    let (second, _) = ctx_pop();
    let (_, current) = ctx_get_current();
    ok("cuCtxSetCurrent", ctx_set_current(e.ctx))?;
    Ok(format!(
        "first={} popped_same={} second={} current_null={}",
        name(first),
        popped == e.ctx,
        name(second),
        current.is_null()
    ))
}

pub fn ctx_set_current_null_then_pop(e: &Env) -> CaseResult {
    let set = ctx_set_current(core::ptr::null_mut());
    let (pop, _) = ctx_pop();
    ok("cuCtxSetCurrent", ctx_set_current(e.ctx))?;
    Ok(format!("set_null={} pop={}", name(set), name(pop)))
}

// ---- pinned host memory ---------------------------------------------------

pub fn host_alloc_zero_size(_: &Env) -> CaseResult {
    let (rc, p) = host_alloc(0);
    if rc == CUresult::CUDA_SUCCESS {
        free_host(p);
    }
    Ok(name(rc))
}

pub fn free_host_bogus_pointer(_: &Env) -> CaseResult {
    // A live host address that cuMemHostAlloc did not return.
    let mut local = [0u8; 64];
    Ok(name(free_host(local.as_mut_ptr().cast::<c_void>())))
}

// ---- async copies: argument checks ----------------------------------------

pub fn async_copy_to_unmapped(e: &Env) -> CaseResult {
    let p = reserved(e.g)?;
    let s = stream(0)?;
    let data = pattern(4096, 1);
    // SAFETY: `data` outlives the stream synchronisation below.
    let rc = unsafe { htod_async(p, data.as_ptr().cast(), data.len(), s) };
    let sync = stream_synchronize(s);
    stream_destroy(s);
    address_free(p, e.g);
    Ok(format!("{} sync={}", name(rc), name(sync)))
}

pub fn async_copy_to_no_access(e: &Env) -> CaseResult {
    let (p, h) = mapped(e, e.g)?;
    let s = stream(0)?;
    let data = pattern(4096, 1);
    // SAFETY: `data` outlives the stream synchronisation below.
    let rc = unsafe { htod_async(p, data.as_ptr().cast(), data.len(), s) };
    let sync = stream_synchronize(s);
    stream_destroy(s);
    cleanup(p, e.g, h);
    Ok(format!("{} sync={}", name(rc), name(sync)))
}

// ---- the race: unmap with work in flight ----------------------------------

/// The operation under test, issued on `s` into the target range.
enum Pending {
    HtodPageable,
    HtodPinned,
    Dtod,
    Memset,
}

/// Reports, after the target is unmapped: the unmap, a stream sync, a
/// context sync and `cuMemGetInfo`.
fn after_unmap(unmap_rc: CUresult, s: CUstream) -> String {
    let sync = stream_synchronize(s);
    let ctx_sync = ctx_synchronize();
    let (info, _, _) = mem_get_info();
    format!(
        "unmap={} stream_sync={} ctx_sync={} mem_get_info={}",
        name(unmap_rc),
        name(sync),
        name(ctx_sync),
        name(info)
    )
}

/// The big buffer, mapped read-write: the long operation's target.
fn big(e: &Env) -> Result<(CUdeviceptr, CUmemGenericAllocationHandle), String> {
    mapped_rw(e, BIG)
}

fn race_on_user_stream(e: &Env, kind: Pending) -> CaseResult {
    let (bp, bh) = big(e)?;
    let (tp, th) = mapped_rw(e, e.g)?;
    let (sp, sh) = mapped_rw(e, e.g)?;
    let s = stream(0)?;
    let pageable = pattern(e.g, 3);
    let (rc, pinned_buf) = host_alloc(e.g);
    ok("cuMemHostAlloc", rc)?;
    ok("cuMemsetD8Async", memset_d8_async(bp, 0, BIG, s))?;
    let issued = match kind {
        // SAFETY: both host buffers live until the end of the case.
        Pending::HtodPageable => unsafe { htod_async(tp, pageable.as_ptr().cast(), e.g, s) },
        // SAFETY: as above.
        Pending::HtodPinned => unsafe { htod_async(tp, pinned_buf, e.g, s) },
        Pending::Dtod => dtod_async(tp, sp, e.g, s),
        Pending::Memset => memset_d8_async(tp, 7, e.g, s),
    };
    ok("the operation under test", issued)?;
    let unmap_rc = unmap(tp, e.g);
    let out = after_unmap(unmap_rc, s);
    stream_destroy(s);
    free_host(pinned_buf);
    release(th);
    address_free(tp, e.g);
    cleanup(sp, e.g, sh);
    cleanup(bp, BIG, bh);
    Ok(out)
}

pub fn race_htod_async_pageable(e: &Env) -> CaseResult {
    race_on_user_stream(e, Pending::HtodPageable)
}

pub fn race_htod_async_pinned(e: &Env) -> CaseResult {
    race_on_user_stream(e, Pending::HtodPinned)
}

pub fn race_dtod_async(e: &Env) -> CaseResult {
    race_on_user_stream(e, Pending::Dtod)
}

pub fn race_memset_async(e: &Env) -> CaseResult {
    race_on_user_stream(e, Pending::Memset)
}

pub fn race_htod_sync_legacy(e: &Env) -> CaseResult {
    let (bp, bh) = big(e)?;
    let (tp, th) = mapped_rw(e, LEGACY_COPY)?;
    let data = pattern(LEGACY_COPY, 5);
    ok("cuMemsetD8", memset_d8(bp, 0, BIG))?;
    ok("cuMemcpyHtoD", htod(tp, &data))?;
    let unmap_rc = unmap(tp, LEGACY_COPY);
    let out = after_unmap(unmap_rc, core::ptr::null_mut());
    release(th);
    address_free(tp, LEGACY_COPY);
    cleanup(bp, BIG, bh);
    Ok(out)
}

/// Control: the same work, synchronised before the unmap, is clean.
pub fn race_control_stream_synced(e: &Env) -> CaseResult {
    let (bp, bh) = big(e)?;
    let (tp, th) = mapped_rw(e, e.g)?;
    let s = stream(0)?;
    let data = pattern(e.g, 9);
    ok("cuMemsetD8Async", memset_d8_async(bp, 0, BIG, s))?;
    // SAFETY: `data` outlives the synchronisation below.
    ok("cuMemcpyHtoDAsync", unsafe {
        htod_async(tp, data.as_ptr().cast(), e.g, s)
    })?;
    let sync = stream_synchronize(s);
    let mut back = vec![0u8; e.g];
    let read = dtoh(&mut back, tp);
    let unmap_rc = unmap(tp, e.g);
    let after = after_unmap(unmap_rc, s);
    stream_destroy(s);
    release(th);
    address_free(tp, e.g);
    cleanup(bp, BIG, bh);
    Ok(format!(
        "sync={} read={} data_ok={} {after}",
        name(sync),
        name(read),
        back == data
    ))
}

/// Control: the legacy-stream copy, then `cuCtxSynchronize`, then unmap.
pub fn race_control_legacy_synced(e: &Env) -> CaseResult {
    let (bp, bh) = big(e)?;
    let (tp, th) = mapped_rw(e, LEGACY_COPY)?;
    let data = pattern(LEGACY_COPY, 11);
    ok("cuMemsetD8", memset_d8(bp, 0, BIG))?;
    ok("cuMemcpyHtoD", htod(tp, &data))?;
    let sync = ctx_synchronize();
    let mut back = vec![0u8; LEGACY_COPY];
    let read = dtoh(&mut back, tp);
    let unmap_rc = unmap(tp, LEGACY_COPY);
    let after = after_unmap(unmap_rc, core::ptr::null_mut());
    release(th);
    address_free(tp, LEGACY_COPY);
    cleanup(bp, BIG, bh);
    Ok(format!(
        "sync={} read={} data_ok={} {after}",
        name(sync),
        name(read),
        back == data
    ))
}
