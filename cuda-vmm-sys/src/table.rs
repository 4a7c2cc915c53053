//! The function table: one slot per driver entry point, resolved symbol by symbol.

use core::ffi::{c_void, CStr};
use core::ptr::NonNull;

use crate::bindings::*;

/// Exact symbol names (as a C program compiled against `cuda.h` links them) of
/// every entry point in [`DriverTable`], in field order.
pub const SYMBOLS: &[&str] = &[
    "cuInit",
    "cuDriverGetVersion",
    "cuGetErrorName",
    "cuGetErrorString",
    "cuGetProcAddress_v2",
    "cuDeviceGet",
    "cuDeviceGetCount",
    "cuDeviceGetName",
    "cuDeviceGetAttribute",
    "cuDeviceTotalMem_v2",
    "cuDeviceCanAccessPeer",
    "cuDevicePrimaryCtxRetain",
    "cuDevicePrimaryCtxRelease_v2",
    "cuCtxSetCurrent",
    "cuCtxGetCurrent",
    "cuCtxGetDevice",
    "cuCtxSynchronize",
    "cuMemGetInfo_v2",
    "cuMemAlloc_v2",
    "cuMemFree_v2",
    "cuMemGetAddressRange_v2",
    "cuMemAddressReserve",
    "cuMemAddressFree",
    "cuMemCreate",
    "cuMemRelease",
    "cuMemMap",
    "cuMemMapArrayAsync",
    "cuMemUnmap",
    "cuMemSetAccess",
    "cuMemGetAccess",
    "cuMemGetAllocationGranularity",
    "cuMemRetainAllocationHandle",
    "cuMemGetAllocationPropertiesFromHandle",
    "cuMemExportToShareableHandle",
    "cuMemImportFromShareableHandle",
    "cuMemcpyHtoD_v2",
    "cuMemcpyDtoH_v2",
    "cuMemcpyDtoD_v2",
    "cuMemsetD8_v2",
    "cuMemsetD32_v2",
    "cuCtxPushCurrent_v2",
    "cuCtxPopCurrent_v2",
    "cuStreamCreate",
    "cuStreamDestroy_v2",
    "cuStreamSynchronize",
    "cuStreamWaitEvent",
    "cuStreamQuery",
    "cuEventCreate",
    "cuEventRecord",
    "cuEventSynchronize",
    "cuEventQuery",
    "cuEventDestroy_v2",
    "cuMemcpyHtoDAsync_v2",
    "cuMemcpyDtoHAsync_v2",
    "cuMemcpyDtoDAsync_v2",
    "cuMemsetD8Async",
    "cuMemsetD32Async",
    "cuMemHostAlloc",
    "cuMemFreeHost",
    "cuModuleLoadData",
    "cuModuleGetFunction",
    "cuModuleUnload",
    "cuLaunchKernel",
];

