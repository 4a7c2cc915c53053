//! Every error code the simulator chooses, in one place.
//!
//! The simulator never decides a driver answer anywhere else: each rule below is
//! one named constant, so aligning the simulator with what a real GPU returns
//! means editing a value here. Each constant says which call and which
//! condition it answers. *H200* marks answers recorded on a real H200 (driver
//! 580, CUDA 13.0; `tests/tests/suite/conformance/h200-driver-580.tsv`); the
//! others are guesses.

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
/// A call listed in [`NEEDS_CONTEXT`] with no current context on the thread (H200).
pub const NO_CONTEXT: CUresult = CUresult::CUDA_ERROR_INVALID_CONTEXT;
/// A current context (or the one given to `cuCtxSetCurrent`) whose primary
/// context has been released to zero, or that is not a context at all.
pub const INACTIVE_CONTEXT: CUresult = CUresult::CUDA_ERROR_INVALID_CONTEXT;
/// `cuDevicePrimaryCtxRelease_v2` on a primary context with no references (guess).
pub const RELEASE_UNRETAINED_CONTEXT: CUresult = CUresult::CUDA_ERROR_INVALID_CONTEXT;

/// Entry points that fail with [`NO_CONTEXT`] when the thread has no current
/// context. The VMM calls are not listed: they name their device explicitly
/// (H200: reserve, create, map, set access, unmap and granularity succeed with
/// no context; copies and `cuMemGetInfo` fail). `cuMemFree` is reported to
/// work with no context.
pub const NEEDS_CONTEXT: &[&str] = &[
    "cuCtxGetDevice",
    "cuCtxSynchronize",
    "cuMemGetInfo_v2",
    "cuMemAlloc_v2",
    "cuMemGetAddressRange_v2",
    "cuMemcpyHtoD_v2",
    "cuMemcpyDtoH_v2",
    "cuMemcpyDtoD_v2",
    "cuMemsetD8_v2",
    "cuMemsetD32_v2",
    "cuStreamCreate",
    "cuEventCreate",
    "cuMemHostAlloc",
    "cuModuleLoadData",
];

/// Entry points that answer the current context's [poison](UNMAP_WITH_PENDING_WORK)
/// when it is poisoned (checked after [`NEEDS_CONTEXT`]). Calls that take a
/// stream or an event answer the poison of that handle's context instead.
/// The VMM calls (reserve, create, map, unmap, set access, release,
/// granularity) keep working in a poisoned context.
pub const POISON_CHECKED: &[&str] = &[
    "cuCtxSynchronize",
    "cuMemGetInfo_v2",
    "cuMemAlloc_v2",
    "cuMemcpyHtoD_v2",
    "cuMemcpyDtoH_v2",
    "cuMemcpyDtoD_v2",
    "cuMemsetD8_v2",
    "cuMemsetD32_v2",
    "cuStreamCreate",
    "cuEventCreate",
    "cuMemHostAlloc",
    "cuModuleLoadData",
    "cuModuleGetFunction",
    "cuModuleUnload",
    "cuLaunchKernel",
];

/// `cuCtxPopCurrent_v2` with an empty context stack.
pub const POP_EMPTY_STACK: CUresult = CUresult::CUDA_ERROR_INVALID_CONTEXT;

// ---- Asynchrony: streams, events, pending work, poisoning ----------------------

