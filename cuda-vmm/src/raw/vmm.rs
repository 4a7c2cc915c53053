//! Typed address-space rules: a reserved range freed once, and mapping or setting
//! access only where the reservation's [`MappedRanges`] book-keeping says it may.
//!
//! The book-keeping is checked here, right before the driver call, so the `unsafe`
//! contracts of `cuMemAddressFree`, `cuMemMap`, `cuMemSetAccess` and `cuMemUnmap` (with
//! a [`Waited`] proof for the device work) rest on it rather
//! than on each caller: a [`ReservedRange`] is only made by reserving, and a
//! `&mut MappedRanges` (or `&MappedRanges`) is only reachable through the reservation's
//! lock, which its callers hold across the call.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use cuda_vmm_sys::{
    CUdeviceptr, CUmemAccessDesc, CUmemAllocationHandleType, CUmemFabricHandle,
    CUmemGenericAllocationHandle,
};

use super::Api;
use crate::error::{Error, Result};
use crate::mapped::MappedRanges;

/// Proof that no device work may still touch a reservation's memory: made only by
/// [`UseTracker::wait`](crate::ordering::UseTracker::wait) once its wait succeeded
/// (under [`UnmapWait::Caller`](crate::UnmapWait::Caller), by the promise the caller
/// of the `unsafe` [`Reservation::set_unmap_wait`](crate::Reservation::set_unmap_wait)
/// made).
#[must_use]
pub(crate) struct Waited {
    _private: (),
}

impl Waited {
    /// The proof, for `UseTracker::wait` alone to make after its wait.
    pub(crate) fn after_wait() -> Waited {
        Waited { _private: () }
    }
}

/// A virtual address range `cuMemAddressReserve` returned, freed at most once.
#[derive(Debug)]
pub(crate) struct ReservedRange {
    base: CUdeviceptr,
    size: usize,
    freed: bool,
}

impl ReservedRange {
    /// Reserves `size` bytes (`cuMemAddressReserve`).
    pub(crate) fn reserve(
        api: Api,
        size: usize,
        alignment: usize,
        hint: CUdeviceptr,
        flags: u64,
    ) -> Result<Self> {
        let base = super::mem_address_reserve(api, size, alignment, hint, flags)?;
        Ok(ReservedRange {
            base,
            size,
            freed: false,
        })
    }

    /// The start address.
    #[inline]
    pub(crate) fn base(&self) -> CUdeviceptr {
        self.base
    }

    /// `[offset, offset + size)` as an address, if it lies in the live range.
    fn address(&self, offset: usize, size: usize) -> Result<CUdeviceptr> {
        if self.freed {
            return Err(Error::invalid("the reservation was already freed"));
        }
        match offset.checked_add(size) {
            Some(end) if end <= self.size => Ok(self.base + offset as u64),
            _ => Err(Error::invalid(format!(
                "[{offset}, +{size}) lies outside the {}-byte reservation",
                self.size
            ))),
        }
    }

    /// Frees the range (`cuMemAddressFree`) unless already freed; refused while
    /// `mapped` records a live mapping.
    pub(crate) fn free(&mut self, api: Api, mapped: &MappedRanges) -> Result<()> {
        if self.freed {
            return Ok(());
        }
        if mapped.len() != 0 {
            return Err(Error::invalid(format!(
                "freeing a reservation with {} live mappings",
                mapped.len()
            )));
        }
        self.freed = true;
        // SAFETY: `reserve` reserved exactly this range, the flag makes this its only
        // free, and its book-keeping records no mapping into it.
        unsafe { super::mem_address_free(api, self.base, self.size) }
    }

    /// Maps `handle` (from offset `alloc_offset`) over `[offset, offset + size)` and
    /// records the mapping in `mapped`, the range's book-keeping (`cuMemMap`).
    ///
    /// Fails with [`Error::Overlap`] when `mapped` records a mapping there.
    pub(crate) fn map(
        &self,
        api: Api,
        mapped: &mut MappedRanges,
        offset: usize,
        size: usize,
        alloc_offset: usize,
        handle: &crate::Allocation,
    ) -> Result<()> {
        let ptr = self.address(offset, size)?;
        if let Some((existing_offset, existing_size)) = mapped.overlapping(offset, size) {
            return Err(Error::Overlap {
                offset,
                size,
                existing_offset,
                existing_size,
            });
        }
        let raw: CUmemGenericAllocationHandle = handle.raw_handle();
        // SAFETY: the range lies in this live reservation, nothing is mapped there (both
        // checked above), `handle` is borrowed and the `Mapping` keeps a clone of the
        // allocation alive; the driver checks sizes and alignment.
        unsafe { super::mem_map(api, ptr, size, alloc_offset, raw, 0) }?;
        mapped.insert(offset, size);
        Ok(())
    }

