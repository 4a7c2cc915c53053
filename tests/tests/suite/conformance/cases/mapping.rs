//! The conformance cases: one driver question each, and the answer it observed.
//!
//! Each case sets up state with calls that must succeed, makes the one call
//! under test, and returns its answer as a string (the `CUresult` name, plus
//! any observed fact such as "data ok"). It cleans up what it can; each case
//! runs in its own process, so a case that poisons the context cannot affect
//! another.

use cuda_vmm_sys::*;

use super::super::raw::*;
pub(crate) use cuda_vmm_tests::helpers::pattern;

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

pub(crate) fn pinned(e: &Env) -> CUmemAllocationProp {
    props(e.dev, CUmemAllocationHandleType(0))
}

pub(crate) fn reserved(size: usize) -> Result<CUdeviceptr, String> {
    let (rc, p) = reserve(size, 0, 0);
    ok("cuMemAddressReserve", rc)?;
    Ok(p)
}

pub(crate) fn created(e: &Env, size: usize) -> Result<CUmemGenericAllocationHandle, String> {
    let (rc, h) = create(size, &pinned(e));
    ok("cuMemCreate", rc)?;
    Ok(h)
}

/// Reserve `size`, create `size`, map it and make it read-write on `dev`.
pub(crate) fn mapped_rw(
    e: &Env,
    size: usize,
) -> Result<(CUdeviceptr, CUmemGenericAllocationHandle), String> {
    let p = reserved(size)?;
    let h = created(e, size)?;
    ok("cuMemMap", map(p, size, 0, h, 0))?;
    ok(
        "cuMemSetAccess",
        set_access(p, size, &[access_desc(e.dev, 3)]),
    )?;
    Ok((p, h))
}

pub(crate) fn cleanup(p: CUdeviceptr, size: usize, h: CUmemGenericAllocationHandle) {
    unmap(p, size);
    release(h);
    address_free(p, size);
}

// ---- reservations -------------------------------------------------------

pub fn reserve_zero_size(_: &Env) -> CaseResult {
    let (rc, _) = reserve(0, 0, 0);
    Ok(name(rc))
}

pub fn reserve_size_not_granular(e: &Env) -> CaseResult {
    let (rc, p) = reserve(e.g + 4096, 0, 0);
    if rc == CUresult::CUDA_SUCCESS {
        address_free(p, e.g + 4096);
    }
    Ok(name(rc))
}

pub fn reserve_alignment_not_power_of_two(e: &Env) -> CaseResult {
    let (rc, p) = reserve(4 * e.g, 3 * e.g, 0);
    if rc == CUresult::CUDA_SUCCESS {
        address_free(p, 4 * e.g);
    }
    Ok(name(rc))
}

pub fn reserve_alignment_larger_power_of_two(e: &Env) -> CaseResult {
    let align = 64 * e.g;
    let (rc, p) = reserve(e.g, align, 0);
    let aligned = p % align as u64 == 0;
    if rc == CUresult::CUDA_SUCCESS {
        address_free(p, e.g);
    }
    Ok(format!("{} aligned={aligned}", name(rc)))
}

pub fn reserve_huge_1tib(_: &Env) -> CaseResult {
    let size = 1usize << 40;
    let (rc, p) = reserve(size, 0, 0);
    if rc == CUresult::CUDA_SUCCESS {
        address_free(p, size);
    }
    Ok(name(rc))
}

pub fn reserve_huge_1pib(_: &Env) -> CaseResult {
    let size = 1usize << 50;
    let (rc, p) = reserve(size, 0, 0);
    if rc == CUresult::CUDA_SUCCESS {
        address_free(p, size);
    }
    Ok(name(rc))
}

pub fn reserve_hint_free_is_honoured(e: &Env) -> CaseResult {
    // Find a free spot: reserve, remember, free, then ask for it again.
    let p = reserved(4 * e.g)?;
    ok("cuMemAddressFree", address_free(p, 4 * e.g))?;
    let (rc, q) = reserve(4 * e.g, 0, p);
    if rc == CUresult::CUDA_SUCCESS {
        address_free(q, 4 * e.g);
    }
    Ok(format!("{} honoured={}", name(rc), q == p))
}

