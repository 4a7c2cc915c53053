//! The baseline: driver calls made through `cuda_vmm::raw::bare`, one each: the driver's
//! answer untouched (no span, no check), which [`check`] then reads.
//!
//! What a raw call creates comes back as an owned token ([`RawReservation`],
//! [`RawAllocation`]) that only the matching call consumes, so every call here is safe to make
//! and the benches need no `unsafe`. [`RawRange`] owns a reservation and an allocation of the
//! same size and maps, gives access to and unmaps the whole of it.

use std::cell::Cell;

use cuda_vmm::raw::{bare, Api};
use cuda_vmm_sys::{
    entry, result_name, CUdeviceptr, CUmemAccessDesc, CUmemAccess_flags, CUmemAllocationProp,
    CUmemGenericAllocationHandle, CUmemLocation, CUmemLocationType, CUresult, MissingSymbol,
};

use crate::Env;

/// Raw VMM calls on the benchmark device. Every method panics (naming the call) if the driver
/// fails, since a benchmark cannot go on.
pub struct Raw {
    pub(crate) api: Api,
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

/// [`check`] of a bare call without out-parameters.
pub(crate) fn done(answer: bare::Rc, call: &str) {
    check(answer.unwrap_or_else(|e| missing(e)), call);
}

/// [`check`] of a bare call; its out-parameters.
pub(crate) fn got<T>(answer: bare::Out<T>, call: &str) -> T {
    let (rc, value) = answer.unwrap_or_else(|e| missing(e));
    check(rc, call);
    value
}

impl Raw {
    /// Raw calls for `env`'s device, with the same allocation properties the safe layer uses
    /// (pinned device memory, no handle types) and read-write access for the device.
    pub fn new(env: &Env) -> Raw {
        let props = cuda_vmm::AllocationProps::device(&env.device);
        let ordinal = i32::try_from(env.device.ordinal()).unwrap_or(0);
        Raw {
            api: env.cuda.api(),
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
        let ptr = got(
            bare::mem_address_reserve(self.api, size, 0, 0, 0),
            "cuMemAddressReserve",
        );
        RawReservation { ptr, size }
    }

    /// `cuMemAddressFree` of a reservation.
    pub fn free(&self, reservation: RawReservation) {
        let RawReservation { ptr, size } = reservation;
        // SAFETY: the token is the exact range `reserve` returned, consumed here so it is freed
        // once, and nothing is mapped in it (only `RawRange` maps, into its own reservation).
        let rc = unsafe { bare::mem_address_free(self.api, ptr, size) };
        done(rc, "cuMemAddressFree");
    }

    /// `cuMemCreate(size)` with the device's pinned properties.
    pub fn create(&self, size: usize) -> RawAllocation {
        let handle = got(
            bare::mem_create(self.api, size, &self.prop, 0),
            "cuMemCreate",
        );
        RawAllocation { handle }
    }

    /// `cuMemRelease` of an allocation.
    pub fn release(&self, allocation: RawAllocation) {
        // SAFETY: the token holds a live handle from `create`, consumed here so it is released
        // once; the driver would crash on a stale handle, which the token rules out.
        let rc = unsafe { bare::mem_release(self.api, allocation.handle) };
        done(rc, "cuMemRelease");
    }

    /// `cuMemAlloc(size)` (classic allocation).
    pub fn mem_alloc(&self, size: usize) -> RawLinear {
        let ptr = got(bare::mem_alloc(self.api, size), "cuMemAlloc");
        RawLinear { ptr }
    }

    /// `cuMemFree` of classic memory.
    pub fn mem_free(&self, memory: RawLinear) {
        // SAFETY: the token holds a pointer from `mem_alloc`, consumed here so it is freed once.
        let rc = unsafe { bare::mem_free(self.api, memory.ptr) };
        done(rc, "cuMemFree");
    }

    /// `cuCtxSynchronize()`: waits for queued device work (e.g. copies) to finish.
    pub fn synchronize(&self) {
        // `env()` made the device's context current on this thread.
        done(bare::ctx_synchronize(self.api), "cuCtxSynchronize");
    }

    /// `cuMemcpyHtoD` then `cuCtxSynchronize`: a host write that has landed when it returns,
    /// the way a raw program does it right (the context must be current).
    pub fn write_synced(&self, ptr: CUdeviceptr, data: &[u8]) {
        // The bare tier has no synchronous copy: `entry!` stays for this one.
        let f = entry!(self.api.table(), cuMemcpyHtoD_v2).unwrap_or_else(|e| missing(e));
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
        // SAFETY: the reservation and the allocation are live and the same size; the range is
        // unmapped (checked above); whole allocation, offset 0, flags 0.
        let rc = unsafe { bare::mem_map(self.raw.api, self.ptr, self.size, 0, self.handle, 0) };
        done(rc, "cuMemMap");
        self.mapped.set(true);
    }

    /// One `cuMemUnmap` of the whole range. Panics if not mapped.
    pub fn unmap(&self) {
        assert!(self.mapped.get(), "RawRange::unmap: not mapped");
        // SAFETY: the whole range is exactly one live mapping (checked above).
        let rc = unsafe { bare::mem_unmap(self.raw.api, self.ptr, self.size) };
        done(rc, "cuMemUnmap");
        self.mapped.set(false);
    }

    /// One `cuMemSetAccess` (read-write) of the whole range. Panics if not mapped.
    pub fn set_access(&self) {
        assert!(self.mapped.get(), "RawRange::set_access: not mapped");
        // SAFETY: the whole range is mapped (checked above); one descriptor, owned by `raw`.
        let rc = unsafe {
            bare::mem_set_access(
                self.raw.api,
                self.ptr,
                self.size,
                core::slice::from_ref(&self.raw.access),
            )
        };
        done(rc, "cuMemSetAccess");
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

/// `count` allocations of `chunk` bytes mapped back to back in one reservation, as a buffer
/// or pool lays them out: the raw floor of tearing such a layout down. Dropping it unmaps
/// what is mapped, releases what is left and frees the reservation.
pub struct RawChunks<'r> {
    raw: &'r Raw,
    ptr: CUdeviceptr,
    chunk: usize,
    reserved: usize,
    handles: Vec<CUmemGenericAllocationHandle>,
    mapped: bool,
}

impl Raw {
    /// Reserves `count * chunk` bytes and creates `count` allocations of `chunk` bytes,
    /// then maps them back to back and sets read-write access with one call.
    pub fn mapped_chunks(&self, count: usize, chunk: usize) -> RawChunks<'_> {
        let RawReservation { ptr, .. } = self.reserve(count * chunk);
        let handles = (0..count).map(|_| self.create(chunk).handle).collect();
        let mut chunks = RawChunks {
            raw: self,
            ptr,
            chunk,
            reserved: count * chunk,
            handles,
            mapped: false,
        };
        chunks.map_all();
        chunks
    }
}

impl RawChunks<'_> {
    /// The first address of the chunks.
    pub fn ptr(&self) -> CUdeviceptr {
        self.ptr
    }

