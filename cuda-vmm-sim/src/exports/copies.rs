//! Copies and sets, synchronous and asynchronous (see [`work`](crate::model::work)).
//!
//! Device ranges are checked when the call is made (same answers for the
//! synchronous and asynchronous forms); the bytes move when the work runs.
//! As the CUDA documentation defines them: `cuMemcpyHtoD_v2` from pageable
//! memory completes the legacy stream's earlier work, snapshots the host
//! bytes and queues the write (it lands at a later synchronisation point);
//! from pinned (`cuMemHostAlloc`) memory it completes inside the call.
//! `cuMemcpyDtoH_v2` returns with the data landed. `cuMemcpyDtoD_v2` and the
//! memsets are queued on the legacy stream.
#![allow(non_snake_case, clippy::missing_safety_doc)]

use core::ffi::{c_uchar, c_uint, c_void};

use cuda_vmm_sys::{CUdeviceptr, CUresult, CUstream};

use super::{call, zero_bytes};
use crate::model::copies::Span;
use crate::model::state::{self, DriverResult, Sim, Waitable};
use crate::model::symbols::sym;
use crate::model::work::{legacy, Action, StreamId};
use crate::model::{answers, contexts};

/// `[addr, addr + len)` (the length was checked by `resolve`).
fn range(addr: CUdeviceptr, len: usize) -> (u64, u64) {
    (addr, addr.saturating_add(len as u64))
}

/// The pinned host block range holding `len` bytes at `ptr`, if any.
fn pinned(sim: &Sim, ptr: usize, len: usize) -> Option<(usize, usize)> {
    sim.work
        .is_pinned(ptr, len)
        .then(|| (ptr, ptr.saturating_add(len)))
}

/// Host to device on `stream` of `device`. `sync`: the synchronous call's
/// semantics (pinned: completes now; pageable: completes earlier legacy work first).
///
/// # Safety
/// `src` must be readable for `n` bytes (or unmapped) until the work completes.
unsafe fn htod(
    sim: &mut Sim,
    stream: StreamId,
    device: usize,
    dst: CUdeviceptr,
    src: *const c_void,
    n: usize,
    sync: bool,
) -> Waitable<()> {
    let span = sim.resolve(dst, n as u64, device, true)?;
    let ranges = vec![range(dst, n)];
    if let Some(host) = pinned(sim, src as usize, n) {
        let action = Action::FromHost {
            dst: span,
            src: src as usize,
        };
        return if sync {
            sim.submit_and_wait(stream, action, ranges, Some(host))
        } else {
            Ok(sim.submit(stream, action, ranges, Some(host))?)
        };
    }
    if sync {
        sim.drain(stream)?;
        sim.healthy(device)?;
    }
    // SAFETY: the caller's contract; unmapped host pages are reported.
    let snapshot = unsafe { Span::snapshot(src.cast(), n as u64) }?;
    let action = Action::Copy {
        dst: span,
        src: snapshot,
    };
    Ok(sim.submit(stream, action, ranges, None)?)
}

/// Device to host on `stream` of `device`; `sync` completes it in the call.
fn dtoh(
    sim: &mut Sim,
    stream: StreamId,
    device: usize,
    dst: *mut c_void,
    src: CUdeviceptr,
    n: usize,
    sync: bool,
) -> Waitable<()> {
    let span = sim.resolve(src, n as u64, device, false)?;
    let host = pinned(sim, dst as usize, n);
    let action = Action::ToHost {
        src: span,
        dst: dst as usize,
    };
    let ranges = vec![range(src, n)];
    if sync {
        sim.submit_and_wait(stream, action, ranges, host)
    } else {
        Ok(sim.submit(stream, action, ranges, host)?)
    }
}

fn dtod(
    sim: &mut Sim,
    stream: StreamId,
    device: usize,
    dst: CUdeviceptr,
    src: CUdeviceptr,
    n: usize,
) -> DriverResult<()> {
    let from = sim.resolve(src, n as u64, device, false)?;
    let to = sim.resolve(dst, n as u64, device, true)?;
    let action = Action::Copy { dst: to, src: from };
    sim.submit(stream, action, vec![range(src, n), range(dst, n)], None)
}