pub fn reserve_hint_taken(e: &Env) -> CaseResult {
    let p = reserved(4 * e.g)?;
    let (rc, q) = reserve(4 * e.g, 0, p);
    if rc == CUresult::CUDA_SUCCESS {
        address_free(q, 4 * e.g);
    }
    address_free(p, 4 * e.g);
    Ok(format!("{} honoured={}", name(rc), q == p))
}

pub fn reserve_hint_not_granular(e: &Env) -> CaseResult {
    let p = reserved(4 * e.g)?;
    ok("cuMemAddressFree", address_free(p, 4 * e.g))?;
    let hint = p + 4096;
    let (rc, q) = reserve(2 * e.g, 0, hint);
    if rc == CUresult::CUDA_SUCCESS {
        address_free(q, 2 * e.g);
    }
    Ok(format!("{} honoured={}", name(rc), q == hint))
}

pub fn reserve_nonzero_flags(e: &Env) -> CaseResult {
    let (rc, p) = reserve_flags(e.g, 1);
    if rc == CUresult::CUDA_SUCCESS {
        address_free(p, e.g);
    }
    Ok(name(rc))
}

pub fn free_twice(e: &Env) -> CaseResult {
    let p = reserved(e.g)?;
    ok("cuMemAddressFree", address_free(p, e.g))?;
    Ok(name(address_free(p, e.g)))
}

pub fn free_partial_head(e: &Env) -> CaseResult {
    let p = reserved(2 * e.g)?;
    let rc = address_free(p, e.g);
    if rc != CUresult::CUDA_SUCCESS {
        address_free(p, 2 * e.g);
    } else {
        address_free(p + e.g as u64, e.g);
    }
    Ok(name(rc))
}

pub fn free_partial_tail(e: &Env) -> CaseResult {
    let p = reserved(2 * e.g)?;
    let rc = address_free(p + e.g as u64, e.g);
    if rc != CUresult::CUDA_SUCCESS {
        address_free(p, 2 * e.g);
    } else {
        address_free(p, e.g);
    }
    Ok(name(rc))
}

pub fn free_never_reserved(e: &Env) -> CaseResult {
    let p = reserved(e.g)?;
    ok("cuMemAddressFree", address_free(p, e.g))?;
    // A granular address far above anything handed out.
    Ok(name(address_free(p + (1u64 << 44), e.g)))
}

pub fn free_with_live_mapping(e: &Env) -> CaseResult {
    let p = reserved(e.g)?;
    let h = created(e, e.g)?;
    ok("cuMemMap", map(p, e.g, 0, h, 0))?;
    let rc = address_free(p, e.g);
    if rc != CUresult::CUDA_SUCCESS {
        unmap(p, e.g);
        address_free(p, e.g);
    }
    release(h);
    Ok(name(rc))
}

// ---- physical allocations ----------------------------------------------

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

// ---- mapping ------------------------------------------------------------

fn map_case(
    e: &Env,
    reserve_size: usize,
    alloc_size: usize,
    at: u64,
    size: usize,
    offset: usize,
    flags: u64,
) -> CaseResult {
    let p = reserved(reserve_size)?;
    let h = created(e, alloc_size)?;
    let rc = map(p + at, size, offset, h, flags);
    if rc == CUresult::CUDA_SUCCESS {
        unmap(p + at, size);
    }
    release(h);
    address_free(p, reserve_size);
    Ok(name(rc))
}

pub fn map_whole(e: &Env) -> CaseResult {
    map_case(e, e.g, e.g, 0, e.g, 0, 0)
}

pub fn map_zero_size(e: &Env) -> CaseResult {
    map_case(e, e.g, e.g, 0, 0, 0, 0)
}

pub fn map_address_not_granular(e: &Env) -> CaseResult {
    map_case(e, 2 * e.g, e.g, 4096, e.g, 0, 0)
}

pub fn map_size_not_granular(e: &Env) -> CaseResult {
    map_case(e, 2 * e.g, 2 * e.g, 0, e.g + 4096, 0, 0)
}