/// `cuMemUnmap` of a range that pending work (a queued copy or set, on any
/// stream) reads or writes: the unmap itself succeeds (the driver neither
/// waits nor fails), the work's context is poisoned with this sticky error
/// and its pending work is discarded. Every later call that needs the
/// context ([`POISON_CHECKED`], and stream/event calls of that context)
/// answers it until the primary context's references drop to zero.
/// This code is for host-to-device copies (pageable and pinned, sync and
/// async), recorded on an H200, driver 580 (`race_htod_async_*`); device work
/// gets [`UNMAPPED_BY_DEVICE_WORK`].
pub const UNMAP_WITH_PENDING_WORK: CUresult = CUresult::CUDA_ERROR_LAUNCH_FAILED;
/// The sticky error when memory that a pending device-to-device copy, memset
/// or device-to-host copy touches is unmapped: recorded on an H200, driver 580,
/// for DtoD and memsets (`race_dtod_async`, `race_memset_async`).
pub const UNMAPPED_BY_DEVICE_WORK: CUresult = CUresult::CUDA_ERROR_ILLEGAL_ADDRESS;
/// `cuMemAddressFree` of a range that pending work touches (normally the
/// unmap poisons first). Guess; awaits the conformance recording.
pub const FREE_WITH_PENDING_WORK: CUresult = CUresult::CUDA_ERROR_LAUNCH_FAILED;
/// Queued work that fails when it runs (a host buffer of an async copy that
/// is no longer mapped): the sticky error its context is poisoned with. Guess.
pub const ASYNC_WORK_FAILED: CUresult = CUresult::CUDA_ERROR_LAUNCH_FAILED;
/// `cuStreamQuery` / `cuEventQuery` while work is pending (or held). The
/// query changes nothing, except under the query progress rule
/// ([`SimConfig::query_progress`](crate::SimConfig::query_progress)).
pub const NOT_READY: CUresult = CUresult::CUDA_ERROR_NOT_READY;
/// A stream or event handle that is not one of this driver's live streams or
/// events (bogus, destroyed, or of a destroyed context), or an event recorded
/// on a stream of another context. The real driver may crash on bogus handles.
pub const BAD_STREAM_OR_EVENT: CUresult = CUresult::CUDA_ERROR_INVALID_HANDLE;
/// `cuStreamCreate` with flags other than DEFAULT (0) / NON_BLOCKING (1).
pub const STREAM_BAD_FLAGS: CUresult = INVALID_VALUE;
/// `cuEventCreate` with unknown flags, or INTERPROCESS without DISABLE_TIMING.
pub const EVENT_BAD_FLAGS: CUresult = INVALID_VALUE;
/// `cuStreamWaitEvent` with flags other than 0.
pub const WAIT_BAD_FLAGS: CUresult = INVALID_VALUE;

// ---- Pinned host memory (cuMemHostAlloc / cuMemFreeHost) ------------------------

/// `cuMemHostAlloc` with size 0 succeeds on an H200, driver 580
/// (`host_alloc_zero_size`); the simulator hands out one page.
pub const HOST_ALLOC_ZERO_SIZE: CUresult = CUresult::CUDA_SUCCESS;
/// `cuMemHostAlloc` with flags other than PORTABLE|DEVICEMAP|WRITECOMBINED.
pub const HOST_ALLOC_BAD_FLAGS: CUresult = INVALID_VALUE;
/// `cuMemHostAlloc` when the host cannot map the memory.
pub const HOST_ALLOC_FAILED: CUresult = CUresult::CUDA_ERROR_OUT_OF_MEMORY;
/// `cuMemFreeHost` of a pointer that is not the start of a live
/// `cuMemHostAlloc` block (guess; awaits the conformance recording).
pub const FREE_HOST_UNKNOWN: CUresult = INVALID_VALUE;

// ---- Modules and kernels ---------------------------------------------------------

/// `cuModuleLoadData`: the simulator cannot run device code (simulator only).
pub const MODULE_UNSUPPORTED: CUresult = CUresult::CUDA_ERROR_NOT_SUPPORTED;
/// `cuModuleGetFunction` / `cuModuleUnload` / `cuLaunchKernel`: no module or
/// function handle is ever valid on the simulator.
pub const BAD_MODULE_OR_FUNCTION: CUresult = CUresult::CUDA_ERROR_INVALID_HANDLE;

// ---- Arguments common to many calls ---------------------------------------------

