//! The driver's C ABI: one `extern "C"` function per entry point, exported
//! under the exact symbol name a program compiled against `cuda.h` links to.
//!
//! Every function counts the call and checks for an injected fault (see
//! [`inject_fault`](crate::inject_fault)), then checks initialisation and the
//! current context ([`answers::NEEDS_CONTEXT`]), then its arguments, and never
//! unwinds into the caller: a panic becomes [`answers::INTERNAL_PANIC`].
//!
//! # Safety (every function here)
//! Pointer arguments must be null or valid as `cuda.h` documents for the entry
//! point: out-pointers writable for one value, input structs readable, host
//! buffers of copies valid for their byte count (unmapped host pages are
//! reported as errors, not faults). Null out-pointers are answered with
//! [`answers::NULL_POINTER`].
#![allow(non_snake_case, clippy::missing_safety_doc)]

use core::ffi::{c_char, c_int, c_uchar, c_uint, c_ulonglong, c_void, CStr};
use core::ptr::NonNull;
use std::panic::{catch_unwind, AssertUnwindSafe};

use cuda_vmm_sys::{
    cuuint64_t, CUarrayMapInfo, CUcontext, CUdevice, CUdevice_attribute, CUdeviceptr,
    CUdriverProcAddressQueryResult, CUmemAccessDesc, CUmemAllocationGranularity_flags as G,
    CUmemAllocationHandleType, CUmemAllocationProp, CUmemGenericAllocationHandle, CUmemLocation,
    CUresult, CUstream,
};

use crate::state::{self, Res};
use crate::symbols::{sym, Sym};
use crate::{answers, contexts, devices, error_strings, faults, procs};

/// Runs one entry point: fault injection, init and context checks, the body, no unwinding.
fn call(s: Sym, body: impl FnOnce() -> Res<()>) -> CUresult {
    if let Some(code) = faults::on_call(s) {
        return code;
    }
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        if !s.works_before_init() && !state::initialized() {
            return Err(answers::NOT_INITIALIZED);
        }
        if s.needs_context() {
            state::with(|sim| contexts::current_device(sim).map(drop))?;
        }
        body()
    }));
    match outcome {
        Ok(Ok(())) => CUresult::CUDA_SUCCESS,
        Ok(Err(code)) => code,
        Err(_) => answers::INTERNAL_PANIC,
    }
}

/// A non-null out-pointer, checked before the call has side effects.
struct Out<T>(NonNull<T>);

impl<T> Out<T> {
    fn new(p: *mut T) -> Res<Self> {
        NonNull::new(p).map(Self).ok_or(answers::NULL_POINTER)
    }

    /// # Safety
    /// The pointer must be valid for a write of `T` (the entry point's contract).
    unsafe fn write(self, value: T) {
        // SAFETY: non-null (checked in `new`) and writable per the caller.
        unsafe { self.0.as_ptr().write_unaligned(value) }
    }
}

/// Reads a required input struct.
///
/// # Safety
/// `p` must be null or valid for a read of `T`.
unsafe fn read_in<T: Copy>(p: *const T) -> Res<T> {
    if p.is_null() {
        return Err(answers::NULL_POINTER);
    }
    // SAFETY: non-null and readable per the caller.
    Ok(unsafe { p.read_unaligned() })
}

fn zero_bytes() -> Res<()> {
    match answers::COPY_ZERO_BYTES {
        CUresult::CUDA_SUCCESS => Ok(()),
        code => Err(code),
    }
}

fn device_arg(dev: CUdevice) -> Res<usize> {
    state::with(|sim| sim.device(dev.into()).ok_or(answers::BAD_DEVICE))
}

// ---- Initialisation, version, errors, entry points -----------------------------

/// `cuInit`: initialises the simulator (configuration: [`configure`](crate::configure) or the environment).
#[no_mangle]
pub unsafe extern "C" fn cuInit(Flags: c_uint) -> CUresult {
    call(const { sym("cuInit") }, || {
        if Flags != 0 {
            return Err(answers::INIT_BAD_FLAGS);
        }
        state::init()
    })
}

/// `cuDriverGetVersion` (works before `cuInit`).
#[no_mangle]
pub unsafe extern "C" fn cuDriverGetVersion(driverVersion: *mut c_int) -> CUresult {
    call(const { sym("cuDriverGetVersion") }, || {
        let out = Out::new(driverVersion)?;
        // SAFETY: entry-point contract.
        unsafe { out.write(state::driver_version()) };
        Ok(())
    })
}

