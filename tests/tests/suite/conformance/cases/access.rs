//! Conformance cases: access.

use super::*;

pub fn set_access_read_write(e: &Env) -> CaseResult {
    let (p, h) = mapped_rw(e, e.g)?;
    let (rc, flags) = get_access(p, e.dev);
    cleanup(p, e.g, h);
    Ok(format!("{} flags={flags}", name(rc)))
}

pub fn set_access_read_only(e: &Env) -> CaseResult {
    let (p, h) = mapped(e, e.g)?;
    let rc = set_access(p, e.g, &[access_desc(e.dev, 1)]);
    let (grc, flags) = get_access(p, e.dev);
    cleanup(p, e.g, h);
    Ok(format!("{} get={} flags={flags}", name(rc), name(grc)))
}

pub fn get_access_before_set(e: &Env) -> CaseResult {
    let (p, h) = mapped(e, e.g)?;
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
    let (p, h) = mapped(e, e.g)?;
    let rc = set_access(p, e.g, &[access_desc(e.dev, 2)]);
    cleanup(p, e.g, h);
    Ok(name(rc))
}

pub fn set_access_bad_device(e: &Env) -> CaseResult {
    let (p, h) = mapped(e, e.g)?;
    let rc = set_access(p, e.g, &[access_desc(999, 3)]);
    cleanup(p, e.g, h);
    Ok(name(rc))
}

pub fn set_access_no_descriptors(e: &Env) -> CaseResult {
    let (p, h) = mapped(e, e.g)?;
    let rc = set_access(p, e.g, &[]);
    cleanup(p, e.g, h);
    Ok(name(rc))
}

pub fn set_access_not_granular(e: &Env) -> CaseResult {
    let (p, h) = mapped(e, e.g)?;
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
