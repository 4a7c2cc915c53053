//! Shrinking a growable buffer: releasing whole chunks past the length and replacing a
//! chunk that straddles it by a smaller one.

use crate::backing::{next_serial, Chunk};
use crate::error::{Error, Result};
use crate::pod::DevicePod;
use crate::policy::round_up;

use super::GrowableBuffer;

impl<T: DevicePod> GrowableBuffer<T> {
    /// Unmaps the memory past the length, giving it back to the device (or the pool).
    ///
    /// Without a pool the committed size becomes the length rounded up to the granularity:
    /// whole chunks past it are released, and a chunk straddling it is replaced by a smaller
    /// one (its live bytes are copied on the device; the address does not change). With a pool,
    /// whole pool chunks past the length go back to the pool.
    ///
    /// On error the length and contents are intact and the buffer keeps working; the chunks
    /// that could not be unmapped stay committed (so `committed_bytes` may lie anywhere
    /// between its old value and the target). Only if the driver fails four times in a row to
    /// map either the replacement or the old chunk back at the straddling chunk's address is
    /// the length cut to that chunk's start.
    pub fn shrink_to_fit(&mut self) -> Result<()> {
        self.check_awake("shrink_to_fit")?;
        self.cancel_prefetch();
        self.backing.retry_stranded()?;
        let used = self.byte_offset(self.len);
        let target = round_up(used, self.backing.unit());
        if target >= self.committed {
            return Ok(());
        }
        // Chunks wholly below the target stay; the first other one may straddle it.
        let keep = self.chunks.partition_point(|c| c.end() <= target);
        let straddles = self.chunks.get(keep).is_some_and(|c| c.offset() < target);
        let first_free = keep + usize::from(straddles);
        self.release_from(first_free)?;
        if straddles {
            self.split_last(target, used)?;
        }
        Ok(())
    }

    /// Releases chunks `first..`, last first, stopping at the first one that cannot be
    /// unmapped: that one and those below it stay, so the chunks stay back to back.
    pub(super) fn release_from(&mut self, first: usize) -> Result<()> {
        let mut tail = self.chunks.split_off(first.min(self.chunks.len()));
        if !tail.is_empty() {
            self.generation = self.generation.wrapping_add(1);
        }
        tail.reverse();
        let result = self.backing.release_chunks(tail);
        let result = match result {
            Ok(()) => Ok(()),
            Err((e, mut kept)) => {
                tracing::error!("releasing buffer chunks failed: {e}");
                kept.reverse();
                self.chunks.extend(kept);
                Err(e)
            }
        };
        self.committed = self.chunks.last().map_or(0, Chunk::end);
        result
    }

    /// Replaces the last chunk, which reaches past `target`, by one ending at `target`,
    /// copying its first `used` buffer bytes over. Needs room for the new chunk past the old
    /// one in the reservation (else the chunk is kept whole). On error the old chunk is kept
    /// (see [`shrink_to_fit`](GrowableBuffer::shrink_to_fit) for the one exception), and the
    /// placement rotation is as before: only a replacement kept in place takes a turn.
    fn split_last(&mut self, target: usize, used: usize) -> Result<()> {
        let rotation = self.backing.homes.position();
        let replaced = self.replace_last(target, used);
        if replaced.is_err() && self.committed != target {
            // The replacement is not in place (only a refused release of the old chunk
            // fails with it there): it was given back, or stranded to be released on the
            // next retry, and its turn goes back too.
            self.backing.homes.set_position(rotation);
        }
        replaced
    }

