//! Allocation properties: where memory lives, how it may be shared, extra flags.

use std::fmt;

use cuda_vmm_sys::{
    CUmemAllocationCompType, CUmemAllocationHandleType, CUmemAllocationProp,
    CUmemAllocationProp_st__bindgen_ty_1, CUmemAllocationType, CUmemLocation, CUmemLocationType,
};

use crate::device::Device;
use crate::driver::Cuda;
use crate::error::{Error, Result};

/// Where physical memory lives, or which location an access descriptor names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Location {
    /// Memory of the device with this ordinal.
    Device(usize),
    /// Host memory. The driver reports such allocations back as `HostNuma(0)`
    /// ([`Allocation::properties`](crate::Allocation::properties)).
    Host,
    /// Host memory on this NUMA node.
    HostNuma(u32),
    /// Host memory on the NUMA node of the calling thread. The driver answers its
    /// granularity but `cuMemCreate` refuses it
    /// ([`AllocationProps::validate_for_create`]).
    HostNumaCurrent,
}

impl Location {
    /// The driver's `CUmemLocation` (ordinals are validated before this is used).
    pub fn to_raw(self) -> CUmemLocation {
        let (type_, id) = match self {
            Location::Device(d) => (CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE, d as i32),
            Location::Host => (CUmemLocationType::CU_MEM_LOCATION_TYPE_HOST, 0),
            Location::HostNuma(n) => (CUmemLocationType::CU_MEM_LOCATION_TYPE_HOST_NUMA, n as i32),
            Location::HostNumaCurrent => {
                (CUmemLocationType::CU_MEM_LOCATION_TYPE_HOST_NUMA_CURRENT, 0)
            }
        };
        CUmemLocation { type_, id }
    }

    /// Decodes a `CUmemLocation` reported by the driver.
    pub fn from_raw(raw: CUmemLocation) -> Result<Location> {
        let t = raw.type_;
        let bad = || {
            Error::invalid(format!(
                "the driver reported an unknown memory location (type {}, id {})",
                t.0, raw.id
            ))
        };
        match t {
            CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE => usize::try_from(raw.id)
                .map(Location::Device)
                .map_err(|_| bad()),
            CUmemLocationType::CU_MEM_LOCATION_TYPE_HOST => Ok(Location::Host),
            CUmemLocationType::CU_MEM_LOCATION_TYPE_HOST_NUMA => u32::try_from(raw.id)
                .map(Location::HostNuma)
                .map_err(|_| bad()),
            CUmemLocationType::CU_MEM_LOCATION_TYPE_HOST_NUMA_CURRENT => {
                Ok(Location::HostNumaCurrent)
            }
            _ => Err(bad()),
        }
    }

    /// Whether this is host memory ([`Host`](Location::Host),
    /// [`HostNuma`](Location::HostNuma) or [`HostNumaCurrent`](Location::HostNumaCurrent)).
    #[inline]
    pub fn is_host(self) -> bool {
        !matches!(self, Location::Device(_))
    }

    /// Checks a device ordinal against the driver's device count and a NUMA id
    /// against the `int` the driver stores it in.
    pub(crate) fn validate(self, cuda: &Cuda) -> Result<()> {
        match self {
            Location::Device(d) => {
                let count = cuda.device_count()?;
                if d >= count {
                    return Err(Error::invalid(format!(
                        "location device ordinal {d} is out of range: the driver reports {count} device(s)"
                    )));
                }
            }
            Location::HostNuma(n) if i32::try_from(n).is_err() => {
                return Err(Error::invalid(format!(
                    "NUMA node id {n} does not fit an int"
                )));
            }
            _ => {}
        }
        Ok(())
    }
}

/// A set of shareable handle types an allocation may be exported as.
///
/// A [`bitflags`] set over the driver's `CUmemAllocationHandleType` bits: `|`, `&`, `-`,
/// `!`, [`contains`](Self::contains), [`insert`](Self::insert), [`iter_names`](Self::iter_names)...
/// Bits this crate does not know are kept ([`from_bits_retain`](Self::from_bits_retain)) and
/// refused by [`AllocationProps::validate`]. `Debug` prints the names joined by ` | `, unknown
/// bits in hex, and `NONE` for the empty set.
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct HandleTypes(u32);

bitflags::bitflags! {
    impl HandleTypes: u32 {
        /// POSIX file descriptor (Linux).
        const POSIX_FD = 1;
        /// Win32 NT handle.
        const WIN32 = 2;
        /// Win32 KMT handle.
        const WIN32_KMT = 4;
        /// Fabric handle (NVLink multi-node).
        const FABRIC = 8;
    }
}

impl HandleTypes {
    /// No export (the empty set, [`HandleTypes::empty`]).
    pub const NONE: HandleTypes = HandleTypes::empty();
    /// Every bit this crate knows ([`HandleTypes::all`]).
    pub const ALL: HandleTypes = HandleTypes::all();

    /// The driver's bit set.
    #[inline]
    pub fn to_raw(self) -> CUmemAllocationHandleType {
        CUmemAllocationHandleType(self.bits())
    }
}