/// Function pointers of the driver entry points that cuda-vmm uses.
///
/// Each field is named after the exact exported symbol, including the `_v2`
/// suffix where `cuda.h` maps the plain name to a versioned one
/// (`cuMemGetInfo` → `cuMemGetInfo_v2`). A `None` field means the driver does
/// not export that symbol: only that entry point is unavailable.
#[allow(non_snake_case)]
#[derive(Clone, Copy, Debug)]
pub struct DriverTable {
    /// `cuInit` (`PFN_cuInit_v2000`).
    pub cuInit: PFN_cuInit_v2000,
    /// `cuDriverGetVersion` (`PFN_cuDriverGetVersion_v2020`).
    pub cuDriverGetVersion: PFN_cuDriverGetVersion_v2020,
    /// `cuGetErrorName` (`PFN_cuGetErrorName_v6000`).
    pub cuGetErrorName: PFN_cuGetErrorName_v6000,
    /// `cuGetErrorString` (`PFN_cuGetErrorString_v6000`).
    pub cuGetErrorString: PFN_cuGetErrorString_v6000,
    /// `cuGetProcAddress_v2` (`PFN_cuGetProcAddress_v12000`).
    pub cuGetProcAddress_v2: PFN_cuGetProcAddress_v12000,
    /// `cuDeviceGet` (`PFN_cuDeviceGet_v2000`).
    pub cuDeviceGet: PFN_cuDeviceGet_v2000,
    /// `cuDeviceGetCount` (`PFN_cuDeviceGetCount_v2000`).
    pub cuDeviceGetCount: PFN_cuDeviceGetCount_v2000,
    /// `cuDeviceGetName` (`PFN_cuDeviceGetName_v2000`).
    pub cuDeviceGetName: PFN_cuDeviceGetName_v2000,
    /// `cuDeviceGetAttribute` (`PFN_cuDeviceGetAttribute_v2000`).
    pub cuDeviceGetAttribute: PFN_cuDeviceGetAttribute_v2000,
    /// `cuDeviceTotalMem_v2` (`PFN_cuDeviceTotalMem_v3020`).
    pub cuDeviceTotalMem_v2: PFN_cuDeviceTotalMem_v3020,
    /// `cuDeviceCanAccessPeer` (`PFN_cuDeviceCanAccessPeer_v4000`).
    pub cuDeviceCanAccessPeer: PFN_cuDeviceCanAccessPeer_v4000,
    /// `cuDevicePrimaryCtxRetain` (`PFN_cuDevicePrimaryCtxRetain_v7000`).
    pub cuDevicePrimaryCtxRetain: PFN_cuDevicePrimaryCtxRetain_v7000,
    /// `cuDevicePrimaryCtxRelease_v2` (`PFN_cuDevicePrimaryCtxRelease_v11000`).
    pub cuDevicePrimaryCtxRelease_v2: PFN_cuDevicePrimaryCtxRelease_v11000,
    /// `cuCtxSetCurrent` (`PFN_cuCtxSetCurrent_v4000`).
    pub cuCtxSetCurrent: PFN_cuCtxSetCurrent_v4000,
    /// `cuCtxGetCurrent` (`PFN_cuCtxGetCurrent_v4000`).
    pub cuCtxGetCurrent: PFN_cuCtxGetCurrent_v4000,
    /// `cuCtxGetDevice` (`PFN_cuCtxGetDevice_v2000`).
    pub cuCtxGetDevice: PFN_cuCtxGetDevice_v2000,
    /// `cuCtxSynchronize` (`PFN_cuCtxSynchronize_v2000`).
    pub cuCtxSynchronize: PFN_cuCtxSynchronize_v2000,
    /// `cuMemGetInfo_v2` (`PFN_cuMemGetInfo_v3020`).
    pub cuMemGetInfo_v2: PFN_cuMemGetInfo_v3020,
    /// `cuMemAlloc_v2` (`PFN_cuMemAlloc_v3020`).
    pub cuMemAlloc_v2: PFN_cuMemAlloc_v3020,
    /// `cuMemFree_v2` (`PFN_cuMemFree_v3020`).
    pub cuMemFree_v2: PFN_cuMemFree_v3020,
    /// `cuMemGetAddressRange_v2` (`PFN_cuMemGetAddressRange_v3020`).
    pub cuMemGetAddressRange_v2: PFN_cuMemGetAddressRange_v3020,
    /// `cuMemAddressReserve` (`PFN_cuMemAddressReserve_v10020`).
    pub cuMemAddressReserve: PFN_cuMemAddressReserve_v10020,
    /// `cuMemAddressFree` (`PFN_cuMemAddressFree_v10020`).
    pub cuMemAddressFree: PFN_cuMemAddressFree_v10020,
    /// `cuMemCreate` (`PFN_cuMemCreate_v10020`).
    pub cuMemCreate: PFN_cuMemCreate_v10020,
    /// `cuMemRelease` (`PFN_cuMemRelease_v10020`).
    pub cuMemRelease: PFN_cuMemRelease_v10020,
    /// `cuMemMap` (`PFN_cuMemMap_v10020`).
    pub cuMemMap: PFN_cuMemMap_v10020,
    /// `cuMemMapArrayAsync` (`PFN_cuMemMapArrayAsync_v11010`).
    pub cuMemMapArrayAsync: PFN_cuMemMapArrayAsync_v11010,
    /// `cuMemUnmap` (`PFN_cuMemUnmap_v10020`).
    pub cuMemUnmap: PFN_cuMemUnmap_v10020,
    /// `cuMemSetAccess` (`PFN_cuMemSetAccess_v10020`).
    pub cuMemSetAccess: PFN_cuMemSetAccess_v10020,
    /// `cuMemGetAccess` (`PFN_cuMemGetAccess_v10020`).
    pub cuMemGetAccess: PFN_cuMemGetAccess_v10020,
    /// `cuMemGetAllocationGranularity` (`PFN_cuMemGetAllocationGranularity_v10020`).
    pub cuMemGetAllocationGranularity: PFN_cuMemGetAllocationGranularity_v10020,
    /// `cuMemRetainAllocationHandle` (`PFN_cuMemRetainAllocationHandle_v11000`).
    pub cuMemRetainAllocationHandle: PFN_cuMemRetainAllocationHandle_v11000,
    /// `cuMemGetAllocationPropertiesFromHandle` (`PFN_cuMemGetAllocationPropertiesFromHandle_v10020`).
    pub cuMemGetAllocationPropertiesFromHandle: PFN_cuMemGetAllocationPropertiesFromHandle_v10020,
    /// `cuMemExportToShareableHandle` (`PFN_cuMemExportToShareableHandle_v10020`).
    pub cuMemExportToShareableHandle: PFN_cuMemExportToShareableHandle_v10020,
    /// `cuMemImportFromShareableHandle` (`PFN_cuMemImportFromShareableHandle_v10020`).
    pub cuMemImportFromShareableHandle: PFN_cuMemImportFromShareableHandle_v10020,
    /// `cuMemcpyHtoD_v2` (`PFN_cuMemcpyHtoD_v3020`).
    pub cuMemcpyHtoD_v2: PFN_cuMemcpyHtoD_v3020,
    /// `cuMemcpyDtoH_v2` (`PFN_cuMemcpyDtoH_v3020`).
    pub cuMemcpyDtoH_v2: PFN_cuMemcpyDtoH_v3020,
    /// `cuMemcpyDtoD_v2` (`PFN_cuMemcpyDtoD_v3020`).
    pub cuMemcpyDtoD_v2: PFN_cuMemcpyDtoD_v3020,
    /// `cuMemsetD8_v2` (`PFN_cuMemsetD8_v3020`).
    pub cuMemsetD8_v2: PFN_cuMemsetD8_v3020,
    /// `cuMemsetD32_v2` (`PFN_cuMemsetD32_v3020`).
    pub cuMemsetD32_v2: PFN_cuMemsetD32_v3020,
    /// `cuCtxPushCurrent_v2` (`PFN_cuCtxPushCurrent_v4000`).
    pub cuCtxPushCurrent_v2: PFN_cuCtxPushCurrent_v4000,
    /// `cuCtxPopCurrent_v2` (`PFN_cuCtxPopCurrent_v4000`).
    pub cuCtxPopCurrent_v2: PFN_cuCtxPopCurrent_v4000,
    /// `cuStreamCreate` (`PFN_cuStreamCreate_v2000`).
    pub cuStreamCreate: PFN_cuStreamCreate_v2000,
    /// `cuStreamDestroy_v2` (`PFN_cuStreamDestroy_v4000`).
    pub cuStreamDestroy_v2: PFN_cuStreamDestroy_v4000,
    /// `cuStreamSynchronize` (`PFN_cuStreamSynchronize_v2000`).
    pub cuStreamSynchronize: PFN_cuStreamSynchronize_v2000,
    /// `cuStreamWaitEvent` (`PFN_cuStreamWaitEvent_v3020`).
    pub cuStreamWaitEvent: PFN_cuStreamWaitEvent_v3020,
    /// `cuStreamQuery` (`PFN_cuStreamQuery_v2000`).
    pub cuStreamQuery: PFN_cuStreamQuery_v2000,
    /// `cuEventCreate` (`PFN_cuEventCreate_v2000`).
    pub cuEventCreate: PFN_cuEventCreate_v2000,
    /// `cuEventRecord` (`PFN_cuEventRecord_v2000`).
    pub cuEventRecord: PFN_cuEventRecord_v2000,
    /// `cuEventSynchronize` (`PFN_cuEventSynchronize_v2000`).
    pub cuEventSynchronize: PFN_cuEventSynchronize_v2000,
    /// `cuEventQuery` (`PFN_cuEventQuery_v2000`).
    pub cuEventQuery: PFN_cuEventQuery_v2000,
    /// `cuEventDestroy_v2` (`PFN_cuEventDestroy_v4000`).
    pub cuEventDestroy_v2: PFN_cuEventDestroy_v4000,
    /// `cuMemcpyHtoDAsync_v2` (`PFN_cuMemcpyHtoDAsync_v3020`).
    pub cuMemcpyHtoDAsync_v2: PFN_cuMemcpyHtoDAsync_v3020,
    /// `cuMemcpyDtoHAsync_v2` (`PFN_cuMemcpyDtoHAsync_v3020`).
    pub cuMemcpyDtoHAsync_v2: PFN_cuMemcpyDtoHAsync_v3020,
    /// `cuMemcpyDtoDAsync_v2` (`PFN_cuMemcpyDtoDAsync_v3020`).
    pub cuMemcpyDtoDAsync_v2: PFN_cuMemcpyDtoDAsync_v3020,
    /// `cuMemsetD8Async` (`PFN_cuMemsetD8Async_v3020`).
    pub cuMemsetD8Async: PFN_cuMemsetD8Async_v3020,
    /// `cuMemsetD32Async` (`PFN_cuMemsetD32Async_v3020`).
    pub cuMemsetD32Async: PFN_cuMemsetD32Async_v3020,
    /// `cuMemHostAlloc` (`PFN_cuMemHostAlloc_v2020`).
    pub cuMemHostAlloc: PFN_cuMemHostAlloc_v2020,
    /// `cuMemFreeHost` (`PFN_cuMemFreeHost_v2000`).
    pub cuMemFreeHost: PFN_cuMemFreeHost_v2000,
    /// `cuModuleLoadData` (`PFN_cuModuleLoadData_v2000`).
    pub cuModuleLoadData: PFN_cuModuleLoadData_v2000,
    /// `cuModuleGetFunction` (`PFN_cuModuleGetFunction_v2000`).
    pub cuModuleGetFunction: PFN_cuModuleGetFunction_v2000,
    /// `cuModuleUnload` (`PFN_cuModuleUnload_v2000`).
    pub cuModuleUnload: PFN_cuModuleUnload_v2000,
    /// `cuLaunchKernel` (`PFN_cuLaunchKernel_v4000`).
    pub cuLaunchKernel: PFN_cuLaunchKernel_v4000,
}