    /// Sets access over `[offset, offset + size)` (`cuMemSetAccess`); fails with
    /// [`Error::NotMapped`] unless `mapped` records the whole range as mapped.
    pub(crate) fn set_access(
        &self,
        api: Api,
        mapped: &MappedRanges,
        offset: usize,
        size: usize,
        descs: &[CUmemAccessDesc],
    ) -> Result<()> {
        let ptr = self.address(offset, size)?;
        if !mapped.covers(offset, size) {
            return Err(Error::NotMapped { offset, size });
        }
        // SAFETY: the range lies in this live reservation and its book-keeping, which
        // the caller holds locked, records it fully mapped. Ordering a revoke after the
        // device work that used the access stays the safe layer's rule, as it was.
        unsafe { super::mem_set_access(api, ptr, size, descs) }
    }

    /// Unmaps the mapping recorded at exactly `[offset, offset + size)` and marked ending
    /// (`cuMemUnmap`), then forgets it; on failure it stays recorded. The book-keeping is
    /// locked only to check and to forget, not across the driver call: no other path
    /// touches an ending interval (copies and access changes over it are refused, a map
    /// over it first completes the release that ends it, and only its one `Mapping`
    /// unmaps it), so other threads map and copy elsewhere in the range meanwhile.
    pub(crate) fn unmap_ending(
        &self,
        api: Api,
        mapped: &parking_lot::RwLock<MappedRanges>,
        offset: usize,
        size: usize,
        _waited: &Waited,
    ) -> Result<()> {
        let ptr = self.address(offset, size)?;
        if !mapped.read().is_ending_mapping(offset, size) {
            return Err(Error::NotMapped { offset, size });
        }
        // SAFETY: the book-keeping records exactly this range as one mapping of this live
        // reservation, marked ending, which no other path maps, unmaps or uses (see
        // above); `Waited` proves no device work may still use it.
        unsafe { super::mem_unmap(api, ptr, size) }?;
        mapped.write().remove(offset);
        Ok(())
    }

    /// Unmaps the mapping recorded in `mapped` at exactly `[offset, offset + size)`
    /// (`cuMemUnmap`) and forgets it; on failure it stays recorded.
    pub(crate) fn unmap(
        &self,
        api: Api,
        mapped: &mut MappedRanges,
        offset: usize,
        size: usize,
        _waited: &Waited,
    ) -> Result<()> {
        let ptr = self.address(offset, size)?;
        if !mapped.is_mapping(offset, size) {
            return Err(Error::NotMapped { offset, size });
        }
        // SAFETY: the book-keeping, held locked by the caller, records exactly this
        // range as one mapping of this live reservation; `Waited` proves no device work
        // may still use it.
        unsafe { super::mem_unmap(api, ptr, size) }?;
        mapped.remove(offset);
        Ok(())
    }
}

/// One reference to a physical allocation, owned: made by creating, retaining or
/// (vouched for) importing, and released at most once.
#[derive(Debug)]
pub(crate) struct AllocationHandle {
    raw: CUmemGenericAllocationHandle,
    released: bool,
}

impl AllocationHandle {
    /// A new allocation (`cuMemCreate`).
    pub(crate) fn create(
        api: Api,
        size: usize,
        props: &cuda_vmm_sys::CUmemAllocationProp,
        flags: u64,
    ) -> Result<Self> {
        Ok(Self::owned(super::mem_create(api, size, props, flags)?))
    }

    /// A new reference to the allocation mapped at `ptr` (`cuMemRetainAllocationHandle`).
    pub(crate) fn retain_at(api: Api, ptr: CUdeviceptr) -> Result<Self> {
        Ok(Self::owned(super::mem_retain_allocation_handle(api, ptr)?))
    }

