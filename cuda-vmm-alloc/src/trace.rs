//! What the crate tells `tracing` subscribers, on top of `cuda-vmm`'s spans around every
//! driver call (`cuMemCreate`, `cuMemMap`, `cuMemSetAccess`, `cuMemUnmap`, `cuMemRelease`...).
//!
//! Debug-level spans, each timing the whole step with its driver calls nested inside:
//! - `commit` (`address`, `size`, `chunks`, `pooled`): memory mapped into a buffer as it grows
//!   or into a sparse array's tiles, from obtaining the chunks to setting access;
//! - `decommit` (`address`, `size`, `chunks`): chunks unmapped by a shrink, truncate, decommit
//!   or drop (including the wait for device work), then handed back;
//! - `chunk_pool.take` (`chunks`, `size`, `hits`, `misses`), `chunk_pool.recycle` (`handle`,
//!   `size`, `cached`), `chunk_pool.prefill`, `chunk_pool.trim`.
//!
//! - `prefetch` (`address`, `size`): a growth step the background worker commits ahead of the
//!   buffer (its `commit` nested inside), on the worker's thread.
//!
//! Further steps follow the same shape: a `debug_span!` named after the step with `address`
//! (hex) and `size` fields, entered for the step's duration.
//! Errors while dropping or rolling back are error-level events.

use std::fmt;

/// An address or handle shown as `0x7f...` in span fields.
#[derive(Clone, Copy)]
pub(crate) struct Hex(pub u64);

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}
