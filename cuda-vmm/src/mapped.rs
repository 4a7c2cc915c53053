//! Live mapping intervals of one reservation, with the access tracked for each.

use std::collections::BTreeMap;

use crate::access::AccessFlags;
use crate::error::{Error, Result};

/// The access each device has to one mapping, by ordinal: two bits per device.
///
/// Devices with an ordinal of 64 or more are not tracked and read as having no
/// access, so copies on them are refused rather than risked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct DeviceAccess {
    read: u64,
    write: u64,
}

impl DeviceAccess {
    /// The access of device `ordinal`.
    pub(crate) fn get(self, ordinal: usize) -> AccessFlags {
        let Some(bit) = u32::try_from(ordinal)
            .ok()
            .and_then(|o| 1u64.checked_shl(o))
        else {
            return AccessFlags::None;
        };
        match (self.read & bit != 0, self.write & bit != 0) {
            (true, true) => AccessFlags::ReadWrite,
            (true, false) => AccessFlags::Read,
            _ => AccessFlags::None,
        }
    }

    /// Sets the access of device `ordinal` (untracked ordinals are ignored).
    pub(crate) fn set(&mut self, ordinal: usize, flags: AccessFlags) {
        let Some(bit) = u32::try_from(ordinal)
            .ok()
            .and_then(|o| 1u64.checked_shl(o))
        else {
            return;
        };
        self.read &= !bit;
        self.write &= !bit;
        if flags >= AccessFlags::Read {
            self.read |= bit;
        }
        if flags == AccessFlags::ReadWrite {
            self.write |= bit;
        }
    }
}

/// One live mapping: its size and the access every device has to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MappedRange {
    pub(crate) size: usize,
    pub(crate) access: DeviceAccess,
    /// Its unmap is queued on the release queue: still mapped, but no longer usable (copies
    /// and access changes see a hole), and a mapping over it completes the entry first.
    pub(crate) ending: bool,
}

/// Disjoint intervals `[offset, offset + size)`, keyed by offset.
#[derive(Debug, Default)]
pub(crate) struct MappedRanges {
    map: BTreeMap<usize, MappedRange>,
}

impl MappedRanges {
    /// The lowest live interval overlapping `[offset, offset + size)`, as `(offset, size)`.
    #[inline]
    pub(crate) fn overlapping(&self, offset: usize, size: usize) -> Option<(usize, usize)> {
        let end = offset.saturating_add(size);
        // Intervals are disjoint: the one starting at or before `offset` may reach into the
        // range; otherwise the first one starting inside it is the lowest.
        if let Some((&o, s)) = self.map.range(..=offset).next_back() {
            if o + s.size > offset {
                return Some((o, s.size));
            }
        }
        let (&o, s) = self.map.range(offset..end).next()?;
        Some((o, s.size))
    }

    /// Records a new interval (the caller checked it overlaps nothing).
    #[inline]
    pub(crate) fn insert(&mut self, offset: usize, size: usize) {
        self.map.insert(
            offset,
            MappedRange {
                size,
                access: DeviceAccess::default(),
                ending: false,
            },
        );
    }

    /// Forgets the interval starting at `offset`.
    #[inline]
    pub(crate) fn remove(&mut self, offset: usize) -> Option<MappedRange> {
        self.map.remove(&offset)
    }

    /// Marks the interval starting at `offset` as ending (its unmap is queued); false if
    /// no interval starts there or it is ending already.
    pub(crate) fn mark_ending(&mut self, offset: usize) -> bool {
        match self.map.get_mut(&offset) {
            Some(r) if !r.ending => {
                r.ending = true;
                true
            }
            _ => false,
        }
    }

    /// Whether an interval overlapping `[offset, offset + size)` is ending.
    pub(crate) fn overlaps_ending(&self, offset: usize, size: usize) -> bool {
        let end = offset.saturating_add(size);
        let first = match self.map.range(..=offset).next_back() {
            Some((&o, _)) => o,
            None => offset,
        };
        self.map
            .range(first..end)
            .any(|(&o, r)| r.ending && o + r.size > offset)
    }

    /// Whether exactly `[offset, offset + size)` is one live interval.
    pub(crate) fn is_mapping(&self, offset: usize, size: usize) -> bool {
        self.map.get(&offset).is_some_and(|r| r.size == size)
    }

    /// Whether exactly `[offset, offset + size)` is one live interval marked ending.
    pub(crate) fn is_ending_mapping(&self, offset: usize, size: usize) -> bool {
        self.map
            .get(&offset)
            .is_some_and(|r| r.size == size && r.ending)
    }

    /// Number of live intervals.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Walks the intervals covering `[offset, offset + size)`; `None` if a gap exists.
    /// Calls `f(range_offset, range)` for each.
    fn walk(
        &self,
        offset: usize,
        size: usize,
        mut f: impl FnMut(usize, &MappedRange),
    ) -> Option<()> {
        let end = offset + size;
        let (&first, _) = self.map.range(..=offset).next_back()?;
        let mut pos = first;
        for (&o, s) in self.map.range(first..) {
            if o != pos || s.ending {
                return None;
            }
            f(o, s);
            pos = o + s.size;
            if pos >= end {
                return Some(());
            }
        }
        None
    }

