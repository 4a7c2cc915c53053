//! Every error code the simulator chooses where the real driver's answer is a guess.
//!
//! The simulator never decides an error code anywhere else: each rule below is
//! one named constant, so aligning the simulator with what a real GPU returns
//! means editing a value here. Each constant says which call and which
//! condition it answers. Values marked *guess* have not been confirmed on a GPU.

use cuda_vmm_sys::CUresult;

const INVALID_VALUE: CUresult = CUresult::CUDA_ERROR_INVALID_VALUE;

// ---- Driver state and contexts -------------------------------------------------

/// Any call (other than the few that work earlier) before a successful `cuInit`.
pub const NOT_INITIALIZED: CUresult = CUresult::CUDA_ERROR_NOT_INITIALIZED;
/// `cuInit` with flags other than 0.
pub const INIT_BAD_FLAGS: CUresult = INVALID_VALUE;
/// `cuInit` when the configuration has zero devices.
pub const INIT_NO_DEVICE: CUresult = CUresult::CUDA_ERROR_NO_DEVICE;
/// `cuInit` when `CUDA_VMM_SIM_*` environment variables do not parse (simulator only).
pub const INIT_BAD_CONFIG: CUresult = INVALID_VALUE;
/// A call listed in [`NEEDS_CONTEXT`] with no current context on the thread (guess
/// for the VMM calls; known for `cuMemGetInfo` and copies).
pub const NO_CONTEXT: CUresult = CUresult::CUDA_ERROR_INVALID_CONTEXT;
/// A current context (or the one given to `cuCtxSetCurrent`) whose primary
/// context has been released to zero, or that is not a context at all.
pub const INACTIVE_CONTEXT: CUresult = CUresult::CUDA_ERROR_INVALID_CONTEXT;
/// `cuDevicePrimaryCtxRelease_v2` on a primary context with no references (guess).
pub const RELEASE_UNRETAINED_CONTEXT: CUresult = CUresult::CUDA_ERROR_INVALID_CONTEXT;

/// Entry points that fail with [`NO_CONTEXT`] when the thread has no current
/// context (guess for the VMM calls: listed so that a wrong guess is one edit).
pub const NEEDS_CONTEXT: &[&str] = &[
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
    "cuMemUnmap",
    "cuMemSetAccess",
    "cuMemGetAccess",
    "cuMemRetainAllocationHandle",
    "cuMemGetAllocationPropertiesFromHandle",
    "cuMemExportToShareableHandle",
    "cuMemImportFromShareableHandle",
    "cuMemcpyHtoD_v2",
    "cuMemcpyDtoH_v2",
    "cuMemcpyDtoD_v2",
    "cuMemsetD8_v2",
    "cuMemsetD32_v2",
];

// ---- Arguments common to many calls ---------------------------------------------

/// A required pointer argument (out-pointer, property, descriptor) is null.
pub const NULL_POINTER: CUresult = INVALID_VALUE;
/// A `flags` argument that must be 0 is not.
pub const BAD_FLAGS: CUresult = INVALID_VALUE;
/// A device ordinal outside `0..count` passed as a `CUdevice`.
pub const BAD_DEVICE: CUresult = CUresult::CUDA_ERROR_INVALID_DEVICE;
/// `cuDeviceGetAttribute` with an attribute the simulator does not model.
pub const UNKNOWN_ATTRIBUTE: CUresult = INVALID_VALUE;
/// `cuDeviceGetName` with a length of zero or less.
pub const BAD_NAME_LENGTH: CUresult = INVALID_VALUE;
/// `cuGetErrorName` / `cuGetErrorString` of a code the header does not define.
pub const UNKNOWN_ERROR_CODE: CUresult = INVALID_VALUE;
/// `cuGetProcAddress` of a name the simulator does not export, or a version
/// older than the entry point.
pub const PROC_NOT_FOUND: CUresult = CUresult::CUDA_ERROR_NOT_FOUND;
/// `cuMemMapArrayAsync`: the simulator has no CUDA arrays.
pub const MAP_ARRAY_UNSUPPORTED: CUresult = CUresult::CUDA_ERROR_NOT_SUPPORTED;
/// An entry point panicked inside the simulator (a simulator bug).
pub const INTERNAL_PANIC: CUresult = CUresult::CUDA_ERROR_UNKNOWN;
/// An operating-system call failed unexpectedly (e.g. `mmap` out of address space).
pub const OS_FAILURE: CUresult = CUresult::CUDA_ERROR_OUT_OF_MEMORY;

