//! Conformance cases: memory at host locations (`CU_MEM_LOCATION_TYPE_HOST`, `HOST_NUMA`,
//! `HOST_NUMA_CURRENT`): creation, granularity, properties, access and copies.
//!
//! Recorded on an H200 (driver 580.159.04, CUDA 13): the HOST_NUMA VMM attribute is 1 and
//! the host NUMA id 0; `cuMemCreate` at HOST and at HOST_NUMA 0 succeeds (HOST takes no
//! export handle types, HOST_NUMA takes the POSIX fd type), the memory maps, takes device
//! read-write access and copies, and counts in no device's free memory; HOST_NUMA_CURRENT
//! is refused by `cuMemCreate` with `CUDA_ERROR_INVALID_VALUE`, though its granularity is
//! answered (2 MiB at every host location). HOST memory reports itself as HOST_NUMA node
//! 0. For access the two kinds of host memory are alike: a HOST or a HOST_NUMA descriptor
//! grants the host access to either, `cuMemGetAccess` reports it at both locations, and a
//! HOST_NUMA descriptor over device memory is `CUDA_ERROR_NOT_SUPPORTED`. The cases in
//! `CASES` marked `guess!` are the simulator's predictions, not yet run on a GPU.

use cuda_vmm_sys::*;

use super::cases::{cleanup, pattern, reserved, CaseResult, Env};
use super::raw::*;

/// Location type `type_` with `id`.
fn at(type_: CUmemLocationType, id: i32) -> CUmemLocation {
    CUmemLocation { type_, id }
}

/// The host NUMA node the device reports nearest (0 if it reports none).
fn node(e: &Env) -> i32 {
    let (rc, id) = device_attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_HOST_NUMA_ID, e.dev);
    if rc == CUresult::CUDA_SUCCESS && id >= 0 {
        id
    } else {
        0
    }
}

fn host_numa(e: &Env) -> CUmemLocation {
    at(CUmemLocationType::CU_MEM_LOCATION_TYPE_HOST_NUMA, node(e))
}

fn host() -> CUmemLocation {
    at(CUmemLocationType::CU_MEM_LOCATION_TYPE_HOST, 0)
}

/// Pinned properties at `location` with `handle_types`.
fn props_at(location: CUmemLocation, handle_types: u32) -> CUmemAllocationProp {
    let mut p = CUmemAllocationProp::default();
    p.type_ = CUmemAllocationType::CU_MEM_ALLOCATION_TYPE_PINNED;
    p.location = location;
    p.requestedHandleTypes = CUmemAllocationHandleType(handle_types);
    p
}

/// The answer of `cuMemCreate` of one granule at `location` (released again).
fn create_answer(e: &Env, location: CUmemLocation, handle_types: u32) -> String {
    let (rc, h) = create(e.g, &props_at(location, handle_types));
    if rc == CUresult::CUDA_SUCCESS {
        release(h);
    }
    name(rc)
}

/// One granule at `location`, mapped in a fresh reservation (no access set).
fn mapped_at(
    e: &Env,
    location: CUmemLocation,
) -> Result<(CUdeviceptr, CUmemGenericAllocationHandle), String> {
    let p = reserved(e.g)?;
    let (rc, h) = create(e.g, &props_at(location, 0));
    ok("cuMemCreate", rc)?;
    ok("cuMemMap", map(p, e.g, 0, h, 0))?;
    Ok((p, h))
}

fn attribute_answer(e: &Env, attr: CUdevice_attribute) -> String {
    let (rc, v) = device_attribute(attr, e.dev);
    format!("{} {v}", name(rc))
}

pub fn host_numa_vmm_attribute(e: &Env) -> CaseResult {
    Ok(attribute_answer(
        e,
        CUdevice_attribute::CU_DEVICE_ATTRIBUTE_HOST_NUMA_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED,
    ))
}

pub fn host_numa_id_attribute(e: &Env) -> CaseResult {
    Ok(attribute_answer(
        e,
        CUdevice_attribute::CU_DEVICE_ATTRIBUTE_HOST_NUMA_ID,
    ))
}

pub fn create_host_numa(e: &Env) -> CaseResult {
    Ok(create_answer(e, host_numa(e), 0))
}

