//! Thin raw calls through the selected driver table, one `unsafe` block each.
//!
//! Every function returns the `CUresult` of exactly one driver call so that a
//! conformance case can name the answer it observed.

use core::ffi::c_void;
use core::mem::MaybeUninit;

use cuda_vmm_sys::*;

/// The driver table of the selected backend.
pub fn table() -> &'static DriverTable {
    cuda_vmm_tests::raw_driver().0.table()
}

macro_rules! f {
    ($name:ident) => {
        entry!(table(), $name).expect(concat!("driver lacks ", stringify!($name)))
    };
}

/// `CUresult` → "CUDA_ERROR_INVALID_VALUE".
pub fn name(rc: CUresult) -> String {
    result_name(rc).map_or_else(|| format!("CUresult({})", rc.0), str::to_string)
}

/// A setup step that must succeed; the error names the call and the answer.
pub fn ok(call: &str, rc: CUresult) -> Result<(), String> {
    if rc == CUresult::CUDA_SUCCESS {
        Ok(())
    } else {
        Err(format!("setup {call} -> {}", name(rc)))
    }
}

pub fn init() -> CUresult {
    // SAFETY: cuInit takes only a flags word.
    unsafe { f!(cuInit)(0) }
}

pub fn device_get(ordinal: i32) -> (CUresult, CUdevice) {
    let mut d = MaybeUninit::new(-1);
    // SAFETY: `d` is a valid out-pointer for one CUdevice.
    let rc = unsafe { f!(cuDeviceGet)(d.as_mut_ptr(), ordinal) };
    // SAFETY: initialised above with a sentinel, possibly overwritten.
    (rc, unsafe { d.assume_init() })
}

pub fn device_attribute(attr: CUdevice_attribute, dev: CUdevice) -> (CUresult, i32) {
    let mut v = 0;
    // SAFETY: `v` is a valid out-pointer for one int.
    let rc = unsafe { f!(cuDeviceGetAttribute)(&mut v, attr, dev) };
    (rc, v)
}

pub fn primary_ctx_retain(dev: CUdevice) -> (CUresult, CUcontext) {
    let mut ctx: CUcontext = core::ptr::null_mut();
    // SAFETY: `ctx` is a valid out-pointer for one CUcontext.
    let rc = unsafe { f!(cuDevicePrimaryCtxRetain)(&mut ctx, dev) };
    (rc, ctx)
}

pub fn ctx_set_current(ctx: CUcontext) -> CUresult {
    // SAFETY: `ctx` is null or a context returned by the driver.
    unsafe { f!(cuCtxSetCurrent)(ctx) }
}

pub fn ctx_synchronize() -> CUresult {
    // SAFETY: no arguments.
    unsafe { f!(cuCtxSynchronize)() }
}

pub fn mem_get_info() -> (CUresult, usize, usize) {
    let (mut free, mut total) = (0usize, 0usize);
    // SAFETY: both out-pointers are valid for one size_t.
    let rc = unsafe { f!(cuMemGetInfo_v2)(&mut free, &mut total) };
    (rc, free, total)
}

/// Allocation properties for pinned device memory on `dev`.
pub fn props(dev: CUdevice, handle_types: CUmemAllocationHandleType) -> CUmemAllocationProp {
    let mut p = CUmemAllocationProp::default();
    p.type_ = CUmemAllocationType::CU_MEM_ALLOCATION_TYPE_PINNED;
    p.location.type_ = CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE;
    p.location.id = dev;
    p.requestedHandleTypes = handle_types;
    p
}

pub fn granularity(prop: &CUmemAllocationProp, option: u32) -> (CUresult, usize) {
    let mut g = 0usize;
    // SAFETY: `g` is a valid out-pointer; `prop` points to a live struct.
    let rc = unsafe {
        f!(cuMemGetAllocationGranularity)(&mut g, prop, CUmemAllocationGranularity_flags(option))
    };
    (rc, g)
}

pub fn reserve(size: usize, align: usize, hint: CUdeviceptr) -> (CUresult, CUdeviceptr) {
    let mut p: CUdeviceptr = 0;
    // SAFETY: `p` is a valid out-pointer.
    let rc = unsafe { f!(cuMemAddressReserve)(&mut p, size, align, hint, 0) };
    (rc, p)
}

pub fn reserve_flags(size: usize, flags: u64) -> (CUresult, CUdeviceptr) {
    let mut p: CUdeviceptr = 0;
    // SAFETY: `p` is a valid out-pointer.
    let rc = unsafe { f!(cuMemAddressReserve)(&mut p, size, 0, 0, flags) };
    (rc, p)
}