// ---- Allocation properties (cuMemCreate, cuMemGetAllocationGranularity) ----------

/// `prop.type` is not `CU_MEM_ALLOCATION_TYPE_PINNED`.
pub const PROP_BAD_TYPE: CUresult = INVALID_VALUE;
/// `prop.location.type` is not `CU_MEM_LOCATION_TYPE_DEVICE`.
pub const PROP_BAD_LOCATION_TYPE: CUresult = INVALID_VALUE;
/// `prop.location.id` is not a device ordinal (guess; could be INVALID_DEVICE).
pub const PROP_BAD_LOCATION_ID: CUresult = INVALID_VALUE;
/// `prop.requestedHandleTypes` has bits the header does not define.
pub const PROP_UNKNOWN_HANDLE_TYPE: CUresult = INVALID_VALUE;
/// `prop.requestedHandleTypes` includes FABRIC: the simulated device has no fabric.
pub const PROP_FABRIC_UNSUPPORTED: CUresult = CUresult::CUDA_ERROR_NOT_SUPPORTED;
/// `prop.requestedHandleTypes` includes WIN32 or WIN32_KMT (Linux only).
pub const PROP_WIN32_UNSUPPORTED: CUresult = CUresult::CUDA_ERROR_NOT_SUPPORTED;
/// `prop.allocFlags.usage` is non-zero (tile pools, hardware decompression).
pub const PROP_USAGE_UNSUPPORTED: CUresult = CUresult::CUDA_ERROR_NOT_SUPPORTED;
/// `cuMemGetAllocationGranularity` with an option other than MINIMUM/RECOMMENDED.
pub const GRANULARITY_BAD_OPTION: CUresult = INVALID_VALUE;

// ---- Reservations (cuMemAddressReserve / cuMemAddressFree) -----------------------

/// Reserve with size 0.
pub const RESERVE_ZERO_SIZE: CUresult = INVALID_VALUE;
/// Reserve with a size that is not a multiple of the granularity.
pub const RESERVE_MISALIGNED_SIZE: CUresult = INVALID_VALUE;
/// Reserve with a non-zero alignment that is not a power of two.
pub const RESERVE_BAD_ALIGNMENT: CUresult = INVALID_VALUE;
/// Reserve with an address hint that is not a multiple of the alignment:
/// `None` = the hint is ignored (like any hint that cannot be honoured).
pub const RESERVE_MISALIGNED_HINT: Option<CUresult> = None;
/// Reserve when the host has no free address range of that size.
pub const RESERVE_NO_ADDRESS_SPACE: CUresult = CUresult::CUDA_ERROR_OUT_OF_MEMORY;
/// Free of an address that is not the start of a reservation.
pub const FREE_UNKNOWN_ADDRESS: CUresult = INVALID_VALUE;
/// Free of a reservation's start with a size other than the reservation's.
pub const FREE_PARTIAL_RESERVATION: CUresult = INVALID_VALUE;
/// Free of a reservation that still has mappings in it.
pub const FREE_WITH_LIVE_MAPPINGS: CUresult = INVALID_VALUE;

// ---- Physical allocations (cuMemCreate / cuMemRelease / handles) -----------------

/// Create with size 0.
pub const CREATE_ZERO_SIZE: CUresult = INVALID_VALUE;
/// Create with a size that is not a multiple of the granularity.
pub const CREATE_MISALIGNED_SIZE: CUresult = INVALID_VALUE;
/// Create (or classic alloc) beyond the device's free memory.
pub const OUT_OF_MEMORY: CUresult = CUresult::CUDA_ERROR_OUT_OF_MEMORY;
/// A handle that was never created, or whose last reference was released
/// (the real driver crashes on these; the simulator answers this).
pub const UNKNOWN_HANDLE: CUresult = INVALID_VALUE;
/// `cuMemRetainAllocationHandle` of an address with no mapping.
pub const RETAIN_NOT_MAPPED: CUresult = INVALID_VALUE;

// ---- Sharing (export / import) ------------------------------------------------

/// Export as a type the allocation was not created with.
pub const EXPORT_NOT_REQUESTED: CUresult = INVALID_VALUE;
/// Export or import as FABRIC.
pub const FABRIC_UNSUPPORTED: CUresult = CUresult::CUDA_ERROR_NOT_SUPPORTED;
/// Export or import as a handle type other than POSIX fd / FABRIC.
pub const SHARE_BAD_TYPE: CUresult = INVALID_VALUE;
/// Import of an fd that is not an open memfd exported by this simulator, or
/// whose size is not a positive multiple of the granularity.
pub const IMPORT_BAD_FD: CUresult = INVALID_VALUE;

