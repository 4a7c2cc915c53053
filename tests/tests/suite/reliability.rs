//! Reliability: every failure path of the allocator and the safe layer rolls back, shown by
//! fault injection on the simulator (asynchrony on), and bad input gets a clear error.
//!
//! Everything here runs on the in-process simulator (`Cuda::simulator()`), whatever backend
//! the rest of the suite uses: faults are injected per thread with
//! `cuda_vmm_sim::inject_fault`, so tests running in parallel never trip each other's faults.
//!
//! - `defects`: one regression test per defect found on failure paths (issue 13).
//! - `harness` and `sweeps`: every k-th driver call of every operation fails once;
//!   `zero_holes` does the same for the splits and merges of zero-hole blocks.
//! - `props`: random operation sequences with injected faults against host models (proptest).
//! - `concurrency`: threads on one shared pool under faults.
//! - `bad_input`: zero, misaligned, overflowing and out-of-range arguments.

use std::sync::OnceLock;

use cuda_vmm::sys::{entry, CUresult};
use cuda_vmm::{AllocationProps, Cuda, Device};

mod bad_input;
mod concurrency;
mod defects;
mod harness;
pub(crate) mod props;
mod sweeps;
mod zero_holes;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The simulator, for every test of this module.
fn cuda() -> cuda_vmm::Result<Cuda> {
    static CUDA: OnceLock<Cuda> = OnceLock::new();
    if let Some(c) = CUDA.get() {
        return Ok(c.clone());
    }
    let c = Cuda::simulator()?;
    Ok(CUDA.get_or_init(|| c).clone())
}

fn device() -> cuda_vmm::Result<Device> {
    cuda()?.device(0)
}

/// Minimum granularity of plain device memory.
fn gran(device: &Device) -> cuda_vmm::Result<usize> {
    device.min_granularity(&AllocationProps::device(device))
}

/// The error an injected fault makes the driver answer.
const FAULT: CUresult = CUresult::CUDA_ERROR_UNKNOWN;

/// Reads device memory at a raw address with `cuMemcpyDtoH`, as a kernel would see it.
fn raw_read(ptr: u64, len: usize) -> Result<Vec<u8>, String> {
    let cuda = cuda().map_err(|e| e.to_string())?;
    let f = entry!(cuda.sys().table(), cuMemcpyDtoH_v2).map_err(|e| e.to_string())?;
    cuda.device(0)
        .and_then(|d| d.make_current())
        .map_err(|e| e.to_string())?;
    let mut out = vec![0xA5u8; len];
    // SAFETY: `out` is writable for `len` bytes; the simulator validates the device address.
    let r = unsafe { f(out.as_mut_ptr().cast(), ptr, len) };
    if r == CUresult::CUDA_SUCCESS {
        Ok(out)
    } else {
        Err(format!(
            "cuMemcpyDtoH of {ptr:#x} (+{len}) failed with {}",
            r.0
        ))
    }
}

/// Deterministic, position-dependent bytes.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}
