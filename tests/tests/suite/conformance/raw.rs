//! The conformance cases' raw calls: a thin adapter over [`cuda_vmm::raw::bare`].
//!
//! Every function returns the `CUresult` of exactly one driver call, untouched (no
//! span, no check), so that a conformance case can name the answer it observed. A
//! missing entry point panics naming it. The few entry points the bare tier lacks
//! (the synchronous copies and fill) are called through `entry!` here.

use core::ffi::c_void;
use std::sync::OnceLock;

use cuda_vmm::raw::{bare, Api};
use cuda_vmm_sys::*;

/// The bare-tier [`Api`] of the selected backend's driver table.
pub fn api() -> Api {
    static CUDA: OnceLock<cuda_vmm::Cuda> = OnceLock::new();
    CUDA.get_or_init(|| {
        let (driver, backend) = cuda_vmm_tests::raw_driver();
        let backend = match backend {
            cuda_vmm_tests::Backend::RealDriver => cuda_vmm::Backend::RealDriver,
            cuda_vmm_tests::Backend::Simulator => cuda_vmm::Backend::Simulator,
        };
        // SAFETY: the selected driver is libcuda or the simulator, both of which
        // implement the driver API.
        unsafe { cuda_vmm::Cuda::from_driver(driver, backend) }.expect("open the selected driver")
    })
    .api()
}

/// The driver table of the selected backend.
pub fn table() -> &'static DriverTable {
    api().table()
}

/// For the entry points the bare tier lacks.
macro_rules! f {
    ($name:ident) => {
        entry!(table(), $name).expect(concat!("driver lacks ", stringify!($name)))
    };
}

/// A bare answer without out-parameters; a missing entry point panics.
fn rc(answer: bare::Rc) -> CUresult {
    answer.unwrap_or_else(|m| panic!("driver lacks {}", m.0))
}

/// A bare answer with out-parameters; a missing entry point panics.
fn out<T>(answer: bare::Out<T>) -> (CUresult, T) {
    answer.unwrap_or_else(|m| panic!("driver lacks {}", m.0))
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
    rc(bare::init(api(), 0))
}

pub fn device_get(ordinal: i32) -> (CUresult, CUdevice) {
    out(bare::device_get(api(), ordinal))
}

pub fn device_attribute(attr: CUdevice_attribute, dev: CUdevice) -> (CUresult, i32) {
    out(bare::device_get_attribute(api(), attr, dev))
}

pub fn primary_ctx_retain(dev: CUdevice) -> (CUresult, CUcontext) {
    out(bare::device_primary_ctx_retain(api(), dev))
}

pub fn ctx_set_current(ctx: CUcontext) -> CUresult {
    // SAFETY: `ctx` is null or a context returned by the driver.
    rc(unsafe { bare::ctx_set_current(api(), ctx) })
}

pub fn ctx_synchronize() -> CUresult {
    rc(bare::ctx_synchronize(api()))
}

pub fn mem_get_info() -> (CUresult, usize, usize) {
    let (rc, (free, total)) = out(bare::mem_get_info(api()));
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
    out(bare::mem_get_allocation_granularity(
        api(),
        prop,
        CUmemAllocationGranularity_flags(option),
    ))
}

pub fn reserve(size: usize, align: usize, hint: CUdeviceptr) -> (CUresult, CUdeviceptr) {
    out(bare::mem_address_reserve(api(), size, align, hint, 0))
}

pub fn reserve_flags(size: usize, flags: u64) -> (CUresult, CUdeviceptr) {
    out(bare::mem_address_reserve(api(), size, 0, 0, flags))
}

pub fn address_free(ptr: CUdeviceptr, size: usize) -> CUresult {
    // SAFETY: the driver validates the range; cases only pass ranges whose
    // answer does not corrupt process memory.
    rc(unsafe { bare::mem_address_free(api(), ptr, size) })
}

pub fn create(size: usize, prop: &CUmemAllocationProp) -> (CUresult, CUmemGenericAllocationHandle) {
    out(bare::mem_create(api(), size, prop, 0))
}

pub fn release(h: CUmemGenericAllocationHandle) -> CUresult {
    // SAFETY: cases pass live handles, except the ones marked as crashing the
    // real driver, which never run against it.
    rc(unsafe { bare::mem_release(api(), h) })
}

pub fn map(
    ptr: CUdeviceptr,
    size: usize,
    offset: usize,
    h: CUmemGenericAllocationHandle,
    flags: u64,
) -> CUresult {
    // SAFETY: the driver validates ranges and handles (see `release`).
    rc(unsafe { bare::mem_map(api(), ptr, size, offset, h, flags) })
}

pub fn unmap(ptr: CUdeviceptr, size: usize) -> CUresult {
    // SAFETY: the driver validates the range.
    rc(unsafe { bare::mem_unmap(api(), ptr, size) })
}

pub fn access_desc(dev: CUdevice, flags: u32) -> CUmemAccessDesc {
    let mut d = CUmemAccessDesc::default();
    d.location.type_ = CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE;
    d.location.id = dev;
    d.flags = CUmemAccess_flags(flags);
    d
}

