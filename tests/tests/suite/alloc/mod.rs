//! The allocator (`cuda-vmm-alloc`); see [`buffer`].

mod buffer;

pub(crate) use buffer::{counts, delta, fails, on_simulator, runs};
