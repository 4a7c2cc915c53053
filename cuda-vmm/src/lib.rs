//! Safe, validated RAII wrappers over the CUDA driver's virtual memory management API.
//!
//! - [`Cuda`]: a driver (the real one or the `sim` simulator) and its [`Device`]s.
//! - [`Reservation`]: a virtual address range (`cuMemAddressReserve`).
//! - [`Allocation`]: physical memory (`cuMemCreate`), shareable via POSIX fds or fabric handles;
//!   [`send_allocations`] / [`receive_allocations`] share them with another process.
//! - [`Mapping`]: an allocation mapped into a reservation (`cuMemMap`), unmapped on drop.
//! - [`LinearAllocation`]: classic `cuMemAlloc` memory, for comparison.
//!
//! Every argument is validated before the driver sees it, so safe code cannot
//! pass the driver a released or foreign handle, unmap something that is not
//! exactly a live mapping, map over a live mapping or past a reservation's end.
//! Ownership is reference counted: a mapping keeps its reservation and
//! allocation alive, so they are freed only after every mapping is gone.
//!
//! # Contexts
//!
//! A [`Cuda`] retains each device's primary context (the one the CUDA runtime
//! and cudarc use) once, the first time the device is opened, and releases it
//! when the `Cuda` and everything made from it are gone. Every operation that
//! needs a context binds it for its own duration (`cuCtxPushCurrent` /
//! `cuCtxPopCurrent` when it is not already current) and leaves the calling
//! thread's current context exactly as it found it. [`Device::make_current`]
//! is there for code that launches work through raw driver calls.
//!
//! # Ordering against the device
//!
//! A driver call returning does not mean the device is done: a pageable
//! `cuMemcpyHtoD` returns before its DMA lands, kernels and async copies run
//! later on their streams, and `cuMemUnmap` waits for none of it. Unmapping
//! memory the device still uses kills the context with a sticky error, and the
//! address may already back other memory when the work lands. So:
//!
//! - This crate's synchronous copies and fills ([`Reservation::write`],
//!   [`Reservation::fill`], ...) run on a private non-blocking stream per
//!   device and wait for that stream alone (`cuStreamSynchronize`, never
//!   `cuCtxSynchronize`): they are complete when they return.
//! - The `_async` variants ([`Reservation::write_async`], ...) queue on the
//!   caller's [`Stream`] and record an [`Event`] on the reservation.
//! - Work other code queues on the memory (kernels, cudarc, the runtime) is
//!   recorded with [`Reservation::record_use`]; the crate's own copies are
//!   ordered after recorded uses, as cudarc orders a `CudaSlice`'s.
//! - Every end of a mapping (unmap, and so every free, release, recycle,
//!   shrink, decommit, drop or rollback built on it) first waits on the host
//!   for the recorded uses and, under the default [`UnmapWait::Devices`], for
//!   all work in the primary contexts of the reservation's device and of every
//!   device granted access. That default is safe whatever launched the work;
//!   it is what PyTorch's expandable segments (`cudaDeviceSynchronize` or a
//!   stream sync before `cuMemUnmap`) and vLLM's sleep mode do. Batches
//!   ([`Reservation::unmap_batch`]) wait once.
//! - [`Reservation::set_unmap_wait`] (`unsafe`) trades that for less waiting:
//!   [`UnmapWait::RecordedUse`] waits for recorded uses only,
//!   [`UnmapWait::Caller`] for nothing.
//!
//! # Unsafe code
//!
//! Every driver call goes through [`raw`], one function per entry point, whose `unsafe`
//! contracts are stated there once. The crate root denies `unsafe_code`; it is allowed
//! only on these items, each `unsafe` block with its `// SAFETY:` line:
//!
//! - the [`raw`] module: the driver calls, the staging buffers' host memory, and the
//!   crate-internal typed wrappers that turn this crate's own rules into types, so that
//!   the safe layer calls them without `unsafe`: a retained primary context released
//!   once and the guard proving it is bound (popped exactly when pushed), and stream and
//!   event handles that are live while they exist and destroyed at most once (and,
//!   with feature `cudarc`, cudarc's streams and events lent for a call), and a
//!   reserved range, freed once, that maps, sets access and unmaps only where the
//!   reservation's book-keeping of its mappings (held locked) allows it, unmapping only
//!   with the proof that the device work was waited for, an owned allocation handle,
//!   released once, exported while live and imported from a borrowed descriptor or a
//!   fabric handle, linear device memory, freed once after its context's work, and the
//!   queued copies and fills, on device ranges a reservation checked under its mappings'
//!   lock (held while the range token lives) or within live linear memory, and on the
//!   staging buffers' host memory;
//! - `unsafe impl Send`/`Sync` for the types holding driver handles or host memory (each
//!   beside its type's definition);
//! - the public `unsafe fn`s, whose contracts are part of the API:
//!   [`Cuda::from_driver`], [`Reservation::set_unmap_wait`], [`Stream::from_raw`],
//!   [`Reservation::read_async`], [`copy_dtod`]; and [`Cuda::real`] and
//!   `Cuda::simulator`, which vouch for the system driver and the simulator; with
//!   feature `cudarc`, also `Reservation::cudarc_view_unchecked` (a view over a range
//!   with holes);
//! - with feature `cudarc`, the three `unsafe impl PushKernelArg` for `CudarcView` and
//!   `CudarcReadView`.
//!
//! # Errors
//!
//! Every failure is one [`Error`]: validation errors name the bad value, and a failed driver
//! call is [`Error::Driver`] with the entry point and a [`CudaError`] (the code, its `cuda.h`
//! name and description).
//!
//! # Tracing
//!
//! Every driver call that changes the address space (`cuMemAddressReserve`, `cuMemCreate`,
//! `cuMemMap`, `cuMemSetAccess`, `cuMemUnmap`, `cuMemRelease`, `cuMemAddressFree`,
//! `cuMemImportFromShareableHandle`, `cuMemAlloc_v2`, `cuMemFree_v2`) runs inside a
//! debug-level [`tracing`](https://docs.rs/tracing) span named after the entry point, with
//! `address` (hex), `size` and `handle` fields; the span's duration is the call's. Errors
//! while dropping are error-level events. With no subscriber a span costs one check of a
//! cached flag (no clock read, no formatting).
//!
//! ```
//! use cuda_vmm::{AccessFlags, Allocation, AllocationProps, Backend, Cuda, Error};
//! use cuda_vmm::{GranularityKind, Reservation, ReserveOptions, Stream};
//! # fn main() -> Result<(), Error> {
//! // `Cuda::new()` picks the real driver when present; this example always runs
//! // on the in-process simulator (what `Cuda::simulator()` does with feature "sim").
//! // SAFETY: the simulator implements the driver API.
//! let cuda = unsafe { Cuda::from_driver(cuda_vmm_sim::driver(), Backend::Simulator)? };
//! let device = cuda.device(0)?;
//! let props = AllocationProps::device(&device);
//! let g = device.granularity(&props, GranularityKind::Minimum)?;
//!
//! // Reserve room for four chunks, back the first two, make them read-write
//! // with one set-access call over both mappings.
//! let reservation = Reservation::new(&device, 4 * g, ReserveOptions::default())?;
//! let a = Allocation::new(&device, g, &props)?;
//! let b = Allocation::new(&device, g, &props)?;
//! let _ma = reservation.map(0, &a, 0, g)?;
//! let _mb = reservation.map(g, &b, 0, g)?;
//! reservation.set_access(0, 2 * g, &[(&device, AccessFlags::ReadWrite)])?;
//!
//! // Write across the chunk boundary and read it back.
//! reservation.write(g - 2, b"vmm!")?;
//! let mut out = [0u8; 4];
//! reservation.read(g - 2, &mut out)?;
//! assert_eq!(&out, b"vmm!");
//!
//! // Validation happens before the driver is called.
//! assert_eq!(
//!     reservation.map(g, &a, 0, g).unwrap_err(),
//!     Error::Overlap { offset: g, size: g, existing_offset: g, existing_size: g }
//! );
//! assert!(matches!(reservation.map(4 * g, &a, 0, g), Err(Error::OutOfBounds { .. })));
//!
//! // Work on a stream: queued, recorded, and waited for before anything is unmapped.
//! let stream = Stream::new(&device)?;
//! reservation.fill_async(&stream, 0, 64, 7)?;
//! reservation.record_use(&stream)?; // e.g. after launching a kernel on `stream`
//! drop(_mb); // waits for the fill (and the device's other work) first
//! reservation.read(0, &mut out)?; // ordered after the recorded use
//! assert_eq!(out, [7; 4]);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
#![deny(unsafe_code)]

