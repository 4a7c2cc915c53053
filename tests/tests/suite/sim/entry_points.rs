//! The simulator: entry points, error strings.

use super::*;

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
