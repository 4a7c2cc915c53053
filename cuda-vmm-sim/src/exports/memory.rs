//! Memory information, classic allocations, reservations, physical
//! allocations, mappings, access and sharing.
#![allow(non_snake_case, clippy::missing_safety_doc)]

use core::ffi::{c_int, c_uint, c_ulonglong, c_void};

use cuda_vmm_sys::{
    CUarrayMapInfo, CUdeviceptr, CUmemAccessDesc, CUmemAllocationGranularity_flags as G,
    CUmemAllocationHandleType, CUmemAllocationProp, CUmemGenericAllocationHandle, CUmemLocation,
    CUmemLocationType, CUresult, CUstream,
};

use super::{answer, call, on_current_device, read_in, Out};
use crate::model::state;
use crate::model::symbols::sym;
use crate::model::{answers, contexts};

// ---- Memory information and classic allocations --------------------------------

/// `cuMemGetInfo_v2`: exact accounting for the current context's device.
#[no_mangle]
pub unsafe extern "C" fn cuMemGetInfo_v2(free: *mut usize, total: *mut usize) -> CUresult {
    call(const { sym("cuMemGetInfo_v2") }, || {
        let (free_out, total_out) = (Out::new(free)?, Out::new(total)?);
        let (f, t) = state::with(|sim| {
            let d = contexts::current_device(sim)?;
            Ok((sim.free_bytes(d), sim.config.memory()))
        })?;
        // SAFETY: entry-point contract.
        unsafe {
            free_out.write(f as usize);
            total_out.write(t as usize);
        }
        Ok(())
    })
}

/// `cuMemAlloc_v2` on the current context's device.
#[no_mangle]
pub unsafe extern "C" fn cuMemAlloc_v2(dptr: *mut CUdeviceptr, bytesize: usize) -> CUresult {
    call(const { sym("cuMemAlloc_v2") }, || {
        let value = || on_current_device(|sim, d| sim.alloc(d, bytesize as u64));
        // SAFETY: entry-point contract.
        unsafe { answer(dptr, value) }
    })
}

/// `cuMemFree_v2`.
#[no_mangle]
pub unsafe extern "C" fn cuMemFree_v2(dptr: CUdeviceptr) -> CUresult {
    call(const { sym("cuMemFree_v2") }, || {
        state::with_waiting(|sim| sim.free(dptr))
    })
}

/// `cuMemGetAddressRange_v2`: base and size of the allocation or mapping holding `dptr`.
#[no_mangle]
pub unsafe extern "C" fn cuMemGetAddressRange_v2(
    pbase: *mut CUdeviceptr,
    psize: *mut usize,
    dptr: CUdeviceptr,
) -> CUresult {
    call(const { sym("cuMemGetAddressRange_v2") }, || {
        // On failure base and size are set to 0, as the driver does.
        let found = state::with(|sim| sim.address_range(dptr));
        let (base, size) = *found.as_ref().unwrap_or(&(0, 0));
        if let Ok(out) = Out::new(pbase) {
            // SAFETY: a non-null optional out-pointer (entry-point contract).
            unsafe { out.write(base) };
        }
        if let Ok(out) = Out::new(psize) {
            // SAFETY: as above.
            unsafe { out.write(size as usize) };
        }
        found.map(|_| ())
    })
}

// ---- Reservations, allocations, mappings ----------------------------------------

/// `cuMemAddressReserve`.
#[no_mangle]
pub unsafe extern "C" fn cuMemAddressReserve(
    ptr: *mut CUdeviceptr,
    size: usize,
    alignment: usize,
    addr: CUdeviceptr,
    flags: c_ulonglong,
) -> CUresult {
    call(const { sym("cuMemAddressReserve") }, || {
        let value = || state::with(|sim| sim.reserve(size as u64, alignment as u64, addr, flags));
        // SAFETY: entry-point contract.
        unsafe { answer(ptr, value) }
    })
}

/// `cuMemAddressFree`.
#[no_mangle]
pub unsafe extern "C" fn cuMemAddressFree(ptr: CUdeviceptr, size: usize) -> CUresult {
    call(const { sym("cuMemAddressFree") }, || {
        state::with(|sim| sim.address_free(ptr, size as u64))
    })
}

