//! The simulator: fault injection and call counting.

use super::*;

#[test]
fn injected_fault_fails_exactly_the_chosen_call_without_side_effects() {
    let (_memory, ctx, g) = open_device0();
    let (h1, h2) = (
        create(g, &fd_prop(0)).expect("create"),
        create(g, &fd_prop(0)).expect("create"),
    );
    let va = reserve(2 * g);
    let before = cuda_vmm_sim::call_count("cuMemMap");

    let fault = cuda_vmm_sim::inject_fault("cuMemMap", 2, CUresult::CUDA_ERROR_OUT_OF_MEMORY);
    assert!(fault.is_armed());
    ok(map(va, g, 0, h1));
    assert!(!fault.fired());
    assert_eq!(
        map(va + g as u64, g, 0, h2),
        CUresult::CUDA_ERROR_OUT_OF_MEMORY
    );
    assert!(fault.fired());
    // No side effect: the range is still unmapped, so the same map now works.
    ok(map(va + g as u64, g, 0, h2));
    assert_eq!(cuda_vmm_sim::call_count("cuMemMap"), before + 3);

    // Another thread is not affected by this thread's faults, nor counted here.
    let other = cuda_vmm_sim::inject_fault("cuMemGetInfo", 1, CUresult::CUDA_ERROR_UNKNOWN);
    let dev = ctx.dev;
    std::thread::spawn(move || {
        let c = Ctx::open(dev);
        let _ = mem_info();
        drop(c);
    })
    .join()
    .expect("thread");
    assert!(!other.fired());
    let info = entry!(t(), cuMemGetInfo_v2).expect("mem info");
    let (mut f, mut tot) = (0, 0);
    // SAFETY: valid out-pointers.
    let rc = unsafe { info(&mut f, &mut tot) };
    assert_eq!(rc, CUresult::CUDA_ERROR_UNKNOWN);
    assert_eq!((f, tot), (0, 0), "a failed call writes nothing");
    ok(unmap(va, 2 * g));

    // A dropped guard disarms its fault.
    drop(cuda_vmm_sim::inject_fault(
        "cuMemRelease",
        1,
        CUresult::CUDA_ERROR_UNKNOWN,
    ));
    ok(release(h1));
    ok(release(h2));
    ok(address_free(va, 2 * g));
    assert!(!cuda_vmm_sim::inject_fault("cuNoSuchCall", 1, OK).is_armed());
}
