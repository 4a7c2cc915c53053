//! The blocks of one expandable segment, by offset: best fit over the mapped free blocks,
//! splitting and coalescing, and the unmapped stretches growth maps into. Offsets only: no
//! driver call is made here, so the policy is tested (and replayed on traces) on its own.

use std::collections::{BTreeMap, BTreeSet};

/// What a stretch of the segment's address range holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Handed out to a caller.
    Used,
    /// Backed by physical memory and free for the next fitting request.
    Free,
    /// Not backed: growth maps physical memory here first.
    Unmapped,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    size: usize,
    state: State,
}

/// Blocks covering `[0, capacity)` of one segment, every byte in exactly one.
///
/// Unmapped stretches always start and end on a page boundary (`page`, the mapping
/// granularity); used and free blocks are multiples of [`ALIGN`].
#[derive(Debug)]
pub(crate) struct Arena {
    blocks: BTreeMap<usize, Span>,
    /// Mapped free blocks as `(size, offset)`: the smallest that fits is the first at or
    /// after `(size, 0)`.
    free: BTreeSet<(usize, usize)>,
    /// Unmapped stretches as `(offset, size)`.
    unmapped: BTreeSet<(usize, usize)>,
    page: usize,
    used_bytes: usize,
    free_bytes: usize,
}

/// Every block's size and offset is a multiple of this (what `cudaMalloc` guarantees).
pub(crate) const ALIGN: usize = 512;

/// Where growth maps new memory: `size` bytes (a multiple of the page) at `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Growth {
    pub(crate) offset: usize,
    pub(crate) size: usize,
}

impl Arena {
    /// An arena of `capacity` bytes (a multiple of `page`), all unmapped.
    pub(crate) fn new(capacity: usize, page: usize) -> Arena {
        let mut arena = Arena {
            blocks: BTreeMap::new(),
            free: BTreeSet::new(),
            unmapped: BTreeSet::new(),
            page,
            used_bytes: 0,
            free_bytes: 0,
        };
        if capacity > 0 {
            arena.insert(0, capacity, State::Unmapped);
        }
        arena
    }

    /// Bytes handed out.
    #[cfg(test)]
    pub(crate) fn used_bytes(&self) -> usize {
        self.used_bytes
    }

    /// Bytes mapped and free.
    #[cfg(test)]
    pub(crate) fn free_bytes(&self) -> usize {
        self.free_bytes
    }

    /// The largest mapped free block, in bytes.
    #[cfg(test)]
    pub(crate) fn largest_free(&self) -> usize {
        self.free.last().map_or(0, |&(size, _)| size)
    }

