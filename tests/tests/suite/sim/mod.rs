//! Simulator-specific behaviour that the conformance suite does not cover:
//! real aliasing, release-while-mapped, fd sharing with another process,
//! exact accounting, out-of-memory, fault injection, threads, configuration,
//! and device asynchrony (streams, events, poisoning by unmapping busy memory).
//!
//! These tests always run on the in-process simulator (`cuda_vmm_sim::driver()`),
//! whatever backend the rest of the suite uses.
//!
//! Isolation: the tests of this binary run in parallel threads sharing one
//! simulator, so nothing here asserts exact memory numbers in-process. Every
//! test that needs a fresh simulator — exact accounting, out-of-memory,
//! configuration, calls before `cuInit`, the fd importer — is an `#[ignore]`d
//! `*_child` test that a parent test re-runs in its own process (this test
//! binary, filtered to that one test, with `CUDA_VMM_SIM_TEST_CHILD` set).

use std::ffi::{c_int, c_void, CStr};
use std::io::Write;
use std::sync::Once;

use cuda_vmm_sim::answers;
use cuda_vmm_sys::{
    entry, result_name, CUdevice, CUdevice_attribute, CUdeviceptr, CUdriverProcAddressQueryResult,
    CUevent, CUmemAccessDesc, CUmemAccess_flags, CUmemAllocationGranularity_flags,
    CUmemAllocationHandleType, CUmemAllocationProp, CUmemAllocationType,
    CUmemGenericAllocationHandle, CUmemLocation, CUmemLocationType, CUresult, CUstream,
    DriverTable,
};
use cuda_vmm_tests::helpers::{pattern_cycle, run_child};
use cuda_vmm_tests::test_name;

const OK: CUresult = CUresult::CUDA_SUCCESS;
const MIB: usize = 1 << 20;

/// Set (to the test's name) in the environment of a child process.
const CHILD_ENV: &str = "CUDA_VMM_SIM_TEST_CHILD";

// ---- Raw-call helpers (the simulator's table; every call takes plain values) ----

fn t() -> &'static DriverTable {
    cuda_vmm_sim::driver().table()
}

fn announce() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let line =
            cuda_vmm_tests::describe(cuda_vmm_sim::driver(), cuda_vmm_tests::Backend::Simulator);
        // Written past the test harness's capture, so it shows once per run.
        let _ = writeln!(std::io::stderr(), "backend: {line}");
    });
}

#[track_caller]
fn ok(rc: CUresult) {
    assert_eq!(
        rc,
        OK,
        "expected CUDA_SUCCESS, got {}",
        result_name(rc).unwrap_or("?")
    );
}

fn init() {
    let f = entry!(t(), cuInit).expect("cuInit");
    // SAFETY: cuInit takes a flags word.
    ok(unsafe { f(0) });
}

/// The primary context of a device, current on this thread while alive.
struct Ctx {
    dev: CUdevice,
}

impl Ctx {
    fn open(dev: CUdevice) -> Self {
        init();
        let retain = entry!(t(), cuDevicePrimaryCtxRetain).expect("retain");
        let set = entry!(t(), cuCtxSetCurrent).expect("set current");
        let mut ctx = std::ptr::null_mut();
        // SAFETY: `ctx` is a valid out-pointer; the context is then made current.
        unsafe {
            ok(retain(&mut ctx, dev));
            ok(set(ctx));
        }
        Self { dev }
    }

    fn make_current(&self) {
        let retain = entry!(t(), cuDevicePrimaryCtxRetain).expect("retain");
        let release = entry!(t(), cuDevicePrimaryCtxRelease_v2).expect("release");
        let set = entry!(t(), cuCtxSetCurrent).expect("set current");
        let mut ctx = std::ptr::null_mut();
        // SAFETY: valid out-pointer; the extra reference is dropped at once.
        unsafe {
            ok(retain(&mut ctx, self.dev));
            ok(set(ctx));
            ok(release(self.dev));
        }
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        let set = entry!(t(), cuCtxSetCurrent).expect("set current");
        let release = entry!(t(), cuDevicePrimaryCtxRelease_v2).expect("release");
        // SAFETY: plain values.
        unsafe {
            set(std::ptr::null_mut());
            release(self.dev);
        }
    }
}

fn prop(dev: CUdevice, types: CUmemAllocationHandleType) -> CUmemAllocationProp {
    CUmemAllocationProp {
        type_: CUmemAllocationType::CU_MEM_ALLOCATION_TYPE_PINNED,
        requestedHandleTypes: types,
        location: CUmemLocation {
            type_: CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
            id: dev,
        },
        ..Default::default()
    }
}

