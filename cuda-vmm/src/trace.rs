//! What the crate tells `tracing` subscribers.
//!
//! Every driver call that changes the address space (`cuMemAddressReserve`,
//! `cuMemAddressFree`, `cuMemCreate`, `cuMemRelease`, `cuMemImportFromShareableHandle`,
//! `cuMemMap`, `cuMemUnmap`, `cuMemSetAccess`, `cuMemAlloc_v2`, `cuMemFree_v2`) runs inside a
//! debug-level span named after the entry point, with fields `address` (hex), `size` (bytes) and
//! `handle` where there is one; the span's duration is the call's, so subscribers that time spans
//! (a `tracing-subscriber` fmt layer with `FmtSpan::CLOSE`, `tracing-chrome`, Tracy) put mapping
//! time into profiles. Errors while dropping are error-level events.
//!
//! Without a subscriber, or with debug disabled for this crate, a span costs one check of
//! tracing's cached interest: no clock is read and no field is formatted.

use std::fmt;

/// An address or handle shown as `0x7f...` in span fields.
#[derive(Clone, Copy)]
pub(crate) struct Hex(pub u64);

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::Debug for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
