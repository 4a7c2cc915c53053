//! Conformance cases: mapping.

use super::*;

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
    let (p, h) = mapped(e, e.g)?;
    ok("cuMemUnmap", unmap(p, e.g))?;
    let rc = unmap(p, e.g);
    release(h);
    address_free(p, e.g);
    Ok(name(rc))
}

pub fn unmap_partial(e: &Env) -> CaseResult {
    let (p, h) = mapped(e, 2 * e.g)?;
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
    let (p, h) = mapped(e, e.g)?;
    let rc = unmap(p, 4096);
    cleanup(p, e.g, h);
    Ok(name(rc))
}