pub fn create_host(e: &Env) -> CaseResult {
    Ok(create_answer(e, host(), 0))
}

pub fn create_host_numa_current(e: &Env) -> CaseResult {
    let current = at(CUmemLocationType::CU_MEM_LOCATION_TYPE_HOST_NUMA_CURRENT, 0);
    Ok(create_answer(e, current, 0))
}

pub fn create_host_with_posix_fd(e: &Env) -> CaseResult {
    Ok(create_answer(e, host(), 1))
}

pub fn create_host_numa_with_posix_fd(e: &Env) -> CaseResult {
    Ok(create_answer(e, host_numa(e), 1))
}

pub fn create_host_numa_bad_id(e: &Env) -> CaseResult {
    let bad = at(CUmemLocationType::CU_MEM_LOCATION_TYPE_HOST_NUMA, 999);
    Ok(create_answer(e, bad, 0))
}

/// Minimum and recommended granularity at `location`.
fn granularity_answer(location: CUmemLocation) -> String {
    let p = props_at(location, 0);
    let (min_rc, min) = granularity(&p, 0);
    let (rec_rc, rec) = granularity(&p, 1);
    format!(
        "minimum={} {min} recommended={} {rec}",
        name(min_rc),
        name(rec_rc)
    )
}

pub fn granularity_host_numa(e: &Env) -> CaseResult {
    Ok(granularity_answer(host_numa(e)))
}

pub fn granularity_host(_: &Env) -> CaseResult {
    Ok(granularity_answer(host()))
}

pub fn granularity_host_numa_current(_: &Env) -> CaseResult {
    let p = props_at(
        at(CUmemLocationType::CU_MEM_LOCATION_TYPE_HOST_NUMA_CURRENT, 0),
        0,
    );
    Ok(name(granularity(&p, 0).0))
}

/// `cuMemGetAllocationPropertiesFromHandle` of one granule created at `location`.
fn properties_answer(e: &Env, location: CUmemLocation) -> CaseResult {
    let (rc, h) = create(e.g, &props_at(location, 0));
    ok("cuMemCreate", rc)?;
    let (rc, p) = props_from_handle(h);
    release(h);
    Ok(format!(
        "{} location_type={} id={}",
        name(rc),
        p.location.type_.0,
        p.location.id
    ))
}

pub fn properties_of_host_numa(e: &Env) -> CaseResult {
    properties_answer(e, host_numa(e))
}

pub fn properties_of_host(e: &Env) -> CaseResult {
    properties_answer(e, host())
}

/// Map one granule at `location`, grant the device read-write, copy a pattern there and
/// back.
fn device_round_trip(e: &Env, location: CUmemLocation) -> CaseResult {
    let (p, h) = mapped_at(e, location)?;
    let rc = set_access(p, e.g, &[access_desc(e.dev, 3)]);
    let data = pattern(e.g, 5);
    let wrc = htod(p, &data);
    let mut back = vec![0u8; e.g];
    let rrc = dtoh(&mut back, p);
    cleanup(p, e.g, h);
    Ok(format!(
        "set_access={} write={} read={} data_ok={}",
        name(rc),
        name(wrc),
        name(rrc),
        back == data
    ))
}

pub fn host_numa_device_access_round_trip(e: &Env) -> CaseResult {
    device_round_trip(e, host_numa(e))
}

pub fn host_device_access_round_trip(e: &Env) -> CaseResult {
    device_round_trip(e, host())
}

/// `cuMemGetAccess` at `location` as `rc:flags`.
fn access_at(p: CUdeviceptr, location: CUmemLocation) -> String {
    let (rc, flags) = get_access_at(p, location);
    format!("{}:{flags}", name(rc))
}

/// What `cuMemGetAccess` reports for host NUMA memory, at the device and at the host NUMA
/// location, before and after the device is granted read-write.
pub fn get_access_host_numa_memory(e: &Env) -> CaseResult {
    let (p, h) = mapped_at(e, host_numa(e))?;
    let dev = at(CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE, e.dev);
    let before = format!("{}/{}", access_at(p, dev), access_at(p, host_numa(e)));
    ok(
        "cuMemSetAccess",
        set_access(p, e.g, &[access_desc(e.dev, 3)]),
    )?;
    let after = format!("{}/{}", access_at(p, dev), access_at(p, host_numa(e)));
    cleanup(p, e.g, h);
    Ok(format!("before={before} after={after}"))
}

