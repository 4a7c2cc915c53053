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

// ---- out-parameters after a failure -------------------------------------------------

// These cases call the driver through `entry!`, not `raw::bare`: the bare tier starts every
// out-parameter zeroed, and these cases must start it at a sentinel to see whether a failed
// call writes it.

pub fn reserve_failure_out_param(_: &Env) -> CaseResult {
    let f = entry!(table(), cuMemAddressReserve).map_err(|e| e.to_string())?;
    let mut p: CUdeviceptr = SENTINEL;
    // SAFETY: `p` is a valid out-pointer; size 0 is refused.
    let rc = unsafe { f(&mut p, 0, 0, 0, 0) };
    Ok(format!("{} ptr={}", name(rc), out(p, SENTINEL)))
}

pub fn create_failure_out_param(e: &Env) -> CaseResult {
    let f = entry!(table(), cuMemCreate).map_err(|e| e.to_string())?;
    let mut h: CUmemGenericAllocationHandle = SENTINEL;
    let prop = pinned(e);
    // SAFETY: `h` is a valid out-pointer, `prop` a live struct; size 0 is refused.
    let rc = unsafe { f(&mut h, 0, &prop, 0) };
    Ok(format!("{} handle={}", name(rc), out(h, SENTINEL)))
}

pub fn retain_failure_out_param(e: &Env) -> CaseResult {
    let l = Layout::new(e, 1, &[])?;
    let f = entry!(table(), cuMemRetainAllocationHandle).map_err(|e| e.to_string())?;
    let mut h: CUmemGenericAllocationHandle = SENTINEL;
    // SAFETY: `h` is a valid out-pointer; the address is passed by value.
    let rc = unsafe { f(&mut h, l.at(0) as usize as *mut c_void) };
    Ok(format!("{} handle={}", name(rc), out(h, SENTINEL)))
}

pub fn export_failure_out_param(e: &Env) -> CaseResult {
    let h = created(e, e.g)?;
    let f = entry!(table(), cuMemExportToShareableHandle).map_err(|e| e.to_string())?;
    let mut fd: i32 = SENTINEL_I32;
    // SAFETY: for POSIX fds the driver writes one int; the allocation was
    // created without that handle type, so the call is refused.
    let rc = unsafe {
        f(
            (&mut fd as *mut i32).cast::<c_void>(),
            h,
            CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
            0,
        )
    };
    if rc == CUresult::CUDA_SUCCESS {
        close_fd(fd);
    }
    release(h);
    let fd = u64::from(fd as u32);
    Ok(format!(
        "{} fd={}",
        name(rc),
        out(fd, u64::from(SENTINEL_I32 as u32))
    ))
}

pub fn import_failure_out_param(_: &Env) -> CaseResult {
    let f = entry!(table(), cuMemImportFromShareableHandle).map_err(|e| e.to_string())?;
    let mut h: CUmemGenericAllocationHandle = SENTINEL;
    // SAFETY: `h` is a valid out-pointer; the fd (not open) travels by value.
    let rc = unsafe {
        f(
            &mut h,
            987_654isize as *mut c_void,
            CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
        )
    };
    if rc == CUresult::CUDA_SUCCESS {
        release(h);
    }
    Ok(format!("{} handle={}", name(rc), out(h, SENTINEL)))
}

pub fn granularity_failure_out_param(e: &Env) -> CaseResult {
    let f = entry!(table(), cuMemGetAllocationGranularity).map_err(|e| e.to_string())?;
    let mut g: usize = SENTINEL as usize;
    let prop = pinned(e);
    // SAFETY: `g` is a valid out-pointer, `prop` a live struct; option 7 is refused.
    let rc = unsafe { f(&mut g, &prop, CUmemAllocationGranularity_flags(7)) };
    Ok(format!(
        "{} granularity={}",
        name(rc),
        out(g as u64, SENTINEL)
    ))
}

