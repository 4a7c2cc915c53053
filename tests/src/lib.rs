//! Shared helpers for the integration and conformance suites.
//!
//! [`raw_driver`] picks the backend once per process: `CUDA_VMM_BACKEND=sim`
//! or `cuda` forces one; by default the real driver is used when it loads and
//! reports at least one device, otherwise the in-process simulator.

use std::sync::OnceLock;

use cuda_vmm_sys::{entry, CUresult, Driver};

/// Which backend a test process runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The real CUDA driver (libcuda).
    RealDriver,
    /// The in-process `cuda-vmm-sim` simulator.
    Simulator,
}

/// The selected raw driver and its backend, chosen once and announced on stderr.
pub fn raw_driver() -> (&'static Driver, Backend) {
    static SELECTED: OnceLock<(&'static Driver, Backend)> = OnceLock::new();
    *SELECTED.get_or_init(|| {
        let choice = std::env::var("CUDA_VMM_BACKEND").unwrap_or_default();
        let selected = match choice.as_str() {
            "sim" => (cuda_vmm_sim::driver(), Backend::Simulator),
            "cuda" => match Driver::global() {
                Ok(d) => (d, Backend::RealDriver),
                Err(e) => panic!("CUDA_VMM_BACKEND=cuda but the driver did not load: {e}"),
            },
            _ => match Driver::global() {
                Ok(d) if device_count(d) > 0 => (d, Backend::RealDriver),
                _ => (cuda_vmm_sim::driver(), Backend::Simulator),
            },
        };
        eprintln!("backend: {}", describe(selected.0, selected.1));
        selected
    })
}

fn device_count(driver: &Driver) -> i32 {
    let (Ok(init), Ok(count)) = (
        entry!(driver.table(), cuInit),
        entry!(driver.table(), cuDeviceGetCount),
    ) else {
        return 0;
    };
    let mut n = 0;
    // SAFETY: cuInit takes a flags word; cuDeviceGetCount writes one int to a
    // valid pointer.
    unsafe {
        if init(0) != CUresult::CUDA_SUCCESS || count(&mut n) != CUresult::CUDA_SUCCESS {
            return 0;
        }
    }
    n
}

/// "real driver (libcuda.so.1), device 0: NVIDIA H100 80GB HBM3" or the simulator equivalent.
pub fn describe(driver: &Driver, backend: Backend) -> String {
    let kind = match backend {
        Backend::RealDriver => "real driver",
        Backend::Simulator => "simulator",
    };
    let mut version = 0;
    let mut name = [0 as core::ffi::c_char; 256];
    if let (Ok(init), Ok(ver), Ok(get_name)) = (
        entry!(driver.table(), cuInit),
        entry!(driver.table(), cuDriverGetVersion),
        entry!(driver.table(), cuDeviceGetName),
    ) {
        // SAFETY: out-pointers are valid for the sizes passed; device 0 exists
        // (checked by the caller's selection) or the call fails harmlessly.
        unsafe {
            init(0);
            ver(&mut version);
            get_name(name.as_mut_ptr(), name.len() as i32, 0);
        }
    }
    // SAFETY: `name` is zero-initialised and the driver writes a NUL-terminated
    // string shorter than the buffer.
    let name = unsafe { core::ffi::CStr::from_ptr(name.as_ptr()) }.to_string_lossy();
    format!(
        "{kind} ({}), driver {}.{}, device 0: {name}",
        driver.origin(),
        version / 1000,
        (version % 1000) / 10
    )
}

pub mod alloc_trace;
pub mod helpers;
pub mod ops;
pub mod ptx;