pub fn map_size_smaller_than_allocation(e: &Env) -> CaseResult {
    map_case(e, 2 * e.g, 2 * e.g, 0, e.g, 0, 0)
}

pub fn map_size_larger_than_allocation(e: &Env) -> CaseResult {
    map_case(e, 2 * e.g, e.g, 0, 2 * e.g, 0, 0)
}

pub fn map_nonzero_offset(e: &Env) -> CaseResult {
    map_case(e, e.g, 2 * e.g, 0, e.g, e.g, 0)
}

pub fn map_offset_not_granular(e: &Env) -> CaseResult {
    map_case(e, e.g, 2 * e.g, 0, e.g, 4096, 0)
}

pub fn map_offset_plus_size_past_allocation(e: &Env) -> CaseResult {
    map_case(e, 2 * e.g, 2 * e.g, 0, 2 * e.g, e.g, 0)
}

pub fn map_nonzero_flags(e: &Env) -> CaseResult {
    map_case(e, e.g, e.g, 0, e.g, 0, 1)
}

pub fn map_past_reservation_end(e: &Env) -> CaseResult {
    // Reserve 2g, free the tail, so the address after the reservation is not reserved.
    let p = reserved(2 * e.g)?;
    let h = created(e, 2 * e.g)?;
    let rc = map(p + e.g as u64, 2 * e.g, 0, h, 0);
    if rc == CUresult::CUDA_SUCCESS {
        unmap(p + e.g as u64, 2 * e.g);
    }
    release(h);
    address_free(p, 2 * e.g);
    Ok(name(rc))
}

pub fn map_straddling_two_reservations(e: &Env) -> CaseResult {
    let hint_probe = reserved(4 * e.g)?;
    address_free(hint_probe, 4 * e.g);
    let (rc, a) = reserve(e.g, 0, hint_probe);
    ok("cuMemAddressReserve a", rc)?;
    let (rc, b) = reserve(e.g, 0, hint_probe + e.g as u64);
    ok("cuMemAddressReserve b", rc)?;
    if b != a + e.g as u64 {
        address_free(a, e.g);
        address_free(b, e.g);
        return Err("setup: could not place two reservations back to back".into());
    }
    let h = created(e, 2 * e.g)?;
    let rc = map(a, 2 * e.g, 0, h, 0);
    if rc == CUresult::CUDA_SUCCESS {
        unmap(a, 2 * e.g);
    }
    release(h);
    address_free(a, e.g);
    address_free(b, e.g);
    Ok(name(rc))
}

pub fn map_unreserved_address(e: &Env) -> CaseResult {
    let p = reserved(e.g)?;
    ok("cuMemAddressFree", address_free(p, e.g))?;
    let h = created(e, e.g)?;
    let rc = map(p, e.g, 0, h, 0);
    if rc == CUresult::CUDA_SUCCESS {
        unmap(p, e.g);
    }
    release(h);
    Ok(name(rc))
}

pub fn map_over_mapped_range(e: &Env) -> CaseResult {
    let p = reserved(e.g)?;
    let h1 = created(e, e.g)?;
    let h2 = created(e, e.g)?;
    ok("cuMemMap", map(p, e.g, 0, h1, 0))?;
    let rc = map(p, e.g, 0, h2, 0);
    unmap(p, e.g);
    release(h1);
    release(h2);
    address_free(p, e.g);
    Ok(name(rc))
}

pub fn map_same_allocation_twice(e: &Env) -> CaseResult {
    let p = reserved(2 * e.g)?;
    let h = created(e, e.g)?;
    ok("cuMemMap first", map(p, e.g, 0, h, 0))?;
    let rc = map(p + e.g as u64, e.g, 0, h, 0);
    if rc == CUresult::CUDA_SUCCESS {
        unmap(p + e.g as u64, e.g);
    }
    unmap(p, e.g);
    release(h);
    address_free(p, 2 * e.g);
    Ok(name(rc))
}

