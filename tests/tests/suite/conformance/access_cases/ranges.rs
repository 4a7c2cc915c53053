//! Ranges: `cuMemSetAccess`, `cuMemGetAccess`, `cuMemUnmap` and `cuMemMap` over part of an
//! allocation, several allocations, a mix, or holes, and what each leaves behind when it
//! fails.

use super::*;

// ---- cuMemSetAccess over part of an allocation, several, a mix, holes ----------

pub fn set_access_head_of_allocation(e: &Env) -> CaseResult {
    let l = Layout::new(e, 2, &[(0, 2)])?;
    let rc = set_access(l.at(0), e.g, &[access_desc(e.dev, RW)]);
    let (head, tail) = (flags(e.dev, l.at(0)), flags(e.dev, l.at(1)));
    Ok(format!("{} head={head} tail={tail}", name(rc)))
}

pub fn set_access_tail_of_allocation(e: &Env) -> CaseResult {
    let l = Layout::new(e, 2, &[(0, 2)])?;
    let rc = set_access(l.at(1), e.g, &[access_desc(e.dev, RW)]);
    let (head, tail) = (flags(e.dev, l.at(0)), flags(e.dev, l.at(1)));
    Ok(format!("{} head={head} tail={tail}", name(rc)))
}

pub fn set_access_whole_and_part(e: &Env) -> CaseResult {
    // [A:1][B:2], set access over A and the head of B.
    let l = Layout::new(e, 3, &[(0, 1), (1, 2)])?;
    let rc = set_access(l.at(0), 2 * e.g, &[access_desc(e.dev, RW)]);
    Ok(format!(
        "{} a={} b_head={} b_tail={}",
        name(rc),
        flags(e.dev, l.at(0)),
        flags(e.dev, l.at(1)),
        flags(e.dev, l.at(2))
    ))
}

pub fn set_access_part_and_whole(e: &Env) -> CaseResult {
    // [A:2][B:1], set access over the tail of A and B.
    let l = Layout::new(e, 3, &[(0, 2), (2, 1)])?;
    let rc = set_access(l.at(1), 2 * e.g, &[access_desc(e.dev, RW)]);
    Ok(format!(
        "{} a_head={} a_tail={} b={}",
        name(rc),
        flags(e.dev, l.at(0)),
        flags(e.dev, l.at(1)),
        flags(e.dev, l.at(2))
    ))
}

pub fn set_access_three_allocations(e: &Env) -> CaseResult {
    let l = Layout::new(e, 3, &[(0, 1), (1, 1), (2, 1)])?;
    let rc = set_access(l.at(0), 3 * e.g, &[access_desc(e.dev, RW)]);
    Ok(format!(
        "{} a={} b={} c={}",
        name(rc),
        flags(e.dev, l.at(0)),
        flags(e.dev, l.at(1)),
        flags(e.dev, l.at(2))
    ))
}

pub fn set_access_with_hole(e: &Env) -> CaseResult {
    // [A:1][-][B:1]: fails; is A's access applied anyway?
    let l = Layout::new(e, 3, &[(0, 1), (2, 1)])?;
    let rc = set_access(l.at(0), 3 * e.g, &[access_desc(e.dev, RW)]);
    Ok(format!(
        "{} a={} b={}",
        name(rc),
        flags(e.dev, l.at(0)),
        flags(e.dev, l.at(2))
    ))
}

pub fn set_access_leading_hole(e: &Env) -> CaseResult {
    let l = Layout::new(e, 2, &[(1, 1)])?;
    let rc = set_access(l.at(0), 2 * e.g, &[access_desc(e.dev, RW)]);
    Ok(format!("{} a={}", name(rc), flags(e.dev, l.at(1))))
}

pub fn set_access_across_reservations(e: &Env) -> CaseResult {
    let (a, b) = adjacent_pair(e)?;
    let ha = created(e, e.g)?;
    let hb = created(e, e.g)?;
    ok("cuMemMap a", map(a, e.g, 0, ha, 0))?;
    ok("cuMemMap b", map(b, e.g, 0, hb, 0))?;
    let rc = set_access(a, 2 * e.g, &[access_desc(e.dev, RW)]);
    let answer = format!("{} a={} b={}", name(rc), flags(e.dev, a), flags(e.dev, b));
    cleanup(a, e.g, ha);
    cleanup(b, e.g, hb);
    Ok(answer)
}