/// A required pointer argument (out-pointer, property, descriptor) is null.
pub const NULL_POINTER: CUresult = INVALID_VALUE;
/// A `flags` argument that must be 0 is not.
pub const BAD_FLAGS: CUresult = INVALID_VALUE;
/// A device ordinal outside `0..count` passed as a `CUdevice` (H200).
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

/// `prop.type` is not `CU_MEM_ALLOCATION_TYPE_PINNED` (H200).
pub const PROP_BAD_TYPE: CUresult = INVALID_VALUE;
/// `prop.location.type` is none of DEVICE, HOST, HOST_NUMA, HOST_NUMA_CURRENT (H200: 0).
pub const PROP_BAD_LOCATION_TYPE: CUresult = INVALID_VALUE;
/// `cuMemCreate` with a `prop.location.id` that is not a device ordinal (H200).
pub const PROP_BAD_LOCATION_ID: CUresult = CUresult::CUDA_ERROR_INVALID_DEVICE;
/// `cuMemGetAllocationGranularity` with a `prop.location.id` that is not a
/// device ordinal: `None` = answered anyway (H200).
pub const GRANULARITY_BAD_LOCATION_ID: Option<CUresult> = None;
/// `prop.requestedHandleTypes` has bits the header does not define:
/// `None` = accepted (H200, bit 0x80).
pub const PROP_UNKNOWN_HANDLE_TYPE: Option<CUresult> = None;
/// `prop.requestedHandleTypes` includes FABRIC: the simulated device has no fabric.
pub const PROP_FABRIC_UNSUPPORTED: CUresult = CUresult::CUDA_ERROR_NOT_SUPPORTED;
/// `prop.requestedHandleTypes` includes WIN32 or WIN32_KMT (Linux only).
pub const PROP_WIN32_UNSUPPORTED: CUresult = CUresult::CUDA_ERROR_NOT_SUPPORTED;
/// `prop.allocFlags.usage` is non-zero (tile pools, hardware decompression).
pub const PROP_USAGE_UNSUPPORTED: CUresult = CUresult::CUDA_ERROR_NOT_SUPPORTED;
/// `cuMemGetAllocationGranularity` with an option other than MINIMUM/RECOMMENDED (H200).
pub const GRANULARITY_BAD_OPTION: CUresult = INVALID_VALUE;

// ---- Host locations (CU_MEM_LOCATION_TYPE_HOST / HOST_NUMA / HOST_NUMA_CURRENT) ------
// Recorded on an H200 (driver 580.159.04, CUDA 13; conformance `host_cases.rs`):
// cuMemCreate at HOST and at HOST_NUMA id 0 succeeds, the memory maps and takes device
// access; both locations have the device's granularity (2 MiB there), HOST_NUMA_CURRENT
// too. The simulated host has one NUMA node, 0.

/// `cuMemCreate` at `CU_MEM_LOCATION_TYPE_HOST_NUMA_CURRENT` (H200:
/// `create_host_numa_current`).
pub const PROP_HOST_NUMA_CURRENT: CUresult = INVALID_VALUE;
/// `cuMemGetAllocationGranularity` at `HOST_NUMA_CURRENT`: `None` = answered, with the
/// granularity of the other locations (H200: `granularity_host_numa_current` answers
/// `CUDA_SUCCESS`; only `cuMemCreate` refuses the location).
pub const GRANULARITY_HOST_NUMA_CURRENT: Option<CUresult> = None;
/// `cuMemCreate` at `HOST` with `requestedHandleTypes` other than 0 (host allocations are
/// not IPC capable; H200: `create_host_with_posix_fd`).
pub const PROP_HOST_HANDLE_TYPES: CUresult = INVALID_VALUE;
/// `cuMemCreate` at `HOST_NUMA` with the POSIX fd handle type: `None` = accepted (H200:
/// `create_host_numa_with_posix_fd`).
pub const PROP_HOST_NUMA_POSIX_FD: Option<CUresult> = None;
/// `cuMemCreate` at `HOST_NUMA` with an id that is no host NUMA node (H200:
/// `create_host_numa_bad_id`, id 999). `cuMemGetAllocationGranularity` answers anyway, as
/// for a bad device ordinal.
pub const PROP_BAD_HOST_NUMA_ID: CUresult = INVALID_VALUE;
/// The location `cuMemGetAllocationPropertiesFromHandle` reports for memory created at
/// `HOST`: `HOST_NUMA` (type 3) with this id (H200: `properties_of_host` answers
/// `CUDA_SUCCESS location_type=3 id=0`). HOST_NUMA memory reports its own node.
pub const PROPERTIES_HOST_REPORTED_NUMA_ID: i32 = 0;

