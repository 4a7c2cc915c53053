//! The simulator: accounting and out-of-memory (own processes).

use super::*;

#[test]
fn exact_accounting() {
    let _memory = crate::memory_shared();
    announce();
    run_own_process(
        &test_name!(accounting_child),
        &[
            (cuda_vmm_sim::ENV_DEVICES, "2".into()),
            (cuda_vmm_sim::ENV_MEMORY, "64M".into()),
        ],
    );
}

#[test]
#[ignore = "child process of exact_accounting"]
fn accounting_child() {
    if !is_child(&test_name!(accounting_child)) {
        return;
    }
    let dev1 = Ctx::open(1);
    let dev0 = Ctx::open(0);
    let g = granularity(0);
    assert_eq!(g, 2 * MIB);
    let total = 64 * MIB;
    assert_eq!(mem_info(), (total, total));

    let handles: Vec<_> = (1..=3)
        .map(|n| create(n * g, &fd_prop(0)).expect("create"))
        .collect();
    assert_eq!(mem_info(), (total - 6 * g, total));
    // Device 1 is unaffected.
    dev1.make_current();
    assert_eq!(mem_info(), (total, total));
    let on1 = create(g, &fd_prop(1)).expect("create on device 1");
    assert_eq!(mem_info(), (total - g, total));
    dev0.make_current();
    assert_eq!(mem_info(), (total - 6 * g, total));

    // Released while mapped: still counted until the unmap.
    let va = reserve(3 * g);
    ok(map(va, 3 * g, 0, handles[2]));
    ok(release(handles[2]));
    assert_eq!(mem_info(), (total - 6 * g, total));
    ok(unmap(va, 3 * g));
    assert_eq!(mem_info(), (total - 3 * g, total));

    // A same-process import does not count twice.
    let fd = export_fd(handles[0]).expect("export");
    let imported = import_fd(fd).expect("import");
    assert_eq!(mem_info(), (total - 3 * g, total));
    ok(release(imported));
    // SAFETY: closing the exported fd.
    assert_eq!(unsafe { libc::close(fd) }, 0);

    // Classic allocations count, rounded up to the granularity.
    let alloc = entry!(t(), cuMemAlloc_v2).expect("alloc");
    let free = entry!(t(), cuMemFree_v2).expect("free");
    let mut p = 0;
    // SAFETY: valid out-pointer.
    ok(unsafe { alloc(&mut p, 1) });
    assert_eq!(mem_info(), (total - 4 * g, total));
    // SAFETY: freeing the allocation just made.
    ok(unsafe { free(p) });
    assert_eq!(mem_info(), (total - 3 * g, total));

    for h in &handles[..2] {
        ok(release(*h));
    }
    ok(address_free(va, 3 * g));
    assert_eq!(mem_info(), (total, total));
    dev1.make_current();
    ok(release(on1));
    assert_eq!(mem_info(), (total, total));
    drop(dev0);
}

#[test]
fn out_of_memory() {
    let _memory = crate::memory_shared();
    announce();
    run_own_process(
        &test_name!(oom_child),
        &[(cuda_vmm_sim::ENV_MEMORY, "16M".into())],
    );
}

#[test]
#[ignore = "child process of out_of_memory"]
fn oom_child() {
    if !is_child(&test_name!(oom_child)) {
        return;
    }
    let _ctx = Ctx::open(0);
    let g = granularity(0);
    let oom = answers::OUT_OF_MEMORY;
    assert_eq!(create(10 * g, &fd_prop(0)), Err(oom));
    let big = create(7 * g, &fd_prop(0)).expect("7 of 8 granules");
    assert_eq!(create(2 * g, &fd_prop(0)), Err(oom));
    let last = create(g, &fd_prop(0)).expect("the last granule");
    assert_eq!(mem_info().0, 0);
    assert_eq!(create(g, &fd_prop(0)), Err(oom));
    let alloc = entry!(t(), cuMemAlloc_v2).expect("alloc");
    let mut p = 0;
    // SAFETY: valid out-pointer.
    assert_eq!(unsafe { alloc(&mut p, 1) }, oom);
    ok(release(big));
    ok(release(last));
    assert_eq!(mem_info(), (16 * MIB, 16 * MIB));
}