    /// The least access device `ordinal` has over `[offset, offset + size)`, or
    /// `None` if the range is not fully mapped.
    pub(crate) fn min_access(
        &self,
        offset: usize,
        size: usize,
        ordinal: usize,
    ) -> Option<AccessFlags> {
        let mut min = AccessFlags::ReadWrite;
        self.walk(offset, size, |_, s| min = min.min(s.access.get(ordinal)))?;
        Some(min)
    }

    /// Whether `[offset, offset + size)` is fully covered.
    pub(crate) fn covers(&self, offset: usize, size: usize) -> bool {
        self.walk(offset, size, |_, _| {}).is_some()
    }

    /// The interval that `[offset, offset + size)` starts or ends strictly
    /// inside of, as `(offset, size)`: the range cuts it instead of ending at
    /// its boundaries.
    pub(crate) fn cut_by(&self, offset: usize, size: usize) -> Option<(usize, usize)> {
        let end = offset + size;
        let inside = |at: usize| {
            let (&o, s) = self.map.range(..at).next_back()?;
            (o < at && at < o + s.size).then_some((o, s.size))
        };
        inside(offset).or_else(|| inside(end))
    }

    /// Fails with [`Error::InvalidArgument`], naming the allocation boundaries,
    /// when `[offset, offset + size)` cuts a mapping: `cuMemSetAccess` takes
    /// whole mappings (H200: conformance `set_access_head_of_allocation`).
    pub(crate) fn check_whole(&self, offset: usize, size: usize) -> Result<()> {
        let Some((m_offset, m_size)) = self.cut_by(offset, size) else {
            return Ok(());
        };
        let (end, m_end) = (offset + size, m_offset + m_size);
        let at = if m_offset < offset && offset < m_end {
            offset
        } else {
            end
        };
        Err(Error::invalid(format!(
            "access range [{offset}, {end}) cuts the mapping [{m_offset}, {m_end}) at {at}: \
             cuMemSetAccess takes whole allocations, so the range must start and end at \
             allocation boundaries (here {m_offset} or {m_end})"
        )))
    }

    /// Records `grants` (device ordinal, access) after a successful
    /// `cuMemSetAccess` over a covered range: intervals fully inside take them;
    /// intervals only partly inside (which
    /// [`Reservation::set_access`](crate::Reservation::set_access) no longer
    /// lets through) would keep the lesser of old and new. Devices not named
    /// keep their access, as with the driver.
    pub(crate) fn set_access(
        &mut self,
        offset: usize,
        size: usize,
        grants: &[(usize, AccessFlags)],
    ) {
        let end = offset + size;
        let start = match self.map.range(..=offset).next_back() {
            Some((&o, _)) => o,
            None => return,
        };
        for (&o, s) in self.map.range_mut(start..end) {
            let inside = o >= offset && o + s.size <= end;
            for &(ordinal, access) in grants {
                let new = if inside {
                    access
                } else {
                    s.access.get(ordinal).min(access)
                };
                s.access.set(ordinal, new);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_and_cover() {
        let mut s = MappedRanges::default();
        s.insert(0, 10);
        s.insert(10, 10);
        s.insert(30, 10);
        assert_eq!(s.overlapping(20, 10), None);
        assert_eq!(s.overlapping(15, 10), Some((10, 10)));
        assert_eq!(s.overlapping(25, 10), Some((30, 10)));
        assert!(s.covers(0, 20));
        assert!(s.covers(5, 10));
        assert!(!s.covers(0, 21));
        assert!(!s.covers(20, 5));
        assert_eq!(s.min_access(0, 20, 0), Some(AccessFlags::None));
        assert_eq!(s.cut_by(0, 20), None);
        assert_eq!(s.cut_by(5, 15), Some((0, 10)));
        assert_eq!(s.cut_by(10, 5), Some((10, 10)));
        assert_eq!(s.cut_by(30, 10), None);
        s.set_access(0, 20, &[(0, AccessFlags::ReadWrite)]);
        assert_eq!(s.min_access(0, 20, 0), Some(AccessFlags::ReadWrite));
        assert_eq!(s.min_access(0, 20, 1), Some(AccessFlags::None));
        s.set_access(5, 5, &[(0, AccessFlags::Read)]);
        assert_eq!(s.min_access(0, 10, 0), Some(AccessFlags::Read));
        assert_eq!(s.min_access(10, 10, 0), Some(AccessFlags::ReadWrite));
        s.set_access(
            10,
            10,
            &[(1, AccessFlags::Read), (63, AccessFlags::ReadWrite)],
        );
        assert_eq!(s.min_access(10, 10, 1), Some(AccessFlags::Read));
        assert_eq!(s.min_access(10, 10, 63), Some(AccessFlags::ReadWrite));
        assert_eq!(s.min_access(10, 10, 0), Some(AccessFlags::ReadWrite));
        s.set_access(10, 10, &[(64, AccessFlags::ReadWrite)]);
        assert_eq!(s.min_access(10, 10, 64), Some(AccessFlags::None));
        assert_eq!(s.remove(10).map(|x| x.size), Some(10));
        assert!(!s.covers(0, 20));
        assert_eq!(s.len(), 2);
    }
}