// ---- Mappings (cuMemMap / cuMemUnmap) ------------------------------------------

/// Map with size 0.
pub const MAP_ZERO_SIZE: CUresult = INVALID_VALUE;
/// Map with an address, size or offset that is not a multiple of the granularity.
pub const MAP_MISALIGNED: CUresult = INVALID_VALUE;
/// Map with `offset + size` beyond the allocation's size.
pub const MAP_OUT_OF_BOUNDS: CUresult = INVALID_VALUE;
/// Map of a range not entirely inside reservations. The real driver accepts a
/// map past a reservation's end; the simulator cannot (it would clobber host
/// memory it does not own), so it answers this.
pub const MAP_OUTSIDE_RESERVATION: CUresult = INVALID_VALUE;
/// Map over a range that is (partly) mapped already.
pub const MAP_OVER_MAPPED: CUresult = INVALID_VALUE;
/// Map of a range spanning two adjacent reservations: `None` = accepted.
pub const MAP_ACROSS_RESERVATIONS: Option<CUresult> = None;
/// Unmap with size 0, or an address/size not a multiple of the granularity.
pub const UNMAP_MISALIGNED: CUresult = INVALID_VALUE;
/// Unmap of a range that is not entirely mapped (never mapped, or a hole).
pub const UNMAP_NOT_MAPPED: CUresult = INVALID_VALUE;
/// Unmap of a range that cuts a mapping (must cover whole `cuMemMap` ranges).
pub const UNMAP_PARTIAL_MAPPING: CUresult = INVALID_VALUE;

// ---- Access (cuMemSetAccess / cuMemGetAccess) ----------------------------------

/// Set access with size 0, or an address/size not a multiple of the granularity.
pub const SET_ACCESS_MISALIGNED: CUresult = INVALID_VALUE;
/// Set access with a descriptor count of 0.
pub const SET_ACCESS_EMPTY: CUresult = INVALID_VALUE;
/// Set access on a range that is not entirely mapped.
pub const SET_ACCESS_NOT_MAPPED: CUresult = INVALID_VALUE;
/// An access descriptor whose location is not a device of this driver.
pub const ACCESS_BAD_LOCATION: CUresult = INVALID_VALUE;
/// An access descriptor with flags other than PROT_NONE / PROT_READ / PROT_READWRITE.
pub const ACCESS_BAD_FLAGS: CUresult = INVALID_VALUE;
/// Get access of an address that is not mapped.
pub const GET_ACCESS_NOT_MAPPED: CUresult = INVALID_VALUE;

// ---- Classic allocations (cuMemAlloc / cuMemFree / cuMemGetAddressRange) ---------

/// `cuMemAlloc_v2` with size 0.
pub const ALLOC_ZERO_SIZE: CUresult = INVALID_VALUE;
/// `cuMemFree_v2` of an address that is not the start of a live `cuMemAlloc`.
pub const FREE_NOT_ALLOCATED: CUresult = INVALID_VALUE;
/// `cuMemGetAddressRange_v2` of an address in no allocation or mapping.
pub const ADDRESS_RANGE_UNKNOWN: CUresult = CUresult::CUDA_ERROR_NOT_FOUND;

// ---- Copies and sets (cuMemcpy*, cuMemsetD8/D32) --------------------------------

/// A copy or set of 0 bytes: succeeds without looking at the pointers.
pub const COPY_ZERO_BYTES: CUresult = CUresult::CUDA_SUCCESS;
/// A device range (source or destination) with a byte that is unmapped,
/// reserved-but-unmapped, or unknown (guess).
pub const COPY_UNMAPPED: CUresult = INVALID_VALUE;
/// A device range that is mapped, but the current context's device lacks read
/// access (source) or read-write access (destination) (guess).
pub const COPY_NO_ACCESS: CUresult = INVALID_VALUE;
/// A host pointer that the kernel reports as unreadable/unwritable (EFAULT).
pub const COPY_BAD_HOST_POINTER: CUresult = INVALID_VALUE;
/// `cuMemsetD32_v2` to an address that is not 4-byte aligned.
pub const MEMSET_MISALIGNED: CUresult = INVALID_VALUE;
/// A byte count whose end address overflows.
pub const COPY_OVERFLOW: CUresult = INVALID_VALUE;