/// Converts one looked-up address into the typed, nullable function pointer.
///
/// # Safety
/// `F` must be an `Option` of an `extern "C"` function pointer whose signature
/// matches the symbol that `addr` was resolved from.
unsafe fn cast<F: Copy>(addr: Option<NonNull<c_void>>) -> F {
    const { assert!(core::mem::size_of::<F>() == core::mem::size_of::<*mut c_void>()) };
    let raw: *mut c_void = addr.map_or(core::ptr::null_mut(), NonNull::as_ptr);
    // SAFETY: `F` is pointer-sized (checked above) and, per this function's
    // contract, an `Option<extern "C" fn>` whose null niche is `None`, so any
    // address (or null) is a valid bit pattern for it.
    unsafe { core::mem::transmute_copy::<*mut c_void, F>(&raw) }
}

/// Looks one symbol up and casts it; see [`cast`].
///
/// # Safety
/// As for [`cast`]: `F` must be the header's function-pointer type for `name`.
unsafe fn resolve<F: Copy>(
    lookup: &mut dyn FnMut(&CStr) -> Option<NonNull<c_void>>,
    name: &CStr,
) -> F {
    // SAFETY: forwarded from this function's contract.
    unsafe { cast(lookup(name)) }
}

impl DriverTable {
    /// Builds the table by asking `lookup` for each symbol in [`SYMBOLS`].
    ///
    /// `lookup` returns the address of the named symbol, or `None` when it is
    /// absent; an absent symbol leaves only that slot empty.
    ///
    /// # Safety
    /// Every address `lookup` returns must be a function with the C signature
    /// that `cuda.h` declares for that symbol name, and must stay valid for as
    /// long as the table is used.
    pub unsafe fn from_lookup(lookup: &mut dyn FnMut(&CStr) -> Option<NonNull<c_void>>) -> Self {
        // SAFETY: each field's type is the header's PFN typedef for the symbol
        // named next to it, and the caller vouches for the addresses.
        unsafe {
            Self {
                cuInit: resolve(lookup, c"cuInit"),
                cuDriverGetVersion: resolve(lookup, c"cuDriverGetVersion"),
                cuGetErrorName: resolve(lookup, c"cuGetErrorName"),
                cuGetErrorString: resolve(lookup, c"cuGetErrorString"),
                cuGetProcAddress_v2: resolve(lookup, c"cuGetProcAddress_v2"),
                cuDeviceGet: resolve(lookup, c"cuDeviceGet"),
                cuDeviceGetCount: resolve(lookup, c"cuDeviceGetCount"),
                cuDeviceGetName: resolve(lookup, c"cuDeviceGetName"),
                cuDeviceGetAttribute: resolve(lookup, c"cuDeviceGetAttribute"),
                cuDeviceTotalMem_v2: resolve(lookup, c"cuDeviceTotalMem_v2"),
                cuDeviceCanAccessPeer: resolve(lookup, c"cuDeviceCanAccessPeer"),
                cuDevicePrimaryCtxRetain: resolve(lookup, c"cuDevicePrimaryCtxRetain"),
                cuDevicePrimaryCtxRelease_v2: resolve(lookup, c"cuDevicePrimaryCtxRelease_v2"),
                cuCtxSetCurrent: resolve(lookup, c"cuCtxSetCurrent"),
                cuCtxGetCurrent: resolve(lookup, c"cuCtxGetCurrent"),
                cuCtxGetDevice: resolve(lookup, c"cuCtxGetDevice"),
                cuCtxSynchronize: resolve(lookup, c"cuCtxSynchronize"),
                cuMemGetInfo_v2: resolve(lookup, c"cuMemGetInfo_v2"),
                cuMemAlloc_v2: resolve(lookup, c"cuMemAlloc_v2"),
                cuMemFree_v2: resolve(lookup, c"cuMemFree_v2"),
                cuMemGetAddressRange_v2: resolve(lookup, c"cuMemGetAddressRange_v2"),
                cuMemAddressReserve: resolve(lookup, c"cuMemAddressReserve"),
                cuMemAddressFree: resolve(lookup, c"cuMemAddressFree"),
                cuMemCreate: resolve(lookup, c"cuMemCreate"),
                cuMemRelease: resolve(lookup, c"cuMemRelease"),
                cuMemMap: resolve(lookup, c"cuMemMap"),
                cuMemMapArrayAsync: resolve(lookup, c"cuMemMapArrayAsync"),
                cuMemUnmap: resolve(lookup, c"cuMemUnmap"),
                cuMemSetAccess: resolve(lookup, c"cuMemSetAccess"),
                cuMemGetAccess: resolve(lookup, c"cuMemGetAccess"),
                cuMemGetAllocationGranularity: resolve(lookup, c"cuMemGetAllocationGranularity"),
                cuMemRetainAllocationHandle: resolve(lookup, c"cuMemRetainAllocationHandle"),
                cuMemGetAllocationPropertiesFromHandle: resolve(
                    lookup,
                    c"cuMemGetAllocationPropertiesFromHandle",
                ),
                cuMemExportToShareableHandle: resolve(lookup, c"cuMemExportToShareableHandle"),
                cuMemImportFromShareableHandle: resolve(lookup, c"cuMemImportFromShareableHandle"),
                cuMemcpyHtoD_v2: resolve(lookup, c"cuMemcpyHtoD_v2"),
                cuMemcpyDtoH_v2: resolve(lookup, c"cuMemcpyDtoH_v2"),
                cuMemcpyDtoD_v2: resolve(lookup, c"cuMemcpyDtoD_v2"),
                cuMemsetD8_v2: resolve(lookup, c"cuMemsetD8_v2"),
                cuMemsetD32_v2: resolve(lookup, c"cuMemsetD32_v2"),
                cuCtxPushCurrent_v2: resolve(lookup, c"cuCtxPushCurrent_v2"),
                cuCtxPopCurrent_v2: resolve(lookup, c"cuCtxPopCurrent_v2"),
                cuStreamCreate: resolve(lookup, c"cuStreamCreate"),
                cuStreamDestroy_v2: resolve(lookup, c"cuStreamDestroy_v2"),
                cuStreamSynchronize: resolve(lookup, c"cuStreamSynchronize"),
                cuStreamWaitEvent: resolve(lookup, c"cuStreamWaitEvent"),
                cuStreamQuery: resolve(lookup, c"cuStreamQuery"),
                cuEventCreate: resolve(lookup, c"cuEventCreate"),
                cuEventRecord: resolve(lookup, c"cuEventRecord"),
                cuEventSynchronize: resolve(lookup, c"cuEventSynchronize"),
                cuEventQuery: resolve(lookup, c"cuEventQuery"),
                cuEventDestroy_v2: resolve(lookup, c"cuEventDestroy_v2"),
                cuMemcpyHtoDAsync_v2: resolve(lookup, c"cuMemcpyHtoDAsync_v2"),
                cuMemcpyDtoHAsync_v2: resolve(lookup, c"cuMemcpyDtoHAsync_v2"),
                cuMemcpyDtoDAsync_v2: resolve(lookup, c"cuMemcpyDtoDAsync_v2"),
                cuMemsetD8Async: resolve(lookup, c"cuMemsetD8Async"),
                cuMemsetD32Async: resolve(lookup, c"cuMemsetD32Async"),
                cuMemHostAlloc: resolve(lookup, c"cuMemHostAlloc"),
                cuMemFreeHost: resolve(lookup, c"cuMemFreeHost"),
                cuModuleLoadData: resolve(lookup, c"cuModuleLoadData"),
                cuModuleGetFunction: resolve(lookup, c"cuModuleGetFunction"),
                cuModuleUnload: resolve(lookup, c"cuModuleUnload"),
                cuLaunchKernel: resolve(lookup, c"cuLaunchKernel"),
            }
        }
    }