/// `cuMemCreate`.
#[no_mangle]
pub unsafe extern "C" fn cuMemCreate(
    handle: *mut CUmemGenericAllocationHandle,
    size: usize,
    prop: *const CUmemAllocationProp,
    flags: c_ulonglong,
) -> CUresult {
    call(const { sym("cuMemCreate") }, || {
        let value = || {
            // SAFETY: entry-point contract.
            let prop = unsafe { read_in(prop) }?;
            let h = state::with(|sim| sim.create(size as u64, &prop, flags))?;
            crate::hooks::latency::pay_create(size as u64);
            Ok(h)
        };
        // SAFETY: entry-point contract.
        unsafe { answer(handle, value) }
    })
}

/// `cuMemRelease`.
#[no_mangle]
pub unsafe extern "C" fn cuMemRelease(handle: CUmemGenericAllocationHandle) -> CUresult {
    call(const { sym("cuMemRelease") }, || {
        state::with(|sim| sim.release(handle))
    })
}

/// `cuMemMap`.
#[no_mangle]
pub unsafe extern "C" fn cuMemMap(
    ptr: CUdeviceptr,
    size: usize,
    offset: usize,
    handle: CUmemGenericAllocationHandle,
    flags: c_ulonglong,
) -> CUresult {
    call(const { sym("cuMemMap") }, || {
        state::with(|sim| sim.map(ptr, size as u64, offset as u64, handle, flags))
    })
}

/// `cuMemMapArrayAsync`: not supported (the simulator has no CUDA arrays).
#[no_mangle]
pub unsafe extern "C" fn cuMemMapArrayAsync(
    mapInfoList: *mut CUarrayMapInfo,
    count: c_uint,
    hStream: CUstream,
) -> CUresult {
    let _ = (mapInfoList, count, hStream);
    call(const { sym("cuMemMapArrayAsync") }, || {
        Err(answers::MAP_ARRAY_UNSUPPORTED)
    })
}

/// `cuMemUnmap`.
#[no_mangle]
pub unsafe extern "C" fn cuMemUnmap(ptr: CUdeviceptr, size: usize) -> CUresult {
    call(const { sym("cuMemUnmap") }, || {
        state::with(|sim| sim.unmap(ptr, size as u64))
    })
}

/// `cuMemSetAccess`.
#[no_mangle]
pub unsafe extern "C" fn cuMemSetAccess(
    ptr: CUdeviceptr,
    size: usize,
    desc: *const CUmemAccessDesc,
    count: usize,
) -> CUresult {
    call(const { sym("cuMemSetAccess") }, || {
        if desc.is_null() {
            return Err(answers::NULL_POINTER);
        }
        let descs: Vec<CUmemAccessDesc> = (0..count)
            // SAFETY: `desc` points to `count` descriptors (entry-point contract).
            .map(|i| unsafe { desc.wrapping_add(i).read_unaligned() })
            .collect();
        state::with(|sim| sim.set_access(ptr, size as u64, &descs))
    })
}

/// `cuMemGetAccess`.
#[no_mangle]
pub unsafe extern "C" fn cuMemGetAccess(
    flags: *mut c_ulonglong,
    location: *const CUmemLocation,
    ptr: CUdeviceptr,
) -> CUresult {
    call(const { sym("cuMemGetAccess") }, || {
        let out = Out::new(flags)?;
        // SAFETY: entry-point contract.
        let location = unsafe { read_in(location) }?;
        let (access, answer) = state::with(|sim| sim.get_access(&location, ptr))?;
        // SAFETY: entry-point contract.
        unsafe { out.write(c_ulonglong::from(access.0)) };
        answer
    })
}