fn fd_prop(dev: CUdevice) -> CUmemAllocationProp {
    prop(
        dev,
        CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
    )
}

fn granularity(dev: CUdevice) -> usize {
    let f = entry!(t(), cuMemGetAllocationGranularity).expect("granularity");
    let mut g = 0;
    let p = fd_prop(dev);
    // SAFETY: valid out-pointer and property struct.
    ok(unsafe {
        f(
            &mut g,
            &p,
            CUmemAllocationGranularity_flags::CU_MEM_ALLOC_GRANULARITY_MINIMUM,
        )
    });
    g
}

fn reserve(size: usize) -> CUdeviceptr {
    let f = entry!(t(), cuMemAddressReserve).expect("reserve");
    let mut va = 0;
    // SAFETY: valid out-pointer.
    ok(unsafe { f(&mut va, size, 0, 0, 0) });
    va
}

fn address_free(va: CUdeviceptr, size: usize) -> CUresult {
    let f = entry!(t(), cuMemAddressFree).expect("free");
    // SAFETY: plain values.
    unsafe { f(va, size) }
}

fn create(size: usize, p: &CUmemAllocationProp) -> Result<CUmemGenericAllocationHandle, CUresult> {
    let f = entry!(t(), cuMemCreate).expect("create");
    let mut h = 0;
    // SAFETY: valid out-pointer and property struct.
    match unsafe { f(&mut h, size, p, 0) } {
        OK => Ok(h),
        rc => Err(rc),
    }
}

fn release(h: CUmemGenericAllocationHandle) -> CUresult {
    let f = entry!(t(), cuMemRelease).expect("release");
    // SAFETY: plain values.
    unsafe { f(h) }
}

fn map(va: CUdeviceptr, size: usize, offset: usize, h: CUmemGenericAllocationHandle) -> CUresult {
    let f = entry!(t(), cuMemMap).expect("map");
    // SAFETY: plain values.
    unsafe { f(va, size, offset, h, 0) }
}

fn unmap(va: CUdeviceptr, size: usize) -> CUresult {
    let f = entry!(t(), cuMemUnmap).expect("unmap");
    // SAFETY: plain values.
    unsafe { f(va, size) }
}

fn set_access(va: CUdeviceptr, size: usize, dev: CUdevice, flags: CUmemAccess_flags) -> CUresult {
    let f = entry!(t(), cuMemSetAccess).expect("set access");
    let desc = CUmemAccessDesc {
        location: CUmemLocation {
            type_: CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
            id: dev,
        },
        flags,
    };
    // SAFETY: one valid descriptor.
    unsafe { f(va, size, &desc, 1) }
}

fn set_rw(va: CUdeviceptr, size: usize, dev: CUdevice) {
    ok(set_access(
        va,
        size,
        dev,
        CUmemAccess_flags::CU_MEM_ACCESS_FLAGS_PROT_READWRITE,
    ));
}

fn htod(va: CUdeviceptr, data: &[u8]) -> CUresult {
    let f = entry!(t(), cuMemcpyHtoD_v2).expect("htod");
    // SAFETY: `data` is readable for its length.
    unsafe { f(va, data.as_ptr().cast(), data.len()) }
}

fn dtoh(buf: &mut [u8], va: CUdeviceptr) -> CUresult {
    let f = entry!(t(), cuMemcpyDtoH_v2).expect("dtoh");
    // SAFETY: `buf` is writable for its length.
    unsafe { f(buf.as_mut_ptr().cast(), va, buf.len()) }
}

/// `cuCtxSynchronize`: completes the current context's queued work.
fn sync() -> CUresult {
    let f = entry!(t(), cuCtxSynchronize).expect("synchronize");
    // SAFETY: no arguments.
    unsafe { f() }
}

fn read(va: CUdeviceptr, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    ok(dtoh(&mut buf, va));
    buf
}

fn mem_info() -> (usize, usize) {
    let f = entry!(t(), cuMemGetInfo_v2).expect("mem info");
    let (mut free, mut total) = (0, 0);
    // SAFETY: valid out-pointers.
    ok(unsafe { f(&mut free, &mut total) });
    (free, total)
}

fn export_fd(h: CUmemGenericAllocationHandle) -> Result<c_int, CUresult> {
    let f = entry!(t(), cuMemExportToShareableHandle).expect("export");
    let mut fd: c_int = -1;
    let kind = CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
    // SAFETY: for POSIX fds the out-argument is an int.
    match unsafe { f((&mut fd as *mut c_int).cast(), h, kind, 0) } {
        OK => Ok(fd),
        rc => Err(rc),
    }
}

