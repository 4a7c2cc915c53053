//! Stream-ordered allocation and memory pools (see `model::pools`).
#![allow(non_snake_case, clippy::missing_safety_doc)]

use core::ffi::{c_int, c_void};

use cuda_vmm_sys::{
    CUdevice, CUdeviceptr, CUmemPoolProps, CUmemPool_attribute, CUmemoryPool, CUresult, CUstream,
};

use super::{answer, call, read_in};
use crate::model::answers;
use crate::model::pools::{self, Value};
use crate::model::state;
use crate::model::symbols::sym;

/// `cuMemAllocAsync`: from the current pool of the stream's device (size 0: a
/// null pointer, as on an H200).
#[no_mangle]
pub unsafe extern "C" fn cuMemAllocAsync(
    dptr: *mut CUdeviceptr,
    bytesize: usize,
    hStream: CUstream,
) -> CUresult {
    call(const { sym("cuMemAllocAsync") }, || {
        let value = || state::with(|sim| sim.pool_alloc(bytesize as u64, None, hStream));
        // SAFETY: entry-point contract.
        unsafe { answer(dptr, value) }
    })
}

/// `cuMemAllocFromPoolAsync`.
#[no_mangle]
pub unsafe extern "C" fn cuMemAllocFromPoolAsync(
    dptr: *mut CUdeviceptr,
    bytesize: usize,
    pool: CUmemoryPool,
    hStream: CUstream,
) -> CUresult {
    call(const { sym("cuMemAllocFromPoolAsync") }, || {
        let value = || state::with(|sim| sim.pool_alloc(bytesize as u64, Some(pool), hStream));
        // SAFETY: entry-point contract.
        unsafe { answer(dptr, value) }
    })
}

/// `cuMemFreeAsync`: the memory goes back to its pool when the stream reaches
/// this point (the pool's used bytes drop in the call).
#[no_mangle]
pub unsafe extern "C" fn cuMemFreeAsync(dptr: CUdeviceptr, hStream: CUstream) -> CUresult {
    call(const { sym("cuMemFreeAsync") }, || {
        state::with(|sim| sim.pool_free(dptr, hStream))
    })
}

/// `cuMemPoolCreate`: pinned memory on a device (no host pools, no sharing).
#[no_mangle]
pub unsafe extern "C" fn cuMemPoolCreate(
    pool: *mut CUmemoryPool,
    poolProps: *const CUmemPoolProps,
) -> CUresult {
    call(const { sym("cuMemPoolCreate") }, || {
        let value = || {
            // SAFETY: null or readable per the entry-point contract.
            let props = unsafe { read_in(poolProps) }?;
            state::with(|sim| sim.pool_create(&props))
        };
        // SAFETY: entry-point contract.
        unsafe { answer(pool, value) }
    })
}

/// `cuMemPoolDestroy` (not of a default pool).
#[no_mangle]
pub unsafe extern "C" fn cuMemPoolDestroy(pool: CUmemoryPool) -> CUresult {
    call(const { sym("cuMemPoolDestroy") }, || {
        state::with(|sim| sim.pool_destroy(pool))
    })
}

/// `cuMemPoolSetAttribute`: `value` points to an `int` (reuse policies) or a
/// `cuuint64_t` (the others).
#[no_mangle]
pub unsafe extern "C" fn cuMemPoolSetAttribute(
    pool: CUmemoryPool,
    attr: CUmemPool_attribute,
    value: *mut c_void,
) -> CUresult {
    call(const { sym("cuMemPoolSetAttribute") }, || {
        let value = match pools::is_int(attr) {
            // SAFETY: the attribute's value type, readable per the entry-point contract.
            Some(true) => Value::Int(unsafe { read_in(value.cast::<c_int>()) }?),
            // SAFETY: as above.
            Some(false) => Value::Wide(unsafe { read_in(value.cast::<u64>()) }?),
            None => return Err(answers::POOL_BAD_ATTRIBUTE),
        };
        state::with(|sim| sim.pool_set_attribute(pool, attr, value))
    })
}

/// `cuMemPoolGetAttribute`: writes an `int` (reuse policies) or a `cuuint64_t`
/// (the others) to `value`.
#[no_mangle]
pub unsafe extern "C" fn cuMemPoolGetAttribute(
    pool: CUmemoryPool,
    attr: CUmemPool_attribute,
    value: *mut c_void,
) -> CUresult {
    call(const { sym("cuMemPoolGetAttribute") }, || {
        let get = || state::with(|sim| sim.pool_get_attribute(pool, attr));
        match pools::is_int(attr) {
            // SAFETY: the attribute's value type, writable per the entry-point contract.
            Some(true) => unsafe {
                answer(value.cast::<c_int>(), || match get()? {
                    Value::Int(v) => Ok(v),
                    Value::Wide(_) => Err(answers::POOL_BAD_ATTRIBUTE),
                })
            },
            // SAFETY: as above.
            Some(false) => unsafe {
                answer(value.cast::<u64>(), || match get()? {
                    Value::Wide(v) => Ok(v),
                    Value::Int(_) => Err(answers::POOL_BAD_ATTRIBUTE),
                })
            },
            None => Err(answers::POOL_BAD_ATTRIBUTE),
        }
    })
}

/// `cuMemPoolTrimTo`: releases free memory until the pool reserves at most
/// `minBytesToKeep` bytes.
#[no_mangle]
pub unsafe extern "C" fn cuMemPoolTrimTo(pool: CUmemoryPool, minBytesToKeep: usize) -> CUresult {
    call(const { sym("cuMemPoolTrimTo") }, || {
        state::with(|sim| sim.pool_trim(pool, minBytesToKeep as u64))
    })
}

/// `cuDeviceGetDefaultMemPool`.
#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetDefaultMemPool(
    pool_out: *mut CUmemoryPool,
    dev: CUdevice,
) -> CUresult {
    call(const { sym("cuDeviceGetDefaultMemPool") }, || {
        let value = || state::with(|sim| sim.default_pool(dev.into()));
        // SAFETY: entry-point contract.
        unsafe { answer(pool_out, value) }
    })
}

/// `cuDeviceGetMemPool`: the pool `cuMemAllocAsync` on the device uses.
#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetMemPool(pool: *mut CUmemoryPool, dev: CUdevice) -> CUresult {
    call(const { sym("cuDeviceGetMemPool") }, || {
        let value = || state::with(|sim| sim.current_pool(dev.into()));
        // SAFETY: entry-point contract.
        unsafe { answer(pool, value) }
    })
}

/// `cuDeviceSetMemPool`.
#[no_mangle]
pub unsafe extern "C" fn cuDeviceSetMemPool(dev: CUdevice, pool: CUmemoryPool) -> CUresult {
    call(const { sym("cuDeviceSetMemPool") }, || {
        state::with(|sim| sim.set_current_pool(dev.into(), pool))
    })
}