/// `cuMemGetAllocationGranularity`: the configured granularity (minimum = recommended), for
/// device and host locations alike.
#[no_mangle]
pub unsafe extern "C" fn cuMemGetAllocationGranularity(
    granularity: *mut usize,
    prop: *const CUmemAllocationProp,
    option: G,
) -> CUresult {
    call(const { sym("cuMemGetAllocationGranularity") }, || {
        let value = || {
            // SAFETY: entry-point contract.
            let prop = unsafe { read_in(prop) }?;
            let g = state::with(|sim| {
                sim.check_kind(&prop)?;
                let location = prop.location.type_;
                if location == CUmemLocationType::CU_MEM_LOCATION_TYPE_HOST_NUMA_CURRENT {
                    if let Some(code) = answers::GRANULARITY_HOST_NUMA_CURRENT {
                        return Err(code);
                    }
                }
                // Host locations take the device granularity, whatever their id (H200:
                // `granularity_host`, `granularity_host_numa`, 2 MiB like the device).
                if location == CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE
                    && sim.device(prop.location.id.into()).is_none()
                {
                    if let Some(code) = answers::GRANULARITY_BAD_LOCATION_ID {
                        return Err(code);
                    }
                }
                match option {
                    G::CU_MEM_ALLOC_GRANULARITY_MINIMUM
                    | G::CU_MEM_ALLOC_GRANULARITY_RECOMMENDED => Ok(sim.granularity()),
                    _ => Err(answers::GRANULARITY_BAD_OPTION),
                }
            })?;
            Ok(g as usize)
        };
        // SAFETY: entry-point contract.
        unsafe { answer(granularity, value) }
    })
}

/// `cuMemRetainAllocationHandle`: the handle mapped at `addr`, with one more reference.
#[no_mangle]
pub unsafe extern "C" fn cuMemRetainAllocationHandle(
    handle: *mut CUmemGenericAllocationHandle,
    addr: *mut c_void,
) -> CUresult {
    call(const { sym("cuMemRetainAllocationHandle") }, || {
        let value = || state::with(|sim| sim.retain_at(addr as u64));
        // SAFETY: entry-point contract.
        unsafe { answer(handle, value) }
    })
}

/// `cuMemGetAllocationPropertiesFromHandle`.
#[no_mangle]
pub unsafe extern "C" fn cuMemGetAllocationPropertiesFromHandle(
    prop: *mut CUmemAllocationProp,
    handle: CUmemGenericAllocationHandle,
) -> CUresult {
    call(
        const { sym("cuMemGetAllocationPropertiesFromHandle") },
        || {
            let value = || state::with(|sim| sim.properties(handle));
            // SAFETY: entry-point contract.
            unsafe { answer(prop, value) }
        },
    )
}

/// `cuMemExportToShareableHandle`: for POSIX fds, writes a new close-on-exec fd
/// (an `int`, a `dup` of the allocation's memfd) that the caller owns.
#[no_mangle]
pub unsafe extern "C" fn cuMemExportToShareableHandle(
    shareableHandle: *mut c_void,
    handle: CUmemGenericAllocationHandle,
    handleType: CUmemAllocationHandleType,
    flags: c_ulonglong,
) -> CUresult {
    call(const { sym("cuMemExportToShareableHandle") }, || {
        let out = Out::new(shareableHandle.cast::<c_int>())?;
        let fd = state::with(|sim| sim.export(handle, handleType, flags))?;
        // SAFETY: for POSIX fds the argument points to an `int` (entry-point contract).
        unsafe { out.write(fd) };
        Ok(())
    })
}

/// `cuMemImportFromShareableHandle`: for POSIX fds, `osHandle` is the fd itself,
/// cast to a pointer; the caller keeps ownership of it. Memory exported by
/// another process is attributed to the current context's device (device 0
/// when none is current).
#[no_mangle]
pub unsafe extern "C" fn cuMemImportFromShareableHandle(
    handle: *mut CUmemGenericAllocationHandle,
    osHandle: *mut c_void,
    shHandleType: CUmemAllocationHandleType,
) -> CUresult {
    call(const { sym("cuMemImportFromShareableHandle") }, || {
        let value = || {
            state::with(|sim| {
                let device = contexts::current_device(sim).unwrap_or(0);
                sim.import(osHandle as usize, shHandleType, device)
            })
        };
        // SAFETY: entry-point contract.
        unsafe { answer(handle, value) }
    })
}