pub fn unmap_never_mapped(e: &Env) -> CaseResult {
    let p = reserved(e.g)?;
    let rc = unmap(p, e.g);
    address_free(p, e.g);
    Ok(name(rc))
}

pub fn unmap_twice(e: &Env) -> CaseResult {
    let p = reserved(e.g)?;
    let h = created(e, e.g)?;
    ok("cuMemMap", map(p, e.g, 0, h, 0))?;
    ok("cuMemUnmap", unmap(p, e.g))?;
    let rc = unmap(p, e.g);
    release(h);
    address_free(p, e.g);
    Ok(name(rc))
}

pub fn unmap_partial(e: &Env) -> CaseResult {
    let p = reserved(2 * e.g)?;
    let h = created(e, 2 * e.g)?;
    ok("cuMemMap", map(p, 2 * e.g, 0, h, 0))?;
    let rc = unmap(p, e.g);
    if rc == CUresult::CUDA_SUCCESS {
        unmap(p + e.g as u64, e.g);
    } else {
        unmap(p, 2 * e.g);
    }
    release(h);
    address_free(p, 2 * e.g);
    Ok(name(rc))
}

pub fn unmap_spanning_two_mappings(e: &Env) -> CaseResult {
    let p = reserved(2 * e.g)?;
    let h1 = created(e, e.g)?;
    let h2 = created(e, e.g)?;
    ok("cuMemMap 1", map(p, e.g, 0, h1, 0))?;
    ok("cuMemMap 2", map(p + e.g as u64, e.g, 0, h2, 0))?;
    let rc = unmap(p, 2 * e.g);
    if rc != CUresult::CUDA_SUCCESS {
        unmap(p, e.g);
        unmap(p + e.g as u64, e.g);
    }
    release(h1);
    release(h2);
    address_free(p, 2 * e.g);
    Ok(name(rc))
}

pub fn unmap_not_granular(e: &Env) -> CaseResult {
    let p = reserved(e.g)?;
    let h = created(e, e.g)?;
    ok("cuMemMap", map(p, e.g, 0, h, 0))?;
    let rc = unmap(p, 4096);
    cleanup(p, e.g, h);
    Ok(name(rc))
}

// ---- access ---------------------------------------------------------------

pub fn set_access_read_write(e: &Env) -> CaseResult {
    let (p, h) = mapped_rw(e, e.g)?;
    let (rc, flags) = get_access(p, e.dev);
    cleanup(p, e.g, h);
    Ok(format!("{} flags={flags}", name(rc)))
}

pub fn set_access_read_only(e: &Env) -> CaseResult {
    let p = reserved(e.g)?;
    let h = created(e, e.g)?;
    ok("cuMemMap", map(p, e.g, 0, h, 0))?;
    let rc = set_access(p, e.g, &[access_desc(e.dev, 1)]);
    let (grc, flags) = get_access(p, e.dev);
    cleanup(p, e.g, h);
    Ok(format!("{} get={} flags={flags}", name(rc), name(grc)))
}

pub fn get_access_before_set(e: &Env) -> CaseResult {
    let p = reserved(e.g)?;
    let h = created(e, e.g)?;
    ok("cuMemMap", map(p, e.g, 0, h, 0))?;
    let (rc, flags) = get_access(p, e.dev);
    cleanup(p, e.g, h);
    Ok(format!("{} flags={flags}", name(rc)))
}

pub fn get_access_unmapped(e: &Env) -> CaseResult {
    let p = reserved(e.g)?;
    let (rc, _) = get_access(p, e.dev);
    address_free(p, e.g);
    Ok(name(rc))
}

pub fn set_access_unmapped(e: &Env) -> CaseResult {
    let p = reserved(e.g)?;
    let rc = set_access(p, e.g, &[access_desc(e.dev, 3)]);
    address_free(p, e.g);
    Ok(name(rc))
}

pub fn set_access_partly_mapped(e: &Env) -> CaseResult {
    let p = reserved(2 * e.g)?;
    let h = created(e, e.g)?;
    ok("cuMemMap", map(p, e.g, 0, h, 0))?;
    let rc = set_access(p, 2 * e.g, &[access_desc(e.dev, 3)]);
    cleanup(p, e.g, h);
    address_free(p, 2 * e.g);
    Ok(name(rc))
}

