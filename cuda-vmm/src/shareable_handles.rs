//! Sharing allocations between processes: POSIX file descriptors and fabric handles.
//!
//! Ownership of file descriptors follows the driver documentation:
//! - export (`cuMemExportToShareableHandle`) creates a new descriptor that the
//!   caller owns and must close; it is returned as an [`OwnedFd`], which does.
//! - import (`cuMemImportFromShareableHandle`) does not take ownership of the
//!   descriptor: the caller keeps it and closes it (hence a [`BorrowedFd`]).
//!   The imported allocation holds its own reference to the memory.

use std::fmt;
use std::os::fd::{BorrowedFd, OwnedFd};

use crate::allocation::Allocation;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::props::{AllocationProps, HandleTypes, Location};
use crate::raw;
use crate::validate::check_multiple;

/// An opaque 64-byte fabric handle (`CUmemFabricHandle`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FabricHandle(pub [u8; 64]);

impl FabricHandle {
    /// The handle's bytes, e.g. to send to another process.
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }

    /// A handle received as bytes.
    pub fn from_bytes(bytes: [u8; 64]) -> FabricHandle {
        FabricHandle(bytes)
    }
}

impl fmt::Debug for FabricHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FabricHandle(")?;
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "..)")
    }
}

impl Allocation {
    /// Exports the allocation as a new POSIX file descriptor, which the caller owns.
    ///
    /// The allocation must have been created with [`HandleTypes::POSIX_FD`].
    pub fn export_posix_fd(&self) -> Result<OwnedFd> {
        self.require_handle_type(HandleTypes::POSIX_FD, "HandleTypes::POSIX_FD")?;
        let device = self.device();
        crate::raw::require!(device.cuda().api(), cuMemExportToShareableHandle);
        let bound = device.bind()?;
        self.handle().export_posix_fd(device.cuda().api(), &bound)
    }

    /// Imports an allocation of `size` bytes, created with `props`, from a
    /// POSIX file descriptor exported by [`Allocation::export_posix_fd`] (here
    /// or in another process).
    ///
    /// The driver's descriptors do not carry the size (`fstat` reports 0 on an
    /// H200), so the exporter must send it, with the properties, beside the
    /// descriptor: [`send_allocations`](crate::send_allocations) does, and
    /// [`ExportedAllocation::import`](crate::ExportedAllocation::import) is the
    /// way to import without giving them by hand. `size` must be nonzero and a
    /// multiple of the granularity of `props`; `props` must request
    /// [`HandleTypes::POSIX_FD`]. Its location may name the exporter's device
    /// ordinal: the memory is imported through `device`. The caller keeps
    /// ownership of `fd`.
    pub fn import_posix_fd(
        device: &Device,
        fd: BorrowedFd<'_>,
        size: usize,
        props: &AllocationProps,
    ) -> Result<Allocation> {
        if !device.features()?.posix_fd {
            return Err(Error::Unsupported {
                feature: "POSIX file descriptor handles",
                device: device.ordinal(),
            });
        }
        if !props
            .requested_handle_types()
            .contains(HandleTypes::POSIX_FD)
        {
            return Err(Error::invalid(format!(
                "imported properties request handle types {:?}, without HandleTypes::POSIX_FD: \
                 the allocation cannot have been exported as a file descriptor",
                props.requested_handle_types()
            )));
        }
        let unknown = props.requested_handle_types().bits() & !HandleTypes::ALL.bits();
        if unknown != 0 {
            return Err(Error::invalid(format!(
                "imported handle types {:?} contain unknown bits {unknown:#x}",
                props.requested_handle_types()
            )));
        }
        // The exporter's properties, seen from this process: on `device`.
        let local = relocated(props, Location::Device(device.ordinal()));
        let granularity = device.min_granularity(&local)?;
        if size == 0 {
            return Err(Error::invalid("imported size 0: the size must be nonzero"));
        }
        check_multiple("imported size", size as u64, granularity)?;
        Self::import(device, size, |api, bound| {
            raw::AllocationHandle::import_posix_fd(api, bound, fd, size)
        })
    }

    /// Exports the allocation as a fabric handle.
    ///
    /// The allocation must have been created with [`HandleTypes::FABRIC`]
    /// (which [`Allocation::new`] refuses on devices without fabric support).
    pub fn export_fabric(&self) -> Result<FabricHandle> {
        let device = self.device();
        if !device.features()?.fabric {
            return Err(Error::Unsupported {
                feature: "fabric handles",
                device: device.ordinal(),
            });
        }
        self.require_handle_type(HandleTypes::FABRIC, "HandleTypes::FABRIC")?;
        crate::raw::require!(device.cuda().api(), cuMemExportToShareableHandle);
        let bound = device.bind()?;
        let handle = self.handle().export_fabric(device.cuda().api(), &bound)?;
        Ok(FabricHandle(handle.data))
    }

    /// Imports an allocation of `size` bytes from a fabric handle (multi-node
    /// NVLink through IMEX). The handle does not carry the size, so the
    /// exporter sends it along, as with POSIX fds. Devices without fabric
    /// support answer [`Error::Unsupported`] before the driver is called.
    pub fn import_fabric(
        device: &Device,
        handle: &FabricHandle,
        size: usize,
    ) -> Result<Allocation> {
        if !device.features()?.fabric {
            return Err(Error::Unsupported {
                feature: "fabric handles",
                device: device.ordinal(),
            });
        }
        Self::import(device, size, |api, bound| {
            raw::AllocationHandle::import_fabric(api, bound, handle, size)
        })
    }

    /// Imports (`import`, in the bound context), reads the properties back, and checks
    /// `size` against their granularity.
    fn import(
        device: &Device,
        size: usize,
        import: impl FnOnce(raw::Api, &raw::Bound) -> Result<raw::AllocationHandle>,
    ) -> Result<Allocation> {
        if size == 0 {
            return Err(Error::invalid("imported size 0: the size must be nonzero"));
        }
        crate::raw::require!(device.cuda().api(), cuMemImportFromShareableHandle);
        let bound = device.bind()?;
        let handle = import(device.cuda().api(), &bound)?;
        // From here the handle is owned: wrap it first so that errors release it.
        let allocation = Allocation::from_parts(
            device.clone(),
            handle,
            size,
            1,
            crate::props::AllocationProps::device(device),
        );
        let props = allocation.properties()?;
        let granularity = device.min_granularity(&props)?;
        check_multiple("imported size", size as u64, granularity)?;
        Ok(allocation.with_props(props, granularity))
    }

    fn require_handle_type(&self, t: HandleTypes, name: &str) -> Result<()> {
        if self.props().requested_handle_types().contains(t) {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "allocation {:#x} was created without {name} (handle types {:?})",
                self.raw_handle(),
                self.props().requested_handle_types()
            )))
        }
    }
}

/// `props` with its location replaced by `location`.
pub(crate) fn relocated(props: &AllocationProps, location: Location) -> AllocationProps {
    AllocationProps::new(location)
        .handle_types(props.requested_handle_types())
        .compression(props.is_compressed())
        .rdma_capable(props.is_rdma_capable())
        .usage(props.usage_flags())
}
