//! Conformance cases: devices and contexts.

use super::*;

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
