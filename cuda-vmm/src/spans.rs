//! Live mapping intervals of one reservation, with the access tracked for each.

use std::collections::BTreeMap;

use crate::access::AccessFlags;
use crate::error::{Error, Result};

/// One live mapping: its size and the access its reservation's device has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) size: usize,
    pub(crate) access: AccessFlags,
}

/// Disjoint intervals `[offset, offset + size)`, keyed by offset.
#[derive(Debug, Default)]
pub(crate) struct Spans {
    map: BTreeMap<usize, Span>,
}

impl Spans {
    /// The first live interval overlapping `[offset, offset + size)`, as `(offset, size)`.
    #[inline]
    pub(crate) fn overlapping(&self, offset: usize, size: usize) -> Option<(usize, usize)> {
        let end = offset + size;
        // Intervals are disjoint, so only the last one starting before `end` can reach `offset`.
        let (&o, s) = self.map.range(..end).next_back()?;
        (o + s.size > offset).then_some((o, s.size))
    }

    /// Records a new interval (the caller checked it overlaps nothing).
    #[inline]
    pub(crate) fn insert(&mut self, offset: usize, size: usize) {
        self.map.insert(
            offset,
            Span {
                size,
                access: AccessFlags::None,
            },
        );
    }

    /// Forgets the interval starting at `offset`.
    #[inline]
    pub(crate) fn remove(&mut self, offset: usize) -> Option<Span> {
        self.map.remove(&offset)
    }

    /// Number of live intervals.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Walks the intervals covering `[offset, offset + size)`; `None` if a gap exists.
    /// Calls `f(span_offset, span)` for each.
    fn walk(&self, offset: usize, size: usize, mut f: impl FnMut(usize, &Span)) -> Option<()> {
        let end = offset + size;
        let (&first, _) = self.map.range(..=offset).next_back()?;
        let mut pos = first;
        for (&o, s) in self.map.range(first..) {
            if o != pos {
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

    /// The least access over `[offset, offset + size)`, or `None` if not fully mapped.
    pub(crate) fn min_access(&self, offset: usize, size: usize) -> Option<AccessFlags> {
        let mut min = AccessFlags::ReadWrite;
        self.walk(offset, size, |_, s| min = min.min(s.access))?;
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

    /// Records `access` after a successful `cuMemSetAccess` over a covered range:
    /// intervals fully inside take it; intervals only partly inside (which
    /// [`Reservation::set_access`](crate::Reservation::set_access) no longer
    /// lets through) would keep the lesser of old and new.
    pub(crate) fn set_access(&mut self, offset: usize, size: usize, access: AccessFlags) {
        let end = offset + size;
        let start = match self.map.range(..=offset).next_back() {
            Some((&o, _)) => o,
            None => return,
        };
        for (&o, s) in self.map.range_mut(start..end) {
            let inside = o >= offset && o + s.size <= end;
            s.access = if inside { access } else { s.access.min(access) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_and_cover() {
        let mut s = Spans::default();
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
        assert_eq!(s.min_access(0, 20), Some(AccessFlags::None));
        assert_eq!(s.cut_by(0, 20), None);
        assert_eq!(s.cut_by(5, 15), Some((0, 10)));
        assert_eq!(s.cut_by(10, 5), Some((10, 10)));
        assert_eq!(s.cut_by(30, 10), None);
        s.set_access(0, 20, AccessFlags::ReadWrite);
        assert_eq!(s.min_access(0, 20), Some(AccessFlags::ReadWrite));
        s.set_access(5, 5, AccessFlags::Read);
        assert_eq!(s.min_access(0, 10), Some(AccessFlags::Read));
        assert_eq!(s.min_access(10, 10), Some(AccessFlags::ReadWrite));
        assert_eq!(s.remove(10).map(|x| x.size), Some(10));
        assert!(!s.covers(0, 20));
        assert_eq!(s.len(), 2);
    }
}
