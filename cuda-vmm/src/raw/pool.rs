//! Checked calls: stream-ordered allocation and memory pools. The allocations and
//! frees run inside their span.

use cuda_vmm_sys::{
    CUdevice, CUdeviceptr, CUmemPoolProps, CUmemPool_attribute, CUmemoryPool, CUstream,
};
use tracing::field::{display, Empty};

use super::{bare, Api};
use crate::error::Result;
use crate::trace::Hex;

/// `cuMemAllocAsync`, in its span (`size`, and the `address` it returns).
///
/// # Safety
/// As for [`bare::mem_alloc_async`].
pub unsafe fn mem_alloc_async(api: Api, size: usize, stream: CUstream) -> Result<CUdeviceptr> {
    let span = tracing::debug_span!("cuMemAllocAsync", size, address = Empty).entered();
    // SAFETY: forwarded from this function's contract.
    let answer = unsafe { bare::mem_alloc_async(api, size, stream) };
    let ptr = api.out("cuMemAllocAsync", answer)?;
    span.record("address", display(Hex(ptr)));
    Ok(ptr)
}

/// `cuMemAllocFromPoolAsync`, in its span (`size`, and the `address` it returns).
///
/// # Safety
/// As for [`bare::mem_alloc_from_pool_async`].
pub unsafe fn mem_alloc_from_pool_async(
    api: Api,
    size: usize,
    pool: CUmemoryPool,
    stream: CUstream,
) -> Result<CUdeviceptr> {
    let span = tracing::debug_span!("cuMemAllocFromPoolAsync", size, address = Empty).entered();
    // SAFETY: forwarded from this function's contract.
    let answer = unsafe { bare::mem_alloc_from_pool_async(api, size, pool, stream) };
    let ptr = api.out("cuMemAllocFromPoolAsync", answer)?;
    span.record("address", display(Hex(ptr)));
    Ok(ptr)
}

/// `cuMemFreeAsync`, in its span (`address`).
///
/// # Safety
/// As for [`bare::mem_free_async`].
pub unsafe fn mem_free_async(api: Api, ptr: CUdeviceptr, stream: CUstream) -> Result<()> {
    let _span = tracing::debug_span!("cuMemFreeAsync", address = %Hex(ptr)).entered();
    // SAFETY: forwarded from this function's contract.
    let rc = unsafe { bare::mem_free_async(api, ptr, stream) };
    api.done("cuMemFreeAsync", rc)
}

/// `cuMemPoolCreate`.
pub fn mem_pool_create(api: Api, props: &CUmemPoolProps) -> Result<CUmemoryPool> {
    api.out("cuMemPoolCreate", bare::mem_pool_create(api, props))
}

/// `cuMemPoolDestroy`.
///
/// # Safety
/// As for [`bare::mem_pool_destroy`].
pub unsafe fn mem_pool_destroy(api: Api, pool: CUmemoryPool) -> Result<()> {
    // SAFETY: forwarded from this function's contract.
    let rc = unsafe { bare::mem_pool_destroy(api, pool) };
    api.done("cuMemPoolDestroy", rc)
}

/// `cuMemPoolSetAttribute` (the value passed as in [`bare::mem_pool_set_attribute`]).
///
/// # Safety
/// As for [`bare::mem_pool_set_attribute`].
pub unsafe fn mem_pool_set_attribute(
    api: Api,
    pool: CUmemoryPool,
    attr: CUmemPool_attribute,
    value: u64,
) -> Result<()> {
    // SAFETY: forwarded from this function's contract.
    let rc = unsafe { bare::mem_pool_set_attribute(api, pool, attr, value) };
    api.done("cuMemPoolSetAttribute", rc)
}

/// `cuMemPoolGetAttribute` (the value read as in [`bare::mem_pool_get_attribute`]).
///
/// # Safety
/// As for [`bare::mem_pool_get_attribute`].
pub unsafe fn mem_pool_get_attribute(
    api: Api,
    pool: CUmemoryPool,
    attr: CUmemPool_attribute,
) -> Result<u64> {
    // SAFETY: forwarded from this function's contract.
    let answer = unsafe { bare::mem_pool_get_attribute(api, pool, attr) };
    api.out("cuMemPoolGetAttribute", answer)
}

/// `cuMemPoolTrimTo`.
///
/// # Safety
/// As for [`bare::mem_pool_trim_to`].
pub unsafe fn mem_pool_trim_to(api: Api, pool: CUmemoryPool, keep: usize) -> Result<()> {
    // SAFETY: forwarded from this function's contract.
    let rc = unsafe { bare::mem_pool_trim_to(api, pool, keep) };
    api.done("cuMemPoolTrimTo", rc)
}

/// `cuDeviceGetDefaultMemPool`.
pub fn device_get_default_mem_pool(api: Api, device: CUdevice) -> Result<CUmemoryPool> {
    api.out(
        "cuDeviceGetDefaultMemPool",
        bare::device_get_default_mem_pool(api, device),
    )
}

/// `cuDeviceGetMemPool`.
pub fn device_get_mem_pool(api: Api, device: CUdevice) -> Result<CUmemoryPool> {
    api.out("cuDeviceGetMemPool", bare::device_get_mem_pool(api, device))
}

/// `cuDeviceSetMemPool`.
///
/// # Safety
/// As for [`bare::device_set_mem_pool`].
pub unsafe fn device_set_mem_pool(api: Api, device: CUdevice, pool: CUmemoryPool) -> Result<()> {
    // SAFETY: forwarded from this function's contract.
    let rc = unsafe { bare::device_set_mem_pool(api, device, pool) };
    api.done("cuDeviceSetMemPool", rc)
}
