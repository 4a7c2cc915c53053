//! Bare calls: stream-ordered allocation and memory pools.

use core::ffi::{c_int, c_void};

use cuda_vmm_sys::{
    entry, CUdevice, CUdeviceptr, CUmemPoolProps, CUmemPool_attribute, CUmemoryPool, CUstream,
};

use super::{Out, Rc};
use crate::raw::Api;

/// Whether the header declares `attr`'s value as an `int` (the reuse policies); the
/// others are `cuuint64_t`.
pub(crate) fn pool_attribute_is_int(attr: CUmemPool_attribute) -> bool {
    matches!(
        attr,
        CUmemPool_attribute::CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES
            | CUmemPool_attribute::CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC
            | CUmemPool_attribute::CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES
    )
}

/// `cuMemAllocAsync`: `size` bytes from the current pool of `stream`'s device,
/// usable in stream order from `stream`.
///
/// # Safety
/// `stream` must be a live stream of the current context, or a special handle
/// (null, `CU_STREAM_LEGACY`, `CU_STREAM_PER_THREAD`).
pub unsafe fn mem_alloc_async(api: Api, size: usize, stream: CUstream) -> Out<CUdeviceptr> {
    let f = entry!(api.table(), cuMemAllocAsync)?;
    let mut ptr = 0;
    // SAFETY: `ptr` is a valid out-pointer; `stream` is the caller's contract (memory
    // never freed only leaks).
    let rc = unsafe { f(&mut ptr, size, stream) };
    Ok((rc, ptr))
}

/// `cuMemAllocFromPoolAsync`: `size` bytes from `pool`, usable in stream order from
/// `stream`.
///
/// # Safety
/// `pool` must be a live pool of this driver (a device's default pool, or one
/// [`mem_pool_create`] made and not yet destroyed); `stream` as for
/// [`mem_alloc_async`].
pub unsafe fn mem_alloc_from_pool_async(
    api: Api,
    size: usize,
    pool: CUmemoryPool,
    stream: CUstream,
) -> Out<CUdeviceptr> {
    let f = entry!(api.table(), cuMemAllocFromPoolAsync)?;
    let mut ptr = 0;
    // SAFETY: `ptr` is a valid out-pointer; `pool` and `stream` are the caller's
    // contract.
    let rc = unsafe { f(&mut ptr, size, pool, stream) };
    Ok((rc, ptr))
}

/// `cuMemFreeAsync`: `ptr` goes back to its pool when `stream` reaches this point.
///
/// # Safety
/// `ptr` must be memory of this driver the caller owns and frees once (from
/// [`mem_alloc_async`] or [`mem_alloc_from_pool_async`]); no work outside `stream`'s
/// order may use it after the free; `stream` as for [`mem_alloc_async`].
pub unsafe fn mem_free_async(api: Api, ptr: CUdeviceptr, stream: CUstream) -> Rc {
    let f = entry!(api.table(), cuMemFreeAsync)?;
    // SAFETY: forwarded from this function's contract.
    Ok(unsafe { f(ptr, stream) })
}

/// `cuMemPoolCreate`: a new pool with `props`.
pub fn mem_pool_create(api: Api, props: &CUmemPoolProps) -> Out<CUmemoryPool> {
    let f = entry!(api.table(), cuMemPoolCreate)?;
    let mut pool: CUmemoryPool = core::ptr::null_mut();
    // SAFETY: `pool` is a valid out-pointer and `props` a valid, initialised props
    // struct (bad values fail; a pool never destroyed only leaks).
    let rc = unsafe { f(&mut pool, props) };
    Ok((rc, pool))
}

/// `cuMemPoolDestroy`.
///
/// # Safety
/// `pool` must be a pool the caller created with [`mem_pool_create`] and destroys
/// once; nothing may use it, or memory allocated from it, afterwards.
pub unsafe fn mem_pool_destroy(api: Api, pool: CUmemoryPool) -> Rc {
    let f = entry!(api.table(), cuMemPoolDestroy)?;
    // SAFETY: forwarded from this function's contract.
    Ok(unsafe { f(pool) })
}

