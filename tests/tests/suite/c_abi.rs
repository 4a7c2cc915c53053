//! The simulator's shared library stands in for `libcuda`: a C program compiled
//! against the real `cuda.h` and linked with `-lcuda` runs on it, and this
//! workspace's loader resolves every entry point from it.
//!
//! The C test needs `cc` and `cuda.h` (found like `cargo xtask bindgen` does);
//! without them it prints a `skipped:` line and passes. The library itself,
//! `libcuda_vmm_sim.so`, is built by cargo with this test binary (the
//! simulator crate is a `cdylib` too) and must be present.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use cuda_vmm_sim::answers;
use cuda_vmm_sys::{entry, result_name, CUresult, Driver, SYMBOLS};

const LIBRARY: &str = "libcuda_vmm_sim.so";

fn note(line: &str) {
    // Past the harness's capture, so skips and the backend are visible.
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// `target/<profile>/deps/libcuda_vmm_sim.so` or `target/<profile>/libcuda_vmm_sim.so`.
fn library() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let deps = exe.parent().expect("deps directory");
    let candidates = [deps.join(LIBRARY), deps.join("..").join(LIBRARY)];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "{LIBRARY} not found (looked at {:?}); build it with `cargo build -p cuda-vmm-sim`",
                candidates
            )
        })
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn python_site_dirs() -> Vec<PathBuf> {
    let script = "import site,sys\nfor p in site.getsitepackages()+[site.getusersitepackages()]+sys.path: print(p)";
    match Command::new("python3").args(["-c", script]).output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(PathBuf::from)
            .collect(),
        _ => Vec::new(),
    }
}

/// The directory holding `cuda.h`: `CUDA_PATH`/`CUDA_HOME` + `include`,
/// `/usr/local/cuda/include`, Python's `nvidia/cuda_runtime/include`, then
/// `target/cuda-header/nvidia/cuda_runtime/include`.
fn cuda_include() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = ["CUDA_PATH", "CUDA_HOME"]
        .iter()
        .filter_map(std::env::var_os)
        .map(|v| PathBuf::from(v).join("include"))
        .collect();
    candidates.push(PathBuf::from("/usr/local/cuda/include"));
    candidates.extend(
        python_site_dirs()
            .into_iter()
            .map(|s| s.join("nvidia/cuda_runtime/include")),
    );
    candidates.push(workspace_root().join("target/cuda-header/nvidia/cuda_runtime/include"));
    candidates.into_iter().find(|d| d.join("cuda.h").is_file())
}

fn compiler() -> Option<OsString> {
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    let works = Command::new(&cc)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    works.then_some(cc)
}

