//! The safe layer (`cuda-vmm`): every entry point's success path and every
//! validation error, on whichever backend `Cuda::new()` picks.
//!
//! Data checks write through one mapping and read back through another (an
//! alias of the same allocation) or through a copy. Tests that count device
//! memory hold the suite's [`crate::DEVICE_MEMORY`] exclusively
//! ([`crate::memory_exclusive`]); every other test here that allocates holds it
//! shared ([`crate::memory_shared`]), like every other module of the suite.

use std::os::fd::AsFd;

use cuda_vmm::{
    AccessFlags, Allocation, AllocationProps, Backend, Cuda, Device, Error, GranularityKind,
    HandleTypes, LinearAllocation, Location, Reservation, ReserveOptions,
};

/// The backend under test, printed once per run.
use crate::cuda;
/// Device 0, kept for the whole run so its primary context stays alive.
use crate::pinned_device as device;
use cuda_vmm_tests::helpers::{gran, pattern, TestResult};

mod allocations;
mod driver;
mod linear;
mod mapping;
mod ownership;
mod reservations;
mod sharing;

/// The error of a call expected to fail.
#[track_caller]
fn fails<T>(r: cuda_vmm::Result<T>) -> Error {
    match r {
        Ok(_) => panic!("expected an error, the call succeeded"),
        Err(e) => e,
    }
}

fn rw(d: &Device) -> [(&Device, AccessFlags); 1] {
    [(d, AccessFlags::ReadWrite)]
}

/// Device 0, its granularity `g`, a pinned allocation of `granules * g` bytes on it and a
/// reservation of `reserved * g` bytes (nothing mapped).
fn allocation_and_reservation(
    granules: usize,
    reserved: usize,
) -> cuda_vmm::Result<(Device, usize, Allocation, Reservation)> {
    let d = device()?;
    let g = gran(&d)?;
    let a = Allocation::new(&d, granules * g, &AllocationProps::device(&d))?;
    let r = Reservation::new(&d, reserved * g, ReserveOptions::default())?;
    Ok((d, g, a, r))
}
