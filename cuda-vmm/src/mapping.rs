//! A live mapping of (part of) an allocation into a reservation (`cuMemMap` / `cuMemUnmap`).

use std::fmt;
use std::sync::Arc;

use crate::access::AccessFlags;
use crate::allocation::Allocation;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::mapped::MappedRanges;
use crate::raw::{self, Waited};
use crate::release::{Entry, ReleaseThen, Work};
use crate::reservation::Reservation;

/// A live mapping; unmapped on drop (or by [`Mapping::unmap`]).
///
/// Holds clones of its [`Reservation`] and [`Allocation`], so neither is freed
/// while it is mapped. `Send + Sync`.
pub struct Mapping {
    reservation: Reservation,
    allocation: Allocation,
    offset: usize,
    size: usize,
    live: bool,
    /// The registration hooks were told it is being unmapped (see [`crate::hooks`]).
    announced: bool,
}

impl fmt::Debug for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapping")
            .field("ptr", &format_args!("{:#x}", self.ptr()))
            .field("offset", &self.offset)
            .field("size", &self.size)
            .field(
                "allocation",
                &format_args!("{:#x}", self.allocation.raw_handle()),
            )
            .finish()
    }
}

impl Mapping {
    /// Wraps a mapping the reservation has just made and recorded.
    pub(crate) fn new(
        reservation: Reservation,
        allocation: Allocation,
        offset: usize,
        size: usize,
    ) -> Mapping {
        Mapping {
            reservation,
            allocation,
            offset,
            size,
            live: true,
            announced: false,
        }
    }

    /// Start address.
    #[inline]
    pub fn ptr(&self) -> u64 {
        self.reservation.ptr() + self.offset as u64
    }

    /// Offset in the reservation.
    #[inline]
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Size in bytes.
    #[inline]
    pub fn size(&self) -> usize {
        self.size
    }

    /// The mapped allocation.
    #[inline]
    pub fn allocation(&self) -> &Allocation {
        &self.allocation
    }

    /// The reservation mapped into.
    #[inline]
    pub fn reservation(&self) -> &Reservation {
        &self.reservation
    }

    /// Sets access to this mapping's range (one `cuMemSetAccess` call).
    pub fn set_access(&self, access: &[(&Device, AccessFlags)]) -> Result<()> {
        self.reservation.set_access(self.offset, self.size, access)
    }

    /// A new reference to the mapped allocation, from its address
    /// (`cuMemRetainAllocationHandle`); released separately on drop.
    pub fn retain_allocation(&self) -> Result<Allocation> {
        let device = self.allocation.device();
        crate::raw::require!(device.cuda().api(), cuMemRetainAllocationHandle);
        let _bound = device.bind()?;
        // The address is mapped (this mapping is alive while `&self` is borrowed).
        let handle = raw::AllocationHandle::retain_at(device.cuda().api(), self.ptr())?;
        Ok(Allocation::from_parts(
            device.clone(),
            handle,
            self.allocation.size(),
            self.allocation.granularity(),
            self.allocation.props().clone(),
        ))
    }

    /// Waits for the device work on the reservation (see [`UnmapWait`]), then
    /// unmaps, returning the error if any.
    ///
    /// If the wait or the driver fails, the range stays recorded as mapped and
    /// the reservation and allocation are leaked, so nothing is freed under
    /// work that may still run.
    ///
    /// When the mapping held the last handle of its allocation, the allocation is
    /// released here, and a refused release is returned (after the unmap took
    /// effect; the release is tried once more as the handle drops, as
    /// [`Allocation::release`] does).
    ///
    /// [`UnmapWait`]: crate::UnmapWait
    pub fn unmap(mut self) -> Result<()> {
        self.teardown()?;
        let allocation = self.allocation.clone();
        drop(self);
        if allocation.holders() == 1 {
            allocation.release()
        } else {
            Ok(())
        }
    }

