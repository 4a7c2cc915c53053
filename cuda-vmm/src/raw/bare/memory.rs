//! Bare calls: memory info, virtual memory management, linear and page-locked memory.

use core::ffi::c_void;

use cuda_vmm_sys::{
    entry, CUdeviceptr, CUmemAccessDesc, CUmemAllocationGranularity_flags,
    CUmemAllocationHandleType, CUmemAllocationProp, CUmemGenericAllocationHandle, CUmemLocation,
};

use super::{Out, Rc};
use crate::raw::Api;

/// `cuMemGetInfo_v2`: `(free, total)` bytes of the current context's device.
pub fn mem_get_info(api: Api) -> Out<(usize, usize)> {
    let f = entry!(api.table(), cuMemGetInfo_v2)?;
    let (mut free, mut total) = (0, 0);
    // SAFETY: both are valid out-pointers; without a current context the call fails.
    let rc = unsafe { f(&mut free, &mut total) };
    Ok((rc, (free, total)))
}

/// `cuMemGetAllocationGranularity`.
pub fn mem_get_allocation_granularity(
    api: Api,
    prop: &CUmemAllocationProp,
    flags: CUmemAllocationGranularity_flags,
) -> Out<usize> {
    let f = entry!(api.table(), cuMemGetAllocationGranularity)?;
    let mut granularity = 0;
    // SAFETY: `granularity` is a valid out-pointer and `prop` a valid, initialised
    // prop struct (bad values fail).
    let rc = unsafe { f(&mut granularity, prop, flags) };
    Ok((rc, granularity))
}

/// `cuMemAddressReserve`: reserves virtual addresses (no memory behind them).
pub fn mem_address_reserve(
    api: Api,
    size: usize,
    alignment: usize,
    hint: CUdeviceptr,
    flags: u64,
) -> Out<CUdeviceptr> {
    let f = entry!(api.table(), cuMemAddressReserve)?;
    let mut ptr = 0;
    // SAFETY: `ptr` is a valid out-pointer; the driver validates size, alignment,
    // hint and flags, and a new range overlaps nothing.
    let rc = unsafe { f(&mut ptr, size, alignment, hint, flags) };
    Ok((rc, ptr))
}

/// `cuMemAddressFree`.
///
/// # Safety
/// `[ptr, ptr + size)` must be exactly a range the caller reserved and owns, freed
/// once, with nothing mapped into it.
pub unsafe fn mem_address_free(api: Api, ptr: CUdeviceptr, size: usize) -> Rc {
    let f = entry!(api.table(), cuMemAddressFree)?;
    // SAFETY: forwarded from this function's contract.
    Ok(unsafe { f(ptr, size) })
}

/// `cuMemCreate`: physical memory, returned as a new handle.
pub fn mem_create(
    api: Api,
    size: usize,
    prop: &CUmemAllocationProp,
    flags: u64,
) -> Out<CUmemGenericAllocationHandle> {
    let f = entry!(api.table(), cuMemCreate)?;
    let mut handle = 0;
    // SAFETY: `handle` is a valid out-pointer and `prop` a valid, initialised prop
    // struct; the driver validates size and properties (a handle never released
    // only leaks).
    let rc = unsafe { f(&mut handle, size, prop, flags) };
    Ok((rc, handle))
}

/// `cuMemRelease`.
///
/// # Safety
/// The caller must own one unreleased reference to `handle` and give it up here;
/// nothing may use the handle through it afterwards.
pub unsafe fn mem_release(api: Api, handle: CUmemGenericAllocationHandle) -> Rc {
    let f = entry!(api.table(), cuMemRelease)?;
    // SAFETY: forwarded from this function's contract.
    Ok(unsafe { f(handle) })
}

/// `cuMemMap`.
///
/// # Safety
/// `[ptr, ptr + size)` must lie in a reservation the caller owns, with nothing
/// mapped there; `handle` must be a live allocation handle of this driver, kept
/// alive while it is mapped.
pub unsafe fn mem_map(
    api: Api,
    ptr: CUdeviceptr,
    size: usize,
    offset: usize,
    handle: CUmemGenericAllocationHandle,
    flags: u64,
) -> Rc {
    let f = entry!(api.table(), cuMemMap)?;
    // SAFETY: forwarded from this function's contract.
    Ok(unsafe { f(ptr, size, offset, handle, flags) })
}

/// `cuMemUnmap`.
///
/// # Safety
/// `[ptr, ptr + size)` must be mapped by the caller, and no device work may still
/// use it (unmapping memory in use kills the context, and the address may back
/// other memory when the work lands).
pub unsafe fn mem_unmap(api: Api, ptr: CUdeviceptr, size: usize) -> Rc {
    let f = entry!(api.table(), cuMemUnmap)?;
    // SAFETY: forwarded from this function's contract.
    Ok(unsafe { f(ptr, size) })
}

/// `cuMemSetAccess` with the descriptors in `descs`.
///
/// # Safety
/// `[ptr, ptr + size)` must be mapped memory the caller owns, and no device work
/// may rely on an access being revoked here.
pub unsafe fn mem_set_access(
    api: Api,
    ptr: CUdeviceptr,
    size: usize,
    descs: &[CUmemAccessDesc],
) -> Rc {
    let f = entry!(api.table(), cuMemSetAccess)?;
    // SAFETY: `descs` is a valid array of `descs.len()` descriptors; the range is the
    // caller's contract.
    Ok(unsafe { f(ptr, size, descs.as_ptr(), descs.len()) })
}

