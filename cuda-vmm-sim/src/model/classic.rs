//! Classic allocations (`cuMemAlloc_v2` / `cuMemFree_v2`): memfd pages mapped
//! read-write in their own range. Sizes are rounded up to the granularity,
//! and the rounded size is what the device's memory accounting counts.
//! Stream-ordered pools (`model::pools`) hand out the same kind of memory.

use std::os::fd::AsFd;
use std::sync::Arc;

use crate::model::answers;
use crate::model::state::{Classic, DriverResult, Memory, Sim, Waitable};
use crate::os::{self, Prot};

impl Sim {
    /// `size` rounded up to the granularity, if that fits on `device`.
    pub(crate) fn classic_size(&self, device: usize, size: u64) -> DriverResult<u64> {
        let rounded = size
            .checked_next_multiple_of(self.granularity())
            .ok_or(answers::OUT_OF_MEMORY)?;
        if rounded > self.free_bytes(device) {
            return Err(answers::OUT_OF_MEMORY);
        }
        Ok(rounded)
    }

    /// A fresh range of `rounded` bytes (a multiple of the granularity) backed by
    /// a new memfd, mapped read-write, counted against `device`'s memory.
    pub(crate) fn map_fresh(
        &mut self,
        device: usize,
        rounded: u64,
    ) -> DriverResult<(u64, Arc<Memory>)> {
        let g = self.granularity();
        let fd = os::memfd(rounded).map_err(|_| answers::OUT_OF_MEMORY)?;
        let start = os::reserve(0, rounded, g).map_err(|_| answers::OUT_OF_MEMORY)?;
        // SAFETY: `start..start+rounded` was just reserved by this simulator.
        if let Err(_e) = unsafe { os::map_shared(start, rounded, fd.as_fd(), 0, Prot::ReadWrite) } {
            // SAFETY: the reservation just made; nothing else refers to it.
            let _ = unsafe { os::release(start, rounded) };
            return Err(answers::OUT_OF_MEMORY);
        }
        self.devices[device].used += rounded;
        Ok((start, Arc::new(Memory { fd, size: rounded })))
    }

    /// Unmaps a range [`Sim::map_fresh`] made and takes it off `device`'s memory.
    ///
    /// # Safety
    /// `start..start+rounded` must be such a range, and no record may refer to it
    /// any more.
    pub(crate) unsafe fn unmap_fresh(
        &mut self,
        device: usize,
        start: u64,
        rounded: u64,
    ) -> DriverResult<()> {
        // SAFETY: forwarded from this function's contract.
        unsafe { os::release(start, rounded) }.map_err(|_| answers::OS_FAILURE)?;
        let used = &mut self.devices[device].used;
        *used = used.saturating_sub(rounded);
        Ok(())
    }

    /// `cuMemAlloc_v2` on `device`.
    pub fn alloc(&mut self, device: usize, size: u64) -> DriverResult<u64> {
        if size == 0 {
            return Err(answers::ALLOC_ZERO_SIZE);
        }
        let rounded = self.classic_size(device, size)?;
        let (start, memory) = self.map_fresh(device, rounded)?;
        self.classic.insert(
            start,
            Classic {
                size,
                rounded,
                device,
                memory,
                pooled: false,
            },
        );
        Ok(start)
    }

    /// `cuMemFree_v2`.
    /// Pending work on the allocation completes first (an implicit synchronisation),
    /// except for memory of a stream-ordered pool, which goes back to its pool at once
    /// (the driver does not synchronise there either).
    pub fn free(&mut self, ptr: u64) -> Waitable<()> {
        let (size, pooled) = self
            .classic
            .get(&ptr)
            .map(|c| (c.size, c.pooled))
            .ok_or(answers::FREE_NOT_ALLOCATED)?;
        if pooled {
            return Ok(self.pool_free_now(ptr)?);
        }
        self.complete_touching(ptr, ptr + size)?;
        let c = self
            .classic
            .remove(&ptr)
            .ok_or(answers::FREE_NOT_ALLOCATED)?;
        // SAFETY: the range is the classic allocation this simulator made; its
        // record is gone, so nothing refers to it any more.
        Ok(unsafe { self.unmap_fresh(c.device, ptr, c.rounded) }?)
    }
}
