//! Physical allocations: memfd-backed handles, their properties, sharing.

use std::os::fd::{AsFd, BorrowedFd, IntoRawFd, RawFd};
use std::sync::Arc;

use cuda_vmm_sys::{
    CUmemAllocationCompType, CUmemAllocationHandleType as H, CUmemAllocationProp,
    CUmemAllocationType, CUmemLocationType as L,
};

use crate::model::answers;
use crate::model::state::{Allocation, DriverResult, Home, Memory, Prop, Sim};
use crate::os;
use crate::os::shareable;

const POSIX_FD: u32 = H::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR.0;
const WIN32: u32 = H::CU_MEM_HANDLE_TYPE_WIN32.0 | H::CU_MEM_HANDLE_TYPE_WIN32_KMT.0;
const FABRIC: u32 = H::CU_MEM_HANDLE_TYPE_FABRIC.0;

/// The one host NUMA node of the simulated host (every device reports it as its
/// `CU_DEVICE_ATTRIBUTE_HOST_NUMA_ID`).
pub(crate) const HOST_NUMA_NODE: i32 = 0;

impl Sim {
    /// Checks the allocation and location types of `prop` (any location type the header
    /// defines; [`check_location`](Self::check_location) refuses the ones `cuMemCreate`
    /// does not take).
    pub fn check_kind(&self, prop: &CUmemAllocationProp) -> DriverResult<()> {
        if prop.type_ != CUmemAllocationType::CU_MEM_ALLOCATION_TYPE_PINNED {
            return Err(answers::PROP_BAD_TYPE);
        }
        match prop.location.type_ {
            L::CU_MEM_LOCATION_TYPE_DEVICE
            | L::CU_MEM_LOCATION_TYPE_HOST
            | L::CU_MEM_LOCATION_TYPE_HOST_NUMA
            | L::CU_MEM_LOCATION_TYPE_HOST_NUMA_CURRENT => Ok(()),
            _ => Err(answers::PROP_BAD_LOCATION_TYPE),
        }
    }

    /// Checks the type and location of `prop` for `cuMemCreate`; returns where the
    /// memory lives.
    pub fn check_location(&self, prop: &CUmemAllocationProp) -> DriverResult<Home> {
        self.check_kind(prop)?;
        match prop.location.type_ {
            L::CU_MEM_LOCATION_TYPE_HOST => Ok(Home::Host),
            L::CU_MEM_LOCATION_TYPE_HOST_NUMA if prop.location.id == HOST_NUMA_NODE => {
                Ok(Home::HostNuma(prop.location.id))
            }
            L::CU_MEM_LOCATION_TYPE_HOST_NUMA => Err(answers::PROP_BAD_HOST_NUMA_ID),
            L::CU_MEM_LOCATION_TYPE_HOST_NUMA_CURRENT => Err(answers::PROP_HOST_NUMA_CURRENT),
            _ => self
                .device(prop.location.id.into())
                .map(Home::Device)
                .ok_or(answers::PROP_BAD_LOCATION_ID),
        }
    }

    /// Validates `cuMemCreate` properties.
    fn check_prop(&self, prop: &CUmemAllocationProp) -> DriverResult<Prop> {
        let home = self.check_location(prop)?;
        let types = prop.requestedHandleTypes.0;
        if home == Home::Host && types != 0 {
            return Err(answers::PROP_HOST_HANDLE_TYPES);
        }
        if types & !(POSIX_FD | WIN32 | FABRIC) != 0 {
            if let Some(code) = answers::PROP_UNKNOWN_HANDLE_TYPE {
                return Err(code);
            }
        }
        if types & FABRIC != 0 {
            return Err(answers::PROP_FABRIC_UNSUPPORTED);
        }
        if types & WIN32 != 0 {
            return Err(answers::PROP_WIN32_UNSUPPORTED);
        }
        if matches!(home, Home::HostNuma(_)) && types & POSIX_FD != 0 {
            if let Some(code) = answers::PROP_HOST_NUMA_POSIX_FD {
                return Err(code);
            }
        }
        if prop.allocFlags.usage != 0 {
            return Err(answers::PROP_USAGE_UNSUPPORTED);
        }
        Ok(Prop {
            home,
            handle_types: types,
            rdma: prop.allocFlags.gpuDirectRDMACapable,
        })
    }

    /// `cuMemCreate`.
    pub fn create(
        &mut self,
        size: u64,
        prop: &CUmemAllocationProp,
        flags: u64,
    ) -> DriverResult<u64> {
        self.check_flags_size(
            flags,
            size,
            answers::CREATE_ZERO_SIZE,
            size,
            answers::CREATE_MISALIGNED_SIZE,
        )?;
        let prop = self.check_prop(prop)?;
        // Host memory counts against no device: only the host's memfd can run out.
        let device = match prop.home {
            Home::Device(d) => Some(d),
            Home::Host | Home::HostNuma(_) => None,
        };
        if device.is_some_and(|d| size > self.free_bytes(d)) {
            return Err(answers::OUT_OF_MEMORY);
        }
        let fd = os::memfd(size).map_err(|_| answers::OUT_OF_MEMORY)?;
        let identity = os::file_identity(fd.as_fd());
        let handle = self.new_handle();
        if let Some(d) = device {
            self.devices[d].used += size;
        }
        self.allocations.insert(
            handle,
            Allocation {
                memory: Arc::new(Memory { fd, size }),
                prop,
                handle_refs: 1,
                pieces: 0,
                accounted: device.is_some(),
                identity,
            },
        );
        Ok(handle)
    }

    /// The allocation behind a valid (not fully released) handle.
    pub fn live(&mut self, handle: u64) -> DriverResult<&mut Allocation> {
        self.allocations
            .get_mut(&handle)
            .filter(|a| a.handle_refs > 0)
            .ok_or(answers::UNKNOWN_HANDLE)
    }