pub fn set_access_bad_descriptor_after_good(e: &Env) -> CaseResult {
    // The first descriptor is valid, the second names no device: is the first applied?
    let l = Layout::new(e, 1, &[(0, 1)])?;
    let rc = set_access(
        l.at(0),
        e.g,
        &[access_desc(e.dev, RW), access_desc(999, RW)],
    );
    Ok(format!("{} a={}", name(rc), flags(e.dev, l.at(0))))
}

pub fn set_access_same_device_twice(e: &Env) -> CaseResult {
    let l = Layout::new(e, 1, &[(0, 1)])?;
    let rc = set_access(
        l.at(0),
        e.g,
        &[access_desc(e.dev, RW), access_desc(e.dev, 1)],
    );
    Ok(format!("{} a={}", name(rc), flags(e.dev, l.at(0))))
}

pub fn set_access_past_reservation_end(e: &Env) -> CaseResult {
    // [A:1] in a 1g reservation; the range runs one granule past its end.
    let l = Layout::new(e, 1, &[(0, 1)])?;
    let rc = set_access(l.at(0), 2 * e.g, &[access_desc(e.dev, RW)]);
    Ok(format!("{} a={}", name(rc), flags(e.dev, l.at(0))))
}

// ---- cuMemGetAccess inside mappings and on failure --------------------------------

pub fn get_access_inside_allocation(e: &Env) -> CaseResult {
    let l = Layout::new(e, 2, &[(0, 2)])?;
    ok(
        "cuMemSetAccess",
        set_access(l.at(0), 2 * e.g, &[access_desc(e.dev, RW)]),
    )?;
    Ok(format!(
        "second_granule={} unaligned={} last_byte={}",
        flags(e.dev, l.at(1)),
        flags(e.dev, l.at(0) + 4097),
        flags(e.dev, l.at(2) - 1)
    ))
}

/// `cuMemGetAccess` with the flags pre-filled with [`SENTINEL`].
fn get_access_sentinel(location: &CUmemLocation, va: CUdeviceptr) -> Result<String, String> {
    let f = entry!(table(), cuMemGetAccess).map_err(|e| e.to_string())?;
    let mut flags = SENTINEL;
    // SAFETY: `flags` and `location` are valid for the call.
    let rc = unsafe { f(&mut flags, location, va) };
    Ok(format!("{} flags={}", name(rc), out(flags, SENTINEL)))
}

fn device_location(id: i32) -> CUmemLocation {
    CUmemLocation {
        type_: CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
        id,
    }
}

pub fn get_access_unmapped_out_param(e: &Env) -> CaseResult {
    let l = Layout::new(e, 2, &[(0, 1)])?;
    get_access_sentinel(&device_location(e.dev), l.at(1))
}

pub fn get_access_bad_device_out_param(e: &Env) -> CaseResult {
    let l = Layout::new(e, 1, &[(0, 1)])?;
    get_access_sentinel(&device_location(999), l.at(0))
}

pub fn get_access_bad_location_type_out_param(e: &Env) -> CaseResult {
    let l = Layout::new(e, 1, &[(0, 1)])?;
    let location = CUmemLocation {
        type_: CUmemLocationType::CU_MEM_LOCATION_TYPE_INVALID,
        id: e.dev,
    };
    get_access_sentinel(&location, l.at(0))
}

pub fn get_access_success_out_param(e: &Env) -> CaseResult {
    // Mapped with no access yet: is the sentinel replaced by 0?
    let l = Layout::new(e, 1, &[(0, 1)])?;
    get_access_sentinel(&device_location(e.dev), l.at(0))
}

// ---- cuMemUnmap over part of an allocation, several, a mix, holes -----------------

pub fn unmap_whole_and_part(e: &Env) -> CaseResult {
    // [A:1][B:2], unmap A and the head of B: fails; is A unmapped anyway?
    let l = Layout::new(e, 3, &[(0, 1), (1, 2)])?;
    let rc = unmap(l.at(0), 2 * e.g);
    Ok(format!(
        "{} a_mapped={} b_mapped={}",
        name(rc),
        is_mapped(l.at(0)),
        is_mapped(l.at(1))
    ))
}

pub fn unmap_part_and_whole(e: &Env) -> CaseResult {
    // [A:2][B:1], unmap the tail of A and B.
    let l = Layout::new(e, 3, &[(0, 2), (2, 1)])?;
    let rc = unmap(l.at(1), 2 * e.g);
    Ok(format!(
        "{} a_mapped={} b_mapped={}",
        name(rc),
        is_mapped(l.at(0)),
        is_mapped(l.at(2))
    ))
}

