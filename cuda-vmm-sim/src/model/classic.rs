//! Classic allocations (`cuMemAlloc_v2` / `cuMemFree_v2`): memfd pages mapped
//! read-write in their own range. Sizes are rounded up to the granularity,
//! and the rounded size is what the device's memory accounting counts.

use std::os::fd::AsFd;
use std::sync::Arc;

use crate::model::answers;
use crate::model::state::{Classic, DriverResult, Memory, Sim, Waitable};
use crate::os::{self, Prot};

impl Sim {
    /// `cuMemAlloc_v2` on `device`.
    pub fn alloc(&mut self, device: usize, size: u64) -> DriverResult<u64> {
        if size == 0 {
            return Err(answers::ALLOC_ZERO_SIZE);
        }
        let g = self.granularity();
        let rounded = size
            .checked_next_multiple_of(g)
            .ok_or(answers::OUT_OF_MEMORY)?;
        if rounded > self.free_bytes(device) {
            return Err(answers::OUT_OF_MEMORY);
        }
        let fd = os::memfd(rounded).map_err(|_| answers::OUT_OF_MEMORY)?;
        let start = os::reserve(0, rounded, g).map_err(|_| answers::OUT_OF_MEMORY)?;
        // SAFETY: `start..start+rounded` was just reserved by this simulator.
        if let Err(_e) = unsafe { os::map_shared(start, rounded, fd.as_fd(), 0, Prot::ReadWrite) } {
            // SAFETY: the reservation just made; nothing else refers to it.
            let _ = unsafe { os::release(start, rounded) };
            return Err(answers::OUT_OF_MEMORY);
        }
        self.devices[device].used += rounded;
        self.classic.insert(
            start,
            Classic {
                size,
                rounded,
                device,
                memory: Arc::new(Memory { fd, size: rounded }),
            },
        );
        Ok(start)
    }

    /// `cuMemFree_v2`.
    /// Pending work on the allocation completes first (an implicit synchronisation).
    pub fn free(&mut self, ptr: u64) -> Waitable<()> {
        let size = self
            .classic
            .get(&ptr)
            .map(|c| c.size)
            .ok_or(answers::FREE_NOT_ALLOCATED)?;
        self.complete_touching(ptr, ptr + size)?;
        let c = self
            .classic
            .remove(&ptr)
            .ok_or(answers::FREE_NOT_ALLOCATED)?;
        // SAFETY: the range is the classic allocation this simulator made; its
        // record is gone, so nothing refers to it any more.
        unsafe { os::release(ptr, c.rounded) }.map_err(|_| answers::OS_FAILURE)?;
        let used = &mut self.devices[c.device].used;
        *used = used.saturating_sub(c.rounded);
        Ok(())
    }
}