pub fn set_access_spanning_two_allocations(e: &Env) -> CaseResult {
    let p = reserved(2 * e.g)?;
    let h1 = created(e, e.g)?;
    let h2 = created(e, e.g)?;
    ok("cuMemMap 1", map(p, e.g, 0, h1, 0))?;
    ok("cuMemMap 2", map(p + e.g as u64, e.g, 0, h2, 0))?;
    let rc = set_access(p, 2 * e.g, &[access_desc(e.dev, 3)]);
    // Prove both halves are writable and readable.
    let data = pattern(2 * e.g, 7);
    let wrc = htod(p, &data);
    let mut back = vec![0u8; 2 * e.g];
    let rrc = dtoh(&mut back, p);
    unmap(p, e.g);
    unmap(p + e.g as u64, e.g);
    release(h1);
    release(h2);
    address_free(p, 2 * e.g);
    Ok(format!(
        "{} write={} read={} data_ok={}",
        name(rc),
        name(wrc),
        name(rrc),
        back == data
    ))
}

pub fn set_access_bad_flags(e: &Env) -> CaseResult {
    let p = reserved(e.g)?;
    let h = created(e, e.g)?;
    ok("cuMemMap", map(p, e.g, 0, h, 0))?;
    let rc = set_access(p, e.g, &[access_desc(e.dev, 2)]);
    cleanup(p, e.g, h);
    Ok(name(rc))
}

pub fn set_access_bad_device(e: &Env) -> CaseResult {
    let p = reserved(e.g)?;
    let h = created(e, e.g)?;
    ok("cuMemMap", map(p, e.g, 0, h, 0))?;
    let rc = set_access(p, e.g, &[access_desc(999, 3)]);
    cleanup(p, e.g, h);
    Ok(name(rc))
}

pub fn set_access_no_descriptors(e: &Env) -> CaseResult {
    let p = reserved(e.g)?;
    let h = created(e, e.g)?;
    ok("cuMemMap", map(p, e.g, 0, h, 0))?;
    let rc = set_access(p, e.g, &[]);
    cleanup(p, e.g, h);
    Ok(name(rc))
}

pub fn set_access_not_granular(e: &Env) -> CaseResult {
    let p = reserved(e.g)?;
    let h = created(e, e.g)?;
    ok("cuMemMap", map(p, e.g, 0, h, 0))?;
    let rc = set_access(p, 4096, &[access_desc(e.dev, 3)]);
    cleanup(p, e.g, h);
    Ok(name(rc))
}

pub fn set_access_then_revoke(e: &Env) -> CaseResult {
    let (p, h) = mapped_rw(e, e.g)?;
    let rc = set_access(p, e.g, &[access_desc(e.dev, 0)]);
    let (grc, flags) = get_access(p, e.dev);
    cleanup(p, e.g, h);
    Ok(format!("{} get={} flags={flags}", name(rc), name(grc)))
}

// ---- copies ---------------------------------------------------------------

pub fn copy_round_trip(e: &Env) -> CaseResult {
    let (p, h) = mapped_rw(e, e.g)?;
    let data = pattern(e.g, 3);
    let wrc = htod(p, &data);
    let mut back = vec![0u8; e.g];
    let rrc = dtoh(&mut back, p);
    cleanup(p, e.g, h);
    Ok(format!(
        "{} {} data_ok={}",
        name(wrc),
        name(rrc),
        back == data
    ))
}

pub fn copy_through_alias(e: &Env) -> CaseResult {
    let p = reserved(2 * e.g)?;
    let h = created(e, e.g)?;
    ok("cuMemMap a", map(p, e.g, 0, h, 0))?;
    ok("cuMemMap b", map(p + e.g as u64, e.g, 0, h, 0))?;
    ok(
        "cuMemSetAccess",
        set_access(p, 2 * e.g, &[access_desc(e.dev, 3)]),
    )?;
    let data = pattern(e.g, 11);
    ok("cuMemcpyHtoD", htod(p, &data))?;
    let mut back = vec![0u8; e.g];
    let rc = dtoh(&mut back, p + e.g as u64);
    unmap(p, e.g);
    unmap(p + e.g as u64, e.g);
    release(h);
    address_free(p, 2 * e.g);
    Ok(format!("{} aliased={}", name(rc), back == data))
}

