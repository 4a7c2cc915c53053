//! Address reservations: real, inaccessible host address space.

use crate::model::answers;
use crate::model::state::{DriverResult, Sim};
use crate::os;

impl Sim {
    /// `cuMemAddressReserve`.
    pub fn reserve(
        &mut self,
        size: u64,
        alignment: u64,
        hint: u64,
        flags: u64,
    ) -> DriverResult<u64> {
        self.check_flags_size(
            flags,
            size,
            answers::RESERVE_ZERO_SIZE,
            size,
            answers::RESERVE_MISALIGNED_SIZE,
        )?;
        if alignment != 0 && !alignment.is_power_of_two() {
            return Err(answers::RESERVE_BAD_ALIGNMENT);
        }
        let alignment = alignment.max(self.granularity());
        if !self.aligned(hint) {
            if let Some(code) = answers::RESERVE_MISALIGNED_HINT {
                return Err(code);
            }
        }
        let hint = if hint % alignment == 0 { hint } else { 0 };
        let start =
            os::reserve(hint, size, alignment).map_err(|_| answers::RESERVE_NO_ADDRESS_SPACE)?;
        self.reservations.insert(start, size);
        Ok(start)
    }

    /// `cuMemAddressFree`: the whole reservation, with nothing mapped in it.
    pub fn address_free(&mut self, ptr: u64, size: u64) -> DriverResult<()> {
        let Some(&reserved) = self.reservations.get(&ptr) else {
            return Err(answers::FREE_UNKNOWN_ADDRESS);
        };
        if size != reserved {
            return Err(answers::FREE_PARTIAL_RESERVATION);
        }
        if self.mapped_within(ptr, ptr + size) {
            return Err(answers::FREE_WITH_LIVE_MAPPINGS);
        }
        self.poison_pending_in(ptr, ptr + size, answers::FREE_WITH_PENDING_WORK);
        // SAFETY: the range is a reservation this simulator made, and nothing is
        // mapped in it (checked above); the record is removed with it.
        unsafe { os::release(ptr, size) }.map_err(|_| answers::OS_FAILURE)?;
        self.reservations.remove(&ptr);
        Ok(())
    }

    /// The reservation containing `addr`, as `(start, size)`.
    pub fn reservation_at(&self, addr: u64) -> Option<(u64, u64)> {
        self.reservations
            .range(..=addr)
            .next_back()
            .filter(|(s, size)| addr - **s < **size)
            .map(|(s, size)| (*s, *size))
    }

    /// The parts of `[start, end)` in no reservation, and how many
    /// reservations the range touches.
    pub fn unreserved_parts(&self, start: u64, end: u64) -> (Vec<(u64, u64)>, usize) {
        let mut gaps = Vec::new();
        let mut touched = 0;
        let mut cursor = start;
        while cursor < end {
            if let Some((s, size)) = self.reservation_at(cursor) {
                touched += 1;
                cursor = (s + size).min(end);
            } else {
                let next = self
                    .reservations
                    .range(cursor..end)
                    .next()
                    .map_or(end, |(s, _)| *s);
                gaps.push((cursor, next - cursor));
                cursor = next;
            }
        }
        (gaps, touched)
    }
}