pub fn set_access(ptr: CUdeviceptr, size: usize, descs: &[CUmemAccessDesc]) -> CUresult {
    // SAFETY: `descs` is a live slice; the driver validates the range.
    rc(unsafe { bare::mem_set_access(api(), ptr, size, descs) })
}

pub fn get_access(ptr: CUdeviceptr, dev: CUdevice) -> (CUresult, u64) {
    let loc = CUmemLocation {
        type_: CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
        id: dev,
    };
    out(bare::mem_get_access(api(), &loc, ptr))
}

/// An access descriptor for any location (host ones included).
pub fn access_desc_at(location: CUmemLocation, flags: u32) -> CUmemAccessDesc {
    let mut d = CUmemAccessDesc::default();
    d.location = location;
    d.flags = CUmemAccess_flags(flags);
    d
}

/// `cuMemGetAccess` at any location (host ones included).
pub fn get_access_at(ptr: CUdeviceptr, location: CUmemLocation) -> (CUresult, u64) {
    out(bare::mem_get_access(api(), &location, ptr))
}

// The bare tier has no synchronous copies or fill: `entry!` stays for these three.

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
    out(bare::mem_retain_allocation_handle(api(), ptr))
}

pub fn props_from_handle(h: CUmemGenericAllocationHandle) -> (CUresult, CUmemAllocationProp) {
    // SAFETY: `h` is a live handle (the driver validates it).
    out(unsafe { bare::mem_get_allocation_properties_from_handle(api(), h) })
}

pub fn export_fd(h: CUmemGenericAllocationHandle) -> (CUresult, i32) {
    let mut fd: i32 = -1;
    // SAFETY: for POSIX fds the driver writes one int to the out-pointer.
    let rc = rc(unsafe {
        bare::mem_export_to_shareable_handle(
            api(),
            (&mut fd as *mut i32).cast::<c_void>(),
            h,
            CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
            0,
        )
    });
    (rc, fd)
}

pub fn import_fd(fd: i32) -> (CUresult, CUmemGenericAllocationHandle) {
    // SAFETY: the fd travels by value in the pointer argument, as the driver
    // documents for POSIX file descriptors.
    out(unsafe {
        bare::mem_import_from_shareable_handle(
            api(),
            fd as isize as *mut c_void,
            CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
        )
    })
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
    rc(unsafe { bare::ctx_push_current(api(), ctx) })
}

pub fn ctx_pop() -> (CUresult, CUcontext) {
    // SAFETY: popping the calling thread's stack (the driver fails on an empty one).
    out(unsafe { bare::ctx_pop_current(api()) })
}

pub fn ctx_get_current() -> (CUresult, CUcontext) {
    out(bare::ctx_get_current(api()))
}

pub fn stream_create(flags: u32) -> (CUresult, CUstream) {
    out(bare::stream_create(api(), flags))
}

pub fn stream_destroy(s: CUstream) -> CUresult {
    // SAFETY: cases pass streams the driver created.
    rc(unsafe { bare::stream_destroy(api(), s) })
}

pub fn stream_synchronize(s: CUstream) -> CUresult {
    // SAFETY: a stream the driver created, or the null (legacy) stream.
    rc(unsafe { bare::stream_synchronize(api(), s) })
}

pub fn stream_query(s: CUstream) -> CUresult {
    // SAFETY: as for `stream_synchronize`.
    rc(unsafe { bare::stream_query(api(), s) })
}

pub fn event_create(flags: u32) -> (CUresult, CUevent) {
    out(bare::event_create(api(), flags))
}

pub fn event_query(e: CUevent) -> CUresult {
    // SAFETY: an event the driver created.
    rc(unsafe { bare::event_query(api(), e) })
}

pub fn event_synchronize(e: CUevent) -> CUresult {
    // SAFETY: an event the driver created.
    rc(unsafe { bare::event_synchronize(api(), e) })
}

pub fn event_destroy(e: CUevent) -> CUresult {
    // SAFETY: an event the driver created.
    rc(unsafe { bare::event_destroy(api(), e) })
}

pub fn host_alloc(size: usize) -> (CUresult, *mut c_void) {
    out(bare::mem_host_alloc(api(), size, 0))
}

pub fn free_host(p: *mut c_void) -> CUresult {
    // SAFETY: the driver validates the pointer (cases pass pinned blocks or
    // a live host address that is not one).
    rc(unsafe { bare::mem_free_host(api(), p) })
}

/// # Safety
/// `src` must stay readable for `n` bytes until the copy completes.
pub unsafe fn htod_async(dst: CUdeviceptr, src: *const c_void, n: usize, s: CUstream) -> CUresult {
    // SAFETY: forwarded contract.
    rc(unsafe { bare::memcpy_htod_async(api(), dst, src, n, s) })
}

pub fn dtod_async(dst: CUdeviceptr, src: CUdeviceptr, n: usize, s: CUstream) -> CUresult {
    // SAFETY: device-side only; the driver validates both ranges.
    rc(unsafe { bare::memcpy_dtod_async(api(), dst, src, n, s) })
}

pub fn memset_d8_async(dst: CUdeviceptr, value: u8, n: usize, s: CUstream) -> CUresult {
    // SAFETY: device-side only; the driver validates `dst`.
    rc(unsafe { bare::memset_d8_async(api(), dst, value, n, s) })
}