// ---- Reservations (cuMemAddressReserve / cuMemAddressFree) -----------------------

/// Reserve with size 0 (H200).
pub const RESERVE_ZERO_SIZE: CUresult = INVALID_VALUE;
/// Reserve with a size that is not a multiple of the granularity (H200).
pub const RESERVE_MISALIGNED_SIZE: CUresult = INVALID_VALUE;
/// Reserve with a non-zero alignment that is not a power of two (H200).
pub const RESERVE_BAD_ALIGNMENT: CUresult = INVALID_VALUE;
/// Reserve with an address hint that is not a multiple of the granularity (H200).
/// (A granular hint that is taken, or not a multiple of a larger requested
/// alignment, is ignored.)
pub const RESERVE_MISALIGNED_HINT: Option<CUresult> = Some(INVALID_VALUE);
/// Reserve when the host has no free address range of that size (H200).
pub const RESERVE_NO_ADDRESS_SPACE: CUresult = CUresult::CUDA_ERROR_OUT_OF_MEMORY;
/// Free of an address that is not the start of a reservation (H200).
pub const FREE_UNKNOWN_ADDRESS: CUresult = INVALID_VALUE;
/// Free of a reservation's start with a size other than the reservation's (H200).
pub const FREE_PARTIAL_RESERVATION: CUresult = INVALID_VALUE;
/// Free of a reservation that still has mappings in it (H200).
pub const FREE_WITH_LIVE_MAPPINGS: CUresult = INVALID_VALUE;

// ---- Physical allocations (cuMemCreate / cuMemRelease / handles) -----------------

/// Create with size 0 (H200).
pub const CREATE_ZERO_SIZE: CUresult = INVALID_VALUE;
/// Create with a size that is not a multiple of the granularity (H200).
pub const CREATE_MISALIGNED_SIZE: CUresult = INVALID_VALUE;
/// Create (or classic alloc) beyond the device's free memory (H200).
pub const OUT_OF_MEMORY: CUresult = CUresult::CUDA_ERROR_OUT_OF_MEMORY;
/// A released handle (H200: `cuMemRelease` twice), or one never created (the
/// real driver crashes on a bogus or released handle in most calls; the
/// simulator answers this).
pub const UNKNOWN_HANDLE: CUresult = INVALID_VALUE;
/// `cuMemRetainAllocationHandle` of an address with no mapping (H200).
pub const RETAIN_NOT_MAPPED: CUresult = INVALID_VALUE;

// ---- Sharing (export / import) ------------------------------------------------

/// Export as a type the allocation was not created with (H200).
pub const EXPORT_NOT_REQUESTED: CUresult = INVALID_VALUE;
/// Export or import as FABRIC.
pub const FABRIC_UNSUPPORTED: CUresult = CUresult::CUDA_ERROR_NOT_SUPPORTED;
/// Export or import as a handle type other than POSIX fd / FABRIC.
pub const SHARE_BAD_TYPE: CUresult = INVALID_VALUE;
/// Import of an fd that is not open, or not an allocation exported by this
/// simulator (H200: a closed fd number and `/dev/null` both give this).
pub const IMPORT_BAD_FD: CUresult = CUresult::CUDA_ERROR_UNKNOWN;

