//! The conformance cases: one driver question each, and the answer it observed.
//!
//! Each case sets up state with calls that must succeed, makes the one call
//! under test, and returns its answer as a string (the `CUresult` name, plus
//! any observed fact such as "data ok"). It cleans up what it can; each case
//! runs in its own process, so a case that poisons the context cannot affect
//! another.

use cuda_vmm_sys::*;

use super::raw::*;
pub(super) use cuda_vmm_tests::helpers::pattern;

mod reservations;
pub use reservations::*;
mod allocations;
pub use allocations::*;
mod mapping;
pub use mapping::*;
mod access;
pub use access::*;
mod copies;
pub use copies::*;
mod lifetime;
pub use lifetime::*;
mod devices;
pub use devices::*;

/// What a case needs: device 0 with its primary context current.
pub struct Env {
    pub dev: CUdevice,
    pub ctx: CUcontext,
    /// Minimum allocation granularity of pinned device memory on `dev`.
    pub g: usize,
}

pub type CaseResult = Result<String, String>;

/// Sets up the environment every case runs in.
pub fn env() -> Result<Env, String> {
    ok("cuInit", init())?;
    let (rc, dev) = device_get(0);
    ok("cuDeviceGet", rc)?;
    let (rc, ctx) = primary_ctx_retain(dev);
    ok("cuDevicePrimaryCtxRetain", rc)?;
    ok("cuCtxSetCurrent", ctx_set_current(ctx))?;
    let (rc, g) = granularity(&props(dev, CUmemAllocationHandleType(0)), 0);
    ok("cuMemGetAllocationGranularity", rc)?;
    Ok(Env { dev, ctx, g })
}

pub(super) fn pinned(e: &Env) -> CUmemAllocationProp {
    props(e.dev, CUmemAllocationHandleType(0))
}

pub(super) fn reserved(size: usize) -> Result<CUdeviceptr, String> {
    let (rc, p) = reserve(size, 0, 0);
    ok("cuMemAddressReserve", rc)?;
    Ok(p)
}

pub(super) fn created(e: &Env, size: usize) -> Result<CUmemGenericAllocationHandle, String> {
    let (rc, h) = create(size, &pinned(e));
    ok("cuMemCreate", rc)?;
    Ok(h)
}

/// One granule created with the POSIX file descriptor handle type requested.
pub(super) fn created_fd(e: &Env) -> Result<CUmemGenericAllocationHandle, String> {
    let p = props(
        e.dev,
        CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
    );
    let (rc, h) = create(e.g, &p);
    ok("cuMemCreate", rc)?;
    Ok(h)
}

/// Reserve `size`, create `size` and map it (no access set).
pub(super) fn mapped(
    e: &Env,
    size: usize,
) -> Result<(CUdeviceptr, CUmemGenericAllocationHandle), String> {
    let p = reserved(size)?;
    let h = created(e, size)?;
    ok("cuMemMap", map(p, size, 0, h, 0))?;
    Ok((p, h))
}

/// [`mapped`], then access `flags` (1 read, 3 read-write) on `dev`.
pub(super) fn mapped_with(
    e: &Env,
    size: usize,
    flags: u32,
) -> Result<(CUdeviceptr, CUmemGenericAllocationHandle), String> {
    let (p, h) = mapped(e, size)?;
    ok(
        "cuMemSetAccess",
        set_access(p, size, &[access_desc(e.dev, flags)]),
    )?;
    Ok((p, h))
}

/// Reserve `size`, create `size`, map it and make it read-write on `dev`.
pub(super) fn mapped_rw(
    e: &Env,
    size: usize,
) -> Result<(CUdeviceptr, CUmemGenericAllocationHandle), String> {
    mapped_with(e, size, 3)
}

pub(super) fn cleanup(p: CUdeviceptr, size: usize, h: CUmemGenericAllocationHandle) {
    unmap(p, size);
    release(h);
    address_free(p, size);
}
