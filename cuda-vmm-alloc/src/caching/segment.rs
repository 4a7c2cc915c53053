//! One expandable segment: a reserved address range of one (stream, size kind) pool, mapped
//! page by page as it grows, with the blocks inside it in an [`Arena`].

use std::collections::BTreeMap;

use cuda_vmm::{AccessFlags, Allocation, Device, Mapping, Reservation};

use super::arena::{Arena, Growth, State};
use crate::pool::ChunkPool;
use crate::Result;

/// A segment: its reservation, its blocks and the pages mapped in it.
pub(crate) struct Segment {
    reservation: Reservation,
    pub(crate) arena: Arena,
    /// Mapped pages by offset (every one `page` bytes).
    pages: BTreeMap<usize, Mapping>,
    page: usize,
}

/// What one growth step did.
pub(crate) struct Grown {
    /// Bytes newly mapped.
    pub(crate) bytes: usize,
    /// Handles mapped.
    pub(crate) handles: usize,
    /// Of those, handles taken from the page cache rather than created.
    pub(crate) reused: usize,
}

impl Segment {
    /// Reserves `size` bytes of address space (rounded up to `page`) on `device`.
    pub(crate) fn new(device: &Device, size: usize, page: usize) -> Result<Segment> {
        let size = super::arena::round_up(size, page);
        let reservation = Reservation::new(device, size, Default::default())?;
        Ok(Segment {
            arena: Arena::new(size, page),
            reservation,
            pages: BTreeMap::new(),
            page,
        })
    }

    /// The first address of the segment.
    pub(crate) fn base(&self) -> u64 {
        self.reservation.ptr()
    }

    /// Bytes mapped.
    pub(crate) fn mapped_bytes(&self) -> usize {
        self.pages.len() * self.page
    }

    /// The page size of this segment.
    pub(crate) fn page(&self) -> usize {
        self.page
    }

    /// Where pages must be mapped for a block of `size` bytes to fit (see
    /// [`Arena::plan_growth`]); `None` when the address range has no room.
    pub(crate) fn plan(&self, size: usize) -> Option<Growth> {
        self.arena.plan_growth(size, self.page)
    }

    /// Maps the pages `growth` names, taken from `chunks` (cached ones first, created
    /// otherwise), granting `access` to each device. A driver failure gives back what this
    /// call took, changing nothing.
    pub(crate) fn grow(
        &mut self,
        growth: Growth,
        access: &[(&Device, AccessFlags)],
        chunks: &ChunkPool,
    ) -> Result<Grown> {
        let _span = tracing::debug_span!(
            "caching.grow",
            segment = self.base(),
            offset = growth.offset,
            bytes = growth.size
        )
        .entered();
        let (offset, size) = (growth.offset, growth.size);
        let (mapped, reused) = self.map_run(offset, size, access, chunks)?;
        let handles = mapped.len();
        for m in mapped {
            self.pages.insert(m.offset(), m);
        }
        let marked = self.arena.mark_mapped(offset, size);
        debug_assert!(marked, "growth maps inside an unmapped stretch");
        Ok(Grown {
            bytes: size,
            handles,
            reused,
        })
    }

    /// Maps `size` bytes of pages at `offset` (an unmapped run), taken from `chunks`,
    /// with `access`, returning the mappings (not yet recorded) and how many pages came from
    /// the cache. A driver failure gives back what this call took, changing nothing.
    fn map_run(
        &self,
        offset: usize,
        size: usize,
        access: &[(&Device, AccessFlags)],
        chunks: &ChunkPool,
    ) -> Result<(Vec<Mapping>, usize)> {
        let taken = chunks.take(size / self.page).map_err(|f| f.error)?;
        // The first `reused` came from the cache; the others were created for this call.
        let reused = taken.hits;
        let mut allocations = taken.allocations.into_iter();
        let mut mapped: Vec<Mapping> = Vec::with_capacity(size / self.page);
        let mut failed = None;
        for at in (offset..offset + size).step_by(self.page) {
            let Some(allocation) = allocations.next() else {
                break;
            };
            match self.reservation.map(at, &allocation, 0, self.page) {
                Ok(m) => mapped.push(m),
                Err(e) => {
                    // Back where it came from, with the ones not mapped yet.
                    let rest = std::iter::once(allocation).chain(allocations.by_ref());
                    give_back(chunks, reused.saturating_sub(mapped.len()), rest);
                    failed = Some(e.into());
                    break;
                }
            }
        }
        if failed.is_none() {
            if let Err(e) = self.reservation.set_access(offset, size, access) {
                failed = Some(e.into());
            }
        }
        match failed {
            None => Ok((mapped, reused)),
            Some(e) => {
                undo_mappings(chunks, reused.min(mapped.len()), mapped);
                Err(e)
            }
        }
    }