    /// Imports the allocation a POSIX descriptor names (`cuMemImportFromShareableHandle`;
    /// `size`, the size the exporter sent, for the span only), in the bound context. The
    /// descriptor stays the caller's.
    pub(crate) fn import_posix_fd(
        api: Api,
        _bound: &super::Bound,
        fd: BorrowedFd<'_>,
        size: usize,
    ) -> Result<Self> {
        // The driver takes the descriptor itself, passed in the pointer argument.
        let os_handle = fd.as_raw_fd() as isize as *mut std::ffi::c_void;
        // SAFETY: `os_handle` is the value of a descriptor that stays open while `fd` is
        // borrowed, and `kind` says it is a descriptor; the import returns a new
        // reference, which this value owns from here.
        let raw = unsafe {
            super::mem_import_from_shareable_handle(
                api,
                os_handle,
                CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
                size,
            )
        }?;
        Ok(Self::owned(raw))
    }

    /// Imports the allocation a fabric handle names (`cuMemImportFromShareableHandle`;
    /// `size` for the span only), in the bound context.
    pub(crate) fn import_fabric(
        api: Api,
        _bound: &super::Bound,
        handle: &crate::FabricHandle,
        size: usize,
    ) -> Result<Self> {
        let mut fabric = CUmemFabricHandle { data: handle.0 };
        // SAFETY: the pointer is to a live `CUmemFabricHandle` (a local, alive across
        // the call), and `kind` says it is a fabric handle; the import returns a new
        // reference, which this value owns from here.
        let raw = unsafe {
            super::mem_import_from_shareable_handle(
                api,
                (&mut fabric as *mut CUmemFabricHandle).cast(),
                CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_FABRIC,
                size,
            )
        }?;
        Ok(Self::owned(raw))
    }

    fn owned(raw: CUmemGenericAllocationHandle) -> Self {
        AllocationHandle {
            raw,
            released: false,
        }
    }

    /// The handle's value.
    #[inline]
    pub(crate) fn raw(&self) -> CUmemGenericAllocationHandle {
        self.raw
    }

    /// `cuMemGetAllocationPropertiesFromHandle`.
    pub(crate) fn properties(&self, api: Api) -> Result<cuda_vmm_sys::CUmemAllocationProp> {
        if self.released {
            return Err(Error::invalid("the allocation was already released"));
        }
        // SAFETY: the reference is owned and not released (checked above), so the
        // handle is live.
        unsafe { super::mem_get_allocation_properties_from_handle(api, self.raw) }
    }

    /// Exports the allocation as a new POSIX descriptor, which the caller owns
    /// (`cuMemExportToShareableHandle`), in the bound context.
    pub(crate) fn export_posix_fd(&self, api: Api, _bound: &super::Bound) -> Result<OwnedFd> {
        if self.released {
            return Err(Error::invalid("the allocation was already released"));
        }
        // SAFETY: the reference is owned and not released (checked above), so the
        // handle is live.
        unsafe { super::mem_export_posix_fd(api, self.raw) }
    }

    /// Exports the allocation as a fabric handle (`cuMemExportToShareableHandle`), in
    /// the bound context.
    pub(crate) fn export_fabric(
        &self,
        api: Api,
        _bound: &super::Bound,
    ) -> Result<CUmemFabricHandle> {
        if self.released {
            return Err(Error::invalid("the allocation was already released"));
        }
        // SAFETY: the reference is owned and not released (checked above), so the
        // handle is live.
        unsafe { super::mem_export_fabric(api, self.raw) }
    }

    /// Releases the reference (`cuMemRelease`; `size` is for its span) unless already
    /// released; a refused release leaves it owned, to be tried again.
    pub(crate) fn release(&mut self, api: Api, size: usize) -> Result<()> {
        if self.released {
            return Ok(());
        }
        // SAFETY: this value owns one unreleased reference (the flag is set only once
        // the driver accepted the release) and gives it up here; a mapping of the
        // memory keeps it alive in the driver, so nothing else needs the handle.
        unsafe { super::mem_release(api, self.raw, size) }?;
        self.released = true;
        Ok(())
    }
}

/// Proof that a context's work finished: made only by
/// [`Device::synchronize_idle`](crate::Device) once `cuCtxSynchronize` succeeded.
#[must_use]
pub(crate) struct ContextIdle {
    _private: (),
}

