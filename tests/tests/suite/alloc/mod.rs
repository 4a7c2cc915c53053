//! The allocator (`cuda-vmm-alloc`): growable buffers, sparse arrays and the chunk pool, on
//! whichever backend `Cuda::new()` picks.
//!
//! Contents are checked byte for byte against host copies. Driver-call counts come from the
//! containers' own `stats()` and, on the simulator, from its per-thread call counters, which
//! other tests running in parallel cannot disturb. Fault-injection tests run on the simulator
//! only. Free-memory checks (`memory_info`) are simulator-only and retried, because tests in
//! other modules allocate concurrently on the same device.

use cuda_vmm::sys::{entry, CUresult};
use cuda_vmm::{AllocationProps, Cuda, Device, HandleTypes};
use cuda_vmm_alloc::{
    BufferConfig, ChunkPool, Error, GrowableBuffer, GrowthPolicy, HoleBehavior, PoolConfig,
    PoolStats, SparseArray, SparseConfig,
};
use cuda_vmm_sim::{call_count, inject_fault};

/// The backend under test, printed once per run.
use crate::{cuda, device, on_simulator};
use cuda_vmm_tests::helpers::{gran, raw_read, words_added, TestResult};

mod buffer;
mod pool;
mod sparse;

pub(crate) use sparse::runs;

/// The error of a call expected to fail.
#[track_caller]
pub(crate) fn fails<T>(r: cuda_vmm_alloc::Result<T>) -> Error {
    match r {
        Ok(_) => panic!("expected an error, the call succeeded"),
        Err(e) => e,
    }
}

/// Per-thread simulator call counts of the named entry points (zeros on the real driver).
pub(crate) fn counts(symbols: &[&str]) -> Vec<u64> {
    symbols.iter().map(|s| call_count(s)).collect()
}

pub(crate) fn delta(before: &[u64], after: &[u64]) -> Vec<u64> {
    before.iter().zip(after).map(|(b, a)| a - b).collect()
}

/// Writes host bytes to a raw device address with `cuMemcpyHtoD`; the raw result code.
pub(crate) fn raw_write(cuda: &Cuda, ptr: u64, data: &[u8]) -> Result<CUresult, String> {
    let f = entry!(cuda.sys().table(), cuMemcpyHtoD_v2).map_err(|e| e.to_string())?;
    cuda.device(0)
        .and_then(|d| d.make_current())
        .map_err(|e| e.to_string())?;
    // SAFETY: `data` is readable for its length; the driver validates the device address.
    Ok(unsafe { f(ptr, data.as_ptr().cast(), data.len()) })
}

/// A policy that makes many small chunks, to exercise chunk boundaries.
fn small_chunks(g: usize) -> GrowthPolicy {
    GrowthPolicy {
        min_chunk: g,
        max_chunk: g,
        factor: 0.5,
        max_allocation: 0,
        churn_allocation: 0,
    }
}

/// A growable buffer of at most `max_capacity` elements that grows by `policy`; every other
/// setting is the default.
fn buffer_with<T: cuda_vmm_alloc::DevicePod>(
    d: &Device,
    max_capacity: usize,
    policy: GrowthPolicy,
) -> cuda_vmm_alloc::Result<GrowableBuffer<T>> {
    GrowableBuffer::new(
        d,
        BufferConfig {
            max_capacity: Some(max_capacity),
            policy,
            ..BufferConfig::default()
        },
    )
}