    /// Sleep: unmaps every page (the caller waited for the device), keeping the blocks as
    /// they are; returns the offsets to map again at wake and the mappings to end.
    pub(crate) fn take_all_pages(&mut self) -> (Vec<usize>, Vec<Mapping>) {
        let pages = std::mem::take(&mut self.pages);
        (
            pages.keys().copied().collect(),
            pages.into_values().collect(),
        )
    }

    /// Wake: maps pages at `offsets` again (as [`take_all_pages`](Self::take_all_pages)
    /// returned them), run by run, with `access`. All or nothing.
    pub(crate) fn map_again(
        &mut self,
        offsets: &[usize],
        access: &[(&Device, AccessFlags)],
        chunks: &ChunkPool,
    ) -> Result<usize> {
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for &o in offsets {
            match runs.last_mut() {
                Some((start, size)) if *start + *size == o => *size += self.page,
                _ => runs.push((o, self.page)),
            }
        }
        let mut done: Vec<Mapping> = Vec::new();
        for (offset, size) in runs {
            match self.map_run(offset, size, access, chunks) {
                Ok((mapped, _)) => done.extend(mapped),
                Err(e) => {
                    undo_mappings(chunks, 0, done);
                    return Err(e);
                }
            }
        }
        let handles = done.len();
        for m in done {
            self.pages.insert(m.offset(), m);
        }
        Ok(handles)
    }

    /// The blocks handed out (or pending), coalesced into runs of `(offset, size)`: the
    /// bytes a sleep with a backup keeps.
    pub(crate) fn used_runs(&self) -> Vec<(usize, usize)> {
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for (offset, size, state) in self.arena.blocks() {
            if state != State::Used {
                continue;
            }
            match runs.last_mut() {
                Some((o, s)) if *o + *s == offset => *s += size,
                _ => runs.push((offset, size)),
            }
        }
        runs
    }

    /// The segment's reservation (for the copies of sleep and wake).
    pub(crate) fn reservation(&self) -> &Reservation {
        &self.reservation
    }

    /// Grants `access` to the devices named over every mapped run of pages.
    pub(crate) fn set_access(&self, access: &[(&Device, AccessFlags)]) -> Result<()> {
        for (offset, size) in self.mapped_runs() {
            self.reservation.set_access(offset, size, access)?;
        }
        Ok(())
    }

    /// Runs of adjacent mapped pages, as `(offset, size)`.
    fn mapped_runs(&self) -> Vec<(usize, usize)> {
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for &offset in self.pages.keys() {
            match runs.last_mut() {
                Some((o, s)) if *o + *s == offset => *s += self.page,
                _ => runs.push((offset, self.page)),
            }
        }
        runs
    }

    /// Takes the pages that lie wholly inside free blocks out of the segment (they become
    /// unmapped stretches) and returns their mappings for the caller to end, at most
    /// `limit` bytes of them, highest offsets first.
    pub(crate) fn take_free_pages(&mut self, limit: usize) -> Vec<Mapping> {
        let free: Vec<usize> = self
            .pages
            .keys()
            .rev()
            .copied()
            .filter(|&o| self.arena.is_free(o, self.page))
            .take(limit / self.page.max(1))
            .collect();
        let mut out = Vec::with_capacity(free.len());
        for offset in free {
            if self.arena.mark_unmapped(offset, self.page) {
                if let Some(m) = self.pages.remove(&offset) {
                    out.push(m);
                }
            }
        }
        out
    }

    /// Whether nothing is mapped (and so no block is handed out).
    pub(crate) fn is_unused(&self) -> bool {
        self.pages.is_empty()
    }

    /// Every block, as `(offset, size, state)`.
    pub(crate) fn blocks(&self) -> impl Iterator<Item = (usize, usize, State)> + '_ {
        self.arena.blocks()
    }
}

/// Undoes a growth's take: the first `cached` of `allocations` go back to the cache they
/// came from, the rest (created for the growth) are released.
fn give_back(chunks: &ChunkPool, cached: usize, allocations: impl Iterator<Item = Allocation>) {
    for (i, allocation) in allocations.enumerate() {
        if i >= cached {
            drop(allocation);
        } else if let Err(refused) = chunks.recycle(allocation) {
            tracing::error!("returning a page after a failed growth: {refused}");
        }
    }
}

/// Ends mappings of pages nothing ran on (a failed growth or wake): the first `cached`
/// allocations go back to the cache, the rest to the driver.
fn undo_mappings(chunks: &ChunkPool, cached: usize, mapped: Vec<Mapping>) {
    if mapped.is_empty() {
        return;
    }
    let back = chunks.clone();
    let then: cuda_vmm::release::ReleaseThen = Box::new(move |allocations| {
        give_back(&back, cached, allocations.into_iter());
        Ok(())
    });
    if let Err((undo, _kept)) = Mapping::unmap_deferred(mapped, Some(then)) {
        tracing::error!("undoing a failed segment growth: {undo}");
    }
}
