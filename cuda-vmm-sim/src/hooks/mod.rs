//! Test hooks: per-thread call counting and fault injection ([`faults`]), and the
//! model of `cuMemCreate`'s cost under churn ([`latency`]). The driver model
//! behaves as without them unless a test turns them on.

pub(crate) mod faults;
pub(crate) mod latency;