pub fn address_range_failure_out_param(e: &Env) -> CaseResult {
    let l = Layout::new(e, 1, &[])?;
    let f = entry!(table(), cuMemGetAddressRange_v2).map_err(|e| e.to_string())?;
    let (mut base, mut size): (CUdeviceptr, usize) = (SENTINEL, SENTINEL as usize);
    // SAFETY: both out-pointers are valid; the address is reserved, not mapped.
    let rc = unsafe { f(&mut base, &mut size, l.at(0)) };
    Ok(format!(
        "{} base={} size={}",
        name(rc),
        out(base, SENTINEL),
        out(size as u64, SENTINEL)
    ))
}

// ---- exported POSIX descriptors ---------------------------------------------------

/// Creates an exportable allocation of `size` and exports it: `(handle, fd)`.
fn exported(e: &Env, size: usize) -> Result<(CUmemGenericAllocationHandle, i32), String> {
    let p = props(
        e.dev,
        CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
    );
    let (rc, h) = create(size, &p);
    ok("cuMemCreate", rc)?;
    let (rc, fd) = export_fd(h);
    if rc != CUresult::CUDA_SUCCESS {
        release(h);
    }
    ok("cuMemExportToShareableHandle", rc)?;
    Ok((h, fd))
}

pub fn exported_fd_reports_no_size(e: &Env) -> CaseResult {
    let (h, fd) = exported(e, 2 * e.g)?;
    // SAFETY: an all-zero `stat` is a valid value to overwrite.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `fd` is open (we own it); `st` is a valid out-pointer.
    let rc = unsafe { libc::fstat(fd, &mut st) };
    close_fd(fd);
    release(h);
    Ok(format!("fstat={} size={}", rc, st.st_size))
}

pub fn import_same_fd_twice(e: &Env) -> CaseResult {
    let (h, fd) = exported(e, e.g)?;
    let (rc1, h1) = import_fd(fd);
    let (rc2, h2) = import_fd(fd);
    close_fd(fd);
    let same = rc1 == CUresult::CUDA_SUCCESS && rc2 == CUresult::CUDA_SUCCESS && h1 == h2;
    for (rc, imported) in [(rc1, h1), (rc2, h2)] {
        if rc == CUresult::CUDA_SUCCESS {
            release(imported);
        }
    }
    release(h);
    Ok(format!("first={} second={}", name(rc1), name(rc2)) + &format!(" same_handle={same}"))
}

pub fn import_after_exporter_released(e: &Env) -> CaseResult {
    // The exporter writes, releases its handle, then the descriptor is imported.
    let (h, fd) = exported(e, e.g)?;
    let va = reserved(e.g)?;
    ok("cuMemMap", map(va, e.g, 0, h, 0))?;
    ok(
        "cuMemSetAccess",
        set_access(va, e.g, &[access_desc(e.dev, RW)]),
    )?;
    let data = pattern(4096, 5);
    ok("cuMemcpyHtoD", htod(va, &data))?;
    // A pageable copy may still be in flight when it returns.
    ok("cuCtxSynchronize", ctx_synchronize())?;
    unmap(va, e.g);
    release(h);
    let (rc, h2) = import_fd(fd);
    close_fd(fd);
    if rc != CUresult::CUDA_SUCCESS {
        address_free(va, e.g);
        return Ok(format!("import={}", name(rc)));
    }
    ok("cuMemMap imported", map(va, e.g, 0, h2, 0))?;
    ok(
        "cuMemSetAccess imported",
        set_access(va, e.g, &[access_desc(e.dev, RW)]),
    )?;
    let mut back = vec![0u8; data.len()];
    let read = dtoh(&mut back, va);
    cleanup(va, e.g, h2);
    Ok(format!(
        "import={} read={} data_ok={}",
        name(rc),
        name(read),
        back == data
    ))
}

pub fn import_dup_of_exported_fd(e: &Env) -> CaseResult {
    let (h, fd) = exported(e, e.g)?;
    // SAFETY: `fd` is open; dup has no other preconditions.
    let copy = unsafe { libc::dup(fd) };
    close_fd(fd);
    if copy < 0 {
        release(h);
        return Err("setup: dup failed".into());
    }
    let (rc, h2) = import_fd(copy);
    close_fd(copy);
    if rc == CUresult::CUDA_SUCCESS {
        release(h2);
    }
    release(h);
    Ok(name(rc))
}