impl fmt::Debug for HandleTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("NONE");
        }
        bitflags::parser::to_writer(self, f)
    }
}

/// Known bits of [`AllocationProps::usage`].
const KNOWN_USAGE: u16 = (cuda_vmm_sys::CU_MEM_CREATE_USAGE_TILE_POOL
    | cuda_vmm_sys::CU_MEM_CREATE_USAGE_HW_DECOMPRESS) as u16;

/// Properties of a physical allocation (`CUmemAllocationProp`), built fluently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocationProps {
    location: Location,
    handle_types: HandleTypes,
    compression: bool,
    rdma_capable: bool,
    usage: u16,
}

/// What the granularity of a set of properties depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PropsKey(Location, HandleTypes, bool, bool, u16);

impl AllocationProps {
    /// The properties a peer sent for an exported allocation, checked: device memory, and
    /// known handle types that include `POSIX_FD`. The error says which field is wrong.
    /// Used by both wire formats that carry exported allocations (`cuda_vmm`'s fd passing
    /// and `cuda_vmm_alloc`'s shared buffers).
    pub fn from_exported_fields(
        location_type: u32,
        location_id: i32,
        handle_types: u32,
        compression: bool,
        rdma: bool,
        usage: u16,
    ) -> std::result::Result<AllocationProps, String> {
        let location = Location::from_raw(CUmemLocation {
            type_: CUmemLocationType(location_type),
            id: location_id,
        })
        .map_err(|e| e.to_string())?;
        if !matches!(location, Location::Device(_)) {
            return Err(format!("location {location:?} is not device memory"));
        }
        if handle_types & !HandleTypes::ALL.bits() != 0
            || !HandleTypes::from_bits_retain(handle_types).contains(HandleTypes::POSIX_FD)
        {
            return Err(format!(
                "handle types {handle_types:#x} are not known ones including POSIX_FD"
            ));
        }
        Ok(AllocationProps::new(location)
            .handle_types(HandleTypes::from_bits_retain(handle_types))
            .compression(compression)
            .rdma_capable(rdma)
            .usage(usage))
    }
    /// Pinned memory on `device`, not exportable.
    pub fn device(device: &Device) -> Self {
        Self::new(Location::Device(device.ordinal()))
    }

    /// Pinned host memory on the host NUMA node closest to `device`
    /// ([`Device::host_numa_id`]), not exportable. Fails with
    /// [`Error::Unsupported`] when the device reports no host NUMA node.
    pub fn host_numa_near(device: &Device) -> Result<Self> {
        match device.host_numa_id()? {
            Some(node) => Ok(Self::new(Location::HostNuma(node))),
            None => Err(Error::Unsupported {
                feature: "a host NUMA node (CU_DEVICE_ATTRIBUTE_HOST_NUMA_ID)",
                device: device.ordinal(),
            }),
        }
    }

    /// Pinned memory at `location`, not exportable.
    pub fn new(location: Location) -> Self {
        Self {
            location,
            handle_types: HandleTypes::NONE,
            compression: false,
            rdma_capable: false,
            usage: 0,
        }
    }

    /// The same properties for memory at `location` (e.g. another device's).
    pub fn at(mut self, location: Location) -> Self {
        self.location = location;
        self
    }

    /// Requests the handle types the allocation may be exported as.
    pub fn handle_types(mut self, t: HandleTypes) -> Self {
        self.handle_types = t;
        self
    }

    /// Requests generic compression.
    pub fn compression(mut self, on: bool) -> Self {
        self.compression = on;
        self
    }

    /// Requests GPUDirect RDMA capability.
    pub fn rdma_capable(mut self, on: bool) -> Self {
        self.rdma_capable = on;
        self
    }

    /// Sets the usage bits (`CU_MEM_CREATE_USAGE_*`).
    pub fn usage(mut self, flags: u16) -> Self {
        self.usage = flags;
        self
    }

    /// Where the memory lives.
    pub fn location(&self) -> Location {
        self.location
    }

    /// The handle types requested.
    pub fn requested_handle_types(&self) -> HandleTypes {
        self.handle_types
    }

    /// Whether compression is requested.
    pub fn is_compressed(&self) -> bool {
        self.compression
    }

    /// Whether RDMA capability is requested.
    pub fn is_rdma_capable(&self) -> bool {
        self.rdma_capable
    }

    /// The usage bits.
    pub fn usage_flags(&self) -> u16 {
        self.usage
    }

    pub(crate) fn key(&self) -> PropsKey {
        PropsKey(
            self.location,
            self.handle_types,
            self.compression,
            self.rdma_capable,
            self.usage,
        )
    }