impl ContextIdle {
    /// The proof, for `Device::synchronize_idle` alone to make after its wait.
    pub(crate) fn after_synchronize() -> ContextIdle {
        ContextIdle { _private: () }
    }
}

/// Linear device memory `cuMemAlloc` returned, freed at most once.
#[derive(Debug)]
pub(crate) struct DeviceMemory {
    ptr: CUdeviceptr,
    size: usize,
    freed: bool,
}

impl DeviceMemory {
    /// Allocates `size` bytes in the bound context (`cuMemAlloc_v2`).
    pub(crate) fn alloc(api: Api, _bound: &super::Bound, size: usize) -> Result<Self> {
        Ok(DeviceMemory {
            ptr: super::mem_alloc(api, size)?,
            size,
            freed: false,
        })
    }

    /// The device address.
    #[inline]
    pub(crate) fn ptr(&self) -> CUdeviceptr {
        self.ptr
    }

    /// Whether [`free`](Self::free) was called (whatever the driver answered).
    #[inline]
    pub(crate) fn is_freed(&self) -> bool {
        self.freed
    }

    /// Frees the memory (`cuMemFree_v2`) in the bound context once its work finished;
    /// never again afterwards, whatever the driver answers.
    pub(crate) fn free(
        &mut self,
        api: Api,
        _bound: &super::Bound,
        _idle: &ContextIdle,
    ) -> Result<()> {
        if self.freed {
            return Ok(());
        }
        self.freed = true;
        // SAFETY: `alloc` allocated this pointer, the flag makes this its only free, and
        // `ContextIdle` proves the context's work (which could use it) finished.
        unsafe { super::mem_free(api, self.ptr, self.size) }
    }
}

/// A device address range a copy or fill may use: inside a live reservation and
/// recorded mapped by its book-keeping, which stays locked while the token (borrowing
/// it) lives; or inside live linear memory; or vouched for by an `unsafe` caller.
/// Whether the device may access it as the copy needs stays the callers' check (made
/// before the token, under the same lock).
#[derive(Clone, Copy, Debug)]
pub(crate) struct CheckedRange<'a> {
    ptr: CUdeviceptr,
    len: usize,
    _held: std::marker::PhantomData<&'a ()>,
}

impl<'a> CheckedRange<'a> {
    fn new(ptr: CUdeviceptr, len: usize) -> Self {
        CheckedRange {
            ptr,
            len,
            _held: std::marker::PhantomData,
        }
    }

    /// A range the caller vouches for.
    ///
    /// # Safety
    /// `[ptr, ptr + len)` must be device memory of the driver it is used with, mapped and
    /// accessible as the copies made on it need, while the token is used.
    pub(crate) unsafe fn vouched(ptr: CUdeviceptr, len: usize) -> CheckedRange<'static> {
        CheckedRange::new(ptr, len)
    }

    /// The length in bytes.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// `[offset, offset + len)` of this range, or an error if it does not lie inside (a
    /// bug of the caller, which splits a range it checked).
    pub(crate) fn sub(&self, offset: usize, len: usize) -> Result<CheckedRange<'a>> {
        if !offset.checked_add(len).is_some_and(|end| end <= self.len) {
            return Err(Error::invalid(format!(
                "[{offset}, +{len}) lies outside the checked {}-byte range",
                self.len
            )));
        }
        Ok(CheckedRange::new(self.ptr + offset as u64, len))
    }
}

impl ReservedRange {
    /// `[offset, offset + len)` as a [`CheckedRange`], if it lies in this live range and
    /// `mapped` (the locked book-keeping, borrowed by the token) records it mapped.
    pub(crate) fn checked<'a>(
        &self,
        mapped: &'a MappedRanges,
        offset: usize,
        len: usize,
    ) -> Result<CheckedRange<'a>> {
        let ptr = self.address(offset, len)?;
        if len != 0 && !mapped.covers(offset, len) {
            return Err(Error::NotMapped { offset, size: len });
        }
        Ok(CheckedRange::new(ptr, len))
    }
}