/// `cuMemGetAccess` at a HOST location over host NUMA memory (no access granted yet).
pub fn get_access_host_location(e: &Env) -> CaseResult {
    let (p, h) = mapped_at(e, host_numa(e))?;
    let (rc, _) = get_access_at(p, host());
    cleanup(p, e.g, h);
    Ok(name(rc))
}

/// `cuMemSetAccess` of one descriptor at `desc_location` over one granule created at
/// `memory`, then `cuMemGetAccess` at `desc_location` when it succeeded.
fn set_access_answer(e: &Env, memory: CUmemLocation, desc_location: CUmemLocation) -> CaseResult {
    let (p, h) = mapped_at(e, memory)?;
    let rc = set_access(p, e.g, &[access_desc_at(desc_location, 3)]);
    let answer = if rc == CUresult::CUDA_SUCCESS {
        let (grc, flags) = get_access_at(p, desc_location);
        format!("{} get={} flags={flags}", name(rc), name(grc))
    } else {
        name(rc)
    };
    cleanup(p, e.g, h);
    Ok(answer)
}

pub fn set_access_host_numa_desc_on_host_numa(e: &Env) -> CaseResult {
    set_access_answer(e, host_numa(e), host_numa(e))
}

pub fn set_access_host_numa_desc_on_device(e: &Env) -> CaseResult {
    let dev = at(CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE, e.dev);
    set_access_answer(e, dev, host_numa(e))
}

/// A HOST descriptor over device memory (predicted like a HOST_NUMA one).
pub fn set_access_host_desc_on_device(e: &Env) -> CaseResult {
    let dev = at(CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE, e.dev);
    set_access_answer(e, dev, host())
}

pub fn set_access_host_numa_desc_on_host(e: &Env) -> CaseResult {
    set_access_answer(e, host(), host_numa(e))
}

pub fn set_access_host_desc_on_host(e: &Env) -> CaseResult {
    set_access_answer(e, host(), host())
}

pub fn set_access_host_desc_on_host_numa(e: &Env) -> CaseResult {
    set_access_answer(e, host_numa(e), host())
}

/// Host NUMA memory given device and host (HOST_NUMA descriptor) read-write access: the
/// CPU reads what a copy wrote through the mapping's address. On a driver that grants the
/// host no mapping, the read crashes the case's process.
pub fn host_numa_cpu_reads_with_host_access(e: &Env) -> CaseResult {
    let (p, h) = mapped_at(e, host_numa(e))?;
    let descs = [access_desc(e.dev, 3), access_desc_at(host_numa(e), 3)];
    ok("cuMemSetAccess", set_access(p, e.g, &descs))?;
    let data = pattern(4096, 9);
    ok("cuMemcpyHtoD", htod(p, &data))?;
    ok("cuCtxSynchronize", ctx_synchronize())?;
    let mut seen = vec![0u8; data.len()];
    // SAFETY: `[p, p + 4096)` is mapped and the host was granted read-write access to it
    // just above (a driver that ignores the grant faults here, in this case's own process).
    unsafe {
        std::ptr::copy_nonoverlapping(p as usize as *const u8, seen.as_mut_ptr(), seen.len());
    }
    cleanup(p, e.g, h);
    Ok(format!("data_ok={}", seen == data))
}

/// Host memory does not count in the device's free memory.
pub fn host_memory_not_in_mem_get_info(e: &Env) -> CaseResult {
    let size = 16 * e.g;
    let mut answers = Vec::new();
    for (label, location) in [("host_numa", host_numa(e)), ("host", host())] {
        let (rc, before, _) = mem_get_info();
        ok("cuMemGetInfo", rc)?;
        let (rc, h) = create(size, &props_at(location, 0));
        ok("cuMemCreate", rc)?;
        let (rc, during, _) = mem_get_info();
        release(h);
        ok("cuMemGetInfo", rc)?;
        answers.push(format!("{label}_unchanged={}", during == before));
    }
    Ok(answers.join(" "))
}
