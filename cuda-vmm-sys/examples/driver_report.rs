//! The raw layer: load the driver, resolve entry points, call one.
//!
//! ```text
//! cargo run -p cuda-vmm-sys --example driver_report
//! CUDA_VMM_DRIVER_PATH=target/debug/libcuda_vmm_sim.so cargo run -p cuda-vmm-sys --example driver_report
//! ```

use cuda_vmm_sys::{entry, result_name, CUresult, Driver};

fn main() {
    let driver = match Driver::load() {
        Ok(d) => d,
        Err(e) => {
            // No GPU driver here: say so (every path tried is in the message).
            println!("{e}");
            println!("point CUDA_VMM_DRIVER_PATH at the simulator (cargo build -p cuda-vmm-sim)");
            return;
        }
    };
    println!("driver loaded from {}", driver.origin());
    let missing: Vec<_> = driver.table().missing().collect();
    println!("entry points missing: {missing:?}");
    let (Ok(init), Ok(version)) = (
        entry!(driver.table(), cuInit),
        entry!(driver.table(), cuDriverGetVersion),
    ) else {
        println!("cuInit or cuDriverGetVersion is missing");
        return;
    };
    let mut v = 0;
    // SAFETY: cuInit takes a flags word (0); cuDriverGetVersion writes one int to `v`.
    let (rc_init, rc_version) = unsafe { (init(0), version(&mut v)) };
    println!(
        "cuInit: {}, driver version {}.{} ({})",
        result_name(rc_init).unwrap_or("?"),
        v / 1000,
        (v % 1000) / 10,
        result_name(rc_version).unwrap_or("?")
    );
    assert_eq!(rc_version, CUresult::CUDA_SUCCESS);
}