    /// `cuMemRelease`.
    pub fn release(&mut self, handle: u64) -> DriverResult<()> {
        self.live(handle)?.handle_refs -= 1;
        self.drop_if_unused(handle);
        Ok(())
    }

    /// Frees an allocation once no handle and no mapping references it.
    pub fn drop_if_unused(&mut self, handle: u64) {
        let unused = self
            .allocations
            .get(&handle)
            .is_some_and(|a| a.handle_refs == 0 && a.pieces == 0);
        if !unused {
            return;
        }
        if let Some(a) = self.allocations.remove(&handle) {
            if let (true, Home::Device(d)) = (a.accounted, a.prop.home) {
                let used = &mut self.devices[d].used;
                *used = used.saturating_sub(a.memory.size);
            }
        }
    }

    /// `cuMemGetAllocationPropertiesFromHandle`.
    pub fn properties(&mut self, handle: u64) -> DriverResult<CUmemAllocationProp> {
        let a = self.live(handle)?;
        let mut prop = CUmemAllocationProp::default();
        prop.type_ = CUmemAllocationType::CU_MEM_ALLOCATION_TYPE_PINNED;
        prop.requestedHandleTypes = H(a.prop.handle_types);
        (prop.location.type_, prop.location.id) = match a.prop.home {
            Home::Device(d) => (
                L::CU_MEM_LOCATION_TYPE_DEVICE,
                i32::try_from(d).unwrap_or(0),
            ),
            // The driver reports HOST memory as HOST_NUMA node 0 (H200: `properties_of_host`).
            Home::Host => (
                L::CU_MEM_LOCATION_TYPE_HOST_NUMA,
                answers::PROPERTIES_HOST_REPORTED_NUMA_ID,
            ),
            Home::HostNuma(node) => (L::CU_MEM_LOCATION_TYPE_HOST_NUMA, node),
        };
        // The simulated devices have no compression: the hint is never granted.
        prop.allocFlags.compressionType =
            CUmemAllocationCompType::CU_MEM_ALLOCATION_COMP_NONE.0 as u8;
        prop.allocFlags.gpuDirectRDMACapable = a.prop.rdma;
        Ok(prop)
    }

    /// `cuMemRetainAllocationHandle`: the handle mapped at `addr`, with one more reference.
    pub fn retain_at(&mut self, addr: u64) -> DriverResult<u64> {
        let (_, piece) = self.piece_at(addr).ok_or(answers::RETAIN_NOT_MAPPED)?;
        let a = self
            .allocations
            .get_mut(&piece.handle)
            .ok_or(answers::RETAIN_NOT_MAPPED)?;
        a.handle_refs += 1;
        Ok(piece.handle)
    }

    /// `cuMemExportToShareableHandle`: a new fd the caller owns. Like the
    /// driver's, it reports no size to `fstat` (see [`shareable`]).
    pub fn export(&mut self, handle: u64, kind: H, flags: u64) -> DriverResult<RawFd> {
        if flags != 0 {
            return Err(answers::BAD_FLAGS);
        }
        let a = self.live(handle)?;
        match kind.0 {
            POSIX_FD if a.prop.handle_types & POSIX_FD != 0 => {
                shareable::wrap(a.memory.fd.as_fd(), a.memory.size)
                    .map(IntoRawFd::into_raw_fd)
                    .map_err(|_| answers::OS_FAILURE)
            }
            POSIX_FD => Err(answers::EXPORT_NOT_REQUESTED),
            FABRIC => Err(answers::FABRIC_UNSUPPORTED),
            _ => Err(answers::SHARE_BAD_TYPE),
        }
    }

    /// `cuMemImportFromShareableHandle` of a POSIX fd; `device` is the current
    /// context's, used when the memory was not created in this process.
    pub fn import(&mut self, fd: usize, kind: H, device: usize) -> DriverResult<u64> {
        match kind.0 {
            POSIX_FD => {}
            FABRIC => return Err(answers::FABRIC_UNSUPPORTED),
            _ => return Err(answers::SHARE_BAD_TYPE),
        }
        let fd = RawFd::try_from(fd).map_err(|_| answers::IMPORT_BAD_FD)?;
        // An open descriptor (fstat succeeds) before it is borrowed.
        if !os::is_open_fd(fd) {
            return Err(answers::IMPORT_BAD_FD);
        }
        // SAFETY: fstat just succeeded on `fd`, so it is open; the caller keeps
        // it open for the duration of this call (it still owns it).
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let (own, size) = shareable::unwrap(borrowed).map_err(|_| answers::IMPORT_BAD_FD)?;
        if size == 0
            || !self.aligned(size)
            || os::regular_file_size(own.as_fd()).ok() != Some(size)
            || !os::is_simulator_memfd(own.as_fd())
        {
            return Err(answers::IMPORT_BAD_FD);
        }
        let identity = os::file_identity(own.as_fd());
        let prop = self
            .allocations
            .values()
            .find(|a| identity.is_some() && a.identity == identity)
            .map_or(
                Prop {
                    home: Home::Device(device),
                    handle_types: answers::IMPORTED_HANDLE_TYPES,
                    rdma: 0,
                },
                |a| Prop {
                    handle_types: answers::IMPORTED_HANDLE_TYPES,
                    ..a.prop
                },
            );
        let handle = self.new_handle();
        self.allocations.insert(
            handle,
            Allocation {
                memory: Arc::new(Memory { fd: own, size }),
                prop,
                handle_refs: 1,
                pieces: 0,
                accounted: false,
                identity,
            },
        );
        Ok(handle)
    }
}
