//! A driver whose VMM entry points return at once, to isolate the safe layer's own cost.
//!
//! Everything else (init, devices, contexts, granularity) is the simulator's, except
//! `cuCtxSynchronize`, which returns at once too (there is never device work here). With the
//! driver's own time taken out, `safe - raw` on this driver is exactly what the safe layer
//! adds to each call; `cargo xtask bench-report` compares it with the real driver's latency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use cuda_vmm::{Backend, Cuda, Device};
use cuda_vmm_sys::{
    entry, CUdeviceptr, CUmemAccessDesc, CUmemAllocationProp, CUmemGenericAllocationHandle,
    CUresult, Driver,
};

/// Next address handed out by the stub reserve (1 TiB granular steps, never dereferenced).
static NEXT_ADDRESS: AtomicU64 = AtomicU64::new(1 << 44);
/// Next handle handed out by the stub create.
static NEXT_HANDLE: AtomicU64 = AtomicU64::new(1);

unsafe extern "C" fn reserve(
    ptr: *mut CUdeviceptr,
    size: usize,
    _alignment: usize,
    _addr: CUdeviceptr,
    _flags: u64,
) -> CUresult {
    let step = (size as u64).div_ceil(1 << 30).max(1) << 30;
    // SAFETY: the caller passes a valid out-pointer, as for the real entry point.
    unsafe { ptr.write(NEXT_ADDRESS.fetch_add(step, Ordering::Relaxed)) };
    CUresult::CUDA_SUCCESS
}

unsafe extern "C" fn free(_ptr: CUdeviceptr, _size: usize) -> CUresult {
    CUresult::CUDA_SUCCESS
}

unsafe extern "C" fn create(
    handle: *mut CUmemGenericAllocationHandle,
    _size: usize,
    _prop: *const CUmemAllocationProp,
    _flags: u64,
) -> CUresult {
    // SAFETY: the caller passes a valid out-pointer, as for the real entry point.
    unsafe { handle.write(NEXT_HANDLE.fetch_add(1, Ordering::Relaxed)) };
    CUresult::CUDA_SUCCESS
}

unsafe extern "C" fn release(_handle: CUmemGenericAllocationHandle) -> CUresult {
    CUresult::CUDA_SUCCESS
}

unsafe extern "C" fn map(
    _ptr: CUdeviceptr,
    _size: usize,
    _offset: usize,
    _handle: CUmemGenericAllocationHandle,
    _flags: u64,
) -> CUresult {
    CUresult::CUDA_SUCCESS
}

unsafe extern "C" fn unmap(_ptr: CUdeviceptr, _size: usize) -> CUresult {
    CUresult::CUDA_SUCCESS
}

unsafe extern "C" fn set_access(
    _ptr: CUdeviceptr,
    _size: usize,
    _desc: *const CUmemAccessDesc,
    _count: usize,
) -> CUresult {
    CUresult::CUDA_SUCCESS
}

/// `cuCtxSynchronize` with no device work: the wait every unmap makes first (the ordering
/// rules). Stubbed so that the simulator's model of device work, which is not the safe
/// layer's cost, stays out of the measurement; what the wait costs on the real driver is in
/// the `ordering` bench.
unsafe extern "C" fn ctx_synchronize() -> CUresult {
    CUresult::CUDA_SUCCESS
}

/// The simulator's table with the seven VMM hot-path entry points and `cuCtxSynchronize`
/// replaced by stubs.
pub fn stub_driver() -> &'static Driver {
    static DRIVER: OnceLock<Driver> = OnceLock::new();
    DRIVER.get_or_init(|| {
        let mut table = *cuda_vmm_sim::driver().table();
        table.cuMemAddressReserve = Some(reserve);
        table.cuMemAddressFree = Some(free);
        table.cuMemCreate = Some(create);
        table.cuMemRelease = Some(release);
        table.cuMemMap = Some(map);
        table.cuMemUnmap = Some(unmap);
        table.cuMemSetAccess = Some(set_access);
        table.cuCtxSynchronize = Some(ctx_synchronize);
        // SAFETY: every slot is either the simulator's function for that symbol or a stub
        // above with the header's signature; all live for the whole program.
        unsafe { Driver::from_table(table, "stub VMM entry points over cuda-vmm-sim") }
    })
}

/// Device 0 of the stub driver.
///
/// # Panics
/// If the simulator cannot be opened (a benchmark cannot run without it).
pub fn stub_device() -> Device {
    // SAFETY: the stub driver's table is valid for the program's lifetime (see above).
    let cuda =
        unsafe { Cuda::from_driver(stub_driver(), Backend::Simulator) }.expect("stub driver");
    cuda.device(0).expect("stub device 0")
}

/// The stub entry points called straight through the table: the raw baseline.
pub struct StubRaw;

impl StubRaw {
    /// Raw reserve + free of `size` bytes.
    pub fn reserve_free(&self, size: usize) {
        let t = stub_driver().table();
        let (r, f) = (
            entry!(t, cuMemAddressReserve).expect("stub"),
            entry!(t, cuMemAddressFree).expect("stub"),
        );
        let mut ptr = 0;
        // SAFETY: stubs with valid arguments.
        unsafe {
            r(&mut ptr, size, 0, 0, 0);
            f(ptr, size);
        }
    }

    /// Raw create + release of `size` bytes.
    pub fn create_release(&self, size: usize, prop: &CUmemAllocationProp) {
        let t = stub_driver().table();
        let (c, r) = (
            entry!(t, cuMemCreate).expect("stub"),
            entry!(t, cuMemRelease).expect("stub"),
        );
        let mut handle = 0;
        // SAFETY: stubs with valid arguments.
        unsafe {
            c(&mut handle, size, prop, 0);
            r(handle);
        }
    }

    /// Raw map + unmap of `size` bytes.
    pub fn map_unmap(&self, ptr: CUdeviceptr, size: usize, handle: CUmemGenericAllocationHandle) {
        let t = stub_driver().table();
        let (m, u) = (
            entry!(t, cuMemMap).expect("stub"),
            entry!(t, cuMemUnmap).expect("stub"),
        );
        // SAFETY: stubs with valid arguments.
        unsafe {
            m(ptr, size, 0, handle, 0);
            u(ptr, size);
        }
    }

    /// Raw set access on `size` bytes with one descriptor.
    pub fn set_access(&self, ptr: CUdeviceptr, size: usize, desc: &CUmemAccessDesc) {
        let t = stub_driver().table();
        let s = entry!(t, cuMemSetAccess).expect("stub");
        // SAFETY: a stub with a valid one-element descriptor array.
        unsafe {
            s(ptr, size, desc, 1);
        }
    }
}
