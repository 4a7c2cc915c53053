//! A CPU simulator of the CUDA driver's virtual memory management (VMM) API.
//!
//! It exports the driver's C ABI — the exact symbols (`cuMemCreate`,
//! `cuMemGetInfo_v2`, ...) a program compiled against `cuda.h` links to — and
//! backs them with real Linux memory, so that VMM code behaves as on a GPU:
//!
//! - a **reservation** is real address space with no access (`mmap` PROT_NONE);
//! - a **physical allocation** is a memfd (pages cost host memory only once written);
//! - a **mapping** maps the memfd into the reservation (`MAP_SHARED|MAP_FIXED`),
//!   so one allocation mapped twice really aliases, and an allocation released
//!   while mapped lives until unmapped;
//! - **access** set with `cuMemSetAccess` becomes page protection (the union
//!   over devices); copies check it per device and return the driver's error
//!   instead of faulting;
//! - **sharing**: a POSIX-fd export is a socket carrying the memfd (`fstat` reports no size,
//!   as for the driver's descriptors), usable by another process;
//! - `cuMemGetInfo` is **exact**: total minus live allocations, per device.
//!
//! `CUdeviceptr` values are host addresses. Every error code the simulator
//! chooses is a named constant in [`answers`] (most recorded on an H200). Tests get
//! per-thread [`call_count`]s and [`inject_fault`], the same aimed at threads by
//! name ([`call_count_on_thread`], [`inject_fault_on_thread`]), process-wide
//! [`call_count_all`], and [holds](hold_stream) of streams.
//!
//! # In-process use
//!
//! [`driver()`] is a [`cuda_vmm_sys::Driver`] whose table points straight at this
//! crate's functions (no `dlopen`):
//!
//! ```
//! use cuda_vmm_sys::*;
//! # fn main() -> Result<(), MissingSymbol> {
//! let t = cuda_vmm_sim::driver().table();
//! let ok = CUresult::CUDA_SUCCESS;
//! // SAFETY (all calls below): every pointer passed is a valid local, and every
//! // range passed was returned by the simulator for this purpose.
//! unsafe {
//!     assert_eq!(entry!(t, cuInit)?(0), ok);
//!     let mut dev = 0;
//!     assert_eq!(entry!(t, cuDeviceGet)?(&mut dev, 0), ok);
//!     let mut ctx = core::ptr::null_mut();
//!     assert_eq!(entry!(t, cuDevicePrimaryCtxRetain)?(&mut ctx, dev), ok);
//!     assert_eq!(entry!(t, cuCtxSetCurrent)?(ctx), ok);
//!
//!     let mut prop = CUmemAllocationProp::default();
//!     prop.type_ = CUmemAllocationType::CU_MEM_ALLOCATION_TYPE_PINNED;
//!     prop.location.type_ = CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE;
//!     prop.location.id = dev;
//!     let mut size = 0;
//!     let g = CUmemAllocationGranularity_flags::CU_MEM_ALLOC_GRANULARITY_MINIMUM;
//!     assert_eq!(entry!(t, cuMemGetAllocationGranularity)?(&mut size, &prop, g), ok);
//!
//!     let mut va = 0;
//!     assert_eq!(entry!(t, cuMemAddressReserve)?(&mut va, size, 0, 0, 0), ok);
//!     let mut handle = 0;
//!     assert_eq!(entry!(t, cuMemCreate)?(&mut handle, size, &prop, 0), ok);
//!     assert_eq!(entry!(t, cuMemMap)?(va, size, 0, handle, 0), ok);
//!     let access = CUmemAccessDesc {
//!         location: prop.location,
//!         flags: CUmemAccess_flags::CU_MEM_ACCESS_FLAGS_PROT_READWRITE,
//!     };
//!     assert_eq!(entry!(t, cuMemSetAccess)?(va, size, &access, 1), ok);
//!
//!     let data = *b"hello, device";
//!     let mut back = [0u8; 13];
//!     assert_eq!(entry!(t, cuMemcpyHtoD_v2)?(va, data.as_ptr().cast(), 13), ok);
//!     assert_eq!(entry!(t, cuMemcpyDtoH_v2)?(back.as_mut_ptr().cast(), va, 13), ok);
//!     assert_eq!(back, data);
//!
//!     assert_eq!(entry!(t, cuMemUnmap)?(va, size), ok);
//!     assert_eq!(entry!(t, cuMemRelease)?(handle), ok);
//!     assert_eq!(entry!(t, cuMemAddressFree)?(va, size), ok);
//!     assert_eq!(entry!(t, cuDevicePrimaryCtxRelease_v2)?(dev), ok);
//! }
//! # Ok(()) }
//! ```
//!
//! # Running your own program on the simulator
//!
//! Build the shared library: `cargo build -p cuda-vmm-sim --release` gives
//! `target/release/libcuda_vmm_sim.so`. Then either
//!
//! - for programs using this workspace's loader (`cuda_vmm_sys::Driver::load`):
//!   `CUDA_VMM_DRIVER_PATH=target/release/libcuda_vmm_sim.so ./your-program`;
//! - for C/C++ programs linked with `-lcuda`: make a directory with a
//!   `libcuda.so.1` (and `libcuda.so`) symlink to `libcuda_vmm_sim.so` and run
//!   with `LD_LIBRARY_PATH=that-directory`. Only the entry points in
//!   [`cuda_vmm_sys::SYMBOLS`] exist: streams, events, async copies and the
//!   context stack are modelled; modules and kernels are not (see below).
//!
//! # Asynchrony
//!
//! As on a GPU, work does not complete inside the call that issues it. Copies
//! and sets are queued on streams and run only at synchronisation points —
//! deterministically, so a racy program fails the same way every time:
//!
//! - **Queued**: the `*Async` copies and sets on their stream; `cuMemcpyHtoD_v2`
//!   from pageable memory (after completing the legacy stream's earlier work,
//!   with the host bytes snapshotted), `cuMemcpyDtoD_v2` and the memsets on the
//!   context's legacy stream. Device ranges are checked when the call is made.
//! - **Completed in the call**: `cuMemcpyDtoH_v2`, and `cuMemcpyHtoD_v2` from
//!   `cuMemHostAlloc` memory (with the earlier work they depend on).
//!   Async copies from pinned memory read it when they run, not when issued.
//! - **Synchronisation points** complete exactly what they wait for:
//!   `cuStreamSynchronize` (the stream), `cuEventSynchronize` (the work before
//!   the recorded position), `cuCtxSynchronize` (every stream of the context),
//!   `cuMemFree_v2` (work on that allocation), `cuMemFreeHost` (work on that
//!   block), the last `cuDevicePrimaryCtxRelease_v2` (the context's work).
//! - **Queries report only**: `cuStreamQuery` / `cuEventQuery` answer
//!   `CUDA_SUCCESS` iff the work before the point has completed, else
//!   `CUDA_ERROR_NOT_READY`, and change nothing — except that the `n`-th
//!   `NOT_READY` answer for the same point lets the device progress (completes
//!   that work), so a program that only polls still finishes, deterministically
//!   ([`SimConfig::query_progress`], default [`DEFAULT_QUERY_PROGRESS`], `0`: never).
//! - **Device progress**: [`advance`] completes all pending work that is not
//!   held, as if the device had run for a while.
//! - **Holds** ([`hold_stream`]): a modelled long-running kernel. While the
//!   guard lives, the stream's work (and work ordered after it) does not
//!   complete: synchronisations that need it block the calling thread (other
//!   threads keep calling the driver) until the guard is dropped, queries
//!   answer `NOT_READY`, [`advance`] skips it. `cuMemsetD8Async` on the stream
//!   serves as the kernel's write to a range.
//! - **Capture**: there are no graphs, so `cuStreamIsCapturing` answers
//!   `CU_STREAM_CAPTURE_STATUS_NONE` for every valid stream, except one a test
//!   marks with [`mark_capturing`] (`CU_STREAM_CAPTURE_STATUS_ACTIVE` while the
//!   guard lives).
//! - **Ordering**: an operation waits for the earlier ones on its stream; on the
//!   legacy stream also for earlier work of the context's blocking streams, and
//!   on a blocking stream for earlier legacy-stream work (`CU_STREAM_NON_BLOCKING`
//!   streams wait for neither); `cuStreamWaitEvent` adds the event's work. The
//!   null stream, `CU_STREAM_LEGACY` and `CU_STREAM_PER_THREAD` all name the
//!   legacy stream (there are no per-thread default streams).
//! - **Poisoning**: `cuMemUnmap` (or `cuMemAddressFree`) of memory that pending
//!   work reads or writes succeeds, but poisons that work's context with
//!   `CUDA_ERROR_LAUNCH_FAILED` and discards its pending work (as measured on an
//!   H200 for an HtoD copy in flight). Every later call needing the context
//!   answers that error; VMM calls keep working. The poison clears when the
//!   primary context's references drop to zero.
//!
//! [`pending_work`] counts the queued operations ([`pending_work_on`] those of one
//! device's context). `CUDA_VMM_SIM_ASYNC=0` (or
//! [`SimConfig::asynchronous`]`(false)`) completes all work inside the call
//! that issues it, as earlier versions of the simulator did.
//!
//! # Stream-ordered pools
//!
//! `cuMemAllocAsync` / `cuMemAllocFromPoolAsync` take memory from a pool: each
//! device has a default pool, and `cuMemPoolCreate` makes more (pinned memory on a
//! device only). Pool memory is classic memory (copies and sets use it like
//! `cuMemAlloc` memory) rounded up to the granularity, one block per allocation
//! (an H200 reserves 32 MiB chunks and packs small allocations into them).
//! `cuMemFreeAsync` takes the pointer back in the call (the pool's used bytes drop)
//! and queues the free on the stream: the block can be handed out again once the
//! stream has reached it (at once to an allocation on the same stream). Reserved
//! bytes count in `cuMemGetInfo` until released: at `cuStreamSynchronize`,
//! `cuEventSynchronize` and `cuCtxSynchronize`, every pool releases free blocks
//! beyond its `CU_MEMPOOL_ATTR_RELEASE_THRESHOLD` (default 0); `cuMemPoolTrimTo`
//! and `cuMemPoolDestroy` release too. The reuse policies are stored, not
//! modelled. Pools cannot be shared (no `cuMemPoolExportToShareableHandle`)
//! and have no access settings (`cuMemPoolSetAccess`).
//!
//! # Configuration
//!
//! Read once, at the first `cuInit`: from [`configure`] if it was called, else
//! from `CUDA_VMM_SIM_DEVICES` (default 1), `CUDA_VMM_SIM_MEMORY` (bytes per
//! device, K/M/G/T suffixes, default 80G), `CUDA_VMM_SIM_GRANULARITY` (default
//! 2M), `CUDA_VMM_SIM_DRIVER_VERSION` (default 13000), `CUDA_VMM_SIM_ASYNC`
//! (`1`, the default, or `0`; see [Asynchrony](#asynchrony)) and
//! `CUDA_VMM_SIM_QUERY_PROGRESS` (the query progress rule's `n`, default 64).
//!
//! # Differences from a GPU
//!
//! Maps take whole allocations and may run past a reservation's end, as on an
//! H200; the simulator only does the latter where the host's address space
//! past the end is free (it never overwrites host memory it does not own). The
//! simulated devices report no fabric handles, compression or GPUDirect RDMA
//! on VMM memory. Released or bogus handles return an error where the real
//! driver crashes (stream and event handles too: bogus or destroyed ones are
//! answered `CUDA_ERROR_INVALID_HANDLE`). Imported allocations do not count in
//! the importer's `cuMemGetInfo` (the exporter's allocation does). Host memory
//! (`CU_MEM_LOCATION_TYPE_HOST`, and `HOST_NUMA` on node 0, the simulated host's
//! only node) is a memfd like device memory that counts in no device's
//! `cuMemGetInfo`; `cuMemCreate` refuses `HOST_NUMA_CURRENT` (its granularity is
//! answered), as on an H200. A `HOST` or `HOST_NUMA` access descriptor grants the host
//! access to either kind of host memory (over device memory it is
//! `CUDA_ERROR_NOT_SUPPORTED`), and HOST memory reports itself as `HOST_NUMA` node 0,
//! as on an H200. Releasing
//! the last reference to a primary context frees nothing (it completes the
//! context's work, invalidates its streams and events and clears its poison).
//! The simulator cannot run device code: `cuModuleLoadData` answers
//! `CUDA_ERROR_NOT_SUPPORTED`, and `cuModuleGetFunction`, `cuModuleUnload` and
//! `cuLaunchKernel` answer `CUDA_ERROR_INVALID_HANDLE` for every handle. Queued
//! work runs under the simulator's global lock, at synchronisation points (and
//! [`advance`], and the query progress rule), never in the background; event
//! timing is not modelled.
//!
//! Host limits: each live allocation holds one memfd open (the first `cuInit`
//! raises the soft open-file limit to the hard limit), and each mapping is a
//! host memory map (Linux allows about 65 000 per process by default).
#![warn(missing_docs)]

