//! What a device supports for virtual memory management.

use std::fmt;

use cuda_vmm_sys::{CUdevice_attribute as A, CUresult};

use crate::device::Device;
use crate::error::Result;

/// The feature attributes that validation consults, read once per device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Features {
    pub(crate) vmm: bool,
    pub(crate) posix_fd: bool,
    pub(crate) fabric: bool,
    pub(crate) compression: bool,
    pub(crate) rdma: bool,
    /// `CU_DEVICE_ATTRIBUTE_HOST_NUMA_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED`.
    pub(crate) host_numa_vmm: bool,
}

impl Features {
    pub(crate) fn query(device: &Device) -> Result<Features> {
        // Drivers older than an attribute refuse it as an invalid value: not supported.
        let on = |attr| match device.attribute(attr) {
            Ok(v) => Ok(v != 0),
            Err(e) if e.code() == Some(CUresult::CUDA_ERROR_INVALID_VALUE.0) => Ok(false),
            Err(e) => Err(e),
        };
        Ok(Features {
            vmm: on(A::CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED)?,
            posix_fd: on(A::CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED)?,
            fabric: on(A::CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_FABRIC_SUPPORTED)?,
            compression: on(A::CU_DEVICE_ATTRIBUTE_GENERIC_COMPRESSION_SUPPORTED)?,
            rdma: on(A::CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_WITH_CUDA_VMM_SUPPORTED)?,
            host_numa_vmm: on(
                A::CU_DEVICE_ATTRIBUTE_HOST_NUMA_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED,
            )?,
        })
    }
}

/// A device's VMM support, from [`Device::capabilities`]; `Display` prints a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Device name.
    pub name: String,
    /// Device ordinal.
    pub ordinal: usize,
    /// Total memory in bytes.
    pub total_memory: usize,
    /// `CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED`.
    pub vmm_supported: bool,
    /// Allocations can be exported as POSIX file descriptors.
    pub posix_fd_handles: bool,
    /// Allocations can be exported as fabric handles.
    pub fabric_handles: bool,
    /// Compressible memory can be allocated.
    pub generic_compression: bool,
    /// GPUDirect RDMA works with VMM allocations.
    pub gpu_direct_rdma_with_vmm: bool,
    /// Host NUMA memory ([`Location::HostNuma`](crate::Location::HostNuma)) can be created
    /// and mapped with the VMM calls
    /// (`CU_DEVICE_ATTRIBUTE_HOST_NUMA_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED`).
    pub host_numa_vmm: bool,
    /// The host NUMA node closest to the device (`CU_DEVICE_ATTRIBUTE_HOST_NUMA_ID`), if
    /// the device reports one.
    pub host_numa_id: Option<u32>,
    /// Minimum granularity of a pinned allocation on this device.
    pub min_granularity: usize,
    /// Recommended granularity of a pinned allocation on this device.
    pub recommended_granularity: usize,
}

impl Capabilities {
    pub(crate) fn new(
        name: String,
        ordinal: usize,
        total_memory: usize,
        f: Features,
        host_numa_id: Option<u32>,
        min_granularity: usize,
        recommended_granularity: usize,
    ) -> Self {
        Self {
            name,
            ordinal,
            total_memory,
            vmm_supported: f.vmm,
            posix_fd_handles: f.posix_fd,
            fabric_handles: f.fabric,
            generic_compression: f.compression,
            gpu_direct_rdma_with_vmm: f.rdma,
            host_numa_vmm: f.host_numa_vmm,
            host_numa_id,
            min_granularity,
            recommended_granularity,
        }
    }
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes = |b: bool| if b { "yes" } else { "no" };
        writeln!(f, "device {}: {}", self.ordinal, self.name)?;
        let rows: [(&str, String); 10] = [
            ("total memory", format!("{} bytes", self.total_memory)),
            ("virtual memory management", yes(self.vmm_supported).into()),
            ("POSIX fd handles", yes(self.posix_fd_handles).into()),
            ("fabric handles", yes(self.fabric_handles).into()),
            ("generic compression", yes(self.generic_compression).into()),
            (
                "GPUDirect RDMA with VMM",
                yes(self.gpu_direct_rdma_with_vmm).into(),
            ),
            ("host NUMA memory with VMM", yes(self.host_numa_vmm).into()),
            (
                "host NUMA node",
                self.host_numa_id
                    .map_or_else(|| "none".into(), |n| n.to_string()),
            ),
            (
                "minimum granularity",
                format!("{} bytes", self.min_granularity),
            ),
            (
                "recommended granularity",
                format!("{} bytes", self.recommended_granularity),
            ),
        ];
        for (label, value) in rows {
            writeln!(f, "  {label:<27} {value}")?;
        }
        Ok(())
    }
}
