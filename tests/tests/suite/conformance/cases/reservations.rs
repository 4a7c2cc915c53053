//! Conformance cases: reservations.

use super::*;

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
    let (p, h) = mapped(e, e.g)?;
    let rc = address_free(p, e.g);
    if rc != CUresult::CUDA_SUCCESS {
        unmap(p, e.g);
        address_free(p, e.g);
    }
    release(h);
    Ok(name(rc))
}