pub fn copy_to_unmapped(e: &Env) -> CaseResult {
    let p = reserved(e.g)?;
    let rc = htod(p, &pattern(4096, 1));
    address_free(p, e.g);
    Ok(name(rc))
}

pub fn copy_from_unmapped(e: &Env) -> CaseResult {
    let p = reserved(e.g)?;
    let mut back = vec![0u8; 4096];
    let rc = dtoh(&mut back, p);
    address_free(p, e.g);
    Ok(name(rc))
}

pub fn copy_to_no_access(e: &Env) -> CaseResult {
    let p = reserved(e.g)?;
    let h = created(e, e.g)?;
    ok("cuMemMap", map(p, e.g, 0, h, 0))?;
    let rc = htod(p, &pattern(4096, 1));
    let src = ctx_synchronize();
    cleanup(p, e.g, h);
    Ok(format!("{} sync={}", name(rc), name(src)))
}

pub fn copy_from_no_access(e: &Env) -> CaseResult {
    let p = reserved(e.g)?;
    let h = created(e, e.g)?;
    ok("cuMemMap", map(p, e.g, 0, h, 0))?;
    let mut back = vec![0u8; 4096];
    let rc = dtoh(&mut back, p);
    let src = ctx_synchronize();
    cleanup(p, e.g, h);
    Ok(format!("{} sync={}", name(rc), name(src)))
}

pub fn copy_to_read_only(e: &Env) -> CaseResult {
    let p = reserved(e.g)?;
    let h = created(e, e.g)?;
    ok("cuMemMap", map(p, e.g, 0, h, 0))?;
    ok(
        "cuMemSetAccess",
        set_access(p, e.g, &[access_desc(e.dev, 1)]),
    )?;
    let rc = htod(p, &pattern(4096, 1));
    let src = ctx_synchronize();
    cleanup(p, e.g, h);
    Ok(format!("{} sync={}", name(rc), name(src)))
}

pub fn copy_from_read_only(e: &Env) -> CaseResult {
    let p = reserved(e.g)?;
    let h = created(e, e.g)?;
    ok("cuMemMap", map(p, e.g, 0, h, 0))?;
    ok(
        "cuMemSetAccess",
        set_access(p, e.g, &[access_desc(e.dev, 1)]),
    )?;
    let mut back = vec![1u8; 4096];
    let rc = dtoh(&mut back, p);
    let src = ctx_synchronize();
    cleanup(p, e.g, h);
    Ok(format!("{} sync={}", name(rc), name(src)))
}

pub fn memset_read_only(e: &Env) -> CaseResult {
    let p = reserved(e.g)?;
    let h = created(e, e.g)?;
    ok("cuMemMap", map(p, e.g, 0, h, 0))?;
    ok(
        "cuMemSetAccess",
        set_access(p, e.g, &[access_desc(e.dev, 1)]),
    )?;
    let rc = memset_d8(p, 0xab, 4096);
    let src = ctx_synchronize();
    cleanup(p, e.g, h);
    Ok(format!("{} sync={}", name(rc), name(src)))
}

pub fn copy_past_mapping_end(e: &Env) -> CaseResult {
    let p = reserved(2 * e.g)?;
    let h = created(e, e.g)?;
    ok("cuMemMap", map(p, e.g, 0, h, 0))?;
    ok(
        "cuMemSetAccess",
        set_access(p, e.g, &[access_desc(e.dev, 3)]),
    )?;
    let rc = htod(p + e.g as u64 - 4096, &pattern(8192, 1));
    let src = ctx_synchronize();
    cleanup(p, e.g, h);
    address_free(p, 2 * e.g);
    Ok(format!("{} sync={}", name(rc), name(src)))
}

// ---- lifetime, handles, sharing --------------------------------------------

