//! The bare tier: each function looks its entry point up and calls it, and returns
//! the driver's `CUresult` (and out-parameters) untouched: no span, no check.
//!
//! A missing entry point is `Err(MissingSymbol)`. Out-parameters start zeroed (or
//! null), so after a failed call they hold that value unless the driver wrote one.

use cuda_vmm_sys::{CUresult, MissingSymbol};

mod context;
mod memory;
mod pool;
mod stream;

pub use context::*;
pub use memory::*;
pub use pool::*;
pub use stream::*;

/// What a bare call without out-parameters answers.
pub type Rc = Result<CUresult, MissingSymbol>;
/// What a bare call with out-parameters answers.
pub type Out<T> = Result<(CUresult, T), MissingSymbol>;
