//! The baseline: driver calls made straight through the raw table, one `entry!` each.
//!
//! The unsafe single calls stay private; benches use safe compositions that own what they
//! create: pairs (`reserve_free`), timed halves (`time_reserve`), and [`RawRange`], one
//! reservation + one allocation that can be mapped, given access and unmapped repeatedly.

use std::cell::Cell;
use std::time::Duration;

use cuda_vmm_sys::{
    entry, result_name, CUdeviceptr, CUmemAccessDesc, CUmemAccess_flags, CUmemAllocationProp,
    CUmemGenericAllocationHandle, CUmemLocation, CUmemLocationType, CUresult, DriverTable,
};

use crate::{time_op, Env};

/// Raw VMM calls on the benchmark device; every method panics (naming the call) if the driver
/// fails, since a benchmark cannot go on.
pub struct Raw {
    table: &'static DriverTable,
    prop: CUmemAllocationProp,
    access: CUmemAccessDesc,
}

/// Panics with the call's name and result code unless `rc` is success.
fn check(rc: CUresult, call: &str) {
    if rc != CUresult::CUDA_SUCCESS {
        let name = result_name(rc).unwrap_or("UNKNOWN");
        panic!("{call} failed: {name} ({})", rc.0);
    }
}

/// Panics naming the missing entry point.
fn missing(e: cuda_vmm_sys::MissingSymbol) -> ! {
    panic!("benchmark needs {e}")
}

impl Raw {
    /// Raw calls for `env`'s device, with the same allocation properties the safe layer uses
    /// (pinned device memory, no handle types) and read-write access for the device.
    pub fn new(env: &Env) -> Raw {
        let props = cuda_vmm::AllocationProps::device(&env.device);
        let ordinal = i32::try_from(env.device.ordinal()).unwrap_or(0);
        Raw {
            table: env.cuda.sys().table(),
            prop: props.to_raw(),
            access: CUmemAccessDesc {
                location: CUmemLocation {
                    type_: CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
                    id: ordinal,
                },
                flags: CUmemAccess_flags::CU_MEM_ACCESS_FLAGS_PROT_READWRITE,
            },
        }
    }

    /// `cuMemAddressReserve(size)`, alignment and flags 0.
    fn reserve(&self, size: usize) -> CUdeviceptr {
        let f = entry!(self.table, cuMemAddressReserve).unwrap_or_else(|e| missing(e));
        let mut ptr: CUdeviceptr = 0;
        // SAFETY: the out-pointer is a live local; size, alignment, hint and flags are plain
        // values the driver validates.
        check(unsafe { f(&mut ptr, size, 0, 0, 0) }, "cuMemAddressReserve");
        ptr
    }

    /// `cuMemAddressFree(ptr, size)`.
    ///
    /// # Safety
    /// `ptr`/`size` came from [`Raw::reserve`], not yet freed, with nothing mapped in it.
    unsafe fn free(&self, ptr: CUdeviceptr, size: usize) {
        let f = entry!(self.table, cuMemAddressFree).unwrap_or_else(|e| missing(e));
        // SAFETY: the caller vouches for the reservation.
        check(unsafe { f(ptr, size) }, "cuMemAddressFree");
    }

    /// `cuMemCreate(size)` with the device's pinned properties.
    fn create(&self, size: usize) -> CUmemGenericAllocationHandle {
        let f = entry!(self.table, cuMemCreate).unwrap_or_else(|e| missing(e));
        let mut handle: CUmemGenericAllocationHandle = 0;
        // SAFETY: the out-pointer is a live local and `prop` a fully initialised property
        // struct owned by `self`; the driver validates size and flags.
        check(
            unsafe { f(&mut handle, size, &self.prop, 0) },
            "cuMemCreate",
        );
        handle
    }

    /// `cuMemRelease(handle)`.
    ///
    /// # Safety
    /// `handle` came from [`Raw::create`] and was not released yet.
    unsafe fn release(&self, handle: CUmemGenericAllocationHandle) {
        let f = entry!(self.table, cuMemRelease).unwrap_or_else(|e| missing(e));
        // SAFETY: the caller vouches for the handle.
        check(unsafe { f(handle) }, "cuMemRelease");
    }