pub fn release_while_mapped_keeps_data(e: &Env) -> CaseResult {
    let (p, h) = mapped_rw(e, e.g)?;
    let data = pattern(e.g, 5);
    ok("cuMemcpyHtoD", htod(p, &data))?;
    let rc = release(h);
    let mut back = vec![0u8; e.g];
    let rrc = dtoh(&mut back, p);
    let urc = unmap(p, e.g);
    address_free(p, e.g);
    Ok(format!(
        "{} read={} data_ok={} unmap={}",
        name(rc),
        name(rrc),
        back == data,
        name(urc)
    ))
}

pub fn retain_from_mapped_address(e: &Env) -> CaseResult {
    let (p, h) = mapped_rw(e, 2 * e.g)?;
    let (rc, r) = retain_handle(p + e.g as u64);
    let same = r == h;
    let rrc = if rc == CUresult::CUDA_SUCCESS {
        release(r)
    } else {
        rc
    };
    cleanup(p, 2 * e.g, h);
    Ok(format!(
        "{} same_handle={same} release={}",
        name(rc),
        name(rrc)
    ))
}

pub fn retain_from_unmapped_address(e: &Env) -> CaseResult {
    let p = reserved(e.g)?;
    let (rc, _) = retain_handle(p);
    address_free(p, e.g);
    Ok(name(rc))
}

pub fn properties_from_handle(e: &Env) -> CaseResult {
    let h = created(e, e.g)?;
    let (rc, p) = props_from_handle(h);
    release(h);
    Ok(format!(
        "{} type={} location_type={} id={} handle_types={}",
        name(rc),
        p.type_.0,
        p.location.type_.0,
        p.location.id,
        p.requestedHandleTypes.0
    ))
}

pub fn export_without_requested_type(e: &Env) -> CaseResult {
    let h = created(e, e.g)?;
    let (rc, fd) = export_fd(h);
    if rc == CUresult::CUDA_SUCCESS {
        close_fd(fd);
    }
    release(h);
    Ok(name(rc))
}

pub fn export_import_posix_fd(e: &Env) -> CaseResult {
    let p = props(
        e.dev,
        CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
    );
    let (rc, h) = create(e.g, &p);
    ok("cuMemCreate", rc)?;
    let (rc, fd) = export_fd(h);
    ok("cuMemExportToShareableHandle", rc)?;
    let (irc, h2) = import_fd(fd);
    close_fd(fd);
    if irc != CUresult::CUDA_SUCCESS {
        release(h);
        return Ok(format!("import={}", name(irc)));
    }
    // Write through the original, read through the imported handle.
    let va = reserved(2 * e.g)?;
    ok("cuMemMap a", map(va, e.g, 0, h, 0))?;
    ok("cuMemMap b", map(va + e.g as u64, e.g, 0, h2, 0))?;
    ok(
        "cuMemSetAccess",
        set_access(va, 2 * e.g, &[access_desc(e.dev, 3)]),
    )?;
    let data = pattern(e.g, 9);
    ok("cuMemcpyHtoD", htod(va, &data))?;
    let mut back = vec![0u8; e.g];
    ok("cuMemcpyDtoH", dtoh(&mut back, va + e.g as u64))?;
    unmap(va, e.g);
    unmap(va + e.g as u64, e.g);
    release(h);
    release(h2);
    address_free(va, 2 * e.g);
    Ok(format!("import={} aliased={}", name(irc), back == data))
}

pub fn properties_of_posix_fd_allocation(e: &Env) -> CaseResult {
    let p = props(
        e.dev,
        CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
    );
    let (rc, h) = create(e.g, &p);
    ok("cuMemCreate", rc)?;
    let (rc, q) = props_from_handle(h);
    release(h);
    Ok(format!(
        "{} handle_types={}",
        name(rc),
        q.requestedHandleTypes.0
    ))
}

