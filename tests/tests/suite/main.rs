//! The workspace's integration and conformance suites, in one test binary.
//!
//! Run with `cargo test -p cuda-vmm-tests`. `CUDA_VMM_BACKEND=sim|cuda` picks the
//! backend; by default the real driver is used when it loads and has a device.

#![allow(clippy::unwrap_used, clippy::field_reassign_with_default)]

mod alloc;
mod c_abi;
mod conformance;
mod lifetime;
mod loader;
mod ptx;
mod safe;
mod sim;