// ---- Mappings (cuMemMap / cuMemUnmap) ------------------------------------------

/// Map with size 0 (H200).
pub const MAP_ZERO_SIZE: CUresult = INVALID_VALUE;
/// Map at an address that is not a multiple of the granularity (H200).
pub const MAP_MISALIGNED: CUresult = INVALID_VALUE;
/// Map of anything but a whole allocation: offset not 0, or size not the
/// allocation's size, granular or not (H200, all six variants).
pub const MAP_PARTIAL_ALLOCATION: CUresult = CUresult::CUDA_ERROR_NOT_SUPPORTED;
/// Map at an address in no reservation (H200).
pub const MAP_UNRESERVED_ADDRESS: CUresult = INVALID_VALUE;
/// Map starting in a reservation and running past its end into unreserved
/// address space: `None` = accepted (H200).
pub const MAP_PAST_RESERVATION_END: Option<CUresult> = None;
/// Map running past a reservation's end where the host already uses the
/// address space (simulator only: it never overwrites host memory it does not own).
pub const MAP_OVERHANG_OCCUPIED: CUresult = INVALID_VALUE;
/// Map spanning two adjacent reservations: `None` = accepted (H200).
pub const MAP_ACROSS_RESERVATIONS: Option<CUresult> = None;
/// Map over a range that is (partly) mapped already (H200).
pub const MAP_OVER_MAPPED: CUresult = INVALID_VALUE;
/// Unmap with size 0, or an address/size not a multiple of the granularity (H200).
pub const UNMAP_MISALIGNED: CUresult = INVALID_VALUE;
/// Unmap of reserved bytes that are not mapped (never mapped, already
/// unmapped, holes between mappings): `None` = accepted (H200: never mapped,
/// unmapped twice).
pub const UNMAP_NOT_MAPPED: Option<CUresult> = None;
/// Unmap of a range with bytes in no reservation and no mapping (guess).
pub const UNMAP_UNRESERVED: CUresult = INVALID_VALUE;
/// Unmap of a range that cuts a mapping; it must cover whole `cuMemMap`
/// ranges, any number of them (H200).
pub const UNMAP_PARTIAL_MAPPING: CUresult = INVALID_VALUE;

// ---- Access (cuMemSetAccess / cuMemGetAccess) ----------------------------------

