//! Growth floors: the growth benches' layouts made straight through the raw table, so that
//! each library layout is reported as a ratio to the raw loop with the same memory bound.
//!
//! Every loop grows to `size` bytes in [`CHUNK`] appends, times everything from the first
//! reservation to a closing `cuCtxSynchronize`, and tears down untimed.

use std::time::{Duration, Instant};

use cuda_vmm::raw::bare;
use cuda_vmm_sys::{entry, CUdeviceptr};

use crate::raw::{check, done, missing};
use crate::{Raw, RawAllocation, RawReservation, CHUNK, GIB};

/// A whole allocation mapped by [`Raw::map_at`]. Give it back with [`Raw::unmap`].
#[must_use]
pub struct RawMapping {
    ptr: CUdeviceptr,
    size: usize,
}

impl RawMapping {
    /// The mapping's start address.
    pub fn ptr(&self) -> CUdeviceptr {
        self.ptr
    }
}

/// What a raw growth loop did.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawGrowth {
    /// Reserve, growth and the closing synchronize.
    pub elapsed: Duration,
    /// The most memory committed at once (both blocks during a realloc).
    pub peak_committed: usize,
    /// Worst committed / length once the length passed 1 GiB (0 if it never did).
    pub max_ratio_past_1gib: f64,
    /// Driver calls in the timed part.
    pub driver_calls: u64,
    /// From the same start to the end of tearing down (unmap, release, free): the build
    /// and drop cycle. Zero where not measured (realloc).
    pub cycle: Duration,
}

impl RawGrowth {
    fn step(&mut self, len: usize, committed: usize) {
        self.peak_committed = self.peak_committed.max(committed);
        if len > GIB {
            self.max_ratio_past_1gib = self.max_ratio_past_1gib.max(committed as f64 / len as f64);
        }
    }
}

impl Raw {
    /// `cuMemMap` of the whole `allocation` (of `size` bytes) at `offset` in `reservation`.
    /// Panics if the driver refuses (a wrong size, a range out of bounds or already mapped).
    pub fn map_at(
        &self,
        reservation: &RawReservation,
        offset: usize,
        allocation: &RawAllocation,
        size: usize,
    ) -> RawMapping {
        let ptr = reservation.ptr + offset as CUdeviceptr;
        // SAFETY: both tokens are live (borrowed); the driver checks that the range lies in a
        // reservation, is unmapped and matches the allocation's size, and fails otherwise.
        let rc = unsafe { bare::mem_map(self.api, ptr, size, 0, allocation.handle, 0) };
        done(rc, "cuMemMap");
        RawMapping { ptr, size }
    }

    /// One read-write `cuMemSetAccess` over `offset..offset + size` of `reservation`, which
    /// must be covered by whole mappings.
    pub fn set_access_at(&self, reservation: &RawReservation, offset: usize, size: usize) {
        let (ptr, access) = (
            reservation.ptr + offset as CUdeviceptr,
            core::slice::from_ref(&self.access),
        );
        // SAFETY: the reservation token is live; one descriptor owned by `self`; the driver
        // checks the range's mappings.
        let rc = unsafe { bare::mem_set_access(self.api, ptr, size, access) };
        done(rc, "cuMemSetAccess");
    }

    /// `cuMemUnmap` of a mapping (the caller has waited for device work on it).
    pub fn unmap(&self, mapping: RawMapping) {
        // SAFETY: the token is exactly one live mapping, consumed here so it is unmapped once.
        let rc = unsafe { bare::mem_unmap(self.api, mapping.ptr, mapping.size) };
        done(rc, "cuMemUnmap");
    }

    /// `cuMemcpyDtoD` of `bytes` from `src` to `dst`, both mapped with read-write access.
    /// Panics if `bytes` exceeds either mapping.
    pub fn copy_mapped(&self, dst: &RawMapping, src: &RawMapping, bytes: usize) {
        assert!(
            bytes <= dst.size && bytes <= src.size,
            "copy_mapped: {bytes} bytes"
        );
        // The bare tier has no synchronous copy: `entry!` stays for this one.
        let f = entry!(self.api.table(), cuMemcpyDtoD_v2).unwrap_or_else(|e| missing(e));
        // SAFETY: both ranges lie within live mappings (checked above); the driver reports a
        // range without access as an error.
        let rc = unsafe { f(dst.ptr, src.ptr, bytes) };
        check(rc, "cuMemcpyDtoD");
    }

    /// Grows one reservation of `size` bytes in [`CHUNK`] appends: when an append does not
    /// fit, `step(committed, needed)` gives the new committed size, backed by allocations of
    /// at most `max_piece` bytes (0: ONE allocation per step), each created and mapped, with
    /// one set access over the step.
    pub fn grow_in_steps(
        &self,
        size: usize,
        max_piece: usize,
        step: impl Fn(usize, usize) -> usize,
    ) -> RawGrowth {
        let mut out = RawGrowth::default();
        let start = Instant::now();
        let reservation = self.reserve(size);
        let mut pieces = Vec::new();
        let (mut len, mut committed) = (0, 0);
        while len < size {
            len += CHUNK;
            if len > committed {
                let target = step(committed, len).min(size);
                let piece = if max_piece == 0 { target } else { max_piece };
                let mut at = committed;
                while at < target {
                    let bytes = piece.min(target - at);
                    let allocation = self.create(bytes);
                    let mapping = self.map_at(&reservation, at, &allocation, bytes);
                    pieces.push((mapping, allocation));
                    out.driver_calls += 2;
                    at += bytes;
                }
                self.set_access_at(&reservation, committed, target - committed);
                out.driver_calls += 1;
                committed = target;
            }
            out.step(len, committed);
        }
        self.synchronize();
        out.elapsed = start.elapsed();
        for (mapping, allocation) in pieces.into_iter().rev() {
            self.unmap(mapping);
            self.release(allocation);
        }
        self.free(reservation);
        out.cycle = start.elapsed();
        out
    }

    /// Realloc-doubling with VMM calls, like a `Vec` on the device: when an append does not
    /// fit, a new block of twice the capacity (reserve, create, map, set access), the live
    /// bytes copied over (`cuMemcpyDtoD`), a synchronize, then the old block unmapped,
    /// released and its range freed.
    pub fn grow_realloc(&self, size: usize) -> RawGrowth {
        let mut out = RawGrowth::default();
        let start = Instant::now();
        let mut block: Option<(RawReservation, RawAllocation, RawMapping)> = None;
        let (mut len, mut capacity) = (0, 0);
        while len < size {
            let needed = len + CHUNK;
            if needed > capacity {
                let grown = (2 * capacity).max(needed);
                let reservation = self.reserve(grown);
                let allocation = self.create(grown);
                let mapping = self.map_at(&reservation, 0, &allocation, grown);
                self.set_access_at(&reservation, 0, grown);
                out.driver_calls += 4;
                if let Some((old_res, old_alloc, old_map)) = block.take() {
                    self.copy_mapped(&mapping, &old_map, len);
                    self.synchronize();
                    self.unmap(old_map);
                    self.release(old_alloc);
                    self.free(old_res);
                    out.driver_calls += 5;
                    out.peak_committed = out.peak_committed.max(capacity + grown);
                }
                capacity = grown;
                block = Some((reservation, allocation, mapping));
            }
            len = needed;
            out.step(len, capacity);
        }
        self.synchronize();
        out.elapsed = start.elapsed();
        if let Some((reservation, allocation, mapping)) = block {
            self.unmap(mapping);
            self.release(allocation);
            self.free(reservation);
        }
        out
    }
}
