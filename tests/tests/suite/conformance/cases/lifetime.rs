//! Conformance cases: lifetime, handles, sharing.

use super::*;

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
    let h = created_fd(e)?;
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
    let h = created_fd(e)?;
    let (rc, q) = props_from_handle(h);
    release(h);
    Ok(format!(
        "{} handle_types={}",
        name(rc),
        q.requestedHandleTypes.0
    ))
}

pub fn properties_of_imported_handle(e: &Env) -> CaseResult {
    let h = created_fd(e)?;
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