    /// Every block in address order, as `(offset, size, state)`.
    pub(crate) fn blocks(&self) -> impl Iterator<Item = (usize, usize, State)> + '_ {
        self.blocks.iter().map(|(&o, s)| (o, s.size, s.state))
    }

    /// Hands out the smallest mapped free block of at least `size` bytes (a nonzero
    /// multiple of [`ALIGN`]), split to `size`; `None` when none fits.
    pub(crate) fn take(&mut self, size: usize) -> Option<usize> {
        let &(found, offset) = self.free.range((size, 0)..).next()?;
        self.remove(offset);
        self.insert(offset, size, State::Used);
        if found > size {
            self.insert(offset + size, found - size, State::Free);
        }
        Some(offset)
    }

    /// The size of the used block at `offset`, if there is one.
    pub(crate) fn used_size(&self, offset: usize) -> Option<usize> {
        self.blocks
            .get(&offset)
            .filter(|s| s.state == State::Used)
            .map(|s| s.size)
    }

    /// Gives the used block at `offset` back, merging it with free neighbours; returns its
    /// size, or `None` (changing nothing) when no used block starts there.
    pub(crate) fn give(&mut self, offset: usize) -> Option<usize> {
        let size = self.used_size(offset)?;
        self.remove(offset);
        self.insert_merged(offset, size, State::Free);
        Some(size)
    }

    /// Where to map memory so that a request of `size` bytes fits: in the unmapped stretch
    /// that needs the fewest new bytes, next to the free blocks around it. The mapped size is
    /// at least `min_map` (rounded to the page) where the stretch has room. `None` when no
    /// stretch can hold it.
    pub(crate) fn plan_growth(&self, size: usize, min_map: usize) -> Option<Growth> {
        let page = self.page;
        let mut best: Option<(usize, Growth)> = None;
        for &(start, len) in &self.unmapped {
            let end = start + len;
            let left = self.free_ending_at(start);
            let right = self.free_starting_at(end);
            // Three places: after the free block on the left, before the one on the right,
            // or the whole stretch joining both.
            let mut options = Vec::with_capacity(3);
            let need_left = round_up(size.saturating_sub(left), page);
            if need_left <= len {
                options.push((need_left, start));
            }
            let need_right = round_up(size.saturating_sub(right), page);
            if need_right <= len && right > 0 {
                options.push((need_right, end - need_right));
            }
            if left + len + right >= size {
                options.push((len, start));
            }
            for (need, at) in options {
                if need == 0 {
                    continue;
                }
                let map = round_up(need.max(min_map), page).min(len);
                // Mapping more than needed grows from the same end.
                let at = if at == start { start } else { end - map };
                let growth = Growth {
                    offset: at,
                    size: map,
                };
                if best.map_or(true, |(n, g)| need < n || (need == n && at < g.offset)) {
                    best = Some((need, growth));
                }
            }
        }
        best.map(|(_, g)| g)
    }

    /// Marks `[offset, offset + size)`, which lies in one unmapped stretch, as mapped free
    /// memory. Returns `false` (changing nothing) when it does not.
    pub(crate) fn mark_mapped(&mut self, offset: usize, size: usize) -> bool {
        self.carve(offset, size, State::Unmapped, State::Free)
    }

    /// Whether `[offset, offset + size)` lies inside one mapped free block.
    pub(crate) fn is_free(&self, offset: usize, size: usize) -> bool {
        self.containing(offset)
            .is_some_and(|(o, s)| s.state == State::Free && offset + size <= o + s.size)
    }

    /// Marks `[offset, offset + size)`, which lies inside one mapped free block, as
    /// unmapped (the caller unmaps it). Returns `false` (changing nothing) when it does not.
    pub(crate) fn mark_unmapped(&mut self, offset: usize, size: usize) -> bool {
        self.carve(offset, size, State::Free, State::Unmapped)
    }

    /// Turns `[offset, offset + size)` inside one block of state `from` into `to`,
    /// merging it with neighbours of state `to`.
    fn carve(&mut self, offset: usize, size: usize, from: State, to: State) -> bool {
        let Some((start, span)) = self.containing(offset) else {
            return false;
        };
        let end = offset.saturating_add(size);
        if span.state != from || size == 0 || end > start + span.size {
            return false;
        }
        self.remove(start);
        if offset > start {
            self.insert(start, offset - start, from);
        }
        if start + span.size > end {
            self.insert(end, start + span.size - end, from);
        }
        self.insert_merged(offset, size, to);
        true
    }

    fn containing(&self, offset: usize) -> Option<(usize, Span)> {
        let (&o, &s) = self.blocks.range(..=offset).next_back()?;
        (offset < o + s.size).then_some((o, s))
    }

    fn free_ending_at(&self, end: usize) -> usize {
        match self.blocks.range(..end).next_back() {
            Some((&o, s)) if s.state == State::Free && o + s.size == end => s.size,
            _ => 0,
        }
    }

    fn free_starting_at(&self, offset: usize) -> usize {
        match self.blocks.get(&offset) {
            Some(s) if s.state == State::Free => s.size,
            _ => 0,
        }
    }

    /// Inserts a block, merging it with neighbours of the same state (used blocks never
    /// merge).
    fn insert_merged(&mut self, mut offset: usize, mut size: usize, state: State) {
        if state != State::Used {
            if let Some((&o, &s)) = self.blocks.range(..offset).next_back() {
                if s.state == state && o + s.size == offset {
                    self.remove(o);
                    offset = o;
                    size += s.size;
                }
            }
            if let Some(&s) = self.blocks.get(&(offset + size)) {
                if s.state == state {
                    self.remove(offset + size);
                    size += s.size;
                }
            }
        }
        self.insert(offset, size, state);
    }

    fn insert(&mut self, offset: usize, size: usize, state: State) {
        self.blocks.insert(offset, Span { size, state });
        match state {
            State::Used => self.used_bytes += size,
            State::Free => {
                self.free.insert((size, offset));
                self.free_bytes += size;
            }
            State::Unmapped => {
                self.unmapped.insert((offset, size));
            }
        }
    }

    fn remove(&mut self, offset: usize) {
        let Some(span) = self.blocks.remove(&offset) else {
            return;
        };
        match span.state {
            State::Used => self.used_bytes -= span.size,
            State::Free => {
                self.free.remove(&(span.size, offset));
                self.free_bytes -= span.size;
            }
            State::Unmapped => {
                self.unmapped.remove(&(offset, span.size));
            }
        }
    }
}