// The three layers: the driver model, the operating-system layer it runs on,
// and the hooks tests use; `exports` is the C ABI over the model.
pub mod exports;
mod hooks;
mod model;
mod os;

use std::sync::OnceLock;

use cuda_vmm_sys::{Driver, DriverTable};

pub use hooks::capture::{mark_capturing, try_mark_capturing, CaptureGuard};
pub use hooks::faults::{
    call_count, call_count_all, call_count_on_thread, inject_fault, inject_fault_on_thread,
    try_inject_fault, try_inject_fault_on_thread, FaultError, FaultGuard,
};
pub use hooks::holds::{advance, hold_stream, pending_work_on, try_hold_stream, HoldGuard};
pub use hooks::latency::{model_create_cost, CreateCostGuard};
pub use model::answers;
pub use model::config::{
    ConfigError, SimConfig, DEFAULT_QUERY_PROGRESS, ENV_ASYNC, ENV_DEVICES, ENV_DRIVER_VERSION,
    ENV_GRANULARITY, ENV_MEMORY, ENV_QUERY_PROGRESS, MAX_DEVICES,
};

/// Where [`driver()`] says it came from.
pub const ORIGIN: &str = "cuda-vmm-sim (in-process)";

/// The in-process simulated driver: a table of this crate's entry points.
pub fn driver() -> &'static Driver {
    static DRIVER: OnceLock<Driver> = OnceLock::new();
    DRIVER.get_or_init(|| {
        use exports as x;
        // `DriverTable { symbol: Some(x::symbol), ... }` for every entry point.
        macro_rules! sim_table {
            ($($symbol:ident: $pfn:ident),* $(,)?) => {
                DriverTable { $($symbol: Some(x::$symbol),)* }
            };
        }
        let table = cuda_vmm_sys::for_each_entry_point!(sim_table);
        // SAFETY: every slot holds one of this crate's functions, whose signature
        // the compiler checked against the slot's PFN type, and which live for
        // the whole program.
        unsafe { Driver::from_table(table, ORIGIN) }
    })
}

/// Sets the configuration the first `cuInit` uses (instead of the environment).
///
/// Fails with [`ConfigError::AlreadyInitialized`] once `cuInit` has succeeded,
/// or when the configuration is invalid.
pub fn configure(config: SimConfig) -> Result<(), ConfigError> {
    model::state::configure(config)
}

/// How many operations (copies, sets, stream waits) are queued on streams and
/// not yet run, over all contexts: 0 before `cuInit`, and always 0 with
/// asynchrony off. Work runs only at synchronisation points, [`advance`] and
/// the query progress rule (see the crate docs, "Asynchrony"), so this is
/// deterministic. [`pending_work_on`] counts one device's context.
pub fn pending_work() -> usize {
    model::state::pending_work()
}

/// The configuration in effect, or `None` before the first successful `cuInit`.
pub fn active_config() -> Option<SimConfig> {
    model::state::active_config()
}
