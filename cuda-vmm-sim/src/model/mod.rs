//! The driver model: what the simulated driver knows and decides — devices,
//! contexts, reservations, allocations, mappings, streams and their queued work,
//! copies, the classic allocator, stream-ordered pools, the answers it gives, and its configuration.
//!
//! It reaches the operating system only through [`crate::os`], and the test
//! hooks only through [`crate::hooks`].

pub(crate) mod allocations;
pub mod answers;
pub(crate) mod classic;
pub(crate) mod config;
pub(crate) mod contexts;
pub(crate) mod copies;
pub(crate) mod devices;
pub(crate) mod error_strings;
pub(crate) mod holds;
#[cfg(test)]
mod host_tests;
pub(crate) mod mappings;
pub(crate) mod pools;
#[cfg(test)]
mod pools_tests;
pub(crate) mod procs;
pub(crate) mod reservations;
pub(crate) mod state;
pub(crate) mod streams;
pub(crate) mod symbols;
#[cfg(test)]
mod tests;
pub(crate) mod work;
#[cfg(test)]
mod work_tests;
