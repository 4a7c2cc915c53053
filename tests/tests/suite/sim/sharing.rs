//! The simulator: sharing.

use super::*;

#[test]
fn exported_fd_is_shared_with_another_process() {
    let (_memory, ctx, g) = open_device0();
    let h = create(2 * g, &fd_prop(0)).expect("create");
    let va = reserve(2 * g);
    ok(map(va, 2 * g, 0, h));
    set_rw(va, 2 * g, ctx.dev);
    ok(htod(va, &pattern_cycle(4096, 1)));
    // The copy is queued: only a synchronisation makes it land in the memory
    // another process reads.
    ok(sync());

    let fd = export_fd(h).expect("export");
    // Let the child inherit the fd (exports are close-on-exec).
    // SAFETY: fcntl on an fd this test owns.
    assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }, 0);
    let out = run_own_process(
        &test_name!(fd_importer_child),
        &[("CUDA_VMM_SIM_TEST_FD", fd.to_string())],
    );
    assert!(out.contains("importer: read parent's bytes"), "{out}");
    // The child's write is visible here.
    assert_eq!(read(va + g as u64, 4096), pattern_cycle(4096, 2));

    // SAFETY: closing the exported fd this test owns.
    assert_eq!(unsafe { libc::close(fd) }, 0);
    ok(unmap(va, 2 * g));
    ok(release(h));
    ok(address_free(va, 2 * g));
}

#[test]
#[ignore = "child process of exported_fd_is_shared_with_another_process"]
fn fd_importer_child() {
    if !is_child(&test_name!(fd_importer_child)) {
        return;
    }
    let fd: c_int = std::env::var("CUDA_VMM_SIM_TEST_FD")
        .expect("fd from parent")
        .parse()
        .expect("fd number");
    let ctx = Ctx::open(0);
    let g = granularity(0);
    let h = import_fd(fd).expect("import the parent's fd");

    let props = entry!(t(), cuMemGetAllocationPropertiesFromHandle).expect("props");
    let mut p = CUmemAllocationProp::default();
    // SAFETY: valid out-pointer.
    ok(unsafe { props(&mut p, h) });
    assert_eq!(p.location.id, 0);
    assert_eq!(
        p.requestedHandleTypes,
        CUmemAllocationHandleType(answers::IMPORTED_HANDLE_TYPES)
    );

    // The size comes from the fd: maps take whole allocations, so only
    // exactly two granules map.
    let va = reserve(3 * g);
    assert_eq!(map(va, 3 * g, 0, h), answers::MAP_PARTIAL_ALLOCATION);
    assert_eq!(map(va, g, 0, h), answers::MAP_PARTIAL_ALLOCATION);
    ok(map(va, 2 * g, 0, h));
    set_rw(va, 2 * g, ctx.dev);
    assert_eq!(read(va, 4096), pattern_cycle(4096, 1));
    println!("importer: read parent's bytes");
    ok(htod(va + g as u64, &pattern_cycle(4096, 2)));
    ok(sync());
    ok(unmap(va, 2 * g));
    ok(release(h));
    ok(address_free(va, 3 * g));
}

#[test]
fn import_refuses_what_is_not_an_exported_allocation() {
    let (_memory, _ctx, g) = open_device0();
    let bad = Err(answers::IMPORT_BAD_FD);
    assert_eq!(import_fd(-1), bad);
    // An fd number that is not open (far above any this process uses).
    assert_eq!(import_fd(c_int::MAX - 1), bad);
    // A pipe, and a regular file of a valid size: not simulator memory.
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for two fds.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    assert_eq!(import_fd(fds[0]), bad);
    // SAFETY: closing the pipe this test made.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    let path = std::env::temp_dir().join(format!("cuda-vmm-sim-import-{}", std::process::id()));
    let file = std::fs::File::create(&path).expect("temp file");
    file.set_len(g as u64).expect("size");
    assert_eq!(import_fd(std::os::fd::AsRawFd::as_raw_fd(&file)), bad);
    drop(file);
    let _ = std::fs::remove_file(&path);
    // Fabric handles do not exist on the simulated device.
    assert_eq!(
        import(0, CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_FABRIC),
        Err(answers::FABRIC_UNSUPPORTED)
    );
}

#[test]
fn fabric_is_unsupported_and_exports_need_the_requested_type() {
    let (_memory, _ctx, g) = open_device0();
    let attr = entry!(t(), cuDeviceGetAttribute).expect("attribute");
    let mut v = -1;
    // SAFETY: valid out-pointer.
    ok(unsafe {
        attr(
            &mut v,
            CUdevice_attribute::CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_FABRIC_SUPPORTED,
            0,
        )
    });
    assert_eq!(v, 0);
    assert_eq!(
        create(
            g,
            &prop(0, CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_FABRIC)
        ),
        Err(answers::PROP_FABRIC_UNSUPPORTED)
    );
    let plain = create(
        g,
        &prop(0, CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_NONE),
    )
    .expect("create");
    assert_eq!(export_fd(plain), Err(answers::EXPORT_NOT_REQUESTED));
    ok(release(plain));
}

#[test]
fn same_process_import_aliases_the_exported_allocation() {
    let (_memory, ctx, g) = open_device0();
    let h = create(g, &fd_prop(0)).expect("create");
    let fd = export_fd(h).expect("export");
    let h2 = import_fd(fd).expect("import");
    assert_ne!(h, h2);
    // SAFETY: closing the exported fd; the import holds its own reference.
    assert_eq!(unsafe { libc::close(fd) }, 0);
    let (a, b) = (reserve(g), reserve(g));
    ok(map(a, g, 0, h));
    ok(map(b, g, 0, h2));
    set_rw(a, g, ctx.dev);
    set_rw(b, g, ctx.dev);
    ok(htod(a, b"shared"));
    assert_eq!(read(b, 6), b"shared");
    ok(release(h));
    ok(release(h2));
    ok(unmap(a, g));
    ok(unmap(b, g));
    ok(address_free(a, g));
    ok(address_free(b, g));
}
