//! Conformance cases for ranges and out-parameters: `cuMemSetAccess`,
//! `cuMemGetAccess`, `cuMemUnmap` and `cuMemMap` over ranges that cover part of
//! an allocation, several allocations, a mix, or holes; what each call leaves
//! behind when it fails (is anything applied, is anything unmapped); what an
//! out-parameter pre-filled with a sentinel holds after a failure; and what a
//! POSIX descriptor exported by the driver looks like.
//!
//! Layouts are written in granules `g` (the minimum granularity): `[A:2][-][B:1]`
//! is allocation A of 2g mapped at 0, a hole at 2g, allocation B of 1g at 3g.

use core::ffi::c_void;

use cuda_vmm_sys::*;

use super::cases::*;
use super::raw::*;

mod out_params;
mod ranges;

pub use out_params::*;
pub use ranges::*;

const SENTINEL: u64 = 0x5a5a_5a5a_5a5a_5a5a;
const SENTINEL_I32: i32 = 0x5a5a_5a5a;
const RW: u32 = 3;

/// A reservation of `granules` with allocations mapped at the given
/// `(at, len)` granules; unmapped, released and freed on drop.
struct Layout {
    p: CUdeviceptr,
    size: usize,
    g: usize,
    maps: Vec<(CUdeviceptr, usize, CUmemGenericAllocationHandle)>,
}

impl Layout {
    fn new(e: &Env, granules: usize, pieces: &[(usize, usize)]) -> Result<Layout, String> {
        let mut l = Layout {
            p: reserved(granules * e.g)?,
            size: granules * e.g,
            g: e.g,
            maps: Vec::new(),
        };
        for &(at, len) in pieces {
            let h = created(e, len * e.g)?;
            let va = l.at(at);
            let rc = map(va, len * e.g, 0, h, 0);
            if rc != CUresult::CUDA_SUCCESS {
                release(h);
                return Err(format!("setup cuMemMap at {at}g -> {}", name(rc)));
            }
            l.maps.push((va, len * e.g, h));
        }
        Ok(l)
    }

    /// The address `granules` into the reservation.
    fn at(&self, granules: usize) -> CUdeviceptr {
        self.p + (granules * self.g) as u64
    }
}

impl Drop for Layout {
    fn drop(&mut self) {
        for &(va, len, h) in &self.maps {
            unmap(va, len);
            release(h);
        }
        address_free(self.p, self.size);
    }
}

/// The access device `dev` has at `va`, or the error `cuMemGetAccess` gave.
fn flags(dev: CUdevice, va: CUdeviceptr) -> String {
    let (rc, f) = get_access(va, dev);
    if rc == CUresult::CUDA_SUCCESS {
        f.to_string()
    } else {
        name(rc)
    }
}

/// Whether an allocation is mapped at `va` (`cuMemRetainAllocationHandle` succeeds).
fn is_mapped(va: CUdeviceptr) -> bool {
    let (rc, h) = retain_handle(va);
    if rc == CUresult::CUDA_SUCCESS {
        release(h);
    }
    rc == CUresult::CUDA_SUCCESS
}

/// How an out-parameter pre-filled with a sentinel reads after a call.
fn out(value: u64, sentinel: u64) -> &'static str {
    match value {
        v if v == sentinel => "untouched",
        0 => "zeroed",
        _ => "written",
    }
}

/// Two reservations of one granule each, back to back: `(a, b)`, `b = a + g`.
fn adjacent_pair(e: &Env) -> Result<(CUdeviceptr, CUdeviceptr), String> {
    let probe = reserved(4 * e.g)?;
    address_free(probe, 4 * e.g);
    let (rc, a) = reserve(e.g, 0, probe);
    ok("cuMemAddressReserve a", rc)?;
    let (rc, b) = reserve(e.g, 0, probe + e.g as u64);
    ok("cuMemAddressReserve b", rc)?;
    if b != a + e.g as u64 {
        address_free(a, e.g);
        address_free(b, e.g);
        return Err("setup: could not place two reservations back to back".into());
    }
    Ok((a, b))
}
