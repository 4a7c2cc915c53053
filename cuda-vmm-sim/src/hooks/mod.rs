//! Test hooks: call counting and fault injection ([`faults`]), holds of streams and
//! device progress ([`holds`]), streams marked as capturing ([`capture`]), and the
//! model of `cuMemCreate`'s cost under churn ([`latency`]). The driver model
//! behaves as without them unless a test turns them on.

pub(crate) mod capture;
pub(crate) mod faults;
pub(crate) mod holds;
pub(crate) mod latency;
pub(crate) mod targeted;
