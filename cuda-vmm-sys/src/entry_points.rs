//! The one list of driver entry points.
//!
//! Everything else that names every entry point is generated from this list:
//! [`SYMBOLS`](crate::SYMBOLS), the fields of [`DriverTable`](crate::DriverTable),
//! `DriverTable::from_lookup` and `DriverTable::availability` (in `table.rs`), the
//! simulator's in-process table and `cuGetProcAddress` answers (cuda-vmm-sim), and the
//! typedefs that `cargo xtask bindgen` asks bindgen for (xtask parses this file; keep one
//! `symbol: PFN_type,` per line).

/// Invokes the macro `$callback` once with every driver entry point, in
/// [`DriverTable`](crate::DriverTable) field order, as a comma-separated list of
/// `symbol: PFN_type` pairs.
///
/// `symbol` is the exact exported symbol (`cuMemGetInfo_v2`), which is also the
/// table's field name; `PFN_type` is its function-pointer typedef from
/// `cudaTypedefs.h`, whose `_vNNNNN` suffix is the first CUDA version with that
/// signature (`PFN_cuMemGetInfo_v3020`). The typedef is passed as a bare
/// identifier: name it through [`bindings`](crate::bindings) where it is used as a type.
///
/// ```
/// macro_rules! count {
///     ($($symbol:ident: $pfn:ident),* $(,)?) => { [$(stringify!($symbol)),*].len() };
/// }
/// assert_eq!(cuda_vmm_sys::for_each_entry_point!(count), cuda_vmm_sys::SYMBOLS.len());
/// ```
#[macro_export]
macro_rules! for_each_entry_point {
    ($callback:ident) => {
        $callback! {
            cuInit: PFN_cuInit_v2000,
            cuDriverGetVersion: PFN_cuDriverGetVersion_v2020,
            cuGetErrorName: PFN_cuGetErrorName_v6000,
            cuGetErrorString: PFN_cuGetErrorString_v6000,
            cuGetProcAddress_v2: PFN_cuGetProcAddress_v12000,
            cuDeviceGet: PFN_cuDeviceGet_v2000,
            cuDeviceGetCount: PFN_cuDeviceGetCount_v2000,
            cuDeviceGetName: PFN_cuDeviceGetName_v2000,
            cuDeviceGetAttribute: PFN_cuDeviceGetAttribute_v2000,
            cuDeviceTotalMem_v2: PFN_cuDeviceTotalMem_v3020,
            cuDeviceCanAccessPeer: PFN_cuDeviceCanAccessPeer_v4000,
            cuDevicePrimaryCtxRetain: PFN_cuDevicePrimaryCtxRetain_v7000,
            cuDevicePrimaryCtxRelease_v2: PFN_cuDevicePrimaryCtxRelease_v11000,
            cuCtxSetCurrent: PFN_cuCtxSetCurrent_v4000,
            cuCtxGetCurrent: PFN_cuCtxGetCurrent_v4000,
            cuCtxGetDevice: PFN_cuCtxGetDevice_v2000,
            cuCtxSynchronize: PFN_cuCtxSynchronize_v2000,
            cuMemGetInfo_v2: PFN_cuMemGetInfo_v3020,
            cuMemAlloc_v2: PFN_cuMemAlloc_v3020,
            cuMemFree_v2: PFN_cuMemFree_v3020,
            cuMemGetAddressRange_v2: PFN_cuMemGetAddressRange_v3020,
            cuMemAddressReserve: PFN_cuMemAddressReserve_v10020,
            cuMemAddressFree: PFN_cuMemAddressFree_v10020,
            cuMemCreate: PFN_cuMemCreate_v10020,
            cuMemRelease: PFN_cuMemRelease_v10020,
            cuMemMap: PFN_cuMemMap_v10020,
            cuMemMapArrayAsync: PFN_cuMemMapArrayAsync_v11010,
            cuMemUnmap: PFN_cuMemUnmap_v10020,
            cuMemSetAccess: PFN_cuMemSetAccess_v10020,
            cuMemGetAccess: PFN_cuMemGetAccess_v10020,
            cuMemGetAllocationGranularity: PFN_cuMemGetAllocationGranularity_v10020,
            cuMemRetainAllocationHandle: PFN_cuMemRetainAllocationHandle_v11000,
            cuMemGetAllocationPropertiesFromHandle: PFN_cuMemGetAllocationPropertiesFromHandle_v10020,
            cuMemExportToShareableHandle: PFN_cuMemExportToShareableHandle_v10020,
            cuMemImportFromShareableHandle: PFN_cuMemImportFromShareableHandle_v10020,
            cuMemcpyHtoD_v2: PFN_cuMemcpyHtoD_v3020,
            cuMemcpyDtoH_v2: PFN_cuMemcpyDtoH_v3020,
            cuMemcpyDtoD_v2: PFN_cuMemcpyDtoD_v3020,
            cuMemsetD8_v2: PFN_cuMemsetD8_v3020,
            cuMemsetD32_v2: PFN_cuMemsetD32_v3020,
            cuCtxPushCurrent_v2: PFN_cuCtxPushCurrent_v4000,
            cuCtxPopCurrent_v2: PFN_cuCtxPopCurrent_v4000,
            cuStreamCreate: PFN_cuStreamCreate_v2000,
            cuStreamDestroy_v2: PFN_cuStreamDestroy_v4000,
            cuStreamSynchronize: PFN_cuStreamSynchronize_v2000,
            cuStreamWaitEvent: PFN_cuStreamWaitEvent_v3020,
            cuStreamQuery: PFN_cuStreamQuery_v2000,
            cuStreamIsCapturing: PFN_cuStreamIsCapturing_v10000,
            cuEventCreate: PFN_cuEventCreate_v2000,
            cuEventRecord: PFN_cuEventRecord_v2000,
            cuEventSynchronize: PFN_cuEventSynchronize_v2000,
            cuEventQuery: PFN_cuEventQuery_v2000,
            cuEventDestroy_v2: PFN_cuEventDestroy_v4000,
            cuMemcpyHtoDAsync_v2: PFN_cuMemcpyHtoDAsync_v3020,
            cuMemcpyDtoHAsync_v2: PFN_cuMemcpyDtoHAsync_v3020,
            cuMemcpyDtoDAsync_v2: PFN_cuMemcpyDtoDAsync_v3020,
            cuMemsetD8Async: PFN_cuMemsetD8Async_v3020,
            cuMemsetD32Async: PFN_cuMemsetD32Async_v3020,
            cuMemHostAlloc: PFN_cuMemHostAlloc_v2020,
            cuMemFreeHost: PFN_cuMemFreeHost_v2000,
            cuModuleLoadData: PFN_cuModuleLoadData_v2000,
            cuModuleGetFunction: PFN_cuModuleGetFunction_v2000,
            cuModuleUnload: PFN_cuModuleUnload_v2000,
            cuLaunchKernel: PFN_cuLaunchKernel_v4000,
            cuMemAllocAsync: PFN_cuMemAllocAsync_v11020,
            cuMemFreeAsync: PFN_cuMemFreeAsync_v11020,
            cuMemPoolCreate: PFN_cuMemPoolCreate_v11020,
            cuMemPoolDestroy: PFN_cuMemPoolDestroy_v11020,
            cuMemPoolSetAttribute: PFN_cuMemPoolSetAttribute_v11020,
            cuMemPoolGetAttribute: PFN_cuMemPoolGetAttribute_v11020,
            cuMemPoolTrimTo: PFN_cuMemPoolTrimTo_v11020,
            cuMemAllocFromPoolAsync: PFN_cuMemAllocFromPoolAsync_v11020,
            cuDeviceGetDefaultMemPool: PFN_cuDeviceGetDefaultMemPool_v11020,
            cuDeviceGetMemPool: PFN_cuDeviceGetMemPool_v11020,
            cuDeviceSetMemPool: PFN_cuDeviceSetMemPool_v11020,
        }
    };
}
