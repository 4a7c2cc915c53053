//! The baseline: driver calls made straight through the raw table, one `entry!` each.
//!
//! What a raw call creates comes back as an owned token ([`RawReservation`],
//! [`RawAllocation`]) that only the matching call consumes, so every call here is safe to make
//! and the benches need no `unsafe`. [`RawRange`] owns a reservation and an allocation of the
//! same size and maps, gives access to and unmaps the whole of it.

use std::cell::Cell;

use cuda_vmm_sys::{
    entry, result_name, CUdeviceptr, CUmemAccessDesc, CUmemAccess_flags, CUmemAllocationProp,
    CUmemGenericAllocationHandle, CUmemLocation, CUmemLocationType, CUresult, DriverTable,
    MissingSymbol,
};

use crate::Env;

/// Raw VMM calls on the benchmark device. Every method panics (naming the call) if the driver
/// fails, since a benchmark cannot go on.
pub struct Raw {
    pub(crate) table: &'static DriverTable,
    prop: CUmemAllocationProp,
    pub(crate) access: CUmemAccessDesc,
}

/// A reservation made by [`Raw::reserve`], with nothing mapped in it. Give it back with
/// [`Raw::free`]; dropping it leaks the address range.
#[must_use]
pub struct RawReservation {
    pub(crate) ptr: CUdeviceptr,
    size: usize,
}

/// An unmapped allocation made by [`Raw::create`]. Give it back with [`Raw::release`];
/// dropping it leaks the memory.
#[must_use]
pub struct RawAllocation {
    pub(crate) handle: CUmemGenericAllocationHandle,
}

/// Memory from [`Raw::mem_alloc`]. Give it back with [`Raw::mem_free`].
#[must_use]
pub struct RawLinear {
    ptr: CUdeviceptr,
}

/// Panics with the call's name and result code unless `rc` is success.
pub(crate) fn check(rc: CUresult, call: &str) {
    if rc != CUresult::CUDA_SUCCESS {
        let name = result_name(rc).unwrap_or("UNKNOWN");
        panic!("{call} failed: {name} ({})", rc.0);
    }
}

/// Panics naming the missing entry point.
pub(crate) fn missing(e: MissingSymbol) -> ! {
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

    /// `cuMemAddressReserve(size)`, alignment, address hint and flags 0.
    pub fn reserve(&self, size: usize) -> RawReservation {
        let f = entry!(self.table, cuMemAddressReserve).unwrap_or_else(|e| missing(e));
        let mut ptr: CUdeviceptr = 0;
        // SAFETY: the out-pointer is a live local; size, alignment, hint and flags are plain
        // values the driver validates.
        let rc = unsafe { f(&mut ptr, size, 0, 0, 0) };
        check(rc, "cuMemAddressReserve");
        RawReservation { ptr, size }
    }

    /// `cuMemAddressFree` of a reservation.
    pub fn free(&self, reservation: RawReservation) {
        let f = entry!(self.table, cuMemAddressFree).unwrap_or_else(|e| missing(e));
        let RawReservation { ptr, size } = reservation;
        // SAFETY: the token is the exact range `reserve` returned, consumed here so it is freed
        // once, and nothing is mapped in it (only `RawRange` maps, into its own reservation).
        let rc = unsafe { f(ptr, size) };
        check(rc, "cuMemAddressFree");
    }

    /// `cuMemCreate(size)` with the device's pinned properties.
    pub fn create(&self, size: usize) -> RawAllocation {
        let f = entry!(self.table, cuMemCreate).unwrap_or_else(|e| missing(e));
        let mut handle: CUmemGenericAllocationHandle = 0;
        // SAFETY: the out-pointer is a live local and `prop` a fully initialised property
        // struct owned by `self`; the driver validates size and flags.
        let rc = unsafe { f(&mut handle, size, &self.prop, 0) };
        check(rc, "cuMemCreate");
        RawAllocation { handle }
    }

    /// `cuMemRelease` of an allocation.
    pub fn release(&self, allocation: RawAllocation) {
        let f = entry!(self.table, cuMemRelease).unwrap_or_else(|e| missing(e));
        // SAFETY: the token holds a live handle from `create`, consumed here so it is released
        // once; the driver would crash on a stale handle, which the token rules out.
        let rc = unsafe { f(allocation.handle) };
        check(rc, "cuMemRelease");
    }

    /// `cuMemAlloc(size)` (classic allocation).
    pub fn mem_alloc(&self, size: usize) -> RawLinear {
        let f = entry!(self.table, cuMemAlloc_v2).unwrap_or_else(|e| missing(e));
        let mut ptr: CUdeviceptr = 0;
        // SAFETY: the out-pointer is a live local; the driver validates the size.
        let rc = unsafe { f(&mut ptr, size) };
        check(rc, "cuMemAlloc");
        RawLinear { ptr }
    }

    /// `cuMemFree` of classic memory.
    pub fn mem_free(&self, memory: RawLinear) {
        let f = entry!(self.table, cuMemFree_v2).unwrap_or_else(|e| missing(e));
        // SAFETY: the token holds a pointer from `mem_alloc`, consumed here so it is freed once.
        let rc = unsafe { f(memory.ptr) };
        check(rc, "cuMemFree");
    }

    /// `cuCtxSynchronize()`: waits for queued device work (e.g. copies) to finish.
    pub fn synchronize(&self) {
        let f = entry!(self.table, cuCtxSynchronize).unwrap_or_else(|e| missing(e));
        // SAFETY: no arguments; `env()` made the device's context current on this thread.
        let rc = unsafe { f() };
        check(rc, "cuCtxSynchronize");
    }

    /// `cuMemcpyHtoD` then `cuCtxSynchronize`: a host write that has landed when it returns,
    /// the way a raw program does it right (the context must be current).
    pub fn write_synced(&self, ptr: CUdeviceptr, data: &[u8]) {
        let f = entry!(self.table, cuMemcpyHtoD_v2).unwrap_or_else(|e| missing(e));
        // SAFETY: `data` is readable for its length; the caller passes a mapped,
        // read-write range of at least that size.
        let rc = unsafe { f(ptr, data.as_ptr().cast(), data.len()) };
        check(rc, "cuMemcpyHtoD");
        self.synchronize();
    }

    /// A reservation and an allocation of `size` bytes each, not mapped yet.
    pub fn range(&self, size: usize) -> RawRange<'_> {
        self.range_in(size, size)
    }

    /// A reservation of `reserved` bytes with one allocation of `size` bytes for its start.
    pub fn range_in(&self, reserved: usize, size: usize) -> RawRange<'_> {
        let (reservation, allocation) = (self.reserve(reserved), self.create(size));
        RawRange {
            raw: self,
            ptr: reservation.ptr,
            handle: allocation.handle,
            size,
            reserved,
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
    reserved: usize,
    mapped: Cell<bool>,
}