fn memset(
    sim: &mut Sim,
    stream: StreamId,
    device: usize,
    dst: CUdeviceptr,
    pattern: &[u8],
    count: usize,
) -> DriverResult<()> {
    if pattern.len() > 1 && dst % pattern.len() as u64 != 0 {
        return Err(answers::MEMSET_MISALIGNED);
    }
    let bytes = (count as u64)
        .checked_mul(pattern.len() as u64)
        .ok_or(answers::COPY_OVERFLOW)?;
    let span = sim.resolve(dst, bytes, device, true)?;
    let action = Action::Fill {
        dst: span,
        pattern: pattern.to_vec(),
    };
    let ranges = vec![(dst, dst.saturating_add(bytes))];
    sim.submit(stream, action, ranges, None)
}

/// Runs `f` with the current context's device and its legacy stream (again,
/// after waiting, when it reports held work in the way).
fn on_legacy(mut f: impl FnMut(&mut Sim, StreamId, usize) -> Waitable<()>) -> DriverResult<()> {
    state::with_waiting(|sim| {
        let d = contexts::current_device(sim)?;
        f(sim, legacy(d), d)
    })
}

/// Runs `f` with the stream `hStream` names and its device (again, after
/// waiting, when it reports held work in the way).
fn on_stream(
    hStream: CUstream,
    mut f: impl FnMut(&mut Sim, StreamId, usize) -> Waitable<()>,
) -> DriverResult<()> {
    state::with_waiting(|sim| {
        let (s, d) = sim.stream_of(hStream)?;
        f(sim, s, d)
    })
}

/// `cuMemcpyHtoD_v2`: from pageable memory, queued on the legacy stream after
/// completing its earlier work; from pinned memory, completed in the call.
#[no_mangle]
pub unsafe extern "C" fn cuMemcpyHtoD_v2(
    dstDevice: CUdeviceptr,
    srcHost: *const c_void,
    ByteCount: usize,
) -> CUresult {
    call(const { sym("cuMemcpyHtoD_v2") }, || {
        if ByteCount == 0 {
            return zero_bytes();
        }
        if srcHost.is_null() {
            return Err(answers::NULL_POINTER);
        }
        on_legacy(|sim, s, d| {
            // SAFETY: `srcHost` holds `ByteCount` readable bytes (entry-point contract).
            unsafe { htod(sim, s, d, dstDevice, srcHost, ByteCount, true) }
        })
    })
}

/// `cuMemcpyDtoH_v2`: completes the legacy stream's earlier work, then copies.
#[no_mangle]
pub unsafe extern "C" fn cuMemcpyDtoH_v2(
    dstHost: *mut c_void,
    srcDevice: CUdeviceptr,
    ByteCount: usize,
) -> CUresult {
    call(const { sym("cuMemcpyDtoH_v2") }, || {
        if ByteCount == 0 {
            return zero_bytes();
        }
        if dstHost.is_null() {
            return Err(answers::NULL_POINTER);
        }
        on_legacy(|sim, s, d| dtoh(sim, s, d, dstHost, srcDevice, ByteCount, true))
    })
}

/// `cuMemcpyDtoD_v2`: queued on the legacy stream.
#[no_mangle]
pub unsafe extern "C" fn cuMemcpyDtoD_v2(
    dstDevice: CUdeviceptr,
    srcDevice: CUdeviceptr,
    ByteCount: usize,
) -> CUresult {
    call(const { sym("cuMemcpyDtoD_v2") }, || {
        if ByteCount == 0 {
            return zero_bytes();
        }
        on_legacy(|sim, s, d| Ok(dtod(sim, s, d, dstDevice, srcDevice, ByteCount)?))
    })
}

/// `cuMemsetD8_v2`: queued on the legacy stream.
#[no_mangle]
pub unsafe extern "C" fn cuMemsetD8_v2(dstDevice: CUdeviceptr, uc: c_uchar, N: usize) -> CUresult {
    call(const { sym("cuMemsetD8_v2") }, || {
        if N == 0 {
            return zero_bytes();
        }
        on_legacy(|sim, s, d| Ok(memset(sim, s, d, dstDevice, &[uc], N)?))
    })
}

