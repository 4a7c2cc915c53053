//! What an out-parameter pre-filled with a sentinel holds after a failure, and what a POSIX
//! descriptor exported by the driver looks like.

use super::*;

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