fn error_text(
    out: *mut *const c_char,
    error: CUresult,
    find: fn(CUresult) -> Option<*const c_char>,
) -> Res<()> {
    let out = Out::new(out)?;
    let text = find(error);
    // SAFETY: entry-point contract; the strings are static.
    unsafe { out.write(text.unwrap_or(core::ptr::null())) };
    text.map(drop).ok_or(answers::UNKNOWN_ERROR_CODE)
}

/// `cuGetErrorName` (works before `cuInit`).
#[no_mangle]
pub unsafe extern "C" fn cuGetErrorName(error: CUresult, pStr: *mut *const c_char) -> CUresult {
    call(const { sym("cuGetErrorName") }, || {
        error_text(pStr, error, error_strings::name)
    })
}

/// `cuGetErrorString` (works before `cuInit`).
#[no_mangle]
pub unsafe extern "C" fn cuGetErrorString(error: CUresult, pStr: *mut *const c_char) -> CUresult {
    call(const { sym("cuGetErrorString") }, || {
        error_text(pStr, error, error_strings::description)
    })
}

/// Shared body of both `cuGetProcAddress` versions.
///
/// # Safety
/// `symbol` must be null or a NUL-terminated string; `pfn` and `found` null or writable.
unsafe fn get_proc(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    version: c_int,
    flags: cuuint64_t,
    found: *mut CUdriverProcAddressQueryResult,
) -> Res<()> {
    let out = Out::new(pfn)?;
    if symbol.is_null() {
        return Err(answers::NULL_POINTER);
    }
    if flags > 2 {
        return Err(answers::BAD_FLAGS);
    }
    // SAFETY: a non-null, NUL-terminated string per the entry-point contract.
    let name = unsafe { CStr::from_ptr(symbol) }.to_str().unwrap_or("");
    let (address, status) = match procs::lookup(name, version) {
        Ok(address) => (
            address,
            CUdriverProcAddressQueryResult::CU_GET_PROC_ADDRESS_SUCCESS,
        ),
        Err(status) => (core::ptr::null_mut(), status),
    };
    // SAFETY: entry-point contract.
    unsafe { out.write(address) };
    if let Some(found) = NonNull::new(found) {
        // SAFETY: a non-null optional out-pointer, writable per the contract.
        unsafe { found.as_ptr().write_unaligned(status) };
    }
    if address.is_null() {
        Err(answers::PROC_NOT_FOUND)
    } else {
        Ok(())
    }
}

/// `cuGetProcAddress_v2`: this simulator's entry point for a base name (`"cuMemCreate"`, `"cuMemGetInfo"`).
#[no_mangle]
pub unsafe extern "C" fn cuGetProcAddress_v2(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    driverVersion: c_int,
    flags: cuuint64_t,
    symbolFound: *mut CUdriverProcAddressQueryResult,
) -> CUresult {
    call(const { sym("cuGetProcAddress_v2") }, || {
        // SAFETY: forwarded entry-point contract.
        unsafe { get_proc(symbol, pfn, driverVersion, flags, symbolFound) }
    })
}

/// `cuGetProcAddress` (CUDA 11.3 signature, without the query result).
#[no_mangle]
pub unsafe extern "C" fn cuGetProcAddress(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    driverVersion: c_int,
    flags: cuuint64_t,
) -> CUresult {
    call(const { sym("cuGetProcAddress") }, || {
        // SAFETY: forwarded entry-point contract.
        unsafe { get_proc(symbol, pfn, driverVersion, flags, core::ptr::null_mut()) }
    })
}

// ---- Devices ------------------------------------------------------------------

/// `cuDeviceGet`.
#[no_mangle]
pub unsafe extern "C" fn cuDeviceGet(device: *mut CUdevice, ordinal: c_int) -> CUresult {
    call(const { sym("cuDeviceGet") }, || {
        let out = Out::new(device)?;
        device_arg(ordinal)?;
        // SAFETY: entry-point contract.
        unsafe { out.write(ordinal) };
        Ok(())
    })
}