/// `cuMemsetD32_v2`: `N` 32-bit words; the address must be 4-byte aligned.
/// Queued on the legacy stream.
#[no_mangle]
pub unsafe extern "C" fn cuMemsetD32_v2(dstDevice: CUdeviceptr, ui: c_uint, N: usize) -> CUresult {
    call(const { sym("cuMemsetD32_v2") }, || {
        if N == 0 {
            return zero_bytes();
        }
        on_legacy(|sim, s, d| Ok(memset(sim, s, d, dstDevice, &ui.to_ne_bytes(), N)?))
    })
}

/// `cuMemcpyHtoDAsync_v2`: pageable bytes are snapshotted now; pinned bytes
/// are read when the copy runs.
#[no_mangle]
pub unsafe extern "C" fn cuMemcpyHtoDAsync_v2(
    dstDevice: CUdeviceptr,
    srcHost: *const c_void,
    ByteCount: usize,
    hStream: CUstream,
) -> CUresult {
    call(const { sym("cuMemcpyHtoDAsync_v2") }, || {
        if ByteCount == 0 {
            return zero_bytes();
        }
        if srcHost.is_null() {
            return Err(answers::NULL_POINTER);
        }
        on_stream(hStream, |sim, s, d| {
            // SAFETY: `srcHost` holds `ByteCount` readable bytes until the copy
            // completes (entry-point contract).
            unsafe { htod(sim, s, d, dstDevice, srcHost, ByteCount, false) }
        })
    })
}

/// `cuMemcpyDtoHAsync_v2`: the host buffer is written when the copy runs.
#[no_mangle]
pub unsafe extern "C" fn cuMemcpyDtoHAsync_v2(
    dstHost: *mut c_void,
    srcDevice: CUdeviceptr,
    ByteCount: usize,
    hStream: CUstream,
) -> CUresult {
    call(const { sym("cuMemcpyDtoHAsync_v2") }, || {
        if ByteCount == 0 {
            return zero_bytes();
        }
        if dstHost.is_null() {
            return Err(answers::NULL_POINTER);
        }
        on_stream(hStream, |sim, s, d| {
            dtoh(sim, s, d, dstHost, srcDevice, ByteCount, false)
        })
    })
}

/// `cuMemcpyDtoDAsync_v2`.
#[no_mangle]
pub unsafe extern "C" fn cuMemcpyDtoDAsync_v2(
    dstDevice: CUdeviceptr,
    srcDevice: CUdeviceptr,
    ByteCount: usize,
    hStream: CUstream,
) -> CUresult {
    call(const { sym("cuMemcpyDtoDAsync_v2") }, || {
        if ByteCount == 0 {
            return zero_bytes();
        }
        on_stream(hStream, |sim, s, d| {
            Ok(dtod(sim, s, d, dstDevice, srcDevice, ByteCount)?)
        })
    })
}

/// `cuMemsetD8Async`.
#[no_mangle]
pub unsafe extern "C" fn cuMemsetD8Async(
    dstDevice: CUdeviceptr,
    uc: c_uchar,
    N: usize,
    hStream: CUstream,
) -> CUresult {
    call(const { sym("cuMemsetD8Async") }, || {
        if N == 0 {
            return zero_bytes();
        }
        on_stream(hStream, |sim, s, d| {
            Ok(memset(sim, s, d, dstDevice, &[uc], N)?)
        })
    })
}

/// `cuMemsetD32Async`: the address must be 4-byte aligned.
#[no_mangle]
pub unsafe extern "C" fn cuMemsetD32Async(
    dstDevice: CUdeviceptr,
    ui: c_uint,
    N: usize,
    hStream: CUstream,
) -> CUresult {
    call(const { sym("cuMemsetD32Async") }, || {
        if N == 0 {
            return zero_bytes();
        }
        on_stream(hStream, |sim, s, d| {
            Ok(memset(sim, s, d, dstDevice, &ui.to_ne_bytes(), N)?)
        })
    })
}
