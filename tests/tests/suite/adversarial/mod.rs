//! Adversarial review of issue 17's fixes, through the public API only: copies through
//! the staging buffers under injected faults, stream identity and unmap policies, and
//! refusals that must change nothing. Each test's doc comment names the class (the
//! issue's numbering) and the defect it guards.

use cuda_vmm::{
    AccessFlags, Allocation, AllocationProps, Backend, Device, GranularityKind, Mapping,
    Reservation, ReserveOptions,
};

pub(crate) use cuda_vmm_tests::helpers::{pattern_blocks, TestResult};

mod copies;
mod frees;
mod refusals;
mod streams;

pub(crate) const MIB: usize = 1 << 20;

/// Whether the suite runs on the simulator; prints why a test skips otherwise.
pub(crate) fn simulator_or_skip(what: &str) -> cuda_vmm::Result<bool> {
    if crate::cuda()?.backend() == Backend::Simulator {
        Ok(true)
    } else {
        eprintln!("skipped: {what} needs the simulator's fault injection");
        Ok(false)
    }
}

/// A reservation of at least `bytes` on `device`, mapped with one allocation and
/// read-write for `device`.
pub(crate) fn mapped(device: &Device, bytes: usize) -> cuda_vmm::Result<(Reservation, Mapping)> {
    let props = AllocationProps::device(device);
    let g = device.granularity(&props, GranularityKind::Minimum)?;
    let size = bytes.max(1).div_ceil(g) * g;
    let r = Reservation::new(device, size, ReserveOptions::default())?;
    let m = r.map(0, &Allocation::new(device, size, &props)?, 0, size)?;
    r.set_access(0, size, &[(device, AccessFlags::ReadWrite)])?;
    Ok((r, m))
}

/// The driver entry points a host copy may call (counted with
/// `cuda_vmm_sim::call_count` to find every call a fault can be injected at).
pub(crate) const COPY_CALLS: &[&str] = &[
    "cuCtxGetCurrent",
    "cuCtxSetCurrent",
    "cuCtxPushCurrent_v2",
    "cuCtxPopCurrent_v2",
    "cuStreamCreate",
    "cuStreamWaitEvent",
    "cuStreamSynchronize",
    "cuStreamQuery",
    "cuEventCreate",
    "cuEventRecord",
    "cuEventSynchronize",
    "cuEventQuery",
    "cuMemHostAlloc",
    "cuMemcpyHtoDAsync_v2",
    "cuMemcpyDtoHAsync_v2",
    "cuMemcpyHtoD_v2",
    "cuMemcpyDtoH_v2",
];

/// The driver entry points of mapping changes, besides [`COPY_CALLS`].
pub(crate) const MAPPING_CALLS: &[&str] = &[
    "cuCtxSynchronize",
    "cuMemCreate",
    "cuMemRelease",
    "cuMemMap",
    "cuMemUnmap",
    "cuMemSetAccess",
    "cuMemcpyDtoDAsync_v2",
    "cuMemsetD8Async",
];

/// Every `(symbol, nth)` `op` calls on this thread, in [`COPY_CALLS`] order.
pub(crate) fn calls_made(op: impl FnOnce()) -> Vec<(&'static str, u64)> {
    calls_made_of(COPY_CALLS, op)
}

/// Every `(symbol, nth)` of `symbols` that `op` calls on this thread, in order.
pub(crate) fn calls_made_of(
    symbols: &[&'static str],
    op: impl FnOnce(),
) -> Vec<(&'static str, u64)> {
    let before: Vec<u64> = symbols
        .iter()
        .map(|s| cuda_vmm_sim::call_count(s))
        .collect();
    op();
    let mut calls = Vec::new();
    for (s, b) in symbols.iter().zip(before) {
        for nth in 1..=cuda_vmm_sim::call_count(s) - b {
            calls.push((*s, nth));
        }
    }
    calls
}

/// Whether `e` is the driver error injected at `symbol`.
pub(crate) fn is_injected(e: &cuda_vmm::Error, symbol: &str) -> bool {
    matches!(e, cuda_vmm::Error::Driver { call, .. } if *call == symbol)
}

/// [`is_injected`] for the allocator crate's errors.
pub(crate) fn is_injected_alloc(e: &cuda_vmm_alloc::Error, symbol: &str) -> bool {
    matches!(e, cuda_vmm_alloc::Error::Vmm(e) if is_injected(e, symbol))
}

/// Makes the next `n` `cuEventQuery` calls of this thread answer `CUDA_ERROR_NOT_READY`
/// whatever the work's state: models copies still running on a real device even where
/// the simulator already completed them (a synchronisation of another stream or test),
/// and keeps the query progress rule (`cuda_vmm_sim::SimConfig::query_progress`) from
/// completing them (an injected answer does not reach the simulator). Synchronisations
/// still complete the work; `cuda_vmm_sim::hold_stream` keeps them from it too.
pub(crate) fn queries_not_ready(n: u64) -> Vec<cuda_vmm_sim::FaultGuard> {
    (1..=n)
        .map(|nth| {
            cuda_vmm_sim::inject_fault(
                "cuEventQuery",
                nth,
                cuda_vmm_sys::CUresult::CUDA_ERROR_NOT_READY,
            )
        })
        .collect()
}