/// Set access with size 0, or an address/size not a multiple of the granularity (H200).
pub const SET_ACCESS_MISALIGNED: CUresult = INVALID_VALUE;
/// Set access with a descriptor count of 0 (H200).
pub const SET_ACCESS_EMPTY: CUresult = INVALID_VALUE;
/// Set access on a range whose first or last byte is not mapped (H200:
/// `set_access_unmapped`, `set_access_partly_mapped`, `set_access_leading_hole`,
/// `set_access_past_reservation_end`).
pub const SET_ACCESS_NOT_MAPPED: CUresult = INVALID_VALUE;
/// Set access on a range that starts or ends inside a mapping: it must cover
/// whole `cuMemMap` ranges (H200: `set_access_head_of_allocation`,
/// `set_access_tail_of_allocation`, `set_access_whole_and_part`,
/// `set_access_part_and_whole`; nothing is applied).
pub const SET_ACCESS_PARTIAL_MAPPING: CUresult = INVALID_VALUE;
/// Set access on a range that starts at a mapping's start and ends at a
/// mapping's end but has a hole in between: `true` = the driver answers
/// SUCCESS and applies the access to the mappings before the first hole only
/// (H200: `set_access_with_hole` gives `CUDA_SUCCESS a=3 b=0`). The safe layer
/// refuses such ranges.
pub const SET_ACCESS_STOPS_AT_HOLE: bool = true;
/// An access descriptor of `cuMemSetAccess` whose location is not a device of
/// this driver (H200: `set_access_bad_device`). Descriptors are all checked
/// before any is applied (H200: `set_access_bad_descriptor_after_good`); a
/// device named twice takes the last descriptor's flags (`set_access_same_device_twice`).
pub const ACCESS_BAD_LOCATION: CUresult = INVALID_VALUE;
/// The location of `cuMemGetAccess` is not a device of this driver (bad ordinal
/// or location type); the flags are left untouched (H200:
/// `get_access_bad_device_out_param`, `get_access_bad_location_type_out_param`).
pub const GET_ACCESS_BAD_LOCATION: CUresult = CUresult::CUDA_ERROR_INVALID_DEVICE;
/// A `HOST` or `HOST_NUMA` access descriptor (host CPU access; the id is ignored) over a
/// range that maps device memory. Over HOST and HOST_NUMA memory alike either descriptor
/// grants the host access, and `cuMemGetAccess` at either location reports it (H200:
/// `set_access_host{,_numa}_desc_on_host{,_numa}` answer `CUDA_SUCCESS get=CUDA_SUCCESS
/// flags=3`, `get_access_host_location` `CUDA_SUCCESS`). Over device memory a `HOST_NUMA`
/// descriptor is refused with this (H200: `set_access_host_numa_desc_on_device`); a
/// `HOST` one is assumed to be too (guess; conformance `set_access_host_desc_on_device`).
pub const ACCESS_HOST_ON_DEVICE_MEMORY: CUresult = CUresult::CUDA_ERROR_NOT_SUPPORTED;
/// An access descriptor with flags other than PROT_NONE / PROT_READ / PROT_READWRITE (H200).
pub const ACCESS_BAD_FLAGS: CUresult = INVALID_VALUE;
/// Get access of an address that is not mapped; the flags are set to 0 (H200:
/// `get_access_unmapped`, `get_access_unmapped_out_param`).
pub const GET_ACCESS_NOT_MAPPED: CUresult = INVALID_VALUE;

// ---- Classic allocations (cuMemAlloc / cuMemFree / cuMemGetAddressRange) ---------

/// `cuMemAlloc_v2` with size 0.
pub const ALLOC_ZERO_SIZE: CUresult = INVALID_VALUE;
/// `cuMemFree_v2` of an address that is not the start of a live `cuMemAlloc`.
pub const FREE_NOT_ALLOCATED: CUresult = INVALID_VALUE;
/// `cuMemGetAddressRange_v2` of an address in no allocation or mapping; base
/// and size are set to 0 (H200: `address_range_failure_out_param`).
pub const ADDRESS_RANGE_UNKNOWN: CUresult = CUresult::CUDA_ERROR_NOT_FOUND;

// ---- Stream-ordered allocation and memory pools ---------------------------------
// (H200, driver 580: probed with ctypes, `cuMemAllocAsync` & co. on device 0.)