/// `value` rounded up to a multiple of `to` (a power of two or any nonzero value).
pub(crate) fn round_up(value: usize, to: usize) -> usize {
    value.div_ceil(to).saturating_mul(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    fn grown(arena: &mut Arena, size: usize) -> usize {
        if let Some(o) = arena.take(size) {
            return o;
        }
        let g = arena.plan_growth(size, 0).expect("room");
        assert!(arena.mark_mapped(g.offset, g.size));
        arena.take(size).expect("fits after growth")
    }

    #[test]
    fn best_fit_splits_and_coalesces() {
        let mut a = Arena::new(64 * MIB, 2 * MIB);
        assert_eq!(a.take(512), None);
        assert_eq!(
            a.plan_growth(3 * MIB, 0),
            Some(Growth {
                offset: 0,
                size: 4 * MIB
            })
        );
        let x = grown(&mut a, 3 * MIB);
        let y = grown(&mut a, MIB / 2);
        assert_eq!((x, y), (0, 3 * MIB));
        assert_eq!(
            (a.free_bytes(), a.used_bytes()),
            (MIB / 2, 3 * MIB + MIB / 2)
        );
        assert_eq!(a.give(x), Some(3 * MIB));
        assert_eq!(a.give(x), None);
        // Best fit: the 0.5 MiB tail, not the 3 MiB hole.
        assert_eq!(a.take(MIB / 4), Some(3 * MIB + MIB / 2));
        assert_eq!(a.give(y), Some(MIB / 2));
        assert_eq!(a.give(3 * MIB + MIB / 2), Some(MIB / 4));
        assert_eq!(a.free_bytes(), 4 * MIB);
        assert_eq!(a.largest_free(), 4 * MIB);
        assert_eq!(a.blocks().count(), 2);
    }

    #[test]
    fn growth_extends_the_free_tail_and_fills_holes_first() {
        let mut a = Arena::new(64 * MIB, 2 * MIB);
        let x = grown(&mut a, 2 * MIB);
        let _y = grown(&mut a, MIB);
        // 1 MiB free at the tail: a 4 MiB request maps 4 more (3 rounded up) after it.
        assert_eq!(
            a.plan_growth(4 * MIB, 0),
            Some(Growth {
                offset: 4 * MIB,
                size: 4 * MIB
            })
        );
        a.give(x);
        assert!(a.is_free(0, 2 * MIB));
        assert!(a.mark_unmapped(0, 2 * MIB));
        assert!(!a.is_free(0, 2 * MIB));
        // The hole at 0 needs 2 MiB for a 2 MiB request, the tail 2 MiB after its free MiB:
        // the lower offset wins the tie.
        assert_eq!(
            a.plan_growth(2 * MIB, 0),
            Some(Growth {
                offset: 0,
                size: 2 * MIB
            })
        );
        assert!(!a.mark_mapped(MIB, 4 * MIB));
        assert!(a.mark_mapped(0, 2 * MIB));
    }

    #[test]
    fn min_map_is_capped_by_the_stretch() {
        let a = Arena::new(8 * MIB, 2 * MIB);
        assert_eq!(
            a.plan_growth(MIB, 20 * MIB),
            Some(Growth {
                offset: 0,
                size: 8 * MIB
            })
        );
        assert_eq!(a.plan_growth(9 * MIB, 0), None);
    }
}
