//! Simulator-specific behaviour that the conformance suite does not cover:
//! real aliasing, release-while-mapped, fd sharing with another process,
//! exact accounting, out-of-memory, fault injection, threads, configuration,
//! device asynchrony (streams, events, poisoning by unmapping busy memory), and
//! holds of streams with faults and counts aimed at other threads.
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

use cuda_vmm::raw::{bare, Api};
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

mod accounting;
mod aliasing;
mod asynchrony;
mod configuration;
mod entry_points;
mod faults;
mod holds;
mod release_queue;
mod sharing;
mod threads;

const OK: CUresult = CUresult::CUDA_SUCCESS;
const MIB: usize = 1 << 20;

/// Set (to the test's name) in the environment of a child process.
const CHILD_ENV: &str = "CUDA_VMM_SIM_TEST_CHILD";

// ---- Raw-call helpers (the simulator's table through `cuda_vmm::raw::bare`) ----

fn t() -> &'static DriverTable {
    cuda_vmm_sim::driver().table()
}

/// The bare tier over the simulator's table. Not `Cuda::api()`: opening a `Cuda` calls
/// `cuInit`, and the tests of calls before `cuInit` must make that call themselves.
fn api() -> Api {
    // SAFETY: the simulator implements the driver API.
    unsafe { Api::new(t(), None) }
}

/// A bare answer without out-parameters; a missing entry point panics.
fn rc(answer: bare::Rc) -> CUresult {
    answer.unwrap_or_else(|m| panic!("simulator lacks {}", m.0))
}

/// A bare answer with out-parameters: the value on success, else the `CUresult`.
fn out<T>(answer: bare::Out<T>) -> Result<T, CUresult> {
    match answer.unwrap_or_else(|m| panic!("simulator lacks {}", m.0)) {
        (OK, value) => Ok(value),
        (rc, _) => Err(rc),
    }
}

/// A bare answer with out-parameters, for setup calls that must succeed.
#[track_caller]
fn ok_out<T>(answer: bare::Out<T>) -> T {
    let (rc, value) = answer.unwrap_or_else(|m| panic!("simulator lacks {}", m.0));
    ok(rc);
    value
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
    ok(rc(bare::init(api(), 0)));
}

/// The usual start of a test on device 0: the memory lock held shared, the backend
/// announced and device 0's context current; with device 0's granularity.
fn open_device0() -> (std::sync::RwLockReadGuard<'static, ()>, Ctx, usize) {
    let memory = crate::memory_shared();
    announce();
    let ctx = Ctx::open(0);
    (memory, ctx, granularity(0))
}

/// The primary context of a device, current on this thread while alive.
struct Ctx {
    dev: CUdevice,
}

impl Ctx {
    fn open(dev: CUdevice) -> Self {
        init();
        let ctx = ok_out(bare::device_primary_ctx_retain(api(), dev));
        // SAFETY: a context the simulator just returned.
        ok(rc(unsafe { bare::ctx_set_current(api(), ctx) }));
        Self { dev }
    }

    fn make_current(&self) {
        let ctx = ok_out(bare::device_primary_ctx_retain(api(), self.dev));
        // SAFETY: a context the simulator just returned; the extra reference is
        // dropped at once (`self` holds one).
        unsafe {
            ok(rc(bare::ctx_set_current(api(), ctx)));
            ok(rc(bare::device_primary_ctx_release(api(), self.dev)));
        }
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        // SAFETY: the null context, and the reference `open` retained.
        unsafe {
            rc(bare::ctx_set_current(api(), std::ptr::null_mut()));
            rc(bare::device_primary_ctx_release(api(), self.dev));
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
    ok_out(bare::mem_get_allocation_granularity(
        api(),
        &fd_prop(dev),
        CUmemAllocationGranularity_flags::CU_MEM_ALLOC_GRANULARITY_MINIMUM,
    ))
}

fn reserve(size: usize) -> CUdeviceptr {
    ok_out(bare::mem_address_reserve(api(), size, 0, 0, 0))
}

fn address_free(va: CUdeviceptr, size: usize) -> CUresult {
    // SAFETY: the simulator validates the range (plain values).
    rc(unsafe { bare::mem_address_free(api(), va, size) })
}

fn create(size: usize, p: &CUmemAllocationProp) -> Result<CUmemGenericAllocationHandle, CUresult> {
    out(bare::mem_create(api(), size, p, 0))
}

fn release(h: CUmemGenericAllocationHandle) -> CUresult {
    // SAFETY: the simulator validates the handle (plain values).
    rc(unsafe { bare::mem_release(api(), h) })
}

fn map(va: CUdeviceptr, size: usize, offset: usize, h: CUmemGenericAllocationHandle) -> CUresult {
    // SAFETY: the simulator validates range and handle (plain values).
    rc(unsafe { bare::mem_map(api(), va, size, offset, h, 0) })
}

fn unmap(va: CUdeviceptr, size: usize) -> CUresult {
    // SAFETY: the simulator validates the range (plain values).
    rc(unsafe { bare::mem_unmap(api(), va, size) })
}

fn set_access(va: CUdeviceptr, size: usize, dev: CUdevice, flags: CUmemAccess_flags) -> CUresult {
    let desc = CUmemAccessDesc {
        location: CUmemLocation {
            type_: CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
            id: dev,
        },
        flags,
    };
    // SAFETY: one valid descriptor; the simulator validates the range.
    rc(unsafe { bare::mem_set_access(api(), va, size, &[desc]) })
}

fn set_rw(va: CUdeviceptr, size: usize, dev: CUdevice) {
    ok(set_access(
        va,
        size,
        dev,
        CUmemAccess_flags::CU_MEM_ACCESS_FLAGS_PROT_READWRITE,
    ));
}

// The bare tier has no synchronous copies: `entry!` stays for these two.

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
    rc(bare::ctx_synchronize(api()))
}

fn read(va: CUdeviceptr, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    ok(dtoh(&mut buf, va));
    buf
}

fn mem_info() -> (usize, usize) {
    ok_out(bare::mem_get_info(api()))
}

fn export_fd(h: CUmemGenericAllocationHandle) -> Result<c_int, CUresult> {
    let mut fd: c_int = -1;
    let kind = CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
    // SAFETY: for POSIX fds the out-argument is an int.
    match rc(unsafe {
        bare::mem_export_to_shareable_handle(api(), (&mut fd as *mut c_int).cast(), h, kind, 0)
    }) {
        OK => Ok(fd),
        rc => Err(rc),
    }
}

fn import(os_handle: usize, kind: CUmemAllocationHandleType) -> Result<u64, CUresult> {
    // SAFETY: for POSIX fds the handle is the fd as a pointer (the simulator validates it).
    out(unsafe { bare::mem_import_from_shareable_handle(api(), os_handle as *mut c_void, kind) })
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
            cuda_vmm_sim::ENV_QUERY_PROGRESS,
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