pub fn address_free(ptr: CUdeviceptr, size: usize) -> CUresult {
    // SAFETY: the driver validates the range; cases only pass ranges whose
    // answer does not corrupt process memory.
    unsafe { f!(cuMemAddressFree)(ptr, size) }
}

pub fn create(size: usize, prop: &CUmemAllocationProp) -> (CUresult, CUmemGenericAllocationHandle) {
    let mut h: CUmemGenericAllocationHandle = 0;
    // SAFETY: `h` is a valid out-pointer; `prop` points to a live struct.
    let rc = unsafe { f!(cuMemCreate)(&mut h, size, prop, 0) };
    (rc, h)
}

pub fn release(h: CUmemGenericAllocationHandle) -> CUresult {
    // SAFETY: cases pass live handles, except the ones marked as crashing the
    // real driver, which never run against it.
    unsafe { f!(cuMemRelease)(h) }
}

pub fn map(
    ptr: CUdeviceptr,
    size: usize,
    offset: usize,
    h: CUmemGenericAllocationHandle,
    flags: u64,
) -> CUresult {
    // SAFETY: the driver validates ranges and handles (see `release`).
    unsafe { f!(cuMemMap)(ptr, size, offset, h, flags) }
}

pub fn unmap(ptr: CUdeviceptr, size: usize) -> CUresult {
    // SAFETY: the driver validates the range.
    unsafe { f!(cuMemUnmap)(ptr, size) }
}

pub fn access_desc(dev: CUdevice, flags: u32) -> CUmemAccessDesc {
    let mut d = CUmemAccessDesc::default();
    d.location.type_ = CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE;
    d.location.id = dev;
    d.flags = CUmemAccess_flags(flags);
    d
}

pub fn set_access(ptr: CUdeviceptr, size: usize, descs: &[CUmemAccessDesc]) -> CUresult {
    // SAFETY: `descs` is a live slice of `descs.len()` descriptors.
    unsafe { f!(cuMemSetAccess)(ptr, size, descs.as_ptr(), descs.len()) }
}

pub fn get_access(ptr: CUdeviceptr, dev: CUdevice) -> (CUresult, u64) {
    let mut flags = 0u64;
    let loc = CUmemLocation {
        type_: CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
        id: dev,
    };
    // SAFETY: `flags` and `loc` are valid for the call.
    let rc = unsafe { f!(cuMemGetAccess)(&mut flags, &loc, ptr) };
    (rc, flags)
}

pub fn htod(dst: CUdeviceptr, src: &[u8]) -> CUresult {
    // SAFETY: `src` is a live host slice of the given length; the driver
    // validates `dst`.
    unsafe { f!(cuMemcpyHtoD_v2)(dst, src.as_ptr().cast::<c_void>(), src.len()) }
}

pub fn dtoh(dst: &mut [u8], src: CUdeviceptr) -> CUresult {
    // SAFETY: `dst` is a live, writable host slice of the given length.
    unsafe { f!(cuMemcpyDtoH_v2)(dst.as_mut_ptr().cast::<c_void>(), src, dst.len()) }
}

pub fn memset_d8(dst: CUdeviceptr, value: u8, n: usize) -> CUresult {
    // SAFETY: device-side only; the driver validates `dst`.
    unsafe { f!(cuMemsetD8_v2)(dst, value, n) }
}

pub fn retain_handle(ptr: CUdeviceptr) -> (CUresult, CUmemGenericAllocationHandle) {
    let mut h: CUmemGenericAllocationHandle = 0;
    // SAFETY: `h` is a valid out-pointer; the address is passed by value.
    let rc = unsafe { f!(cuMemRetainAllocationHandle)(&mut h, ptr as usize as *mut c_void) };
    (rc, h)
}

pub fn props_from_handle(h: CUmemGenericAllocationHandle) -> (CUresult, CUmemAllocationProp) {
    let mut p = CUmemAllocationProp::default();
    // SAFETY: `p` is a valid out-pointer; `h` is a live handle.
    let rc = unsafe { f!(cuMemGetAllocationPropertiesFromHandle)(&mut p, h) };
    (rc, p)
}

pub fn export_fd(h: CUmemGenericAllocationHandle) -> (CUresult, i32) {
    let mut fd: i32 = -1;
    // SAFETY: for POSIX fds the driver writes one int to the out-pointer.
    let rc = unsafe {
        f!(cuMemExportToShareableHandle)(
            (&mut fd as *mut i32).cast::<c_void>(),
            h,
            CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
            0,
        )
    };
    (rc, fd)
}

