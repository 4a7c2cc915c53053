//! Access rights and the descriptor lists `cuMemSetAccess` takes.

use std::fmt;

use cuda_vmm_sys::{CUmemAccessDesc, CUmemAccess_flags, CUmemLocation, CUmemLocationType};

use crate::device::Device;
use crate::error::{Error, Result};

/// Access rights of a device to a mapped range, ordered `None < Read < ReadWrite`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AccessFlags {
    /// No access.
    None,
    /// Read only.
    Read,
    /// Read and write.
    ReadWrite,
}

impl AccessFlags {
    /// The driver's `CUmemAccess_flags`.
    #[inline]
    pub fn to_raw(self) -> CUmemAccess_flags {
        match self {
            AccessFlags::None => CUmemAccess_flags::CU_MEM_ACCESS_FLAGS_PROT_NONE,
            AccessFlags::Read => CUmemAccess_flags::CU_MEM_ACCESS_FLAGS_PROT_READ,
            AccessFlags::ReadWrite => CUmemAccess_flags::CU_MEM_ACCESS_FLAGS_PROT_READWRITE,
        }
    }
}

impl fmt::Display for AccessFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccessFlags::None => "inaccessible",
            AccessFlags::Read => "readable",
            AccessFlags::ReadWrite => "readable and writable",
        })
    }
}

impl TryFrom<u64> for AccessFlags {
    type Error = Error;
    /// Decodes the flags word `cuMemGetAccess` reports; unknown values are an error.
    fn try_from(raw: u64) -> Result<AccessFlags> {
        match raw {
            0 => Ok(AccessFlags::None),
            1 => Ok(AccessFlags::Read),
            3 => Ok(AccessFlags::ReadWrite),
            other => Err(Error::invalid(format!(
                "the driver reported unknown access flags {other:#x}"
            ))),
        }
    }
}

impl TryFrom<CUmemAccess_flags> for AccessFlags {
    type Error = Error;
    fn try_from(raw: CUmemAccess_flags) -> Result<AccessFlags> {
        AccessFlags::try_from(u64::from(raw.0))
    }
}

/// The location of `device` as an access descriptor names it.
#[inline]
pub(crate) fn device_location(device: &Device) -> CUmemLocation {
    CUmemLocation {
        type_: CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
        // Ordinals are below the driver's (int) device count.
        id: device.ordinal() as i32,
    }
}

/// Descriptor lists up to this long live on the stack.
const INLINE: usize = 8;

/// A list of access descriptors, on the stack unless it is long.
pub(crate) enum AccessDescs {
    Inline([CUmemAccessDesc; INLINE], usize),
    Heap(Vec<CUmemAccessDesc>),
}

impl AccessDescs {
    /// Builds descriptors for `access`, refusing devices of another driver and
    /// duplicate devices.
    pub(crate) fn new(owner: &Device, access: &[(&Device, AccessFlags)]) -> Result<AccessDescs> {
        if access.is_empty() {
            return Err(Error::invalid(
                "the access list is empty: name at least one device",
            ));
        }
        for (i, (d, _)) in access.iter().enumerate() {
            owner.check_same_driver(d, "a device in the access list")?;
            if access[..i].iter().any(|(e, _)| e.ordinal() == d.ordinal()) {
                return Err(Error::invalid(format!(
                    "device {} appears more than once in the access list",
                    d.ordinal()
                )));
            }
        }
        let desc = |(d, f): &(&Device, AccessFlags)| CUmemAccessDesc {
            location: device_location(d),
            flags: f.to_raw(),
        };
        if access.len() <= INLINE {
            let mut arr = [CUmemAccessDesc {
                location: device_location(owner),
                flags: CUmemAccess_flags::CU_MEM_ACCESS_FLAGS_PROT_NONE,
            }; INLINE];
            for (slot, a) in arr.iter_mut().zip(access) {
                *slot = desc(a);
            }
            Ok(AccessDescs::Inline(arr, access.len()))
        } else {
            Ok(AccessDescs::Heap(access.iter().map(desc).collect()))
        }
    }

    /// The descriptors.
    #[inline]
    pub(crate) fn as_slice(&self) -> &[CUmemAccessDesc] {
        match self {
            AccessDescs::Inline(arr, n) => &arr[..*n],
            AccessDescs::Heap(v) => v,
        }
    }
}