    fn map_all(&mut self) {
        let api = self.raw.api;
        for (i, &handle) in self.handles.iter().enumerate() {
            let at = self.ptr + (i * self.chunk) as u64;
            // SAFETY: the reservation holds `handles.len() * chunk` bytes, nothing is mapped
            // yet, and each live allocation goes to its own chunk-sized slot.
            let rc = unsafe { bare::mem_map(api, at, self.chunk, 0, handle, 0) };
            done(rc, "cuMemMap");
        }
        self.mapped = true;
        let size = self.handles.len() * self.chunk;
        let access = core::slice::from_ref(&self.raw.access);
        // SAFETY: the whole range is mapped (just above); one descriptor, owned by `raw`.
        let rc = unsafe { bare::mem_set_access(api, self.ptr, size, access) };
        done(rc, "cuMemSetAccess");
    }

    /// One `cuMemUnmap` per chunk. Panics if not mapped.
    pub fn unmap_all(&mut self) {
        assert!(self.mapped, "RawChunks::unmap_all: not mapped");
        for i in 0..self.handles.len() {
            let at = self.ptr + (i * self.chunk) as u64;
            // SAFETY: each chunk-sized slot is exactly one live mapping (checked above).
            let rc = unsafe { bare::mem_unmap(self.raw.api, at, self.chunk) };
            done(rc, "cuMemUnmap");
        }
        self.mapped = false;
    }

    /// One `cuMemRelease` per allocation (after [`unmap_all`](Self::unmap_all)).
    pub fn release_all(&mut self) {
        assert!(!self.mapped, "RawChunks::release_all: still mapped");
        for handle in self.handles.drain(..) {
            self.raw.release(RawAllocation { handle });
        }
    }
}

impl Drop for RawChunks<'_> {
    fn drop(&mut self) {
        let size = self.reserved;
        if self.mapped {
            self.unmap_all();
        }
        self.release_all();
        self.raw.free(RawReservation {
            ptr: self.ptr,
            size,
        });
    }
}