/// `cuMemPoolSetAttribute` with `value`, passed as the `int` the header declares for
/// the reuse policies (saturated at `c_int::MAX`: they are booleans) and as a `cuuint64_t` otherwise.
///
/// # Safety
/// `pool` must be a live pool of this driver.
pub unsafe fn mem_pool_set_attribute(
    api: Api,
    pool: CUmemoryPool,
    attr: CUmemPool_attribute,
    value: u64,
) -> Rc {
    let f = entry!(api.table(), cuMemPoolSetAttribute)?;
    let mut wide = value;
    let mut narrow = c_int::try_from(value).unwrap_or(c_int::MAX);
    let ptr: *mut c_void = if pool_attribute_is_int(attr) {
        (&mut narrow as *mut c_int).cast()
    } else {
        (&mut wide as *mut u64).cast()
    };
    // SAFETY: `ptr` points at a live value of the type the header declares for
    // `attr` (8 bytes for attributes it does not know, which covers both types);
    // `pool` is the caller's contract.
    Ok(unsafe { f(pool, attr, ptr) })
}

/// `cuMemPoolGetAttribute`, read as the `int` the header declares for the reuse
/// policies (widened) and as a `cuuint64_t` otherwise.
///
/// # Safety
/// `pool` must be a live pool of this driver.
pub unsafe fn mem_pool_get_attribute(
    api: Api,
    pool: CUmemoryPool,
    attr: CUmemPool_attribute,
) -> Out<u64> {
    let f = entry!(api.table(), cuMemPoolGetAttribute)?;
    if pool_attribute_is_int(attr) {
        let mut narrow: c_int = 0;
        // SAFETY: `narrow` is a valid out-pointer of the attribute's type; `pool` is
        // the caller's contract.
        let rc = unsafe { f(pool, attr, (&mut narrow as *mut c_int).cast()) };
        // A boolean policy: negative values do not occur, and would read as 0.
        return Ok((rc, u64::try_from(narrow).unwrap_or(0)));
    }
    let mut wide: u64 = 0;
    // SAFETY: `wide` is a valid out-pointer of 8 bytes (the attribute's type, or
    // room for either type when the header does not know `attr`); `pool` is the
    // caller's contract.
    let rc = unsafe { f(pool, attr, (&mut wide as *mut u64).cast()) };
    Ok((rc, wide))
}

/// `cuMemPoolTrimTo`: releases unused memory of `pool` beyond `keep` bytes.
///
/// # Safety
/// `pool` must be a live pool of this driver.
pub unsafe fn mem_pool_trim_to(api: Api, pool: CUmemoryPool, keep: usize) -> Rc {
    let f = entry!(api.table(), cuMemPoolTrimTo)?;
    // SAFETY: forwarded from this function's contract.
    Ok(unsafe { f(pool, keep) })
}

/// `cuDeviceGetDefaultMemPool`.
pub fn device_get_default_mem_pool(api: Api, device: CUdevice) -> Out<CUmemoryPool> {
    let f = entry!(api.table(), cuDeviceGetDefaultMemPool)?;
    let mut pool: CUmemoryPool = core::ptr::null_mut();
    // SAFETY: `pool` is a valid out-pointer; bad devices fail.
    let rc = unsafe { f(&mut pool, device) };
    Ok((rc, pool))
}

/// `cuDeviceGetMemPool`: the pool `cuMemAllocAsync` on `device` uses now.
pub fn device_get_mem_pool(api: Api, device: CUdevice) -> Out<CUmemoryPool> {
    let f = entry!(api.table(), cuDeviceGetMemPool)?;
    let mut pool: CUmemoryPool = core::ptr::null_mut();
    // SAFETY: `pool` is a valid out-pointer; bad devices fail.
    let rc = unsafe { f(&mut pool, device) };
    Ok((rc, pool))
}

/// `cuDeviceSetMemPool`: makes `pool` the one `cuMemAllocAsync` on `device` uses.
///
/// # Safety
/// `pool` must be a live pool of this driver, and stay alive while it is `device`'s
/// current pool.
pub unsafe fn device_set_mem_pool(api: Api, device: CUdevice, pool: CUmemoryPool) -> Rc {
    let f = entry!(api.table(), cuDeviceSetMemPool)?;
    // SAFETY: forwarded from this function's contract.
    Ok(unsafe { f(device, pool) })
}