pub fn import_fd(fd: i32) -> (CUresult, CUmemGenericAllocationHandle) {
    let mut h: CUmemGenericAllocationHandle = 0;
    // SAFETY: the fd travels by value in the pointer argument, as the driver
    // documents for POSIX file descriptors.
    let rc = unsafe {
        f!(cuMemImportFromShareableHandle)(
            &mut h,
            fd as isize as *mut c_void,
            CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
        )
    };
    (rc, h)
}

pub fn close_fd(fd: i32) {
    // SAFETY: closing an fd this process owns.
    unsafe {
        libc::close(fd);
    }
}

// ---- Streams, events, context stack, pinned host memory -----------------------

pub fn ctx_push(ctx: CUcontext) -> CUresult {
    // SAFETY: `ctx` is a context returned by the driver.
    unsafe { f!(cuCtxPushCurrent_v2)(ctx) }
}

pub fn ctx_pop() -> (CUresult, CUcontext) {
    let mut ctx: CUcontext = core::ptr::null_mut();
    // SAFETY: `ctx` is a valid out-pointer.
    let rc = unsafe { f!(cuCtxPopCurrent_v2)(&mut ctx) };
    (rc, ctx)
}

pub fn ctx_get_current() -> (CUresult, CUcontext) {
    let mut ctx: CUcontext = core::ptr::null_mut();
    // SAFETY: `ctx` is a valid out-pointer.
    let rc = unsafe { f!(cuCtxGetCurrent)(&mut ctx) };
    (rc, ctx)
}

pub fn stream_create(flags: u32) -> (CUresult, CUstream) {
    let mut s: CUstream = core::ptr::null_mut();
    // SAFETY: `s` is a valid out-pointer.
    let rc = unsafe { f!(cuStreamCreate)(&mut s, flags) };
    (rc, s)
}

pub fn stream_destroy(s: CUstream) -> CUresult {
    // SAFETY: cases pass streams the driver created.
    unsafe { f!(cuStreamDestroy_v2)(s) }
}

pub fn stream_synchronize(s: CUstream) -> CUresult {
    // SAFETY: a stream the driver created, or the null (legacy) stream.
    unsafe { f!(cuStreamSynchronize)(s) }
}

pub fn stream_query(s: CUstream) -> CUresult {
    // SAFETY: as for `stream_synchronize`.
    unsafe { f!(cuStreamQuery)(s) }
}

pub fn event_create(flags: u32) -> (CUresult, CUevent) {
    let mut e: CUevent = core::ptr::null_mut();
    // SAFETY: `e` is a valid out-pointer.
    let rc = unsafe { f!(cuEventCreate)(&mut e, flags) };
    (rc, e)
}

pub fn event_query(e: CUevent) -> CUresult {
    // SAFETY: an event the driver created.
    unsafe { f!(cuEventQuery)(e) }
}

pub fn event_synchronize(e: CUevent) -> CUresult {
    // SAFETY: an event the driver created.
    unsafe { f!(cuEventSynchronize)(e) }
}

pub fn event_destroy(e: CUevent) -> CUresult {
    // SAFETY: an event the driver created.
    unsafe { f!(cuEventDestroy_v2)(e) }
}

pub fn host_alloc(size: usize) -> (CUresult, *mut c_void) {
    let mut p: *mut c_void = core::ptr::null_mut();
    // SAFETY: `p` is a valid out-pointer.
    let rc = unsafe { f!(cuMemHostAlloc)(&mut p, size, 0) };
    (rc, p)
}

pub fn free_host(p: *mut c_void) -> CUresult {
    // SAFETY: the driver validates the pointer (cases pass pinned blocks or
    // a live host address that is not one).
    unsafe { f!(cuMemFreeHost)(p) }
}

/// # Safety
/// `src` must stay readable for `n` bytes until the copy completes.
pub unsafe fn htod_async(dst: CUdeviceptr, src: *const c_void, n: usize, s: CUstream) -> CUresult {
    // SAFETY: forwarded contract.
    unsafe { f!(cuMemcpyHtoDAsync_v2)(dst, src, n, s) }
}

pub fn dtod_async(dst: CUdeviceptr, src: CUdeviceptr, n: usize, s: CUstream) -> CUresult {
    // SAFETY: device-side only; the driver validates both ranges.
    unsafe { f!(cuMemcpyDtoDAsync_v2)(dst, src, n, s) }
}

pub fn memset_d8_async(dst: CUdeviceptr, value: u8, n: usize, s: CUstream) -> CUresult {
    // SAFETY: device-side only; the driver validates `dst`.
    unsafe { f!(cuMemsetD8Async)(dst, value, n, s) }
}
