//! Conformance cases: physical allocations.

use super::*;

pub fn create_zero_size(e: &Env) -> CaseResult {
    Ok(name(create(0, &pinned(e)).0))
}

pub fn create_size_not_granular(e: &Env) -> CaseResult {
    let (rc, h) = create(e.g / 2, &pinned(e));
    if rc == CUresult::CUDA_SUCCESS {
        release(h);
    }
    Ok(name(rc))
}

pub fn create_bad_device_ordinal(e: &Env) -> CaseResult {
    let mut p = pinned(e);
    p.location.id = 999;
    Ok(name(create(e.g, &p).0))
}

pub fn create_bad_location_type(e: &Env) -> CaseResult {
    let mut p = pinned(e);
    p.location.type_ = CUmemLocationType(0);
    Ok(name(create(e.g, &p).0))
}

pub fn create_bad_allocation_type(e: &Env) -> CaseResult {
    let mut p = pinned(e);
    p.type_ = CUmemAllocationType(0);
    Ok(name(create(e.g, &p).0))
}

pub fn create_unknown_handle_type_bits(e: &Env) -> CaseResult {
    let p = props(e.dev, CUmemAllocationHandleType(0x80));
    let (rc, h) = create(e.g, &p);
    if rc == CUresult::CUDA_SUCCESS {
        release(h);
    }
    Ok(name(rc))
}

pub fn create_posix_fd_handle_type(e: &Env) -> CaseResult {
    let p = props(
        e.dev,
        CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
    );
    let (rc, h) = create(e.g, &p);
    if rc == CUresult::CUDA_SUCCESS {
        release(h);
    }
    Ok(name(rc))
}

pub fn release_then_meminfo_restored(e: &Env) -> CaseResult {
    let size = 16 * e.g;
    let (rc, before, _) = mem_get_info();
    ok("cuMemGetInfo", rc)?;
    let h = created(e, size)?;
    let (rc, during, _) = mem_get_info();
    ok("cuMemGetInfo", rc)?;
    ok("cuMemRelease", release(h))?;
    let (rc, after, _) = mem_get_info();
    ok("cuMemGetInfo", rc)?;
    Ok(format!(
        "create_took_at_least_size={} restored={}",
        before - during >= size,
        after == before
    ))
}

pub fn create_more_than_device_memory(e: &Env) -> CaseResult {
    let (rc, _, total) = mem_get_info();
    ok("cuMemGetInfo", rc)?;
    let size = (total + 64 * e.g).div_ceil(e.g) * e.g;
    let (rc, h) = create(size, &pinned(e));
    if rc == CUresult::CUDA_SUCCESS {
        release(h);
    }
    Ok(name(rc))
}

/// The real driver answers (it does not crash on a double release).
pub fn release_twice(e: &Env) -> CaseResult {
    let h = created(e, e.g)?;
    ok("cuMemRelease", release(h))?;
    Ok(name(release(h)))
}

/// Crashes the real driver: never run there.
pub fn release_bogus_handle(_: &Env) -> CaseResult {
    Ok(name(release(0xdead_beef_0000)))
}

/// Crashes the real driver: never run there.
pub fn map_released_handle(e: &Env) -> CaseResult {
    let p = reserved(e.g)?;
    let h = created(e, e.g)?;
    ok("cuMemRelease", release(h))?;
    let rc = map(p, e.g, 0, h, 0);
    address_free(p, e.g);
    Ok(name(rc))
}

pub fn granularity_recommended(e: &Env) -> CaseResult {
    let (rc, g) = granularity(&pinned(e), 1);
    Ok(format!("{} {}", name(rc), g))
}

pub fn granularity_minimum(e: &Env) -> CaseResult {
    let (rc, g) = granularity(&pinned(e), 0);
    Ok(format!("{} {}", name(rc), g))
}

pub fn granularity_bad_option(e: &Env) -> CaseResult {
    Ok(name(granularity(&pinned(e), 7).0))
}

pub fn granularity_bad_device(e: &Env) -> CaseResult {
    let mut p = pinned(e);
    p.location.id = 999;
    Ok(name(granularity(&p, 0).0))
}