    /// Checks what can be checked without a device: the location's ordinal, unknown
    /// handle-type bits, unknown usage bits, and [`Host`](Location::Host) with export
    /// handle types (host allocations are not IPC capable; `cuMemCreate` answers
    /// `CUDA_ERROR_INVALID_VALUE`).
    ///
    /// [`HostNumaCurrent`](Location::HostNumaCurrent) passes: the driver answers its
    /// granularity (recorded on an H200, driver 580); only `cuMemCreate` refuses it, which
    /// [`validate_for_create`](Self::validate_for_create) checks.
    pub fn validate(&self, cuda: &Cuda) -> Result<()> {
        self.location.validate(cuda)?;
        let unknown = self.handle_types.bits() & !HandleTypes::ALL.bits();
        if unknown != 0 {
            return Err(Error::invalid(format!(
                "handle types {:?} contain unknown bits {unknown:#x}",
                self.handle_types
            )));
        }
        if self.location == Location::Host && !self.handle_types.is_empty() {
            return Err(Error::invalid(format!(
                "location Host takes no export handle types, but {:?} are requested: host \
                 allocations are not IPC capable (cuMemCreate answers \
                 CUDA_ERROR_INVALID_VALUE)",
                self.handle_types
            )));
        }
        if self.usage & !KNOWN_USAGE != 0 {
            return Err(Error::invalid(format!(
                "usage flags {:#x} contain unknown bits {:#x}",
                self.usage,
                self.usage & !KNOWN_USAGE
            )));
        }
        Ok(())
    }

    /// [`validate`](Self::validate), and refuses what `cuMemCreate` refuses beyond it:
    /// [`HostNumaCurrent`](Location::HostNumaCurrent) (the driver answers
    /// `CUDA_ERROR_INVALID_VALUE`; recorded on an H200, driver 580).
    /// [`Allocation::new`](crate::Allocation::new) checks this before the driver is called.
    pub fn validate_for_create(&self, cuda: &Cuda) -> Result<()> {
        self.validate(cuda)?;
        if self.location == Location::HostNumaCurrent {
            return Err(Error::invalid(
                "location HostNumaCurrent (CU_MEM_LOCATION_TYPE_HOST_NUMA_CURRENT) is refused \
                 by cuMemCreate with CUDA_ERROR_INVALID_VALUE: name the node, e.g. \
                 AllocationProps::host_numa_near(&device)",
            ));
        }
        Ok(())
    }

    /// The driver's `CUmemAllocationProp` (pinned; no Win32 metadata).
    pub fn to_raw(&self) -> CUmemAllocationProp {
        CUmemAllocationProp {
            type_: CUmemAllocationType::CU_MEM_ALLOCATION_TYPE_PINNED,
            requestedHandleTypes: self.handle_types.to_raw(),
            location: self.location.to_raw(),
            win32HandleMetaData: std::ptr::null_mut(),
            allocFlags: CUmemAllocationProp_st__bindgen_ty_1 {
                compressionType: if self.compression {
                    CUmemAllocationCompType::CU_MEM_ALLOCATION_COMP_GENERIC.0 as u8
                } else {
                    CUmemAllocationCompType::CU_MEM_ALLOCATION_COMP_NONE.0 as u8
                },
                gpuDirectRDMACapable: u8::from(self.rdma_capable),
                usage: self.usage,
                reserved: [0; 4],
            },
        }
    }

    /// Decodes properties reported by the driver.
    pub fn from_raw(raw: &CUmemAllocationProp) -> Result<AllocationProps> {
        if raw.type_ != CUmemAllocationType::CU_MEM_ALLOCATION_TYPE_PINNED {
            return Err(Error::invalid(format!(
                "the driver reported allocation type {}, not pinned",
                raw.type_.0
            )));
        }
        Ok(AllocationProps {
            location: Location::from_raw(raw.location)?,
            handle_types: HandleTypes::from_bits_retain(raw.requestedHandleTypes.0),
            compression: raw.allocFlags.compressionType != 0,
            rdma_capable: raw.allocFlags.gpuDirectRDMACapable != 0,
            usage: raw.allocFlags.usage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::HandleTypes;

    /// The `Debug` text of the hand-written set this replaced, and its unknown bits kept.
    #[test]
    fn handle_types_debug_and_unknown_bits() {
        let cases = [
            (HandleTypes::NONE, "NONE"),
            (HandleTypes::POSIX_FD, "POSIX_FD"),
            (
                HandleTypes::POSIX_FD | HandleTypes::FABRIC,
                "POSIX_FD | FABRIC",
            ),
            (HandleTypes::ALL, "POSIX_FD | WIN32 | WIN32_KMT | FABRIC"),
            (HandleTypes::from_bits_retain(0x30), "0x30"),
            (HandleTypes::from_bits_retain(0x31), "POSIX_FD | 0x30"),
        ];
        for (t, text) in cases {
            assert_eq!(format!("{t:?}"), text);
        }
        let t = HandleTypes::from_bits_retain(0x31);
        assert_eq!(t.bits(), 0x31);
        assert_eq!(t.to_raw().0, 0x31);
        assert!(t.contains(HandleTypes::POSIX_FD));
        assert!(!t.contains(HandleTypes::POSIX_FD | HandleTypes::WIN32));
        assert!(HandleTypes::default().is_empty());
        assert_eq!(HandleTypes::ALL.bits(), 0xf);
        let mut u = HandleTypes::NONE;
        u |= HandleTypes::WIN32_KMT;
        assert_eq!(u, HandleTypes::WIN32_KMT);
    }
}
