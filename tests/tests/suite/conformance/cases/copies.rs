//! Conformance cases: copies.

use super::*;

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
    let (p, h) = mapped(e, e.g)?;
    let rc = htod(p, &pattern(4096, 1));
    let src = ctx_synchronize();
    cleanup(p, e.g, h);
    Ok(format!("{} sync={}", name(rc), name(src)))
}

pub fn copy_from_no_access(e: &Env) -> CaseResult {
    let (p, h) = mapped(e, e.g)?;
    let mut back = vec![0u8; 4096];
    let rc = dtoh(&mut back, p);
    let src = ctx_synchronize();
    cleanup(p, e.g, h);
    Ok(format!("{} sync={}", name(rc), name(src)))
}

pub fn copy_to_read_only(e: &Env) -> CaseResult {
    let (p, h) = mapped_with(e, e.g, 1)?;
    let rc = htod(p, &pattern(4096, 1));
    let src = ctx_synchronize();
    cleanup(p, e.g, h);
    Ok(format!("{} sync={}", name(rc), name(src)))
}

pub fn copy_from_read_only(e: &Env) -> CaseResult {
    let (p, h) = mapped_with(e, e.g, 1)?;
    let mut back = vec![1u8; 4096];
    let rc = dtoh(&mut back, p);
    let src = ctx_synchronize();
    cleanup(p, e.g, h);
    Ok(format!("{} sync={}", name(rc), name(src)))
}

pub fn memset_read_only(e: &Env) -> CaseResult {
    let (p, h) = mapped_with(e, e.g, 1)?;
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
