//! A live mapping of (part of) an allocation into a reservation (`cuMemMap` / `cuMemUnmap`).

use std::fmt;
use std::mem::MaybeUninit;

use cuda_vmm_sys::{entry, CUmemGenericAllocationHandle};

use crate::access::AccessFlags;
use crate::allocation::Allocation;
use crate::device::Device;
use crate::error::{check, Result};
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
        let cuda = device.cuda();
        let f = cuda.entry(entry!(cuda.table(), cuMemRetainAllocationHandle))?;
        device.make_current()?;
        let mut handle = MaybeUninit::<CUmemGenericAllocationHandle>::uninit();
        // SAFETY: `handle` is a valid out-pointer; the address is mapped (this
        // mapping is alive while `&self` is borrowed).
        check("cuMemRetainAllocationHandle", unsafe {
            f(
                handle.as_mut_ptr(),
                self.ptr() as usize as *mut std::ffi::c_void,
            )
        })?;
        // SAFETY: written by the driver on success.
        let handle = unsafe { handle.assume_init() };
        Ok(Allocation::from_parts(
            device.clone(),
            handle,
            self.allocation.size(),
            self.allocation.granularity(),
            self.allocation.props().clone(),
        ))
    }

    /// Unmaps now, returning the driver's error if any.
    ///
    /// If the driver refuses, the range stays recorded as mapped and the
    /// reservation and allocation are leaked, so nothing is freed under it.
    pub fn unmap(mut self) -> Result<()> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<()> {
        if !self.live {
            return Ok(());
        }
        self.live = false;
        let inner = &*self.reservation.inner;
        let result = (|| {
            let cuda = inner.device.cuda();
            let f = cuda.entry(entry!(cuda.table(), cuMemUnmap))?;
            // No current context needed: the driver answers VMM calls without one
            // (recorded on H200, driver 580: conformance `no_context_*`).
            let mut spans = inner.spans.write();
            // SAFETY: exactly this range was mapped by us and is still mapped
            // (only this Mapping unmaps it); the lock keeps copies out meanwhile.
            check("cuMemUnmap", unsafe { f(self.ptr(), self.size) })?;
            spans.remove(self.offset);
            Ok(())
        })();
        if result.is_err() {
            // Keep the reservation and allocation alive forever: the range may
            // still be mapped, so neither may be freed.
            std::mem::forget(self.reservation.clone());
            std::mem::forget(self.allocation.clone());
        }
        result
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            log::error!(
                "unmapping [{:#x}, +{}) failed, leaking it: {e}",
                self.ptr(),
                self.size
            );
        }
    }
}