/// `cuDeviceGetCount`.
#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetCount(count: *mut c_int) -> CUresult {
    call(const { sym("cuDeviceGetCount") }, || {
        let out = Out::new(count)?;
        let n = state::with(|sim| Ok(sim.devices.len()))?;
        // SAFETY: entry-point contract.
        unsafe { out.write(c_int::try_from(n).unwrap_or(c_int::MAX)) };
        Ok(())
    })
}

/// `cuDeviceGetName`: the name, truncated to `len - 1` bytes and NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetName(name: *mut c_char, len: c_int, dev: CUdevice) -> CUresult {
    call(const { sym("cuDeviceGetName") }, || {
        let out = NonNull::new(name).ok_or(answers::NULL_POINTER)?;
        let d = device_arg(dev)?;
        let capacity = usize::try_from(len)
            .ok()
            .filter(|n| *n > 0)
            .ok_or(answers::BAD_NAME_LENGTH)?;
        let text = state::with(|sim| Ok(sim.config.name_of(d as u32)))?;
        let n = text.len().min(capacity - 1);
        // SAFETY: the caller's buffer holds `len` bytes (entry-point contract);
        // `n + 1 <= len` bytes are written, and the source is a separate String.
        unsafe {
            core::ptr::copy_nonoverlapping(text.as_ptr(), out.as_ptr().cast::<u8>(), n);
            out.as_ptr().add(n).write(0);
        }
        Ok(())
    })
}

/// `cuDeviceGetAttribute`.
#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetAttribute(
    pi: *mut c_int,
    attrib: CUdevice_attribute,
    dev: CUdevice,
) -> CUresult {
    call(const { sym("cuDeviceGetAttribute") }, || {
        let out = Out::new(pi)?;
        let d = device_arg(dev)?;
        let value = devices::attribute(attrib, d).ok_or(answers::UNKNOWN_ATTRIBUTE)?;
        // SAFETY: entry-point contract.
        unsafe { out.write(value) };
        Ok(())
    })
}

/// `cuDeviceTotalMem_v2`.
#[no_mangle]
pub unsafe extern "C" fn cuDeviceTotalMem_v2(bytes: *mut usize, dev: CUdevice) -> CUresult {
    call(const { sym("cuDeviceTotalMem_v2") }, || {
        let out = Out::new(bytes)?;
        device_arg(dev)?;
        let total = state::with(|sim| Ok(sim.config.memory()))?;
        // SAFETY: entry-point contract.
        unsafe { out.write(total as usize) };
        Ok(())
    })
}

/// `cuDeviceCanAccessPeer`: every pair of distinct simulated devices are peers.
#[no_mangle]
pub unsafe extern "C" fn cuDeviceCanAccessPeer(
    canAccessPeer: *mut c_int,
    dev: CUdevice,
    peerDev: CUdevice,
) -> CUresult {
    call(const { sym("cuDeviceCanAccessPeer") }, || {
        let out = Out::new(canAccessPeer)?;
        let (a, b) = (device_arg(dev)?, device_arg(peerDev)?);
        // SAFETY: entry-point contract.
        unsafe { out.write(c_int::from(a != b)) };
        Ok(())
    })
}

// ---- Contexts -----------------------------------------------------------------

/// `cuDevicePrimaryCtxRetain`.
#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxRetain(pctx: *mut CUcontext, dev: CUdevice) -> CUresult {
    call(const { sym("cuDevicePrimaryCtxRetain") }, || {
        let out = Out::new(pctx)?;
        let ctx = state::with(|sim| {
            let d = sim.device(dev.into()).ok_or(answers::BAD_DEVICE)?;
            Ok(sim.retain_primary(d))
        })?;
        // SAFETY: entry-point contract.
        unsafe { out.write(ctx) };
        Ok(())
    })
}

/// `cuDevicePrimaryCtxRelease_v2`.
#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxRelease_v2(dev: CUdevice) -> CUresult {
    call(const { sym("cuDevicePrimaryCtxRelease_v2") }, || {
        state::with(|sim| {
            let d = sim.device(dev.into()).ok_or(answers::BAD_DEVICE)?;
            sim.release_primary(d)
        })
    })
}

/// `cuCtxSetCurrent` (per thread; null unbinds).
#[no_mangle]
pub unsafe extern "C" fn cuCtxSetCurrent(ctx: CUcontext) -> CUresult {
    call(const { sym("cuCtxSetCurrent") }, || {
        state::with(|sim| sim.set_current(ctx))
    })
}

