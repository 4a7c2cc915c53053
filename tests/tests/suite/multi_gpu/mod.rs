//! Several GPUs behind one pointer: reservations backed by memory of two devices, access
//! granted to a device list in one call, peer reads and writes checked by copies run on the
//! other device, and buffers and sparse arrays placing chunks on a chosen device or
//! round-robin.
//!
//! Each test runs on a real machine with two or more devices (it says "skipped" on one with
//! fewer), and on the simulator in a child process configured with two devices.

use std::time::Instant;

use cuda_vmm::{
    AccessFlags, Allocation, AllocationProps, Backend, Cuda, Device, Error, Location, Reservation,
    ReserveOptions, Stream,
};
use cuda_vmm_alloc::{
    BufferConfig, ChunkPool, GrowableBuffer, GrowthPolicy, HoleBehavior, Placement, PoolConfig,
    SparseArray, SparseConfig,
};
use cuda_vmm_sim::inject_fault;
use cuda_vmm_sys::{entry, CUmemAllocationProp, CUresult};

use cuda_vmm_tests::ptx::SlowFill;

const CHILD_ENV: &str = "CUDA_VMM_MULTI_GPU_CHILD";

use crate::cuda;
use cuda_vmm_tests::helpers::{pattern_cycle, run_child, TestResult};

/// Runs `body` on devices 0 and 1: in this process on a real driver (skipped with fewer
/// than two devices or no peer access), in a two-device simulator child otherwise.
fn on_two_devices(child: &str, body: fn(&Device, &Device) -> TestResult) -> TestResult {
    let _memory = crate::memory_exclusive();
    let is_child = std::env::var(CHILD_ENV).is_ok_and(|v| v == child);
    let cuda = cuda()?;
    if cuda.backend() == Backend::Simulator && !is_child {
        let out = run_child(child, |c| {
            c.env(CHILD_ENV, child).env(cuda_vmm_sim::ENV_DEVICES, "2");
        })?
        .stdout;
        assert!(out.contains("two devices: done"), "{out}");
        return Ok(());
    }
    if cuda.device_count()? < 2 {
        eprintln!("skipped: {child} needs 2 devices");
        return Ok(());
    }
    let (d0, d1) = (cuda.device(0)?, cuda.device(1)?);
    if !d0.can_access_peer(&d1)? || !d1.can_access_peer(&d0)? {
        eprintln!("skipped: {child} needs peer access between devices 0 and 1");
        return Ok(());
    }
    body(&d0, &d1)?;
    d0.synchronize()?;
    d1.synchronize()?;
    println!("two devices: done");
    Ok(())
}

/// The child half of a simulator test: does nothing unless spawned by [`on_two_devices`].
fn child_only(child: &str, body: fn(&Device, &Device) -> TestResult) -> TestResult {
    if !std::env::var(CHILD_ENV).is_ok_and(|v| v == child) {
        return Ok(());
    }
    on_two_devices(child, body)
}

/// A test run on two devices, and its simulator child.
macro_rules! two_device_test {
    ($name:ident, $child:ident, $body:ident) => {
        #[test]
        fn $name() -> TestResult {
            on_two_devices(&cuda_vmm_tests::test_name!($child), $body)
        }

        #[test]
        #[ignore = "child process of the two-device test of the same name"]
        fn $child() -> TestResult {
            child_only(&cuda_vmm_tests::test_name!($child), $body)
        }
    };
}

// The tests, by topic; after the macro above, which they use.
mod buffers;
mod reservations;

/// The largest minimum granularity over `devices`.
fn granularity(devices: &[&Device]) -> cuda_vmm::Result<usize> {
    let mut g = 0;
    for d in devices {
        g = g.max(d.min_granularity(&AllocationProps::device(d))?);
    }
    Ok(g)
}

/// Both devices still grow, write and read a buffer: neither context was poisoned.
fn both_healthy(d0: &Device, d1: &Device, g: usize) -> TestResult {
    for d in [d0, d1] {
        let mut check = GrowableBuffer::<u8>::with_max_capacity(d, 2 * g)?;
        check.extend_from_slice(&pattern_cycle(g, 5))?;
        assert_eq!(check.to_vec()?, pattern_cycle(g, 5));
    }
    Ok(())
}

/// The device whose memory backs `addr`, asked of the driver through the raw table
/// (`cuMemRetainAllocationHandle` + `cuMemGetAllocationPropertiesFromHandle`).
fn home_of(cuda: &Cuda, addr: u64) -> Result<i32, Box<dyn std::error::Error>> {
    let t = cuda.sys().table();
    let (retain, props, release) = (
        entry!(t, cuMemRetainAllocationHandle)?,
        entry!(t, cuMemGetAllocationPropertiesFromHandle)?,
        entry!(t, cuMemRelease)?,
    );
    let mut handle = 0;
    // SAFETY: valid out-pointer; `addr` lies in a live mapping (the caller holds it).
    let r = unsafe { retain(&mut handle, addr as usize as *mut core::ffi::c_void) };
    assert_eq!(r, CUresult::CUDA_SUCCESS, "retain at {addr:#x}");
    // SAFETY: CUmemAllocationProp is plain data, valid when zeroed.
    let mut prop: CUmemAllocationProp = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer and a handle retained just above.
    let r = unsafe { props(&mut prop, handle) };
    // SAFETY: releases the reference retained above, once.
    let released = unsafe { release(handle) };
    assert_eq!(r, CUresult::CUDA_SUCCESS);
    assert_eq!(released, CUresult::CUDA_SUCCESS);
    Ok(prop.location.id)
}

/// The access flags `device` has at `addr`, asked of the driver (`cuMemGetAccess`).
fn access_at(cuda: &Cuda, addr: u64, device: &Device) -> Result<u64, Box<dyn std::error::Error>> {
    let get = entry!(cuda.sys().table(), cuMemGetAccess)?;
    let location = cuda_vmm_sys::CUmemLocation {
        type_: cuda_vmm_sys::CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
        id: i32::try_from(device.ordinal())?,
    };
    let mut flags = 0u64;
    // SAFETY: valid out-pointer and location; `addr` lies in a live mapping (the caller
    // holds it).
    let r = unsafe { get(&mut flags, &location, addr) };
    assert_eq!(r, CUresult::CUDA_SUCCESS, "cuMemGetAccess at {addr:#x}");
    Ok(flags)
}