pub fn properties_of_imported_handle(e: &Env) -> CaseResult {
    let p = props(
        e.dev,
        CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
    );
    let (rc, h) = create(e.g, &p);
    ok("cuMemCreate", rc)?;
    let (rc, fd) = export_fd(h);
    ok("cuMemExportToShareableHandle", rc)?;
    let (rc, h2) = import_fd(fd);
    close_fd(fd);
    ok("cuMemImportFromShareableHandle", rc)?;
    let (rc, q) = props_from_handle(h2);
    release(h2);
    release(h);
    Ok(format!(
        "{} type={} location_type={} id={} handle_types={}",
        name(rc),
        q.type_.0,
        q.location.type_.0,
        q.location.id,
        q.requestedHandleTypes.0
    ))
}

pub fn import_bogus_fd(_: &Env) -> CaseResult {
    let (rc, h) = import_fd(987_654);
    if rc == CUresult::CUDA_SUCCESS {
        release(h);
    }
    Ok(name(rc))
}

pub fn import_non_cuda_fd(_: &Env) -> CaseResult {
    // SAFETY: opening /dev/null read-only has no preconditions.
    let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
    if fd < 0 {
        return Err("setup: open /dev/null failed".into());
    }
    let (rc, h) = import_fd(fd);
    close_fd(fd);
    if rc == CUresult::CUDA_SUCCESS {
        release(h);
    }
    Ok(name(rc))
}

// ---- devices and contexts ---------------------------------------------------

pub fn device_get_bad_ordinal(_: &Env) -> CaseResult {
    Ok(name(device_get(999).0))
}

pub fn device_attribute_bad_device(_: &Env) -> CaseResult {
    Ok(name(
        device_attribute(
            CUdevice_attribute::CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED,
            999,
        )
        .0,
    ))
}

pub fn device_vmm_supported(e: &Env) -> CaseResult {
    let (rc, v) = device_attribute(
        CUdevice_attribute::CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED,
        e.dev,
    );
    Ok(format!("{} {v}", name(rc)))
}

/// Runs `f` on a fresh thread that has no current context.
fn without_context(f: impl FnOnce() -> String + Send + 'static) -> CaseResult {
    std::thread::spawn(f)
        .join()
        .map_err(|_| "no-context thread panicked".to_string())
}

pub fn no_context_reserve(e: &Env) -> CaseResult {
    let g = e.g;
    without_context(move || {
        let (rc, p) = reserve(g, 0, 0);
        if rc == CUresult::CUDA_SUCCESS {
            address_free(p, g);
        }
        name(rc)
    })
}

pub fn no_context_create(e: &Env) -> CaseResult {
    let (g, dev) = (e.g, e.dev);
    without_context(move || {
        let (rc, h) = create(g, &props(dev, CUmemAllocationHandleType(0)));
        if rc == CUresult::CUDA_SUCCESS {
            release(h);
        }
        name(rc)
    })
}

pub fn no_context_map_and_set_access(e: &Env) -> CaseResult {
    let p = reserved(e.g)?;
    let h = created(e, e.g)?;
    let (g, dev) = (e.g, e.dev);
    let out = without_context(move || {
        let mrc = map(p, g, 0, h, 0);
        let arc = set_access(p, g, &[access_desc(dev, 3)]);
        let urc = unmap(p, g);
        format!(
            "map={} set_access={} unmap={}",
            name(mrc),
            name(arc),
            name(urc)
        )
    });
    release(h);
    address_free(p, e.g);
    out
}

pub fn no_context_copy(e: &Env) -> CaseResult {
    let (p, h) = mapped_rw(e, e.g)?;
    let out = without_context(move || name(htod(p, &[1u8; 64])));
    cleanup(p, e.g, h);
    out
}

pub fn no_context_granularity(e: &Env) -> CaseResult {
    let dev = e.dev;
    without_context(move || {
        let (rc, g) = granularity(&props(dev, CUmemAllocationHandleType(0)), 0);
        format!("{} {g}", name(rc))
    })
}

pub fn no_context_mem_get_info(_: &Env) -> CaseResult {
    without_context(|| name(mem_get_info().0))
}

pub fn context_is_current(e: &Env) -> CaseResult {
    Ok(format!("ctx_non_null={}", !e.ctx.is_null()))
}
