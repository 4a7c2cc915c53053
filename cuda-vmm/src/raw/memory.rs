//! Checked calls: memory info, virtual memory management, sharing, linear and
//! page-locked memory. The calls that change the address space run inside their span.

use core::ffi::c_void;
use std::os::fd::{FromRawFd, OwnedFd};

use cuda_vmm_sys::{
    CUdeviceptr, CUmemAccessDesc, CUmemAllocationGranularity_flags, CUmemAllocationHandleType,
    CUmemAllocationProp, CUmemFabricHandle, CUmemGenericAllocationHandle, CUmemLocation,
};
use tracing::field::{display, Empty};

use super::{bare, Api};
use crate::error::{Error, Result};
use crate::trace::Hex;

/// `cuMemGetInfo_v2`: `(free, total)` bytes of the current context's device.
pub fn mem_get_info(api: Api) -> Result<(usize, usize)> {
    api.out("cuMemGetInfo_v2", bare::mem_get_info(api))
}

/// `cuMemGetAllocationGranularity`.
pub fn mem_get_allocation_granularity(
    api: Api,
    prop: &CUmemAllocationProp,
    flags: CUmemAllocationGranularity_flags,
) -> Result<usize> {
    api.out(
        "cuMemGetAllocationGranularity",
        bare::mem_get_allocation_granularity(api, prop, flags),
    )
}

/// `cuMemAddressReserve`, in its span (`size`, and the `address` it returns).
pub fn mem_address_reserve(
    api: Api,
    size: usize,
    alignment: usize,
    hint: CUdeviceptr,
    flags: u64,
) -> Result<CUdeviceptr> {
    let span = tracing::debug_span!("cuMemAddressReserve", size, address = Empty).entered();
    let ptr = api.out(
        "cuMemAddressReserve",
        bare::mem_address_reserve(api, size, alignment, hint, flags),
    )?;
    span.record("address", display(Hex(ptr)));
    Ok(ptr)
}

/// `cuMemAddressFree`, in its span (`address`, `size`).
///
/// # Safety
/// As for [`bare::mem_address_free`].
pub unsafe fn mem_address_free(api: Api, ptr: CUdeviceptr, size: usize) -> Result<()> {
    let _span = tracing::debug_span!("cuMemAddressFree", address = %Hex(ptr), size).entered();
    // SAFETY: forwarded from this function's contract.
    let rc = unsafe { bare::mem_address_free(api, ptr, size) };
    api.done("cuMemAddressFree", rc)
}

/// `cuMemCreate`, in its span (`size`, and the `handle` it returns).
pub fn mem_create(
    api: Api,
    size: usize,
    prop: &CUmemAllocationProp,
    flags: u64,
) -> Result<CUmemGenericAllocationHandle> {
    let span = tracing::debug_span!("cuMemCreate", size, handle = Empty).entered();
    let handle = api.out("cuMemCreate", bare::mem_create(api, size, prop, flags))?;
    span.record("handle", display(Hex(handle)));
    Ok(handle)
}

/// `cuMemRelease`, in its span (`handle`, and `size`: the allocation's size, for the
/// span only).
///
/// # Safety
/// As for [`bare::mem_release`].
pub unsafe fn mem_release(
    api: Api,
    handle: CUmemGenericAllocationHandle,
    size: usize,
) -> Result<()> {
    let _span = tracing::debug_span!("cuMemRelease", handle = %Hex(handle), size).entered();
    // SAFETY: forwarded from this function's contract.
    let rc = unsafe { bare::mem_release(api, handle) };
    api.done("cuMemRelease", rc)
}

/// `cuMemMap`, in its span (`address`, `size`, `handle`).
///
/// # Safety
/// As for [`bare::mem_map`].
pub unsafe fn mem_map(
    api: Api,
    ptr: CUdeviceptr,
    size: usize,
    offset: usize,
    handle: CUmemGenericAllocationHandle,
    flags: u64,
) -> Result<()> {
    let _span = tracing::debug_span!("cuMemMap", address = %Hex(ptr), size, handle = %Hex(handle))
        .entered();
    // SAFETY: forwarded from this function's contract.
    let rc = unsafe { bare::mem_map(api, ptr, size, offset, handle, flags) };
    api.done("cuMemMap", rc)
}

/// `cuMemUnmap`, in its span (`address`, `size`).
///
/// # Safety
/// As for [`bare::mem_unmap`].
pub unsafe fn mem_unmap(api: Api, ptr: CUdeviceptr, size: usize) -> Result<()> {
    let _span = tracing::debug_span!("cuMemUnmap", address = %Hex(ptr), size).entered();
    // SAFETY: forwarded from this function's contract.
    let rc = unsafe { bare::mem_unmap(api, ptr, size) };
    api.done("cuMemUnmap", rc)
}

/// `cuMemSetAccess`, in its span (`address`, `size`, `devices`: the number of
/// descriptors).
///
/// # Safety
/// As for [`bare::mem_set_access`].
pub unsafe fn mem_set_access(
    api: Api,
    ptr: CUdeviceptr,
    size: usize,
    descs: &[CUmemAccessDesc],
) -> Result<()> {
    let _span = tracing::debug_span!(
        "cuMemSetAccess",
        address = %Hex(ptr),
        size,
        devices = descs.len(),
    )
    .entered();
    // SAFETY: forwarded from this function's contract.
    let rc = unsafe { bare::mem_set_access(api, ptr, size, descs) };
    api.done("cuMemSetAccess", rc)
}