/// `cuMemGetAccess`: the access flags of `location` at `ptr`.
pub fn mem_get_access(api: Api, location: &CUmemLocation, ptr: CUdeviceptr) -> Out<u64> {
    let f = entry!(api.table(), cuMemGetAccess)?;
    let mut flags = 0;
    // SAFETY: `flags` is a valid out-pointer and `location` a valid struct; the driver
    // looks the address up (unmapped addresses fail).
    let rc = unsafe { f(&mut flags, location, ptr) };
    Ok((rc, flags))
}

/// `cuMemRetainAllocationHandle`: a new reference to the allocation mapped at `ptr`.
pub fn mem_retain_allocation_handle(
    api: Api,
    ptr: CUdeviceptr,
) -> Out<CUmemGenericAllocationHandle> {
    let f = entry!(api.table(), cuMemRetainAllocationHandle)?;
    let mut handle = 0;
    // SAFETY: `handle` is a valid out-pointer; the address is passed as a value the
    // driver looks up, never dereferenced by us (unmapped addresses fail; a reference
    // never released only leaks).
    let rc = unsafe { f(&mut handle, ptr as usize as *mut c_void) };
    Ok((rc, handle))
}

/// `cuMemGetAllocationPropertiesFromHandle`.
///
/// # Safety
/// `handle` must be a live allocation handle of this driver.
pub unsafe fn mem_get_allocation_properties_from_handle(
    api: Api,
    handle: CUmemGenericAllocationHandle,
) -> Out<CUmemAllocationProp> {
    let f = entry!(api.table(), cuMemGetAllocationPropertiesFromHandle)?;
    let mut prop = CUmemAllocationProp::default();
    // SAFETY: `prop` is a valid out-pointer; the handle is the caller's contract.
    let rc = unsafe { f(&mut prop, handle) };
    Ok((rc, prop))
}

/// `cuMemExportToShareableHandle` into `out`.
///
/// # Safety
/// `handle` must be a live allocation handle of this driver, and `out` valid for
/// writes of the shareable handle `kind` produces (one `int` for a POSIX file
/// descriptor, one `CUmemFabricHandle` for fabric).
pub unsafe fn mem_export_to_shareable_handle(
    api: Api,
    out: *mut c_void,
    handle: CUmemGenericAllocationHandle,
    kind: CUmemAllocationHandleType,
    flags: u64,
) -> Rc {
    let f = entry!(api.table(), cuMemExportToShareableHandle)?;
    // SAFETY: forwarded from this function's contract.
    Ok(unsafe { f(out, handle, kind, flags) })
}

/// `cuMemImportFromShareableHandle`: a new handle to the shared memory.
///
/// # Safety
/// `os_handle` must match `kind`: a file descriptor value (POSIX), or a pointer to a
/// live `CUmemFabricHandle` (fabric).
pub unsafe fn mem_import_from_shareable_handle(
    api: Api,
    os_handle: *mut c_void,
    kind: CUmemAllocationHandleType,
) -> Out<CUmemGenericAllocationHandle> {
    let f = entry!(api.table(), cuMemImportFromShareableHandle)?;
    let mut handle = 0;
    // SAFETY: `handle` is a valid out-pointer; `os_handle` is the caller's contract.
    let rc = unsafe { f(&mut handle, os_handle, kind) };
    Ok((rc, handle))
}

/// `cuMemAlloc_v2`: linear device memory in the current context.
pub fn mem_alloc(api: Api, size: usize) -> Out<CUdeviceptr> {
    let f = entry!(api.table(), cuMemAlloc_v2)?;
    let mut ptr = 0;
    // SAFETY: `ptr` is a valid out-pointer; without a current context the call fails
    // (memory never freed only leaks).
    let rc = unsafe { f(&mut ptr, size) };
    Ok((rc, ptr))
}

/// `cuMemFree_v2`.
///
/// # Safety
/// `ptr` must come from [`mem_alloc`], be freed once, and no device work may
/// still use it.
pub unsafe fn mem_free(api: Api, ptr: CUdeviceptr) -> Rc {
    let f = entry!(api.table(), cuMemFree_v2)?;
    // SAFETY: forwarded from this function's contract.
    Ok(unsafe { f(ptr) })
}

/// `cuMemHostAlloc`: page-locked host memory.
pub fn mem_host_alloc(api: Api, size: usize, flags: u32) -> Out<*mut c_void> {
    let f = entry!(api.table(), cuMemHostAlloc)?;
    let mut ptr: *mut c_void = core::ptr::null_mut();
    // SAFETY: `ptr` is a valid out-pointer; the driver validates size and flags
    // (memory never freed only leaks).
    let rc = unsafe { f(&mut ptr, size, flags) };
    Ok((rc, ptr))
}

/// `cuMemFreeHost`.
///
/// # Safety
/// `ptr` must come from [`mem_host_alloc`], be freed once, and no device work may
/// still use it.
pub unsafe fn mem_free_host(api: Api, ptr: *mut c_void) -> Rc {
    let f = entry!(api.table(), cuMemFreeHost)?;
    // SAFETY: forwarded from this function's contract.
    Ok(unsafe { f(ptr) })
}
