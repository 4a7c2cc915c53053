//! Sharing allocations between processes: POSIX file descriptors and fabric handles.
//!
//! Ownership of file descriptors follows the driver documentation:
//! - export (`cuMemExportToShareableHandle`) creates a new descriptor that the
//!   caller owns and must close; it is returned as an [`OwnedFd`], which does.
//! - import (`cuMemImportFromShareableHandle`) does not take ownership of the
//!   descriptor: the caller keeps it and closes it (hence a [`BorrowedFd`]).
//!   The imported allocation holds its own reference to the memory.

use std::fmt;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use cuda_vmm_sys::{
    entry, CUmemAllocationHandleType, CUmemFabricHandle, CUmemGenericAllocationHandle,
};

use crate::allocation::{query_props, Allocation};
use crate::device::Device;
use crate::error::{check, Error, Result};
use crate::props::{AllocationProps, HandleTypes, Location};
use crate::reservation::check_multiple;
use crate::trace::Hex;
use tracing::field::{display, Empty};

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
        let cuda = device.cuda();
        let f = cuda.entry(entry!(cuda.table(), cuMemExportToShareableHandle))?;
        let _bound = device.bind()?;
        let mut fd = MaybeUninit::<std::ffi::c_int>::uninit();
        // SAFETY: for POSIX_FILE_DESCRIPTOR the driver writes one int to the
        // out-pointer; the handle is alive and exportable as that type.
        check("cuMemExportToShareableHandle", unsafe {
            f(
                fd.as_mut_ptr().cast(),
                self.raw_handle(),
                CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
                0,
            )
        })?;
        // SAFETY: written by the driver on success.
        let fd = unsafe { fd.assume_init() };
        if fd < 0 {
            return Err(Error::invalid(format!(
                "the driver exported an invalid file descriptor {fd}"
            )));
        }
        // SAFETY: the driver created this descriptor for us; nobody else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
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
        let raw_fd = fd.as_raw_fd();
        // The driver takes the descriptor itself, passed in the pointer argument.
        let os_handle = raw_fd as isize as *mut std::ffi::c_void;
        Self::import(
            device,
            os_handle,
            CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
            size,
        )
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
        let cuda = device.cuda();
        let f = cuda.entry(entry!(cuda.table(), cuMemExportToShareableHandle))?;
        let _bound = device.bind()?;
        let mut handle = MaybeUninit::<CUmemFabricHandle>::uninit();
        // SAFETY: for FABRIC the driver writes one CUmemFabricHandle to the
        // out-pointer; the handle is alive and exportable as that type.
        check("cuMemExportToShareableHandle", unsafe {
            f(
                handle.as_mut_ptr().cast(),
                self.raw_handle(),
                CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_FABRIC,
                0,
            )
        })?;
        // SAFETY: written by the driver on success.
        Ok(FabricHandle(unsafe { handle.assume_init() }.data))
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
        let mut raw = CUmemFabricHandle { data: handle.0 };
        Self::import(
            device,
            (&mut raw as *mut CUmemFabricHandle).cast(),
            CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_FABRIC,
            size,
        )
    }

    /// Imports, reads the properties back, and checks `size` against their granularity.
    fn import(
        device: &Device,
        os_handle: *mut std::ffi::c_void,
        kind: CUmemAllocationHandleType,
        size: usize,
    ) -> Result<Allocation> {
        if size == 0 {
            return Err(Error::invalid("imported size 0: the size must be nonzero"));
        }
        let cuda = device.cuda();
        let f = cuda.entry(entry!(cuda.table(), cuMemImportFromShareableHandle))?;
        let _bound = device.bind()?;
        let mut handle = MaybeUninit::<CUmemGenericAllocationHandle>::uninit();
        let span =
            tracing::debug_span!("cuMemImportFromShareableHandle", size, handle = Empty).entered();
        // SAFETY: `handle` is a valid out-pointer; `os_handle` is a descriptor
        // value (POSIX) or points to a live CUmemFabricHandle (fabric), matching `kind`.
        check("cuMemImportFromShareableHandle", unsafe {
            f(handle.as_mut_ptr(), os_handle, kind)
        })?;
        // SAFETY: written by the driver on success.
        let handle = unsafe { handle.assume_init() };
        span.record("handle", display(Hex(handle)));
        drop(span);
        // From here the handle is owned: wrap it first so that errors release it.
        let allocation = Allocation::from_parts(
            device.clone(),
            handle,
            size,
            1,
            crate::props::AllocationProps::device(device),
        );
        let props = query_props(device, handle)?;
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