/// `cuMemAllocAsync` / `cuMemAllocFromPoolAsync` with size 0 succeed on an H200 and
/// answer a null pointer; nothing is allocated.
pub const ALLOC_ASYNC_ZERO_SIZE: CUresult = CUresult::CUDA_SUCCESS;
/// `cuMemFreeAsync` of the null pointer succeeds on an H200 (and does nothing).
pub const FREE_ASYNC_NULL: CUresult = CUresult::CUDA_SUCCESS;
/// `cuMemFreeAsync` of an address that is not the start of live pool memory
/// (H200: a bogus address, one inside an allocation, a second free).
pub const FREE_ASYNC_UNKNOWN: CUresult = INVALID_VALUE;
/// `cuMemFreeAsync` of `cuMemAlloc` memory: simulator only (an H200 accepts it and
/// crashes in the next `cuStreamSynchronize`).
pub const FREE_ASYNC_NOT_POOLED: CUresult = INVALID_VALUE;
/// A pool handle that is not a live pool of this driver (H200: null in
/// `cuMemPoolTrimTo` and `cuMemPoolGetAttribute`; the real driver may crash on
/// bogus or destroyed ones).
pub const POOL_BAD_HANDLE: CUresult = INVALID_VALUE;
/// `cuMemPoolDestroy` of a device's default pool (H200).
pub const POOL_DESTROY_DEFAULT: CUresult = INVALID_VALUE;
/// `cuMemPoolGetAttribute` / `cuMemPoolSetAttribute` of an attribute the header
/// does not define (H200: 0 and 99).
pub const POOL_BAD_ATTRIBUTE: CUresult = INVALID_VALUE;
/// `cuMemPoolSetAttribute` of `RESERVED_MEM_CURRENT` or `USED_MEM_CURRENT`, or of a
/// high watermark to a value other than 0 (H200).
pub const POOL_READ_ONLY_ATTRIBUTE: CUresult = INVALID_VALUE;
/// `cuMemPoolCreate` with null properties, or `allocType` other than PINNED (H200
/// for INVALID; an H200 also accepts the value 2, the simulator does not).
pub const POOL_PROPS_BAD_TYPE: CUresult = INVALID_VALUE;
/// `cuMemPoolCreate` with a location that is not a device of this driver (H200:
/// location type INVALID, ordinals 99 and -1; an H200 also accepts HOST and
/// HOST_NUMA locations, the simulator has no host pools).
pub const POOL_PROPS_BAD_LOCATION: CUresult = INVALID_VALUE;
/// `cuMemPoolCreate` with handle types other than NONE / POSIX fd (H200: bit 0x80),
/// a non-zero `usage`, or non-zero reserved bytes (guess).
pub const POOL_PROPS_UNSUPPORTED: CUresult = INVALID_VALUE;
/// `cuDeviceGetDefaultMemPool` with a bad device ordinal (H200).
pub const DEFAULT_POOL_BAD_DEVICE: CUresult = CUresult::CUDA_ERROR_INVALID_DEVICE;
/// `cuDeviceGetMemPool` / `cuDeviceSetMemPool` with a bad device ordinal (H200:
/// unlike `cuDeviceGetDefaultMemPool`, not INVALID_DEVICE).
pub const MEM_POOL_BAD_DEVICE: CUresult = INVALID_VALUE;
/// `cuDeviceSetMemPool` with a pool of another device (guess).
pub const SET_MEM_POOL_OTHER_DEVICE: CUresult = INVALID_VALUE;
/// A pool allocation beyond the device's free memory or the pool's `maxSize`
/// (H200: 1 PiB).
pub const POOL_OUT_OF_MEMORY: CUresult = CUresult::CUDA_ERROR_OUT_OF_MEMORY;

// ---- Copies and sets (cuMemcpy*, cuMemsetD8/D32) --------------------------------

/// A copy or set of 0 bytes: succeeds without looking at the pointers.
pub const COPY_ZERO_BYTES: CUresult = CUresult::CUDA_SUCCESS;
/// A device range (source or destination) with a byte that is unmapped,
/// reserved-but-unmapped, or unknown (H200).
pub const COPY_UNMAPPED: CUresult = INVALID_VALUE;
/// A device range that is mapped, but the current context's device lacks read
/// access (source) or read-write access (destination) (H200).
pub const COPY_NO_ACCESS: CUresult = INVALID_VALUE;
/// A host pointer that the kernel reports as unreadable/unwritable (EFAULT).
pub const COPY_BAD_HOST_POINTER: CUresult = INVALID_VALUE;
/// `cuMemsetD32_v2` to an address that is not 4-byte aligned.
pub const MEMSET_MISALIGNED: CUresult = INVALID_VALUE;
/// A byte count whose end address overflows.
pub const COPY_OVERFLOW: CUresult = INVALID_VALUE;

/// `requestedHandleTypes` that `cuMemGetAllocationPropertiesFromHandle` reports
/// for an imported handle: none (H200, driver 580: conformance
/// `properties_of_imported_handle`).
pub const IMPORTED_HANDLE_TYPES: u32 = 0;
