//! The sys crate's loader against the system driver and against a named library.

use std::ffi::OsString;

use cuda_vmm_sys::{entry, CUdevice_attribute, CUmemAllocationProp, CUresult, Driver, SYMBOLS};

/// Loads the system driver the way users do. With a GPU it prints what the
/// foundation issue asks for; without one it checks the failure report.
#[test]
fn system_driver_report() {
    let _memory = crate::memory_shared();
    match Driver::load() {
        Ok(driver) => report(&driver),
        Err(e) => {
            let tried: Vec<&str> = e.attempts.iter().map(|(p, _)| p.as_str()).collect();
            eprintln!("no system driver: {e}");
            if std::env::var_os(cuda_vmm_sys::DRIVER_PATH_ENV).is_none() {
                assert_eq!(tried, cuda_vmm_sys::DEFAULT_LIBRARIES);
            }
            assert!(e.attempts.iter().all(|(_, msg)| !msg.is_empty()));
        }
    }
}

fn report(driver: &Driver) {
    let t = driver.table();
    let missing: Vec<&str> = t.missing().collect();
    eprintln!(
        "driver loaded from {}; missing symbols: {missing:?}",
        driver.origin()
    );
    let mut version = 0;
    let mut count = 0;
    // SAFETY: valid out-pointers; cuInit takes a flags word.
    unsafe {
        assert_eq!(entry!(t, cuInit).unwrap()(0), CUresult::CUDA_SUCCESS);
        assert_eq!(
            entry!(t, cuDriverGetVersion).unwrap()(&mut version),
            CUresult::CUDA_SUCCESS
        );
        assert_eq!(
            entry!(t, cuDeviceGetCount).unwrap()(&mut count),
            CUresult::CUDA_SUCCESS
        );
    }
    eprintln!(
        "driver version: {}.{} ({version})",
        version / 1000,
        (version % 1000) / 10
    );
    eprintln!("device count: {count}");
    for dev in 0..count {
        let mut name = [0 as core::ffi::c_char; 256];
        let mut vmm = 0;
        let mut prop = CUmemAllocationProp::default();
        prop.type_ = cuda_vmm_sys::CUmemAllocationType::CU_MEM_ALLOCATION_TYPE_PINNED;
        prop.location.type_ = cuda_vmm_sys::CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE;
        prop.location.id = dev;
        let (mut min, mut rec) = (0usize, 0usize);
        // SAFETY: valid out-pointers and a live props struct; `dev` < count.
        unsafe {
            assert_eq!(
                entry!(t, cuDeviceGetName).unwrap()(name.as_mut_ptr(), 256, dev),
                CUresult::CUDA_SUCCESS
            );
            assert_eq!(
                entry!(t, cuDeviceGetAttribute).unwrap()(
                    &mut vmm,
                    CUdevice_attribute::CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED,
                    dev
                ),
                CUresult::CUDA_SUCCESS
            );
            let gran = entry!(t, cuMemGetAllocationGranularity).unwrap();
            assert_eq!(
                gran(
                    &mut min,
                    &prop,
                    cuda_vmm_sys::CUmemAllocationGranularity_flags(0)
                ),
                CUresult::CUDA_SUCCESS
            );
            assert_eq!(
                gran(
                    &mut rec,
                    &prop,
                    cuda_vmm_sys::CUmemAllocationGranularity_flags(1)
                ),
                CUresult::CUDA_SUCCESS
            );
        }
        // SAFETY: the driver wrote a NUL-terminated name into the zeroed buffer.
        let name = unsafe { core::ffi::CStr::from_ptr(name.as_ptr()) };
        eprintln!(
            "device {dev}: {} | VMM supported: {vmm} | granularity min {min} B, recommended {rec} B",
            name.to_string_lossy()
        );
        assert_eq!(vmm, 1);
        assert!(min > 0 && rec % min == 0);
    }
    assert!(count >= 1);
}

#[test]
fn missing_library_reports_every_path() {
    let _memory = crate::memory_shared();
    let paths = [
        OsString::from("/nonexistent/libcuda.so.1"),
        OsString::from("also-missing.so"),
    ];
    // SAFETY: neither path exists, so no library is opened.
    let err = unsafe { Driver::load_from(&paths) }.unwrap_err();
    assert_eq!(err.attempts.len(), 2);
    assert_eq!(err.attempts[0].0, "/nonexistent/libcuda.so.1");
    assert_eq!(err.attempts[1].0, "also-missing.so");
    let text = err.to_string();
    assert!(
        text.contains("/nonexistent/libcuda.so.1") && text.contains("also-missing.so"),
        "{text}"
    );
}

#[test]
fn empty_table_names_the_missing_symbol() {
    let _memory = crate::memory_shared();
    let t = cuda_vmm_sys::DriverTable::empty();
    assert_eq!(t.missing().count(), SYMBOLS.len());
    let err = entry!(t, cuMemCreate).unwrap_err();
    assert_eq!(err.0, "cuMemCreate");
    assert_eq!(err.to_string(), "the driver does not export `cuMemCreate`");
    let err = entry!(t, cuMemGetInfo_v2).unwrap_err();
    assert_eq!(err.0, "cuMemGetInfo_v2");
}
