//! Address reservations: real, inaccessible host address space.

use crate::answers;
use crate::state::{Res, Sim};
use crate::sys;

impl Sim {
    /// `cuMemAddressReserve`.
    pub fn reserve(&mut self, size: u64, alignment: u64, hint: u64, flags: u64) -> Res<u64> {
        if flags != 0 {
            return Err(answers::BAD_FLAGS);
        }
        if size == 0 {
            return Err(answers::RESERVE_ZERO_SIZE);
        }
        if !self.aligned(size) {
            return Err(answers::RESERVE_MISALIGNED_SIZE);
        }
        if alignment != 0 && !alignment.is_power_of_two() {
            return Err(answers::RESERVE_BAD_ALIGNMENT);
        }
        let alignment = alignment.max(self.granularity());
        let hint = if hint % alignment == 0 {
            hint
        } else if let Some(code) = answers::RESERVE_MISALIGNED_HINT {
            return Err(code);
        } else {
            0
        };
        let start =
            sys::reserve(hint, size, alignment).map_err(|_| answers::RESERVE_NO_ADDRESS_SPACE)?;
        self.reservations.insert(start, size);
        Ok(start)
    }

    /// `cuMemAddressFree`: the whole reservation, with nothing mapped in it.
    pub fn address_free(&mut self, ptr: u64, size: u64) -> Res<()> {
        let Some(&reserved) = self.reservations.get(&ptr) else {
            return Err(answers::FREE_UNKNOWN_ADDRESS);
        };
        if size != reserved {
            return Err(answers::FREE_PARTIAL_RESERVATION);
        }
        if self.pieces.range(ptr..ptr + size).next().is_some() {
            return Err(answers::FREE_WITH_LIVE_MAPPINGS);
        }
        // SAFETY: the range is a reservation this simulator made, and nothing is
        // mapped in it (checked above); the record is removed with it.
        unsafe { sys::release(ptr, size) }.map_err(|_| answers::OS_FAILURE)?;
        self.reservations.remove(&ptr);
        Ok(())
    }

    /// Checks that `[start, end)` lies inside reservations.
    pub fn check_reserved(&self, start: u64, end: u64) -> Res<()> {
        let mut cursor = start;
        let mut crossed = false;
        loop {
            let (r_start, r_size) = self
                .reservations
                .range(..=cursor)
                .next_back()
                .filter(|(s, size)| cursor - **s < **size)
                .ok_or(answers::MAP_OUTSIDE_RESERVATION)?;
            let r_end = r_start + r_size;
            if r_end >= end {
                break;
            }
            cursor = r_end;
            crossed = true;
        }
        match answers::MAP_ACROSS_RESERVATIONS {
            Some(code) if crossed => Err(code),
            _ => Ok(()),
        }
    }
}