    /// [`split_last`](Self::split_last) but for the rotation, which a failure leaves moved.
    fn replace_last(&mut self, target: usize, used: usize) -> Result<()> {
        let Some(last) = self.chunks.last() else {
            return Ok(());
        };
        let (start, old_end) = (last.offset(), last.end());
        let keep = target - start;
        if self.backing.pool.is_some() || old_end + keep > self.reserved_bytes() {
            return Ok(());
        }
        // The live bytes are moved on the device: first wait for device work that may
        // still write them (what unmapping the old chunk would wait for anyway).
        self.backing.reservation.synchronize()?;
        // Build the replacement past the old chunk and copy the live bytes into it.
        let mut scratch = self.backing.commit_run(old_end, &[keep], false)?;
        if let Err(e) = self
            .backing
            .reservation
            .copy_within(start, old_end, used - start)
        {
            self.backing.rollback(scratch);
            return Err(e.into());
        }
        let Some(new) = scratch.pop() else {
            return Ok(());
        };
        let allocation = new.mapping.allocation().clone();
        self.backing.stats.chunks -= 1;
        // A scratch mapping that cannot be unmapped is stranded: the buffer is unchanged,
        // and the next growth unmaps it first.
        self.backing.unmap_or_strand(vec![new.mapping])?;
        // Swap: unmap the old chunk (kept on failure), map the replacement in its place.
        let Some(old) = self.chunks.pop() else {
            return Ok(());
        };
        self.generation = self.generation.wrapping_add(1);
        let old_allocation = old.mapping.allocation().clone();
        let old_size = old.mapping.size();
        let old_serial = old.serial;
        self.backing.stats.unmaps += 1;
        if let Err((e, mut kept)) = cuda_vmm::Mapping::unmap_in_order(vec![old.mapping]) {
            if let Some(mapping) = kept.pop() {
                self.chunks.push(Chunk {
                    mapping,
                    pooled: false,
                    cached: false,
                    serial: old_serial,
                });
            }
            self.committed = self.chunks.last().map_or(0, Chunk::end);
            return Err(e.into());
        }
        self.backing.stats.chunks -= 1;
        // Map the replacement; failing that, the old chunk back (its contents are intact,
        // and it keeps its serial: the same allocation, whole, at the same offset).
        let candidates = [
            (allocation, keep, next_serial()),
            (old_allocation, old_size, old_serial),
        ];
        let mut first_error = None;
        for attempt in 0..4 {
            let (candidate, size, serial) = &candidates[attempt % 2];
            let (size, serial) = (*size, *serial);
            let mapped = self
                .backing
                .retry_stranded()
                .and_then(|()| self.remap(start, candidate, size, serial));
            match mapped {
                Ok(chunk) => {
                    self.chunks.push(chunk);
                    self.committed = start + size;
                    let [(new, _, _), (old, _, _)] = candidates;
                    self.backing.stats.releases += 1;
                    if attempt % 2 == 0 {
                        // The replacement is in place: the old chunk goes.
                        return Ok(old.release()?);
                    }
                    // The old chunk is back: the replacement goes, the error is reported.
                    drop(new);
                    return Err(first_error.unwrap_or_else(unreachable_err));
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        tracing::error!("restoring a buffer chunk at offset {start} failed: its bytes are lost");
        self.committed = start;
        self.len = self.len.min(start / size_of::<T>());
        Err(first_error.unwrap_or_else(unreachable_err))
    }

    /// Maps `size` bytes of `allocation` at `offset` with the buffer's access, as the chunk
    /// `serial`.
    fn remap(
        &mut self,
        offset: usize,
        allocation: &cuda_vmm::Allocation,
        size: usize,
        serial: u64,
    ) -> Result<Chunk> {
        let mapping = self.backing.map_shared(offset, allocation, size)?;
        if let Err(e) = self.backing.set_access(offset, size, false) {
            if let Err(undo) = self.backing.unmap_or_strand(vec![mapping]) {
                tracing::error!("unmapping a chunk whose access failed: {undo}");
            }
            return Err(e);
        }
        self.backing.stats.chunks += 1;
        Ok(Chunk {
            mapping,
            pooled: false,
            cached: false,
            serial,
        })
    }
}

/// The error of a retry loop that recorded none (it always records one before giving up).
fn unreachable_err() -> Error {
    Error::InvalidConfig {
        message: "a buffer chunk could not be restored".into(),
    }
}