    /// Unmaps `mappings`, all of one reservation, in order, after ONE wait for
    /// device work on the reservation (as [`Mapping::unmap`] waits), stopping at
    /// the first failure.
    ///
    /// On failure nothing is leaked: the error comes back with the mappings not
    /// unmapped (the one that failed first, then those not tried), still live and
    /// owned by the caller, who may keep using them, try again, or drop them
    /// (dropping tries to unmap once more and leaks on failure). If the wait
    /// fails, every mapping comes back. Mappings of several reservations are
    /// refused before anything is done.
    #[allow(clippy::result_large_err)]
    pub fn unmap_in_order(
        mappings: Vec<Mapping>,
    ) -> std::result::Result<(), (Error, Vec<Mapping>)> {
        let Some(first) = mappings.first() else {
            return Ok(());
        };
        let reservation = first.reservation.clone();
        if let Some(m) = mappings
            .iter()
            .find(|m| !Arc::ptr_eq(&m.reservation.inner, &reservation.inner))
        {
            let e = Error::invalid(format!(
                "mapping at {:#x} belongs to another reservation than {:#x}",
                m.ptr(),
                reservation.ptr()
            ));
            return Err((e, mappings));
        }
        let mut mappings = mappings;
        if let Some(holds) = Mapping::announce(&mut mappings) {
            holds.wait();
        }
        let inner = &*reservation.inner;
        // The write lock keeps new copies out from the wait until the unmaps.
        let mut mapped = inner.mapped.write();
        let waited = match inner.uses.wait(&inner.device) {
            Ok(waited) => waited,
            Err(e) => return Err((e, mappings)),
        };
        let mut rest = mappings.into_iter();
        while let Some(mut m) = rest.next() {
            if let Err(e) = m.try_unmap_locked(&mut mapped, &waited) {
                drop(mapped);
                let mut back = vec![m];
                back.extend(rest);
                return Err((e, back));
            }
        }
        Ok(())
    }

    /// Queues the unmapping of `mappings` (all of one reservation) on the release queue
    /// and returns at once; the queue's worker unmaps them, in order, once no device work
    /// may touch them any more (what [`Mapping::unmap`] waits for: the recorded uses, and
    /// under [`UnmapWait::Devices`](crate::UnmapWait) all work in the contexts that can
    /// reach the memory), then calls `then` with their allocations (or, without `then`,
    /// drops them: an allocation whose last handle this was is released).
    ///
    /// From this call on the ranges are no longer usable: copies and access changes over
    /// them are refused as unmapped, and mapping over them completes the queued entry
    /// first, on the caller's thread. Under [`UnmapWait::Caller`](crate::UnmapWait), or with
    /// the queue turned off
    /// ([`Cuda::set_max_pending_release_bytes`](crate::Cuda::set_max_pending_release_bytes)
    /// 0), nothing is queued: the mappings are unmapped (after the wait
    /// [`Mapping::unmap_in_order`] makes) and `then` runs before this returns, and their
    /// errors come back here. When an unmap fails there, the error comes back with the
    /// mappings not unmapped (as [`Mapping::unmap_in_order`] returns them), and `then` runs
    /// first with the allocations of those unmapped before it.
    ///
    /// Mappings of several reservations are refused, changing nothing. Errors met later
    /// are logged and kept for [`Cuda::take_release_errors`](crate::Cuda::take_release_errors).
    #[allow(clippy::result_large_err)]
    pub fn unmap_deferred(
        mappings: Vec<Mapping>,
        then: Option<ReleaseThen>,
    ) -> std::result::Result<(), (Error, Vec<Mapping>)> {
        let Some(first) = mappings.first() else {
            if let Some(then) = then {
                return then(Vec::new()).map_err(|e| (e, Vec::new()));
            }
            return Ok(());
        };
        let reservation = first.reservation.clone();
        if let Some(m) = mappings
            .iter()
            .find(|m| !Arc::ptr_eq(&m.reservation.inner, &reservation.inner))
        {
            let e = Error::invalid(format!(
                "mapping at {:#x} belongs to another reservation than {:#x}",
                m.ptr(),
                reservation.ptr()
            ));
            return Err((e, mappings));
        }
        let inner = &*reservation.inner;
        if inner.uses.policy() == crate::UnmapWait::Caller
            || inner.device.cuda().releases_complete_inline()
        {
            let mut allocations: Vec<Allocation> =
                mappings.iter().map(|m| m.allocation.clone()).collect();
            if let Err((e, kept)) = Mapping::unmap_in_order(mappings) {
                // The ones unmapped before the failure still go where `then` sends them.
                allocations.truncate(allocations.len() - kept.len());
                if let (Some(then), false) = (then, allocations.is_empty()) {
                    if let Err(e) = then(allocations) {
                        tracing::error!("after a failed unmap, handing the unmapped on: {e}");
                    }
                }
                return Err((e, kept));
            }
            if let Some(then) = then {
                then(allocations).map_err(|e| (e, Vec::new()))?;
            }
            return Ok(());
        }
        let mut mappings = mappings;
        let holds = Mapping::announce(&mut mappings);
        // Under the write lock: no copy is in flight over the ranges, and none starts
        // once they are marked; the uses recorded so far are all the condition needs.
        let mut mapped = inner.mapped.write();
        for m in &mappings {
            mapped.mark_ending(m.offset);
        }
        let events = inner.uses.snapshot();
        let fence = if inner.uses.policy() == crate::UnmapWait::Devices {
            let mut devices = vec![inner.device.clone()];
            devices.extend(inner.uses.peers());
            devices
        } else {
            Vec::new()
        };
        let entry = Arc::new(Entry::new(
            reservation.clone(),
            Work {
                mappings,
                events,
                fence,
                then,
                holds,
            },
        ));
        inner.ending.lock().push(Arc::downgrade(&entry));
        drop(mapped);
        inner.device.cuda().release_queue().push(entry);
        Ok(())
    }