    /// A table with every slot empty.
    pub fn empty() -> Self {
        // SAFETY: `None` for every slot is valid for any `F`.
        unsafe { Self::from_lookup(&mut |_| None) }
    }

    /// `(symbol, resolved?)` for every entry point, in [`SYMBOLS`] order.
    pub fn availability(&self) -> [(&'static str, bool); SYMBOLS.len()] {
        [
            ("cuInit", self.cuInit.is_some()),
            ("cuDriverGetVersion", self.cuDriverGetVersion.is_some()),
            ("cuGetErrorName", self.cuGetErrorName.is_some()),
            ("cuGetErrorString", self.cuGetErrorString.is_some()),
            ("cuGetProcAddress_v2", self.cuGetProcAddress_v2.is_some()),
            ("cuDeviceGet", self.cuDeviceGet.is_some()),
            ("cuDeviceGetCount", self.cuDeviceGetCount.is_some()),
            ("cuDeviceGetName", self.cuDeviceGetName.is_some()),
            ("cuDeviceGetAttribute", self.cuDeviceGetAttribute.is_some()),
            ("cuDeviceTotalMem_v2", self.cuDeviceTotalMem_v2.is_some()),
            (
                "cuDeviceCanAccessPeer",
                self.cuDeviceCanAccessPeer.is_some(),
            ),
            (
                "cuDevicePrimaryCtxRetain",
                self.cuDevicePrimaryCtxRetain.is_some(),
            ),
            (
                "cuDevicePrimaryCtxRelease_v2",
                self.cuDevicePrimaryCtxRelease_v2.is_some(),
            ),
            ("cuCtxSetCurrent", self.cuCtxSetCurrent.is_some()),
            ("cuCtxGetCurrent", self.cuCtxGetCurrent.is_some()),
            ("cuCtxGetDevice", self.cuCtxGetDevice.is_some()),
            ("cuCtxSynchronize", self.cuCtxSynchronize.is_some()),
            ("cuMemGetInfo_v2", self.cuMemGetInfo_v2.is_some()),
            ("cuMemAlloc_v2", self.cuMemAlloc_v2.is_some()),
            ("cuMemFree_v2", self.cuMemFree_v2.is_some()),
            (
                "cuMemGetAddressRange_v2",
                self.cuMemGetAddressRange_v2.is_some(),
            ),
            ("cuMemAddressReserve", self.cuMemAddressReserve.is_some()),
            ("cuMemAddressFree", self.cuMemAddressFree.is_some()),
            ("cuMemCreate", self.cuMemCreate.is_some()),
            ("cuMemRelease", self.cuMemRelease.is_some()),
            ("cuMemMap", self.cuMemMap.is_some()),
            ("cuMemMapArrayAsync", self.cuMemMapArrayAsync.is_some()),
            ("cuMemUnmap", self.cuMemUnmap.is_some()),
            ("cuMemSetAccess", self.cuMemSetAccess.is_some()),
            ("cuMemGetAccess", self.cuMemGetAccess.is_some()),
            (
                "cuMemGetAllocationGranularity",
                self.cuMemGetAllocationGranularity.is_some(),
            ),
            (
                "cuMemRetainAllocationHandle",
                self.cuMemRetainAllocationHandle.is_some(),
            ),
            (
                "cuMemGetAllocationPropertiesFromHandle",
                self.cuMemGetAllocationPropertiesFromHandle.is_some(),
            ),
            (
                "cuMemExportToShareableHandle",
                self.cuMemExportToShareableHandle.is_some(),
            ),
            (
                "cuMemImportFromShareableHandle",
                self.cuMemImportFromShareableHandle.is_some(),
            ),
            ("cuMemcpyHtoD_v2", self.cuMemcpyHtoD_v2.is_some()),
            ("cuMemcpyDtoH_v2", self.cuMemcpyDtoH_v2.is_some()),
            ("cuMemcpyDtoD_v2", self.cuMemcpyDtoD_v2.is_some()),
            ("cuMemsetD8_v2", self.cuMemsetD8_v2.is_some()),
            ("cuMemsetD32_v2", self.cuMemsetD32_v2.is_some()),
            ("cuCtxPushCurrent_v2", self.cuCtxPushCurrent_v2.is_some()),
            ("cuCtxPopCurrent_v2", self.cuCtxPopCurrent_v2.is_some()),
            ("cuStreamCreate", self.cuStreamCreate.is_some()),
            ("cuStreamDestroy_v2", self.cuStreamDestroy_v2.is_some()),
            ("cuStreamSynchronize", self.cuStreamSynchronize.is_some()),
            ("cuStreamWaitEvent", self.cuStreamWaitEvent.is_some()),
            ("cuStreamQuery", self.cuStreamQuery.is_some()),
            ("cuEventCreate", self.cuEventCreate.is_some()),
            ("cuEventRecord", self.cuEventRecord.is_some()),
            ("cuEventSynchronize", self.cuEventSynchronize.is_some()),
            ("cuEventQuery", self.cuEventQuery.is_some()),
            ("cuEventDestroy_v2", self.cuEventDestroy_v2.is_some()),
            ("cuMemcpyHtoDAsync_v2", self.cuMemcpyHtoDAsync_v2.is_some()),
            ("cuMemcpyDtoHAsync_v2", self.cuMemcpyDtoHAsync_v2.is_some()),
            ("cuMemcpyDtoDAsync_v2", self.cuMemcpyDtoDAsync_v2.is_some()),
            ("cuMemsetD8Async", self.cuMemsetD8Async.is_some()),
            ("cuMemsetD32Async", self.cuMemsetD32Async.is_some()),
            ("cuMemHostAlloc", self.cuMemHostAlloc.is_some()),
            ("cuMemFreeHost", self.cuMemFreeHost.is_some()),
            ("cuModuleLoadData", self.cuModuleLoadData.is_some()),
            ("cuModuleGetFunction", self.cuModuleGetFunction.is_some()),
            ("cuModuleUnload", self.cuModuleUnload.is_some()),
            ("cuLaunchKernel", self.cuLaunchKernel.is_some()),
        ]
    }

    /// The symbols this table could not resolve.
    pub fn missing(&self) -> impl Iterator<Item = &'static str> {
        self.availability()
            .into_iter()
            .filter(|(_, present)| !present)
            .map(|(name, _)| name)
    }
}