impl DeviceMemory {
    /// `[offset, offset + len)` as a [`CheckedRange`] (borrowing the memory), if it lies
    /// in this live memory.
    pub(crate) fn checked(&self, offset: usize, len: usize) -> Result<CheckedRange<'_>> {
        if self.freed {
            return Err(Error::invalid("the device memory was already freed"));
        }
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(CheckedRange::new(self.ptr + offset as u64, len)),
            _ => Err(Error::invalid(format!(
                "[{offset}, +{len}) lies outside the {}-byte device memory",
                self.size
            ))),
        }
    }
}

/// Queues a copy of `src.len()` bytes from `src` to `dst` on `stream`
/// (`cuMemcpyDtoDAsync`); refused unless both have the same length.
pub(crate) fn copy_dtod(
    api: Api,
    stream: &super::StreamHandle,
    dst: CheckedRange<'_>,
    src: CheckedRange<'_>,
) -> Result<()> {
    if dst.len != src.len {
        return Err(Error::invalid(format!(
            "copy ranges of different lengths ({} and {} bytes)",
            dst.len, src.len
        )));
    }
    // SAFETY: both ranges are device memory checked mapped (under their book-keeping's
    // lock, held while the tokens live) or vouched for; `stream` is live while its handle
    // is borrowed.
    unsafe { super::memcpy_dtod_async(api, dst.ptr, src.ptr, src.len, stream.raw()) }
}

/// Queues a fill of `dst` with `byte` on `stream` (`cuMemsetD8Async`).
pub(crate) fn fill(
    api: Api,
    stream: &super::StreamHandle,
    dst: CheckedRange<'_>,
    byte: u8,
) -> Result<()> {
    // SAFETY: the range is device memory checked mapped (under its book-keeping's lock,
    // held while the token lives) or vouched for; `stream` is live while borrowed.
    unsafe { super::memset_d8_async(api, dst.ptr, byte, dst.len, stream.raw()) }
}

/// Queues a copy of the first `dst.len()` bytes of `src` to `dst` on `stream`
/// (`cuMemcpyHtoDAsync`); refused if `src` is shorter.
pub(crate) fn copy_htod_staged(
    api: Api,
    stream: &super::StreamHandle,
    dst: CheckedRange<'_>,
    src: &super::HostMemory,
) -> Result<()> {
    staging_fits(dst.len, src.len())?;
    // SAFETY: the device range is checked (`CheckedRange`); the host side is `dst.len <=
    // src.len()` bytes of staging memory kept until the copy completed (`HostMemory`'s
    // invariant); `stream` is live while borrowed.
    unsafe { super::memcpy_htod_async(api, dst.ptr, src.ptr().cast(), dst.len, stream.raw()) }
}

/// Queues a copy of `dst.len` bytes of `src`, from byte `offset` on, into `dst` on
/// `stream` (`cuMemcpyHtoDAsync`); refused if they do not lie in `src`.
pub(crate) fn copy_htod_staged_at(
    api: Api,
    stream: &super::StreamHandle,
    dst: CheckedRange<'_>,
    src: &super::HostMemory,
    offset: usize,
) -> Result<()> {
    staging_fits(offset.saturating_add(dst.len), src.len())?;
    // SAFETY: as in `copy_htod_staged`: `offset + dst.len <= src.len()` bytes of staging
    // memory, kept until the copy completed.
    unsafe {
        super::memcpy_htod_async(
            api,
            dst.ptr,
            src.ptr().add(offset).cast(),
            dst.len,
            stream.raw(),
        )
    }
}

/// Queues a copy of `src` into the first `src.len()` bytes of `dst` on `stream`
/// (`cuMemcpyDtoHAsync`); refused if `dst` is shorter.
pub(crate) fn copy_dtoh_staged(
    api: Api,
    stream: &super::StreamHandle,
    dst: &super::HostMemory,
    src: CheckedRange<'_>,
) -> Result<()> {
    staging_fits(src.len, dst.len())?;
    // SAFETY: as in `copy_htod_staged`, with the staging memory written instead of read.
    unsafe { super::memcpy_dtoh_async(api, dst.ptr().cast(), src.ptr, src.len, stream.raw()) }
}

/// Refuses a staged copy of `copy` bytes through `staging` bytes of host memory.
fn staging_fits(copy: usize, staging: usize) -> Result<()> {
    if copy > staging {
        return Err(Error::invalid(format!(
            "staging memory ({staging} bytes) shorter than the {copy}-byte copy"
        )));
    }
    Ok(())
}
