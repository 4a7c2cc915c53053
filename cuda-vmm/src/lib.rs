//! Safe, validated RAII wrappers over the CUDA driver's virtual memory management API.
//!
//! - [`Cuda`]: a driver (the real one or the `sim` simulator) and its [`Device`]s.
//! - [`Reservation`]: a virtual address range (`cuMemAddressReserve`).
//! - [`Allocation`]: physical memory (`cuMemCreate`), shareable via POSIX fds or fabric handles.
//! - [`Mapping`]: an allocation mapped into a reservation (`cuMemMap`), unmapped on drop.
//! - [`LinearAllocation`]: classic `cuMemAlloc` memory, for comparison.
//!
//! Every argument is validated before the driver sees it, so safe code cannot
//! pass the driver a released or foreign handle, unmap something that is not
//! exactly a live mapping, map over a live mapping or past a reservation's end.
//! Ownership is reference counted: a mapping keeps its reservation and
//! allocation alive, so they are freed only after every mapping is gone.
//! Every operation makes the device's primary context (the one the CUDA runtime
//! uses) current on the calling thread first.
//!
//! ```
//! use cuda_vmm::{AccessFlags, Allocation, AllocationProps, Backend, Cuda, Error};
//! use cuda_vmm::{GranularityKind, Reservation, ReserveOptions};
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
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod access;
mod allocation;
mod capabilities;
mod context;
mod copy;
mod device;
mod driver;
mod error;
mod linear;
mod mapping;
mod ordering;
mod props;
mod reservation;
mod sharing;
mod spans;
mod stream;

pub use access::AccessFlags;
pub use allocation::Allocation;
pub use capabilities::Capabilities;
pub use copy::copy_dtod;
pub use device::{Device, GranularityKind, MemoryInfo};
pub use driver::{Backend, Cuda, DriverVersion, BACKEND_ENV};
pub use error::{Error, Result};
pub use linear::LinearAllocation;
pub use mapping::Mapping;
pub use ordering::UnmapWait;
pub use props::{AllocationProps, HandleTypes, Location};
pub use reservation::{Reservation, ReserveOptions};
pub use sharing::FabricHandle;
pub use stream::{Event, Stream};

/// The raw FFI crate, for escape hatches.
pub use cuda_vmm_sys as sys;