    /// Tells the registration hooks that the live `mappings` not yet announced are about to
    /// be unmapped (see [`crate::hooks`]); the holds they took, to wait for before the
    /// unmap. Call with no lock of the reservation held.
    pub(crate) fn announce(mappings: &mut [Mapping]) -> Option<crate::hooks::Holds> {
        let first = mappings.first()?;
        if !first
            .reservation
            .inner
            .device
            .cuda()
            .hook_registry()
            .is_active()
        {
            // The hot path: no hook registered, no clone, no allocation.
            return None;
        }
        let cuda = first.reservation.inner.device.cuda().clone();
        let fresh: Vec<&mut Mapping> = mappings
            .iter_mut()
            .filter(|m| m.live && !m.announced)
            .collect();
        if fresh.is_empty() {
            return None;
        }
        let ranges: Vec<crate::hooks::MappedRange> = fresh
            .iter()
            .map(|m| crate::hooks::MappedRange {
                ptr: m.ptr(),
                size: m.size,
                device: m.reservation.inner.device.ordinal(),
            })
            .collect();
        for m in fresh {
            m.announced = true;
        }
        cuda.hook_registry().unmapping(ranges.into_iter())
    }

    /// Unmaps a mapping whose interval is marked ending, for the release queue once the
    /// entry's condition held, locking the book-keeping only around the driver call (see
    /// `ReservedRange::unmap_ending`); on failure the mapping stays live (and ending).
    pub(crate) fn unmap_ending(&mut self, waited: &Waited) -> Result<()> {
        if !self.live {
            return Ok(());
        }
        let inner = &*self.reservation.inner;
        let api = inner.device.cuda().api();
        inner
            .range
            .unmap_ending(api, &inner.mapped, self.offset, self.size, waited)?;
        self.live = false;
        Ok(())
    }

    fn teardown(&mut self) -> Result<()> {
        if !self.live {
            return Ok(());
        }
        if let Some(holds) = Mapping::announce(std::slice::from_mut(self)) {
            holds.wait();
        }
        let reservation = self.reservation.clone();
        let inner = &*reservation.inner;
        // The write lock keeps new copies out from the wait until the unmap.
        let mut mapped = inner.mapped.write();
        let waited = match inner.uses.wait(&inner.device) {
            Ok(waited) => waited,
            Err(e) => {
                drop(mapped);
                self.leak_in_place();
                return Err(e);
            }
        };
        self.unmap_locked(&mut mapped, &waited)
    }

    /// Unmaps after the caller waited for device work, under the mapped-ranges lock.
    pub(crate) fn unmap_waited(mut self, mapped: &mut MappedRanges, waited: &Waited) -> Result<()> {
        self.unmap_locked(mapped, waited)
    }

    fn unmap_locked(&mut self, mapped: &mut MappedRanges, waited: &Waited) -> Result<()> {
        let result = self.try_unmap_locked(mapped, waited);
        if result.is_err() {
            self.leak_in_place();
        }
        result
    }

    /// Unmaps under the mapped-ranges lock after the wait; on failure the mapping stays live.
    fn try_unmap_locked(&mut self, mapped: &mut MappedRanges, waited: &Waited) -> Result<()> {
        if !self.live {
            return Ok(());
        }
        let inner = &*self.reservation.inner;
        // No current context needed: the driver answers VMM calls without one
        // (recorded on H200, driver 580: conformance `no_context_*`).
        // Exactly this range was mapped by us and is still mapped (only this Mapping
        // unmaps it); the caller holds the mapped-ranges lock and waited.
        let api = inner.device.cuda().api();
        let result = inner
            .range
            .unmap(api, mapped, self.offset, self.size, waited);
        if result.is_ok() {
            self.live = false;
        }
        result
    }

    /// Gives up on unmapping: the range stays recorded as mapped, and the
    /// reservation and allocation are kept alive forever, so neither is freed
    /// under a mapping that may still be live.
    pub(crate) fn leak(mut self) {
        self.leak_in_place();
    }

    fn leak_in_place(&mut self) {
        self.live = false;
        std::mem::forget(self.reservation.clone());
        std::mem::forget(self.allocation.clone());
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            tracing::error!(
                "unmapping [{:#x}, +{}) failed, leaking it: {e}",
                self.ptr(),
                self.size
            );
        }
    }
}