/// `cuMemGetAccess`: the raw access flags of `location` at `ptr`.
pub fn mem_get_access(api: Api, location: &CUmemLocation, ptr: CUdeviceptr) -> Result<u64> {
    api.out("cuMemGetAccess", bare::mem_get_access(api, location, ptr))
}

/// `cuMemRetainAllocationHandle`: a new reference, which the caller owns.
pub fn mem_retain_allocation_handle(
    api: Api,
    ptr: CUdeviceptr,
) -> Result<CUmemGenericAllocationHandle> {
    api.out(
        "cuMemRetainAllocationHandle",
        bare::mem_retain_allocation_handle(api, ptr),
    )
}

/// `cuMemGetAllocationPropertiesFromHandle`.
///
/// # Safety
/// As for [`bare::mem_get_allocation_properties_from_handle`].
pub unsafe fn mem_get_allocation_properties_from_handle(
    api: Api,
    handle: CUmemGenericAllocationHandle,
) -> Result<CUmemAllocationProp> {
    // SAFETY: forwarded from this function's contract.
    let answer = unsafe { bare::mem_get_allocation_properties_from_handle(api, handle) };
    api.out("cuMemGetAllocationPropertiesFromHandle", answer)
}

/// `cuMemExportToShareableHandle` as a POSIX file descriptor, which the caller owns.
///
/// A negative descriptor from the driver is [`Error::InvalidArgument`].
///
/// # Safety
/// `handle` must be a live allocation handle of this driver.
pub unsafe fn mem_export_posix_fd(
    api: Api,
    handle: CUmemGenericAllocationHandle,
) -> Result<OwnedFd> {
    let mut fd: core::ffi::c_int = -1;
    // SAFETY: for POSIX_FILE_DESCRIPTOR the driver writes one int to the out-pointer;
    // the handle is this function's contract.
    let rc = unsafe {
        bare::mem_export_to_shareable_handle(
            api,
            (&mut fd as *mut core::ffi::c_int).cast(),
            handle,
            CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
            0,
        )
    };
    api.done("cuMemExportToShareableHandle", rc)?;
    if fd < 0 {
        return Err(Error::invalid(format!(
            "the driver exported an invalid file descriptor {fd}"
        )));
    }
    // SAFETY: the driver created this descriptor for us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `cuMemExportToShareableHandle` as a fabric handle.
///
/// # Safety
/// `handle` must be a live allocation handle of this driver.
pub unsafe fn mem_export_fabric(
    api: Api,
    handle: CUmemGenericAllocationHandle,
) -> Result<CUmemFabricHandle> {
    let mut fabric = CUmemFabricHandle::default();
    // SAFETY: for FABRIC the driver writes one CUmemFabricHandle to the out-pointer;
    // the handle is this function's contract.
    let rc = unsafe {
        bare::mem_export_to_shareable_handle(
            api,
            (&mut fabric as *mut CUmemFabricHandle).cast(),
            handle,
            CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_FABRIC,
            0,
        )
    };
    api.done("cuMemExportToShareableHandle", rc)?;
    Ok(fabric)
}

/// `cuMemImportFromShareableHandle`, in its span (`size`: the size the exporter
/// sent, for the span only; and the `handle` it returns, which the caller owns).
///
/// # Safety
/// As for [`bare::mem_import_from_shareable_handle`].
pub unsafe fn mem_import_from_shareable_handle(
    api: Api,
    os_handle: *mut c_void,
    kind: CUmemAllocationHandleType,
    size: usize,
) -> Result<CUmemGenericAllocationHandle> {
    let span =
        tracing::debug_span!("cuMemImportFromShareableHandle", size, handle = Empty).entered();
    // SAFETY: forwarded from this function's contract.
    let answer = unsafe { bare::mem_import_from_shareable_handle(api, os_handle, kind) };
    let handle = api.out("cuMemImportFromShareableHandle", answer)?;
    span.record("handle", display(Hex(handle)));
    Ok(handle)
}

/// `cuMemAlloc_v2`, in its span (`size`, and the `address` it returns).
pub fn mem_alloc(api: Api, size: usize) -> Result<CUdeviceptr> {
    let span = tracing::debug_span!("cuMemAlloc_v2", size, address = Empty).entered();
    let ptr = api.out("cuMemAlloc_v2", bare::mem_alloc(api, size))?;
    span.record("address", display(Hex(ptr)));
    Ok(ptr)
}

/// `cuMemFree_v2`, in its span (`address`, and `size`: the allocation's size, for the
/// span only).
///
/// # Safety
/// As for [`bare::mem_free`].
pub unsafe fn mem_free(api: Api, ptr: CUdeviceptr, size: usize) -> Result<()> {
    let _span = tracing::debug_span!("cuMemFree_v2", address = %Hex(ptr), size).entered();
    // SAFETY: forwarded from this function's contract.
    let rc = unsafe { bare::mem_free(api, ptr) };
    api.done("cuMemFree_v2", rc)
}

/// `cuMemHostAlloc`.
pub fn mem_host_alloc(api: Api, size: usize, flags: u32) -> Result<*mut c_void> {
    api.out("cuMemHostAlloc", bare::mem_host_alloc(api, size, flags))
}

/// `cuMemFreeHost`.
///
/// # Safety
/// As for [`bare::mem_free_host`].
pub unsafe fn mem_free_host(api: Api, ptr: *mut c_void) -> Result<()> {
    // SAFETY: forwarded from this function's contract.
    let rc = unsafe { bare::mem_free_host(api, ptr) };
    api.done("cuMemFreeHost", rc)
}