    /// `cuMemMap(ptr, size, 0, handle, 0)`.
    ///
    /// # Safety
    /// `ptr..ptr+size` lies in a live reservation and is unmapped; `handle` is live and at
    /// least `size` bytes.
    unsafe fn map(&self, ptr: CUdeviceptr, size: usize, handle: CUmemGenericAllocationHandle) {
        let f = entry!(self.table, cuMemMap).unwrap_or_else(|e| missing(e));
        // SAFETY: the caller vouches for the range and the handle.
        check(unsafe { f(ptr, size, 0, handle, 0) }, "cuMemMap");
    }

    /// `cuMemUnmap(ptr, size)`.
    ///
    /// # Safety
    /// `ptr..ptr+size` is exactly covered by mappings made with [`Raw::map`].
    unsafe fn unmap(&self, ptr: CUdeviceptr, size: usize) {
        let f = entry!(self.table, cuMemUnmap).unwrap_or_else(|e| missing(e));
        // SAFETY: the caller vouches for the range.
        check(unsafe { f(ptr, size) }, "cuMemUnmap");
    }

    /// One `cuMemSetAccess(ptr, size)` giving the device read-write access.
    ///
    /// # Safety
    /// `ptr..ptr+size` is fully mapped.
    unsafe fn set_access(&self, ptr: CUdeviceptr, size: usize) {
        let f = entry!(self.table, cuMemSetAccess).unwrap_or_else(|e| missing(e));
        // SAFETY: the caller vouches for the range; the descriptor is owned by `self` and the
        // count (1) matches it.
        check(unsafe { f(ptr, size, &self.access, 1) }, "cuMemSetAccess");
    }

    /// `cuMemAlloc(size)` (classic allocation).
    fn mem_alloc(&self, size: usize) -> CUdeviceptr {
        let f = entry!(self.table, cuMemAlloc_v2).unwrap_or_else(|e| missing(e));
        let mut ptr: CUdeviceptr = 0;
        // SAFETY: the out-pointer is a live local; the driver validates the size.
        check(unsafe { f(&mut ptr, size) }, "cuMemAlloc");
        ptr
    }

    /// `cuMemFree(ptr)`.
    ///
    /// # Safety
    /// `ptr` came from [`Raw::mem_alloc`] and was not freed yet.
    unsafe fn mem_free(&self, ptr: CUdeviceptr) {
        let f = entry!(self.table, cuMemFree_v2).unwrap_or_else(|e| missing(e));
        // SAFETY: the caller vouches for the pointer.
        check(unsafe { f(ptr) }, "cuMemFree");
    }

    /// `cuCtxSynchronize()`: waits for queued device work (e.g. copies) to finish.
    pub fn synchronize(&self) {
        let f = entry!(self.table, cuCtxSynchronize).unwrap_or_else(|e| missing(e));
        // SAFETY: no arguments; the benchmark thread's context was made current by `env()`.
        check(unsafe { f() }, "cuCtxSynchronize");
    }

    /// `cuMemAddressReserve` + `cuMemAddressFree` of `size` bytes.
    pub fn reserve_free(&self, size: usize) {
        let ptr = self.reserve(size);
        // SAFETY: `ptr` is the fresh, empty reservation of `size` bytes made just above.
        unsafe { self.free(ptr, size) }
    }

    /// Time of `iters` `cuMemAddressReserve` calls alone (each freed untimed).
    pub fn time_reserve(&self, iters: u64, size: usize) -> Duration {
        time_op(
            iters,
            || (),
            |()| self.reserve(size),
            |ptr| {
                // SAFETY: `ptr` is the fresh, empty reservation of `size` bytes just made.
                unsafe { self.free(ptr, size) }
            },
        )
    }