const PROGRAM: &str = r#"
#include <cuda.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define CHECK(call)                                                     \
    do {                                                                \
        CUresult rc_ = (call);                                          \
        if (rc_ != CUDA_SUCCESS) {                                      \
            const char *name_ = NULL;                                   \
            cuGetErrorName(rc_, &name_);                                \
            printf("FAILED %s: %s\n", #call, name_ ? name_ : "?");      \
            return 1;                                                   \
        }                                                               \
    } while (0)

int main(void) {
    CUdevice dev;
    CUcontext ctx;
    size_t granularity = 0, free_mem = 0, total = 0;
    CHECK(cuInit(0));
    CHECK(cuDeviceGet(&dev, 0));
    CHECK(cuDevicePrimaryCtxRetain(&ctx, dev));
    CHECK(cuCtxSetCurrent(ctx));

    CUmemAllocationProp prop;
    memset(&prop, 0, sizeof prop);
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = dev;
    CHECK(cuMemGetAllocationGranularity(&granularity, &prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED));
    printf("granularity %zu\n", granularity);
    CHECK(cuMemGetInfo(&free_mem, &total));
    printf("total %zu free %zu\n", total, free_mem);

    size_t size = 2 * granularity;
    CUdeviceptr va;
    CUmemGenericAllocationHandle handle;
    CHECK(cuMemAddressReserve(&va, size, 0, 0, 0));
    CHECK(cuMemCreate(&handle, size, &prop, 0));
    CHECK(cuMemGetInfo(&free_mem, &total));
    printf("used after create %zu\n", total - free_mem);
    CHECK(cuMemMap(va, size, 0, handle, 0));
    CUmemAccessDesc access;
    access.location = prop.location;
    access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    CHECK(cuMemSetAccess(va, size, &access, 1));

    char message[] = "hello from C";
    char back[sizeof message];
    memset(back, 0, sizeof back);
    CUdeviceptr at = va + granularity - 4; /* straddles two granules */
    CHECK(cuMemcpyHtoD(at, message, sizeof message));
    CHECK(cuMemcpyDtoH(back, at, sizeof message));
    printf("round trip: %s\n", back);
    printf("host view: %s\n", (const char *)(uintptr_t)at);

    const char *name = NULL;
    cuGetErrorName(cuMemcpyHtoD(va + size, message, 1), &name);
    printf("copy past the mapping: %s\n", name);

    CHECK(cuMemUnmap(va, size));
    CHECK(cuMemRelease(handle));
    CHECK(cuMemAddressFree(va, size));
    CHECK(cuMemGetInfo(&free_mem, &total));
    printf("used after release %zu\n", total - free_mem);
    CHECK(cuDevicePrimaryCtxRelease(dev));
    printf("done\n");
    return 0;
}
"#;

#[test]
fn c_program_linked_with_lcuda_runs_on_the_simulator() {
    let _memory = crate::memory_shared();
    let library = library();
    let Some(include) = cuda_include() else {
        note("skipped: c_abi C program: no cuda.h found (set CUDA_PATH, or install nvidia-cuda-runtime-cu12)");
        return;
    };
    let Some(cc) = compiler() else {
        note("skipped: c_abi C program: no C compiler (`cc`, or $CC) found");
        return;
    };
    note(&format!(
        "backend: simulator (C program on {}), cuda.h from {}",
        library.display(),
        include.display()
    ));

    let dir = std::env::temp_dir().join(format!("cuda-vmm-c-abi-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    // The documented route: libcuda.so / libcuda.so.1 pointing at the simulator.
    for name in ["libcuda.so", "libcuda.so.1"] {
        std::os::unix::fs::symlink(&library, dir.join(name)).expect("symlink");
    }
    let source = dir.join("vmm.c");
    std::fs::write(&source, PROGRAM).expect("write C source");
    let binary = dir.join("vmm");
    let compile = Command::new(&cc)
        .arg("-std=c11")
        .arg("-Wall")
        .arg("-Werror=implicit-function-declaration")
        .arg(format!("-I{}", include.display()))
        .arg(&source)
        .arg("-o")
        .arg(&binary)
        .arg(format!("-L{}", dir.display()))
        .arg("-lcuda")
        .output()
        .expect("run the C compiler");
    assert!(
        compile.status.success(),
        "compiling the C program failed:\n{}",
        String::from_utf8_lossy(&compile.stderr)
    );

    let run = Command::new(&binary)
        .env("LD_LIBRARY_PATH", &dir)
        .env(cuda_vmm_sim::ENV_MEMORY, "8G")
        .env_remove(cuda_vmm_sim::ENV_DEVICES)
        .env_remove(cuda_vmm_sim::ENV_GRANULARITY)
        .output()
        .expect("run the C program");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "the C program failed ({}):\n{stdout}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    let copy_past = result_name(answers::COPY_UNMAPPED).expect("named code");
    let expected = format!(
        "granularity 2097152\n\
         total 8589934592 free 8589934592\n\
         used after create 4194304\n\
         round trip: hello from C\n\
         host view: hello from C\n\
         copy past the mapping: {copy_past}\n\
         used after release 0\n\
         done\n"
    );
    assert_eq!(stdout, expected);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn loader_resolves_every_symbol_from_the_shared_library() {
    let _memory = crate::memory_shared();
    let library = library();
    // SAFETY: the library is this workspace's simulator cdylib, which implements the
    // driver ABI.
    let driver =
        unsafe { Driver::load_from(&[library.clone().into_os_string()]) }.expect("load the cdylib");
    note(&format!(
        "backend: simulator (cdylib {})",
        library.display()
    ));
    assert_eq!(
        driver.table().missing().collect::<Vec<_>>(),
        Vec::<&str>::new()
    );
    assert_eq!(driver.table().availability().len(), SYMBOLS.len());

    let t = driver.table();
    let init = entry!(t, cuInit).expect("cuInit");
    let count = entry!(t, cuDeviceGetCount).expect("count");
    let get_proc = entry!(t, cuGetProcAddress_v2).expect("get proc");
    let expected = cuda_vmm_sim::SimConfig::from_env()
        .expect("environment configuration")
        .device_count();
    let mut n = -1;
    let mut pfn = std::ptr::null_mut();
    // SAFETY: valid out-pointers and a NUL-terminated name.
    unsafe {
        assert_eq!(init(0), CUresult::CUDA_SUCCESS);
        assert_eq!(count(&mut n), CUresult::CUDA_SUCCESS);
        assert_eq!(
            get_proc(
                c"cuMemCreate".as_ptr(),
                &mut pfn,
                13000,
                0,
                std::ptr::null_mut()
            ),
            CUresult::CUDA_SUCCESS
        );
    }
    assert_eq!(u32::try_from(n).ok(), Some(expected));
    assert_eq!(pfn as usize, t.cuMemCreate.expect("cuMemCreate") as usize);
    // The library's simulator is its own instance, not this process's in-process one.
    assert_ne!(
        pfn as usize,
        cuda_vmm_sim::driver()
            .table()
            .cuMemCreate
            .expect("cuMemCreate") as usize
    );
    // Keep the library loaded for the rest of the process (its threads' TLS).
    std::mem::forget(driver);
}
