//! The conformance cases; see [`mapping`].

mod mapping;

pub use mapping::*;