fn import(os_handle: usize, kind: CUmemAllocationHandleType) -> Result<u64, CUresult> {
    let f = entry!(t(), cuMemImportFromShareableHandle).expect("import");
    let mut h = 0;
    // SAFETY: valid out-pointer; for POSIX fds the handle is the fd as a pointer.
    match unsafe { f(&mut h, os_handle as *mut c_void, kind) } {
        OK => Ok(h),
        rc => Err(rc),
    }
}

fn import_fd(fd: c_int) -> Result<u64, CUresult> {
    import(
        fd as usize,
        CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
    )
}

/// Re-runs `test` (an ignored `*_child` test of this binary) in its own process, with
/// none of the simulator's settings inherited but those in `env`; its standard output.
fn run_own_process(test: &str, env: &[(&str, String)]) -> String {
    run_child(test, |cmd| {
        cmd.env(CHILD_ENV, test);
        for var in [
            cuda_vmm_sim::ENV_DEVICES,
            cuda_vmm_sim::ENV_MEMORY,
            cuda_vmm_sim::ENV_GRANULARITY,
            cuda_vmm_sim::ENV_DRIVER_VERSION,
            cuda_vmm_sim::ENV_ASYNC,
        ] {
            cmd.env_remove(var);
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
    })
    .unwrap_or_else(|e| panic!("{e}"))
    .stdout
}

/// Whether this process is the child spawned for `test`.
fn is_child(test: &str) -> bool {
    let me = std::env::var(CHILD_ENV).unwrap_or_default();
    if me == test {
        return true;
    }
    println!("skipped: {test} runs only in its own process (spawned by its parent test)");
    false
}

// ---- Aliasing and lifetime --------------------------------------------------

#[test]
fn two_mappings_of_one_allocation_alias() {
    let _memory = crate::memory_shared();
    announce();
    let ctx = Ctx::open(0);
    let g = granularity(0);
    let h = create(2 * g, &fd_prop(0)).expect("create");
    let (a, b) = (reserve(2 * g), reserve(2 * g));
    ok(map(a, 2 * g, 0, h));
    ok(map(b, 2 * g, 0, h));
    for va in [a, b] {
        set_rw(va, 2 * g, ctx.dev);
    }

    // A copy into one mapping reads back through the other and through the host pointer.
    let data = pattern_cycle(3 * MIB, 7);
    ok(htod(a + 1000, &data));
    assert_eq!(read(b + 1000, data.len()), data);
    // SAFETY: `[a, a + 2g)` is mapped read-write until the unmap below.
    let host_a = unsafe { std::slice::from_raw_parts(a as *const u8, 2 * g) };
    assert_eq!(&host_a[1000..1000 + data.len()], &data[..]);

    // A host write through `b` is seen through `a`.
    // SAFETY: `[b, b + 2g)` is mapped read-write; no Rust reference points into it.
    unsafe { (b as *mut u8).add(g + 5).write_volatile(0xAB) };
    assert_eq!(read(a + (g + 5) as u64, 1), [0xAB]);

    for va in [a, b] {
        ok(unmap(va, 2 * g));
        ok(address_free(va, 2 * g));
    }
    ok(release(h));
}

#[test]
fn release_while_mapped_keeps_the_memory_until_unmap() {
    let _memory = crate::memory_shared();
    announce();
    let ctx = Ctx::open(0);
    let g = granularity(0);
    let h = create(g, &fd_prop(0)).expect("create");
    let va = reserve(g);
    ok(map(va, g, 0, h));
    set_rw(va, g, ctx.dev);
    let data = pattern_cycle(g, 42);
    ok(htod(va, &data));

    ok(release(h));
    // The handle is gone, the memory is not.
    assert_eq!(release(h), answers::UNKNOWN_HANDLE);
    assert_eq!(map(va, g, 0, h), answers::UNKNOWN_HANDLE);
    assert_eq!(read(va, g), data);

    // The mapping still yields a (new reference to the) handle.
    let retain = entry!(t(), cuMemRetainAllocationHandle).expect("retain");
    let mut again = 0;
    // SAFETY: valid out-pointer; the address is mapped.
    ok(unsafe { retain(&mut again, (va + 7) as *mut c_void) });
    assert_eq!(again, h);
    ok(release(again));

    ok(unmap(va, g));
    assert_eq!(dtoh(&mut [0u8; 4], va), answers::COPY_UNMAPPED);
    assert_eq!(release(h), answers::UNKNOWN_HANDLE);
    ok(address_free(va, g));
}

#[test]
fn read_only_access_allows_reads_and_refuses_writes() {
    let _memory = crate::memory_shared();
    announce();
    let ctx = Ctx::open(0);
    let g = granularity(0);
    let h = create(g, &fd_prop(0)).expect("create");
    let va = reserve(g);
    ok(map(va, g, 0, h));
    // Mapped but no access yet: copies fail without faulting.
    assert_eq!(htod(va, &[1, 2, 3]), answers::COPY_NO_ACCESS);
    set_rw(va, g, ctx.dev);
    ok(htod(va, &[1, 2, 3]));
    ok(set_access(
        va,
        g,
        ctx.dev,
        CUmemAccess_flags::CU_MEM_ACCESS_FLAGS_PROT_READ,
    ));
    assert_eq!(read(va, 3), [1, 2, 3]);
    // SAFETY: the page is mapped with read access.
    assert_eq!(unsafe { (va as *const u8).add(1).read_volatile() }, 2);
    assert_eq!(htod(va, &[9]), answers::COPY_NO_ACCESS);
    assert_eq!(read(va, 1), [1]);
    ok(unmap(va, g));
    ok(release(h));
    ok(address_free(va, g));
}

// ---- Sharing -----------------------------------------------------------------

#[test]
fn exported_fd_is_shared_with_another_process() {
    let _memory = crate::memory_shared();
    announce();
    let ctx = Ctx::open(0);
    let g = granularity(0);
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
    let _memory = crate::memory_shared();
    announce();
    let _ctx = Ctx::open(0);
    let g = granularity(0);
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
    let _memory = crate::memory_shared();
    announce();
    let _ctx = Ctx::open(0);
    let g = granularity(0);
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
    let _memory = crate::memory_shared();
    announce();
    let ctx = Ctx::open(0);
    let g = granularity(0);
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

// ---- Accounting and out-of-memory (own processes) ------------------------------

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

// ---- Fault injection and call counting -----------------------------------------

#[test]
fn injected_fault_fails_exactly_the_chosen_call_without_side_effects() {
    let _memory = crate::memory_shared();
    announce();
    let ctx = Ctx::open(0);
    let g = granularity(0);
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

// ---- Threads -------------------------------------------------------------------

#[test]
fn threads_reserve_create_map_and_copy_concurrently() {
    let _memory = crate::memory_shared();
    announce();
    let workers: Vec<_> = (0..6u8)
        .map(|id| {
            std::thread::spawn(move || {
                let ctx = Ctx::open(0);
                let g = granularity(0);
                for round in 0..25u8 {
                    let granules = 1 + usize::from((id + round) % 3);
                    let size = granules * g;
                    let va = reserve(size);
                    let h = create(size, &fd_prop(0)).expect("create");
                    ok(map(va, size, 0, h));
                    set_rw(va, size, ctx.dev);
                    let data = pattern_cycle(64 * 1024, id.wrapping_mul(31).wrapping_add(round));
                    let at = va + (size - data.len()) as u64;
                    ok(htod(at, &data));
                    assert_eq!(read(at, data.len()), data);
                    ok(unmap(va, size));
                    ok(release(h));
                    ok(address_free(va, size));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker thread");
    }
}

// ---- Entry points, error strings ----------------------------------------------

#[test]
fn get_proc_address_returns_the_simulator_entry_points() {
    let _memory = crate::memory_shared();
    announce();
    init();
    let get = entry!(t(), cuGetProcAddress_v2).expect("get proc address");
    let lookup = |name: &CStr, version: c_int| {
        let mut pfn = std::ptr::null_mut();
        let mut found = CUdriverProcAddressQueryResult(99);
        // SAFETY: NUL-terminated name and valid out-pointers.
        let rc = unsafe { get(name.as_ptr(), &mut pfn, version, 0, &mut found) };
        (rc, pfn as usize, found)
    };
    let table_mem_info = t().cuMemGetInfo_v2.expect("mem info") as usize;
    let table_create = t().cuMemCreate.expect("create") as usize;
    let found = CUdriverProcAddressQueryResult::CU_GET_PROC_ADDRESS_SUCCESS;
    assert_eq!(lookup(c"cuMemGetInfo", 13000), (OK, table_mem_info, found));
    assert_eq!(lookup(c"cuMemCreate", 12000), (OK, table_create, found));
    let not_found = answers::PROC_NOT_FOUND;
    assert_eq!(
        lookup(c"cuGraphLaunch", 13000),
        (
            not_found,
            0,
            CUdriverProcAddressQueryResult::CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND
        )
    );
    assert_eq!(
        lookup(c"cuMemCreate", 10000),
        (
            not_found,
            0,
            CUdriverProcAddressQueryResult::CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT
        )
    );
}

#[test]
fn error_names_and_strings_are_static_c_strings() {
    let _memory = crate::memory_shared();
    announce();
    let name = entry!(t(), cuGetErrorName).expect("name");
    let text = entry!(t(), cuGetErrorString).expect("string");
    let mut p = std::ptr::null();
    // SAFETY: valid out-pointer; on success it points to a static C string.
    unsafe {
        ok(name(CUresult::CUDA_ERROR_OUT_OF_MEMORY, &mut p));
        assert_eq!(CStr::from_ptr(p), c"CUDA_ERROR_OUT_OF_MEMORY");
        ok(text(CUresult::CUDA_ERROR_OUT_OF_MEMORY, &mut p));
        assert!(CStr::from_ptr(p)
            .to_string_lossy()
            .starts_with("The API call failed because it was unable to allocate"));
        assert_eq!(name(CUresult(12345), &mut p), answers::UNKNOWN_ERROR_CODE);
        assert!(p.is_null());
    }
}

// ---- Configuration (own processes) ------------------------------------------------

#[test]
fn configuration_by_builder() {
    let _memory = crate::memory_shared();
    announce();
    let out = run_own_process(&test_name!(builder_child), &[]);
    assert!(out.contains("builder: configured"), "{out}");
}

#[test]
#[ignore = "child process of configuration_by_builder"]
fn builder_child() {
    if !is_child(&test_name!(builder_child)) {
        return;
    }
    // Before cuInit: only the version and error strings work.
    let get_count = entry!(t(), cuDeviceGetCount).expect("count");
    let version = entry!(t(), cuDriverGetVersion).expect("version");
    let mut n = -1;
    // SAFETY: valid out-pointer.
    assert_eq!(unsafe { get_count(&mut n) }, answers::NOT_INITIALIZED);
    assert_eq!(cuda_vmm_sim::active_config(), None);

    let config = cuda_vmm_sim::SimConfig::new()
        .devices(3)
        .memory_per_device(1 << 30)
        .granularity(64 << 10)
        .driver_version(12080)
        .device_name("test gpu");
    assert_eq!(
        cuda_vmm_sim::configure(config.clone().granularity(3000))
            .expect_err("bad granularity")
            .to_string(),
        "invalid granularity `3000`: must be a power of two of at least the host page size 4096"
    );
    cuda_vmm_sim::configure(config.clone()).expect("configure before cuInit");
    let mut v = 0;
    // SAFETY: valid out-pointer.
    ok(unsafe { version(&mut v) });
    assert_eq!(v, 12080, "the version is known before cuInit");

    init();
    assert_eq!(
        cuda_vmm_sim::configure(config.clone()),
        Err(cuda_vmm_sim::ConfigError::AlreadyInitialized)
    );
    assert_eq!(cuda_vmm_sim::active_config(), Some(config));
    // SAFETY: valid out-pointer.
    ok(unsafe { get_count(&mut n) });
    assert_eq!(n, 3);
    let get_name = entry!(t(), cuDeviceGetName).expect("name");
    let mut buf = [0 as std::ffi::c_char; 64];
    // SAFETY: `buf` holds 64 bytes.
    ok(unsafe { get_name(buf.as_mut_ptr(), 64, 2) });
    // SAFETY: the simulator NUL-terminates within the buffer.
    assert_eq!(unsafe { CStr::from_ptr(buf.as_ptr()) }, c"test gpu");
    let total_mem = entry!(t(), cuDeviceTotalMem_v2).expect("total");
    let mut bytes = 0;
    // SAFETY: valid out-pointer.
    ok(unsafe { total_mem(&mut bytes, 2) });
    assert_eq!(bytes, 1 << 30);
    let get_dev = entry!(t(), cuDeviceGet).expect("device");
    let mut d = -1;
    // SAFETY: valid out-pointer.
    assert_eq!(unsafe { get_dev(&mut d, 3) }, answers::BAD_DEVICE);
    let _ctx = Ctx::open(2);
    assert_eq!(granularity(2), 64 << 10);
    println!("builder: configured");
}

#[test]
fn configuration_by_environment() {
    let _memory = crate::memory_shared();
    announce();
    let out = run_own_process(
        &test_name!(env_child),
        &[
            (cuda_vmm_sim::ENV_DEVICES, "2".into()),
            (cuda_vmm_sim::ENV_MEMORY, "3G".into()),
            (cuda_vmm_sim::ENV_GRANULARITY, "1M".into()),
            (cuda_vmm_sim::ENV_DRIVER_VERSION, "12090".into()),
        ],
    );
    assert!(out.contains("env: configured"), "{out}");
    run_own_process(
        &test_name!(bad_env_child),
        &[(cuda_vmm_sim::ENV_MEMORY, "lots".into())],
    );
    run_own_process(
        &test_name!(no_device_child),
        &[(cuda_vmm_sim::ENV_DEVICES, "0".into())],
    );
}

#[test]
#[ignore = "child process of configuration_by_environment"]
fn env_child() {
    if !is_child(&test_name!(env_child)) {
        return;
    }
    init();
    let config = cuda_vmm_sim::active_config().expect("initialised");
    assert_eq!(config.device_count(), 2);
    assert_eq!(config.memory(), 3 << 30);
    assert_eq!(config.allocation_granularity(), 1 << 20);
    assert_eq!(config.version(), 12090);
    let _ctx = Ctx::open(1);
    assert_eq!(granularity(1), 1 << 20);
    assert_eq!(mem_info(), (3 << 30, 3 << 30));
    println!("env: configured");
}

#[test]
#[ignore = "child process of configuration_by_environment"]
fn bad_env_child() {
    if !is_child(&test_name!(bad_env_child)) {
        return;
    }
    let f = entry!(t(), cuInit).expect("cuInit");
    // SAFETY: plain value.
    assert_eq!(unsafe { f(0) }, answers::INIT_BAD_CONFIG);
    assert_eq!(cuda_vmm_sim::active_config(), None);
}

#[test]
#[ignore = "child process of configuration_by_environment"]
fn no_device_child() {
    if !is_child(&test_name!(no_device_child)) {
        return;
    }
    let f = entry!(t(), cuInit).expect("cuInit");
    // SAFETY: plain value.
    assert_eq!(unsafe { f(0) }, answers::INIT_NO_DEVICE);
}

// ---- Asynchrony: streams, events, poisoning -------------------------------------
//
// Every test that queues work runs in its own process: another test's
// cuCtxSynchronize would complete it, and a poisoned context would fail the
// other tests.

const LAUNCH_FAILED: CUresult = answers::UNMAP_WITH_PENDING_WORK;
const NON_BLOCKING: u32 = 1;

/// Runs `$body` only in a child process spawned by the `$parent` test.
macro_rules! in_own_process {
    ($parent:ident, $child:ident, $env:expr, $body:block) => {
        #[test]
        fn $parent() {
            let _memory = crate::memory_shared();
            announce();
            run_own_process(&cuda_vmm_tests::test_name!($child), &$env);
        }

        #[test]
        #[ignore = "child process; its parent test spawns it"]
        fn $child() {
            if !is_child(&cuda_vmm_tests::test_name!($child)) {
                return;
            }
            $body
        }
    };
}

/// A mapped, read-write buffer of `size` bytes on device 0.
fn buffer(size: usize) -> (CUdeviceptr, CUmemGenericAllocationHandle) {
    let va = reserve(size);
    let h = create(size, &prop(0, CUmemAllocationHandleType(0))).expect("create");
    ok(map(va, size, 0, h));
    set_rw(va, size, 0);
    (va, h)
}

fn stream(flags: u32) -> CUstream {
    let f = entry!(t(), cuStreamCreate).expect("stream create");
    let mut s = std::ptr::null_mut();
    // SAFETY: valid out-pointer.
    ok(unsafe { f(&mut s, flags) });
    s
}

fn stream_sync(s: CUstream) -> CUresult {
    let f = entry!(t(), cuStreamSynchronize).expect("stream sync");
    // SAFETY: a stream of this simulator, or null.
    unsafe { f(s) }
}

fn stream_query(s: CUstream) -> CUresult {
    let f = entry!(t(), cuStreamQuery).expect("stream query");
    // SAFETY: as above.
    unsafe { f(s) }
}

fn memset_async(va: CUdeviceptr, value: u8, n: usize, s: CUstream) -> CUresult {
    let f = entry!(t(), cuMemsetD8Async).expect("memset async");
    // SAFETY: device-side only.
    unsafe { f(va, value, n, s) }
}

fn htod_async(va: CUdeviceptr, data: &[u8], s: CUstream) -> CUresult {
    let f = entry!(t(), cuMemcpyHtoDAsync_v2).expect("htod async");
    // SAFETY: `data` is readable for its length (pageable: snapshotted now).
    unsafe { f(va, data.as_ptr().cast(), data.len(), s) }
}

fn dtod_async(dst: CUdeviceptr, src: CUdeviceptr, n: usize, s: CUstream) -> CUresult {
    let f = entry!(t(), cuMemcpyDtoDAsync_v2).expect("dtod async");
    // SAFETY: device-side only.
    unsafe { f(dst, src, n, s) }
}

fn event() -> CUevent {
    let f = entry!(t(), cuEventCreate).expect("event create");
    let mut e = std::ptr::null_mut();
    // SAFETY: valid out-pointer.
    ok(unsafe { f(&mut e, 0) });
    e
}

fn record(e: CUevent, s: CUstream) -> CUresult {
    let f = entry!(t(), cuEventRecord).expect("event record");
    // SAFETY: an event and a stream of this simulator.
    unsafe { f(e, s) }
}

fn wait(s: CUstream, e: CUevent) -> CUresult {
    let f = entry!(t(), cuStreamWaitEvent).expect("stream wait event");
    // SAFETY: as above.
    unsafe { f(s, e, 0) }
}

fn mem_info_rc() -> CUresult {
    let f = entry!(t(), cuMemGetInfo_v2).expect("mem info");
    let (mut free, mut total) = (0, 0);
    // SAFETY: valid out-pointers.
    unsafe { f(&mut free, &mut total) }
}

in_own_process!(
    pageable_htod_then_unmap_poisons_until_the_context_is_destroyed,
    poison_child,
    [],
    {
        let ctx = Ctx::open(0);
        let g = granularity(0);
        for round in 0..3 {
            let (va, h) = buffer(g);
            ok(htod(va, &pattern_cycle(4096, round)));
            assert_eq!(cuda_vmm_sim::pending_work(), 1, "the copy is queued");
            // The driver neither waits nor fails the unmap ...
            ok(unmap(va, g));
            // ... but the context is poisoned, every time.
            assert_eq!(sync(), LAUNCH_FAILED);
            assert_eq!(sync(), LAUNCH_FAILED);
            assert_eq!(mem_info_rc(), LAUNCH_FAILED);
            assert_eq!(htod(va, &[1]), LAUNCH_FAILED);
            assert_eq!(cuda_vmm_sim::pending_work(), 0, "the work is discarded");
            // VMM calls keep working.
            ok(release(h));
            ok(address_free(va, g));
            // Destroying the primary context (references to 0) clears it.
            ctx.make_current();
            let release_primary = entry!(t(), cuDevicePrimaryCtxRelease_v2).expect("release");
            // SAFETY: plain value; `Ctx::open` holds the one reference.
            ok(unsafe { release_primary(0) });
            let fresh = Ctx::open(0);
            ok(sync());
            ok(mem_info_rc());
            std::mem::forget(fresh);
        }
        drop(ctx);
    }
);

in_own_process!(synchronised_htod_then_unmap_is_clean, sync_child, [], {
    let _ctx = Ctx::open(0);
    let g = granularity(0);
    let (va, h) = buffer(g);
    let data = pattern_cycle(4096, 7);
    ok(htod(va, &data));
    ok(sync());
    assert_eq!(cuda_vmm_sim::pending_work(), 0);
    assert_eq!(read(va, 4096), data);
    ok(unmap(va, g));
    ok(sync());
    ok(mem_info_rc());
    ok(release(h));
    ok(address_free(va, g));
});

in_own_process!(
    syncing_another_stream_does_not_save_an_unmap,
    no_flush_child,
    [],
    {
        let _ctx = Ctx::open(0);
        let g = granularity(0);
        let (va, h) = buffer(g);
        let (a, b) = (stream(NON_BLOCKING), stream(NON_BLOCKING));
        ok(memset_async(va, 5, g, a));
        ok(htod_async(va + 4096, &[1, 2, 3], b));
        // Completes b's work only: a's memset is still pending.
        ok(stream_sync(b));
        assert_eq!(cuda_vmm_sim::pending_work(), 1);
        ok(unmap(va, g));
        // A memset is device work: ILLEGAL_ADDRESS, as on the H200.
        assert_eq!(stream_sync(a), CUresult::CUDA_ERROR_ILLEGAL_ADDRESS);
        assert_eq!(sync(), CUresult::CUDA_ERROR_ILLEGAL_ADDRESS);
        ok(release(h));
        ok(address_free(va, g));
    }
);

in_own_process!(
    stream_wait_event_orders_work_across_streams,
    wait_child,
    [],
    {
        let _ctx = Ctx::open(0);
        let g = granularity(0);
        let (x, hx) = buffer(g);
        let (y, hy) = buffer(g);
        let (a, b) = (stream(NON_BLOCKING), stream(NON_BLOCKING));
        let data = pattern_cycle(4096, 3);
        let e = event();
        ok(htod_async(x, &data, a));
        ok(record(e, a));
        ok(memset_async(x, 0xee, 4096, a)); // after the event: must not be seen
        ok(wait(b, e));
        ok(dtod_async(y, x, 4096, b));
        // Syncing b completes a's work up to the event, then the copy.
        ok(stream_sync(b));
        assert_eq!(
            cuda_vmm_sim::pending_work(),
            1,
            "a's memset is still queued"
        );
        assert_eq!(read(y, 4096), data);
        assert_eq!(stream_query(a), answers::NOT_READY);
        ok(stream_query(a));
        assert_eq!(read(x, 4096), vec![0xee; 4096]);
        ok(unmap(x, g));
        ok(unmap(y, g));
        ok(sync());
        for (va, h) in [(x, hx), (y, hy)] {
            ok(release(h));
            ok(address_free(va, g));
        }
    }
);

in_own_process!(
    the_legacy_stream_waits_for_blocking_streams_only,
    legacy_child,
    [],
    {
        let _ctx = Ctx::open(0);
        let g = granularity(0);
        let (va, h) = buffer(g);
        let blocking = stream(0);
        let non_blocking = stream(NON_BLOCKING);
        ok(memset_async(va, 1, 4096, blocking));
        ok(memset_async(va + 4096, 2, 4096, non_blocking));
        // cuMemcpyDtoH runs on the legacy stream: it waits for the blocking
        // stream's earlier work, not the non-blocking stream's.
        assert_eq!(read(va, 4096), vec![1; 4096]);
        assert_eq!(read(va + 4096, 4096), vec![0; 4096]);
        ok(stream_sync(non_blocking));
        assert_eq!(read(va + 4096, 4096), vec![2; 4096]);
        // Destroying a stream with work pending: the work still completes.
        ok(memset_async(va, 3, 4096, non_blocking));
        let destroy = entry!(t(), cuStreamDestroy_v2).expect("destroy");
        // SAFETY: a stream of this simulator.
        ok(unsafe { destroy(non_blocking) });
        assert_eq!(stream_sync(non_blocking), answers::BAD_STREAM_OR_EVENT);
        ok(sync());
        assert_eq!(read(va, 4096), vec![3; 4096]);
        ok(unmap(va, g));
        ok(release(h));
        ok(address_free(va, g));
    }
);

in_own_process!(
    asynchrony_off_completes_work_in_the_call,
    sync_mode_child,
    [(cuda_vmm_sim::ENV_ASYNC, "0".to_string())],
    {
        let _ctx = Ctx::open(0);
        assert_eq!(
            cuda_vmm_sim::active_config().map(|c| c.is_asynchronous()),
            Some(false)
        );
        let g = granularity(0);
        let (va, h) = buffer(g);
        let s = stream(NON_BLOCKING);
        ok(htod(va, &pattern_cycle(4096, 1)));
        ok(memset_async(va, 9, 4096, s));
        assert_eq!(cuda_vmm_sim::pending_work(), 0);
        ok(unmap(va, g));
        ok(sync());
        ok(mem_info_rc());
        ok(release(h));
        ok(address_free(va, g));
    }
);

#[test]
fn context_stack_push_and_pop() {
    let _memory = crate::memory_shared();
    announce();
    let ctx = Ctx::open(0);
    let push = entry!(t(), cuCtxPushCurrent_v2).expect("push");
    let pop = entry!(t(), cuCtxPopCurrent_v2).expect("pop");
    let get = entry!(t(), cuCtxGetCurrent).expect("get current");
    let mut current = std::ptr::null_mut();
    // SAFETY: valid out-pointers; contexts returned by the simulator.
    unsafe {
        ok(get(&mut current));
        let top = current;
        ok(push(top));
        let mut popped = std::ptr::null_mut();
        ok(pop(&mut popped));
        assert_eq!(popped, top);
        ok(pop(std::ptr::null_mut()));
        ok(get(&mut current));
        assert!(current.is_null());
        assert_eq!(pop(&mut popped), answers::POP_EMPTY_STACK);
        assert_eq!(push(std::ptr::null_mut()), answers::INACTIVE_CONTEXT);
        ok(push(top));
    }
    drop(ctx);
}
