//! Background commit for a growable buffer: the prefetch worker's steps are asked for after
//! each growth, taken by the next one, and given back on shrink, grant and drop.

use crate::error::Result;
use crate::pod::DevicePod;

use super::prefetch::{Prefetcher, Staged, DEPTH};
use super::GrowableBuffer;

impl<T: DevicePod> GrowableBuffer<T> {
    /// Turns background commit on or off.
    ///
    /// On, a worker thread commits the buffer's next two growth steps (the ones the policy
    /// would take next: create, map, set access, past the committed memory), asking for
    /// another as soon as one is taken, so that a growing call mostly finds memory ready and
    /// only adopts it. The buffer stays transactional: a failed call gives an adopted step
    /// back like memory it committed itself, and the steps are queued again from where the
    /// buffer stands. A step the worker could not commit is committed
    /// in line instead. Shrinking, [`grant_access`](GrowableBuffer::grant_access) (which then
    /// restarts the worker for the new peers), turning prefetch off and dropping first wait
    /// for the steps in flight and give them back (unmapped after the device work
    /// [`unmap_wait`](GrowableBuffer::unmap_wait) names, like any unmap).
    ///
    /// Memory mapped ahead (up to two steps, within the reservation: with the default policy
    /// about 0.56x the committed size, with [`GrowthPolicy::speed`](crate::GrowthPolicy::speed)
    /// 3x) counts in neither [`capacity`](GrowableBuffer::capacity) nor
    /// [`committed_bytes`](GrowableBuffer::committed_bytes) until taken, but it is held on the
    /// device. See [`blocked_stats`](GrowableBuffer::blocked_stats) for what it saves.
    ///
    /// Fails only if the worker thread cannot be started.
    pub fn set_prefetch(&mut self, on: bool) -> Result<()> {
        match (on, self.prefetch.is_some()) {
            (true, false) => {
                self.prefetch = Some(Prefetcher::start(self.backing.shadow())?);
                self.request_prefetch();
            }
            (false, true) => {
                self.cancel_prefetch();
                self.prefetch = None;
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether background commit is on.
    pub fn prefetch(&self) -> bool {
        self.prefetch.is_some()
    }

    /// Asks the worker for the next growth steps until [`DEPTH`] are queued, the
    /// reservation is full, or mappings wait to be unmapped at the growth edge.
    pub(super) fn request_prefetch(&mut self) {
        let reserved = self.reserved_bytes();
        let unit = self.backing.unit();
        loop {
            let Some(prefetcher) = &self.prefetch else {
                return;
            };
            let (from, turn) = prefetcher
                .edge()
                .unwrap_or((self.committed, self.backing.homes.position()));
            if prefetcher.queued() >= DEPTH || from >= reserved || !self.backing.stranded.is_empty()
            {
                return;
            }
            let target = self.policy.grow_to(from, from + 1, unit).min(reserved);
            let sizes = self.step_sizes(target - from);
            if let Some(prefetcher) = &mut self.prefetch {
                let _ = prefetcher.request(from, turn, sizes);
            }
        }
    }

    /// Takes queued steps, waiting for each, until `needed` bytes are committed or none is
    /// left: a step committed at the growth edge is mapped in as committed memory, any other
    /// is given back. Returns whether a step was taken.
    pub(super) fn take_prefetched(&mut self, needed: usize) -> bool {
        let mut taken = false;
        while needed > self.committed {
            let Some(staged) = self.collect_prefetched() else {
                break;
            };
            match staged.chunks {
                // Placed from where our rotation stands (else it moved since the request, as
                // an in-line commit or a rollback moves it): the chunks take their turns.
                Ok(chunks)
                    if staged.offset == self.committed && self.backing.homes.is_at(staged.turn) =>
                {
                    self.backing.homes.advance(chunks.len());
                    self.chunks.extend(chunks);
                    self.committed += staged.bytes;
                    self.backing.note_committed(self.committed);
                    taken = true;
                }
                Ok(chunks) => self.backing.rollback(chunks),
                Err(e) => {
                    tracing::warn!("a prefetched growth step failed, committing in line: {e}")
                }
            }
        }
        taken
    }

    /// Waits for the steps in flight and gives them back.
    pub(super) fn cancel_prefetch(&mut self) {
        while let Some(staged) = self.collect_prefetched() {
            if let Ok(chunks) = staged.chunks {
                self.backing.rollback(chunks);
            }
        }
    }

    /// The pending step with its driver calls and stranded mappings taken into the buffer's
    /// own.
    fn collect_prefetched(&mut self) -> Option<Staged> {
        let mut staged = self.prefetch.as_mut()?.collect()?;
        self.backing.stats.absorb(&staged.stats);
        self.backing.stranded.append(&mut staged.stranded);
        Some(staged)
    }
}