impl RawRange<'_> {
    /// The range's start address.
    pub fn ptr(&self) -> CUdeviceptr {
        self.ptr
    }

    /// One `cuMemMap` of the whole allocation. Panics if already mapped.
    pub fn map(&self) {
        assert!(!self.mapped.get(), "RawRange::map: already mapped");
        let f = entry!(self.raw.table, cuMemMap).unwrap_or_else(|e| missing(e));
        // SAFETY: the reservation and the allocation are live and the same size; the range is
        // unmapped (checked above); whole allocation, offset 0, flags 0.
        let rc = unsafe { f(self.ptr, self.size, 0, self.handle, 0) };
        check(rc, "cuMemMap");
        self.mapped.set(true);
    }

    /// One `cuMemUnmap` of the whole range. Panics if not mapped.
    pub fn unmap(&self) {
        assert!(self.mapped.get(), "RawRange::unmap: not mapped");
        let f = entry!(self.raw.table, cuMemUnmap).unwrap_or_else(|e| missing(e));
        // SAFETY: the whole range is exactly one live mapping (checked above).
        let rc = unsafe { f(self.ptr, self.size) };
        check(rc, "cuMemUnmap");
        self.mapped.set(false);
    }

    /// One `cuMemSetAccess` (read-write) of the whole range. Panics if not mapped.
    pub fn set_access(&self) {
        assert!(self.mapped.get(), "RawRange::set_access: not mapped");
        let f = entry!(self.raw.table, cuMemSetAccess).unwrap_or_else(|e| missing(e));
        // SAFETY: the whole range is mapped (checked above); one descriptor, owned by `raw`.
        let rc = unsafe { f(self.ptr, self.size, &self.raw.access, 1) };
        check(rc, "cuMemSetAccess");
    }
}

impl Drop for RawRange<'_> {
    fn drop(&mut self) {
        if self.mapped.get() {
            self.unmap();
        }
        // The tokens `range` took apart, handed back once.
        let (ptr, handle, size) = (self.ptr, self.handle, self.reserved);
        self.raw.release(RawAllocation { handle });
        self.raw.free(RawReservation { ptr, size });
    }
}