pub fn unmap_middle_of_allocation(e: &Env) -> CaseResult {
    let l = Layout::new(e, 3, &[(0, 3)])?;
    let rc = unmap(l.at(1), e.g);
    Ok(format!("{} mapped={}", name(rc), is_mapped(l.at(0))))
}

pub fn unmap_three_allocations(e: &Env) -> CaseResult {
    let l = Layout::new(e, 3, &[(0, 1), (1, 1), (2, 1)])?;
    let rc = unmap(l.at(0), 3 * e.g);
    Ok(format!(
        "{} a_mapped={} b_mapped={} c_mapped={}",
        name(rc),
        is_mapped(l.at(0)),
        is_mapped(l.at(1)),
        is_mapped(l.at(2))
    ))
}

pub fn unmap_with_hole(e: &Env) -> CaseResult {
    let l = Layout::new(e, 3, &[(0, 1), (2, 1)])?;
    let rc = unmap(l.at(0), 3 * e.g);
    Ok(format!(
        "{} a_mapped={} b_mapped={}",
        name(rc),
        is_mapped(l.at(0)),
        is_mapped(l.at(2))
    ))
}

pub fn unmap_leading_hole(e: &Env) -> CaseResult {
    let l = Layout::new(e, 2, &[(1, 1)])?;
    let rc = unmap(l.at(0), 2 * e.g);
    Ok(format!("{} a_mapped={}", name(rc), is_mapped(l.at(1))))
}

pub fn unmap_across_reservations(e: &Env) -> CaseResult {
    let (a, b) = adjacent_pair(e)?;
    let ha = created(e, e.g)?;
    let hb = created(e, e.g)?;
    ok("cuMemMap a", map(a, e.g, 0, ha, 0))?;
    ok("cuMemMap b", map(b, e.g, 0, hb, 0))?;
    let rc = unmap(a, 2 * e.g);
    let answer = format!(
        "{} a_mapped={} b_mapped={}",
        name(rc),
        is_mapped(a),
        is_mapped(b)
    );
    cleanup(a, e.g, ha);
    cleanup(b, e.g, hb);
    Ok(answer)
}

// ---- cuMemMap against existing mappings and holes ---------------------------------

/// Maps a new allocation of `len` granules at `va`; unmaps it again on success.
fn map_new(e: &Env, va: CUdeviceptr, len: usize) -> Result<CUresult, String> {
    let h = created(e, len * e.g)?;
    let rc = map(va, len * e.g, 0, h, 0);
    if rc == CUresult::CUDA_SUCCESS {
        unmap(va, len * e.g);
    }
    release(h);
    Ok(rc)
}

pub fn map_over_tail_of_mapping(e: &Env) -> CaseResult {
    // [A:2][-], map 2g at 1g: overlaps A's tail. Is A still mapped after?
    let l = Layout::new(e, 3, &[(0, 2)])?;
    let rc = map_new(e, l.at(1), 2)?;
    Ok(format!("{} a_mapped={}", name(rc), is_mapped(l.at(0))))
}

pub fn map_over_two_mappings(e: &Env) -> CaseResult {
    let l = Layout::new(e, 2, &[(0, 1), (1, 1)])?;
    let rc = map_new(e, l.at(0), 2)?;
    Ok(format!(
        "{} a_mapped={} b_mapped={}",
        name(rc),
        is_mapped(l.at(0)),
        is_mapped(l.at(1))
    ))
}

pub fn map_into_hole(e: &Env) -> CaseResult {
    // [A:1][-][B:1], map 1g into the hole, then set access over all three.
    let l = Layout::new(e, 3, &[(0, 1), (2, 1)])?;
    let h = created(e, e.g)?;
    let rc = map(l.at(1), e.g, 0, h, 0);
    let access = set_access(l.at(0), 3 * e.g, &[access_desc(e.dev, RW)]);
    if rc == CUresult::CUDA_SUCCESS {
        unmap(l.at(1), e.g);
    }
    release(h);
    Ok(format!("{} set_access={}", name(rc), name(access)))
}

pub fn map_into_hole_too_large(e: &Env) -> CaseResult {
    // [A:1][-][B:1][-], map 2g at 1g: runs into B.
    let l = Layout::new(e, 4, &[(0, 1), (2, 1)])?;
    let rc = map_new(e, l.at(1), 2)?;
    Ok(format!("{} b_mapped={}", name(rc), is_mapped(l.at(2))))
}
