//! `cuGetProcAddress`: base names to this simulator's entry points.

use core::ffi::{c_int, c_void};

use cuda_vmm_sys::CUdriverProcAddressQueryResult as Q;

use crate::exports as x;

/// `(base name, first CUDA version with this signature, address)`.
fn entries() -> [(&'static str, c_int, *const ()); 63] {
    [
        ("cuInit", 2000, x::cuInit as *const ()),
        (
            "cuDriverGetVersion",
            2020,
            x::cuDriverGetVersion as *const (),
        ),
        ("cuGetErrorName", 6000, x::cuGetErrorName as *const ()),
        ("cuGetErrorString", 6000, x::cuGetErrorString as *const ()),
        (
            "cuGetProcAddress",
            12000,
            x::cuGetProcAddress_v2 as *const (),
        ),
        ("cuDeviceGet", 2000, x::cuDeviceGet as *const ()),
        ("cuDeviceGetCount", 2000, x::cuDeviceGetCount as *const ()),
        ("cuDeviceGetName", 2000, x::cuDeviceGetName as *const ()),
        (
            "cuDeviceGetAttribute",
            2000,
            x::cuDeviceGetAttribute as *const (),
        ),
        (
            "cuDeviceTotalMem",
            3020,
            x::cuDeviceTotalMem_v2 as *const (),
        ),
        (
            "cuDeviceCanAccessPeer",
            4000,
            x::cuDeviceCanAccessPeer as *const (),
        ),
        (
            "cuDevicePrimaryCtxRetain",
            7000,
            x::cuDevicePrimaryCtxRetain as *const (),
        ),
        (
            "cuDevicePrimaryCtxRelease",
            11000,
            x::cuDevicePrimaryCtxRelease_v2 as *const (),
        ),
        ("cuCtxSetCurrent", 4000, x::cuCtxSetCurrent as *const ()),
        ("cuCtxGetCurrent", 4000, x::cuCtxGetCurrent as *const ()),
        ("cuCtxGetDevice", 2000, x::cuCtxGetDevice as *const ()),
        ("cuCtxSynchronize", 2000, x::cuCtxSynchronize as *const ()),
        ("cuMemGetInfo", 3020, x::cuMemGetInfo_v2 as *const ()),
        ("cuMemAlloc", 3020, x::cuMemAlloc_v2 as *const ()),
        ("cuMemFree", 3020, x::cuMemFree_v2 as *const ()),
        (
            "cuMemGetAddressRange",
            3020,
            x::cuMemGetAddressRange_v2 as *const (),
        ),
        (
            "cuMemAddressReserve",
            10020,
            x::cuMemAddressReserve as *const (),
        ),
        ("cuMemAddressFree", 10020, x::cuMemAddressFree as *const ()),
        ("cuMemCreate", 10020, x::cuMemCreate as *const ()),
        ("cuMemRelease", 10020, x::cuMemRelease as *const ()),
        ("cuMemMap", 10020, x::cuMemMap as *const ()),
        (
            "cuMemMapArrayAsync",
            11010,
            x::cuMemMapArrayAsync as *const (),
        ),
        ("cuMemUnmap", 10020, x::cuMemUnmap as *const ()),
        ("cuMemSetAccess", 10020, x::cuMemSetAccess as *const ()),
        ("cuMemGetAccess", 10020, x::cuMemGetAccess as *const ()),
        (
            "cuMemGetAllocationGranularity",
            10020,
            x::cuMemGetAllocationGranularity as *const (),
        ),
        (
            "cuMemRetainAllocationHandle",
            11000,
            x::cuMemRetainAllocationHandle as *const (),
        ),
        (
            "cuMemGetAllocationPropertiesFromHandle",
            10020,
            x::cuMemGetAllocationPropertiesFromHandle as *const (),
        ),
        (
            "cuMemExportToShareableHandle",
            10020,
            x::cuMemExportToShareableHandle as *const (),
        ),
        (
            "cuMemImportFromShareableHandle",
            10020,
            x::cuMemImportFromShareableHandle as *const (),
        ),
        ("cuMemcpyHtoD", 3020, x::cuMemcpyHtoD_v2 as *const ()),
        ("cuMemcpyDtoH", 3020, x::cuMemcpyDtoH_v2 as *const ()),
        ("cuMemcpyDtoD", 3020, x::cuMemcpyDtoD_v2 as *const ()),
        ("cuMemsetD8", 3020, x::cuMemsetD8_v2 as *const ()),
        ("cuMemsetD32", 3020, x::cuMemsetD32_v2 as *const ()),
        (
            "cuCtxPushCurrent",
            4000,
            x::cuCtxPushCurrent_v2 as *const (),
        ),
        ("cuCtxPopCurrent", 4000, x::cuCtxPopCurrent_v2 as *const ()),
        ("cuStreamCreate", 2000, x::cuStreamCreate as *const ()),
        ("cuStreamDestroy", 4000, x::cuStreamDestroy_v2 as *const ()),
        (
            "cuStreamSynchronize",
            2000,
            x::cuStreamSynchronize as *const (),
        ),
        ("cuStreamWaitEvent", 3020, x::cuStreamWaitEvent as *const ()),
        ("cuStreamQuery", 2000, x::cuStreamQuery as *const ()),
        ("cuEventCreate", 2000, x::cuEventCreate as *const ()),
        ("cuEventRecord", 2000, x::cuEventRecord as *const ()),
        (
            "cuEventSynchronize",
            2000,
            x::cuEventSynchronize as *const (),
        ),
        ("cuEventQuery", 2000, x::cuEventQuery as *const ()),
        ("cuEventDestroy", 4000, x::cuEventDestroy_v2 as *const ()),
        (
            "cuMemcpyHtoDAsync",
            3020,
            x::cuMemcpyHtoDAsync_v2 as *const (),
        ),
        (
            "cuMemcpyDtoHAsync",
            3020,
            x::cuMemcpyDtoHAsync_v2 as *const (),
        ),
        (
            "cuMemcpyDtoDAsync",
            3020,
            x::cuMemcpyDtoDAsync_v2 as *const (),
        ),
        ("cuMemsetD8Async", 3020, x::cuMemsetD8Async as *const ()),
        ("cuMemsetD32Async", 3020, x::cuMemsetD32Async as *const ()),
        ("cuMemHostAlloc", 2020, x::cuMemHostAlloc as *const ()),
        ("cuMemFreeHost", 2000, x::cuMemFreeHost as *const ()),
        ("cuModuleLoadData", 2000, x::cuModuleLoadData as *const ()),
        (
            "cuModuleGetFunction",
            2000,
            x::cuModuleGetFunction as *const (),
        ),
        ("cuModuleUnload", 2000, x::cuModuleUnload as *const ()),
        ("cuLaunchKernel", 4000, x::cuLaunchKernel as *const ()),
    ]
}

/// The entry point for base name `name` as a program built for CUDA `version`
/// expects it, or why there is none.
pub(crate) fn lookup(name: &str, version: c_int) -> Result<*mut c_void, Q> {
    // cuGetProcAddress itself changed signature in 12.0.
    if name == "cuGetProcAddress" && (11030..12000).contains(&version) {
        return Ok(x::cuGetProcAddress as *const () as *mut c_void);
    }
    let (_, since, address) = entries()
        .into_iter()
        .find(|(n, _, _)| *n == name)
        .ok_or(Q::CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND)?;
    if version < since {
        return Err(Q::CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT);
    }
    Ok(address.cast_mut().cast())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_symbol_has_a_base_name_entry() {
        for exported in cuda_vmm_sys::SYMBOLS {
            let base = exported.strip_suffix("_v2").unwrap_or(exported);
            assert!(lookup(base, 13000).is_ok(), "{base} missing");
        }
    }

    #[test]
    fn versions_and_unknown_names() {
        assert_eq!(
            lookup("cuMemCreate", 10010).unwrap_err(),
            Q::CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT
        );
        assert_eq!(
            lookup("cuGraphLaunch", 13000).unwrap_err(),
            Q::CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND
        );
        assert_eq!(
            lookup("cuStreamDestroy", 3020).unwrap_err(),
            Q::CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT
        );
        assert_eq!(
            lookup("cuMemGetInfo", 13000).unwrap(),
            x::cuMemGetInfo_v2 as *const () as *mut c_void
        );
    }
}