/// `cuCtxGetCurrent`: the thread's context, or null.
#[no_mangle]
pub unsafe extern "C" fn cuCtxGetCurrent(pctx: *mut CUcontext) -> CUresult {
    call(const { sym("cuCtxGetCurrent") }, || {
        let out = Out::new(pctx)?;
        // SAFETY: entry-point contract.
        unsafe { out.write(contexts::current()) };
        Ok(())
    })
}

/// `cuCtxGetDevice`.
#[no_mangle]
pub unsafe extern "C" fn cuCtxGetDevice(device: *mut CUdevice) -> CUresult {
    call(const { sym("cuCtxGetDevice") }, || {
        let out = Out::new(device)?;
        let d = state::with(|sim| contexts::current_device(sim))?;
        // SAFETY: entry-point contract.
        unsafe { out.write(d as CUdevice) };
        Ok(())
    })
}

/// `cuCtxSynchronize`: all simulated work is synchronous.
#[no_mangle]
pub unsafe extern "C" fn cuCtxSynchronize() -> CUresult {
    call(const { sym("cuCtxSynchronize") }, || Ok(()))
}

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
        let out = Out::new(dptr)?;
        let ptr = state::with(|sim| {
            let d = contexts::current_device(sim)?;
            sim.alloc(d, bytesize as u64)
        })?;
        // SAFETY: entry-point contract.
        unsafe { out.write(ptr) };
        Ok(())
    })
}

/// `cuMemFree_v2`.
#[no_mangle]
pub unsafe extern "C" fn cuMemFree_v2(dptr: CUdeviceptr) -> CUresult {
    call(const { sym("cuMemFree_v2") }, || {
        state::with(|sim| sim.free(dptr))
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
        let (base, size) = state::with(|sim| sim.address_range(dptr))?;
        if let Ok(out) = Out::new(pbase) {
            // SAFETY: a non-null optional out-pointer (entry-point contract).
            unsafe { out.write(base) };
        }
        if let Ok(out) = Out::new(psize) {
            // SAFETY: as above.
            unsafe { out.write(size as usize) };
        }
        Ok(())
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
        let out = Out::new(ptr)?;
        let start = state::with(|sim| sim.reserve(size as u64, alignment as u64, addr, flags))?;
        // SAFETY: entry-point contract.
        unsafe { out.write(start) };
        Ok(())
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
        let out = Out::new(handle)?;
        // SAFETY: entry-point contract.
        let prop = unsafe { read_in(prop) }?;
        let h = state::with(|sim| sim.create(size as u64, &prop, flags))?;
        // SAFETY: entry-point contract.
        unsafe { out.write(h) };
        Ok(())
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
        let access = state::with(|sim| sim.get_access(&location, ptr))?;
        // SAFETY: entry-point contract.
        unsafe { out.write(c_ulonglong::from(access.0)) };
        Ok(())
    })
}

/// `cuMemGetAllocationGranularity`: the configured granularity (minimum = recommended).
#[no_mangle]
pub unsafe extern "C" fn cuMemGetAllocationGranularity(
    granularity: *mut usize,
    prop: *const CUmemAllocationProp,
    option: G,
) -> CUresult {
    call(const { sym("cuMemGetAllocationGranularity") }, || {
        let out = Out::new(granularity)?;
        // SAFETY: entry-point contract.
        let prop = unsafe { read_in(prop) }?;
        let g = state::with(|sim| {
            sim.check_kind(&prop)?;
            if sim.device(prop.location.id.into()).is_none() {
                if let Some(code) = answers::GRANULARITY_BAD_LOCATION_ID {
                    return Err(code);
                }
            }
            match option {
                G::CU_MEM_ALLOC_GRANULARITY_MINIMUM | G::CU_MEM_ALLOC_GRANULARITY_RECOMMENDED => {
                    Ok(sim.granularity())
                }
                _ => Err(answers::GRANULARITY_BAD_OPTION),
            }
        })?;
        // SAFETY: entry-point contract.
        unsafe { out.write(g as usize) };
        Ok(())
    })
}

