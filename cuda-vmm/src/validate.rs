//! Argument checks shared by the safe layer (alignment to a granularity, bounds).

use crate::error::{Error, Result};

/// Fails with [`Error::NotAligned`] unless `value` is a multiple of `granularity`
/// (a power of two: granularities from the driver are checked to be).
#[inline]
pub(crate) fn check_multiple(what: &'static str, value: u64, granularity: usize) -> Result<()> {
    debug_assert!(granularity.is_power_of_two());
    if value & (granularity as u64).wrapping_sub(1) == 0 {
        Ok(())
    } else {
        Err(Error::NotAligned {
            what,
            value,
            granularity,
        })
    }
}

/// Fails with [`Error::OutOfBounds`] unless `[offset, offset + size)` fits in `limit`.
#[inline]
pub(crate) fn check_bounds(
    what: &'static str,
    offset: usize,
    size: usize,
    limit: usize,
) -> Result<()> {
    match offset.checked_add(size) {
        Some(end) if end <= limit => Ok(()),
        _ => Err(Error::OutOfBounds {
            what,
            offset: offset as u64,
            size: size as u64,
            limit: limit as u64,
        }),
    }
}
