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

pub(crate) use cuda_vmm_tests::helpers::{gran, pattern_hashed, raw_read, TestResult};

use cuda_vmm::sys::CUresult;
use cuda_vmm::{Cuda, Device};

mod bad_input;
mod concurrency;
mod defects;
mod harness;
pub(crate) mod props;
mod sweeps;
mod zero_holes;

/// The simulator, for every test of this module.
fn cuda() -> cuda_vmm::Result<Cuda> {
    static CUDA: OnceLock<Cuda> = OnceLock::new();
    if let Some(c) = CUDA.get() {
        return Ok(c.clone());
    }
    let c = Cuda::simulator()?;
    // Releases complete on the caller's thread, where the faults are injected.
    c.set_max_pending_release_bytes(0);
    Ok(CUDA.get_or_init(|| c).clone())
}

fn device() -> cuda_vmm::Result<Device> {
    cuda()?.device(0)
}

/// The error an injected fault makes the driver answer.
const FAULT: CUresult = CUresult::CUDA_ERROR_UNKNOWN;