/// `cuMemRetainAllocationHandle`: the handle mapped at `addr`, with one more reference.
#[no_mangle]
pub unsafe extern "C" fn cuMemRetainAllocationHandle(
    handle: *mut CUmemGenericAllocationHandle,
    addr: *mut c_void,
) -> CUresult {
    call(const { sym("cuMemRetainAllocationHandle") }, || {
        let out = Out::new(handle)?;
        let h = state::with(|sim| sim.retain_at(addr as u64))?;
        // SAFETY: entry-point contract.
        unsafe { out.write(h) };
        Ok(())
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
            let out = Out::new(prop)?;
            let p = state::with(|sim| sim.properties(handle))?;
            // SAFETY: entry-point contract.
            unsafe { out.write(p) };
            Ok(())
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
        let out = Out::new(handle)?;
        let h = state::with(|sim| {
            let device = contexts::current_device(sim).unwrap_or(0);
            sim.import(osHandle as usize, shHandleType, device)
        })?;
        // SAFETY: entry-point contract.
        unsafe { out.write(h) };
        Ok(())
    })
}

// ---- Copies and sets ---------------------------------------------------------

/// Resolves a device range for the current context's device.
fn span(addr: CUdeviceptr, len: u64, write: bool) -> Res<crate::copies::Span> {
    state::with(|sim| {
        let device = contexts::current_device(sim)?;
        sim.resolve(addr, len, device, write)
    })
}

/// `cuMemcpyHtoD_v2`.
#[no_mangle]
pub unsafe extern "C" fn cuMemcpyHtoD_v2(
    dstDevice: CUdeviceptr,
    srcHost: *const c_void,
    ByteCount: usize,
) -> CUresult {
    call(const { sym("cuMemcpyHtoD_v2") }, || {
        if ByteCount == 0 {
            return zero_bytes();
        }
        if srcHost.is_null() {
            return Err(answers::NULL_POINTER);
        }
        let dst = span(dstDevice, ByteCount as u64, true)?;
        // SAFETY: `srcHost` holds `ByteCount` readable bytes (entry-point contract).
        unsafe { dst.write_from(srcHost.cast()) }
    })
}

/// `cuMemcpyDtoH_v2`.
#[no_mangle]
pub unsafe extern "C" fn cuMemcpyDtoH_v2(
    dstHost: *mut c_void,
    srcDevice: CUdeviceptr,
    ByteCount: usize,
) -> CUresult {
    call(const { sym("cuMemcpyDtoH_v2") }, || {
        if ByteCount == 0 {
            return zero_bytes();
        }
        if dstHost.is_null() {
            return Err(answers::NULL_POINTER);
        }
        let src = span(srcDevice, ByteCount as u64, false)?;
        // SAFETY: `dstHost` holds `ByteCount` writable bytes (entry-point contract).
        unsafe { src.read_into(dstHost.cast()) }
    })
}

/// `cuMemcpyDtoD_v2`.
#[no_mangle]
pub unsafe extern "C" fn cuMemcpyDtoD_v2(
    dstDevice: CUdeviceptr,
    srcDevice: CUdeviceptr,
    ByteCount: usize,
) -> CUresult {
    call(const { sym("cuMemcpyDtoD_v2") }, || {
        if ByteCount == 0 {
            return zero_bytes();
        }
        let src = span(srcDevice, ByteCount as u64, false)?;
        let dst = span(dstDevice, ByteCount as u64, true)?;
        dst.copy_from(&src)
    })
}

/// `cuMemsetD8_v2`.
#[no_mangle]
pub unsafe extern "C" fn cuMemsetD8_v2(dstDevice: CUdeviceptr, uc: c_uchar, N: usize) -> CUresult {
    call(const { sym("cuMemsetD8_v2") }, || {
        if N == 0 {
            return zero_bytes();
        }
        span(dstDevice, N as u64, true)?.fill(&[uc])
    })
}

/// `cuMemsetD32_v2`: `N` 32-bit words; the address must be 4-byte aligned.
#[no_mangle]
pub unsafe extern "C" fn cuMemsetD32_v2(dstDevice: CUdeviceptr, ui: c_uint, N: usize) -> CUresult {
    call(const { sym("cuMemsetD32_v2") }, || {
        if N == 0 {
            return zero_bytes();
        }
        if dstDevice % 4 != 0 {
            return Err(answers::MEMSET_MISALIGNED);
        }
        let bytes = (N as u64).checked_mul(4).ok_or(answers::COPY_OVERFLOW)?;
        span(dstDevice, bytes, true)?.fill(&ui.to_ne_bytes())
    })
}