    /// Time of `iters` `cuMemAddressFree` calls alone (each reserved untimed).
    pub fn time_free(&self, iters: u64, size: usize) -> Duration {
        time_op(
            iters,
            || self.reserve(size),
            |ptr| {
                // SAFETY: `ptr` is the fresh, empty reservation of `size` bytes just made.
                unsafe { self.free(ptr, size) }
            },
            |()| (),
        )
    }

    /// `cuMemCreate` + `cuMemRelease` of `size` bytes.
    pub fn create_release(&self, size: usize) {
        let handle = self.create(size);
        // SAFETY: `handle` is the fresh, unmapped allocation made just above.
        unsafe { self.release(handle) }
    }

    /// Time of `iters` `cuMemCreate` calls alone (each released untimed).
    pub fn time_create(&self, iters: u64, size: usize) -> Duration {
        time_op(
            iters,
            || (),
            |()| self.create(size),
            |handle| {
                // SAFETY: `handle` is the fresh, unmapped allocation just made.
                unsafe { self.release(handle) }
            },
        )
    }

    /// Time of `iters` `cuMemRelease` calls alone (each created untimed).
    pub fn time_release(&self, iters: u64, size: usize) -> Duration {
        time_op(
            iters,
            || self.create(size),
            |handle| {
                // SAFETY: `handle` is the fresh, unmapped allocation just made.
                unsafe { self.release(handle) }
            },
            |()| (),
        )
    }

    /// `cuMemAlloc` + `cuMemFree` of `size` bytes.
    pub fn mem_alloc_free(&self, size: usize) {
        let ptr = self.mem_alloc(size);
        // SAFETY: `ptr` is the fresh allocation made just above.
        unsafe { self.mem_free(ptr) }
    }

    /// A reservation and an allocation of `size` bytes each, not mapped yet.
    pub fn range(&self, size: usize) -> RawRange<'_> {
        RawRange {
            raw: self,
            ptr: self.reserve(size),
            handle: self.create(size),
            size,
            mapped: Cell::new(false),
        }
    }
}

/// One reservation and one allocation of the same size, owned together, so mapping the whole
/// allocation at the start of the reservation is always valid. Dropping it unmaps (if mapped),
/// releases and frees.
pub struct RawRange<'r> {
    raw: &'r Raw,
    ptr: CUdeviceptr,
    handle: CUmemGenericAllocationHandle,
    size: usize,
    mapped: Cell<bool>,
}

impl RawRange<'_> {
    /// The reservation's address.
    pub fn ptr(&self) -> CUdeviceptr {
        self.ptr
    }

    /// One `cuMemMap` of the whole allocation. Panics if already mapped.
    pub fn map(&self) {
        assert!(!self.mapped.get(), "RawRange::map: already mapped");
        // SAFETY: the reservation and the allocation are live, both `size` bytes, and the
        // range is unmapped (checked above).
        unsafe { self.raw.map(self.ptr, self.size, self.handle) };
        self.mapped.set(true);
    }

    /// One `cuMemUnmap` of the whole range. Panics if not mapped.
    pub fn unmap(&self) {
        assert!(self.mapped.get(), "RawRange::unmap: not mapped");
        // SAFETY: the whole range is exactly one live mapping (checked above).
        unsafe { self.raw.unmap(self.ptr, self.size) };
        self.mapped.set(false);
    }

    /// One `cuMemSetAccess` (read-write) of the whole range. Panics if not mapped.
    pub fn set_access(&self) {
        assert!(self.mapped.get(), "RawRange::set_access: not mapped");
        // SAFETY: the whole range is mapped (checked above).
        unsafe { self.raw.set_access(self.ptr, self.size) };
    }
}

impl Drop for RawRange<'_> {
    fn drop(&mut self) {
        if self.mapped.get() {
            self.unmap();
        }
        // SAFETY: nothing is mapped any more; both were made by `Raw::range` and are given
        // back exactly once, here.
        unsafe {
            self.raw.release(self.handle);
            self.raw.free(self.ptr, self.size);
        }
    }
}