mod access;
mod allocation;
mod capabilities;
mod context;
mod copy_engine;
#[cfg(feature = "cudarc")]
mod cudarc_interop;
mod device;
mod driver;
mod error;
mod fd_passing;
pub mod hooks;
mod host_numa;
mod interop;
mod linear;
mod mapped;
mod mapping;
mod ordering;
mod props;
pub mod raw;
pub mod release;
mod reservation;
mod reservation_copies;
mod shareable_handles;
pub mod staging;
mod stream;
mod trace;
mod validate;
mod version;

pub use access::AccessFlags;
pub use allocation::Allocation;
pub use capabilities::Capabilities;
pub use copy_engine::copy_dtod;
#[cfg(feature = "cudarc")]
pub use cudarc_interop::{CudarcReadView, CudarcView};
pub use device::{Device, GranularityKind, MemoryInfo};
pub use driver::{Backend, Cuda, BACKEND_ENV};
pub use error::{CudaError, Error, Result};
pub use fd_passing::{
    receive_allocations, receive_exported, send_allocations, send_exported, ExportedAllocation,
    MAX_PER_MESSAGE, MAX_PER_PART,
};
pub use linear::{LinearAllocation, LinearFreeError};
pub use mapping::Mapping;
pub use ordering::UnmapWait;
pub use props::{AllocationProps, HandleTypes, Location};
pub use reservation::{Reservation, ReserveOptions};
pub use shareable_handles::FabricHandle;
pub use stream::{Event, Stream};
pub use version::DriverVersion;

/// The raw FFI crate, for escape hatches.
pub use cuda_vmm_sys as sys;
