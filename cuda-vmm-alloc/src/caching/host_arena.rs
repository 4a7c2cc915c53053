//! Where a sleep with a backup puts the bytes: pinned host memory, reused across sleeps.
//!
//! Pinning costs far more than copying (on an H200: 0.2–0.37 s per GiB to obtain any kind
//! of pinned memory, against 55 GB/s for the copy), so the arena keeps what it obtained for
//! the next sleep unless told to give it back. It is host-located physical memory
//! (`cuMemCreate` at the device's host NUMA node, or at `HOST` where the device has no
//! host NUMA VMM support) mapped into the device's address space with device access: the
//! backup and the restore are device-to-device copies at the link's full speed, and the
//! arena grows by mapping more at its end, keeping what it holds.

use cuda_vmm::{
    AccessFlags, Allocation, AllocationProps, Device, GranularityKind, Location, Mapping,
    Reservation,
};

use crate::caching::arena::round_up;
use crate::{Error, Result};

/// Pinned host memory mapped for one device, grown on demand, kept between uses.
pub(crate) struct HostArena {
    device: Device,
    props: AllocationProps,
    granule: usize,
    /// Reserved on first use: the device's total memory of address space.
    reservation: Option<Reservation>,
    /// The host allocations, mapped back to back from offset 0.
    chunks: Vec<Mapping>,
}

impl HostArena {
    /// An empty arena for `device`: host NUMA memory near it where the device supports
    /// host NUMA VMM allocations, else `HOST` memory.
    pub(crate) fn new(device: &Device) -> Result<HostArena> {
        let props = if device.supports_host_numa_vmm()? && device.host_numa_id()?.is_some() {
            AllocationProps::host_numa_near(device)?
        } else {
            AllocationProps::new(Location::Host)
        };
        let granule = device.granularity(&props, GranularityKind::Minimum)?;
        Ok(HostArena {
            device: device.clone(),
            props,
            granule,
            reservation: None,
            chunks: Vec::new(),
        })
    }

    /// Bytes of host memory held.
    pub(crate) fn bytes(&self) -> usize {
        self.chunks.iter().map(Mapping::size).sum()
    }

    /// The arena's reservation (for the copies), once it holds memory.
    pub(crate) fn reservation(&self) -> Option<&Reservation> {
        self.reservation.as_ref()
    }

    /// Makes the arena hold at least `bytes`: one more host allocation for what is
    /// missing, mapped at the end. Returns whether it grew; a failure leaves it as it was.
    pub(crate) fn ensure(&mut self, bytes: usize) -> Result<bool> {
        let held = self.bytes();
        if bytes <= held {
            return Ok(false);
        }
        let size = round_up(bytes - held, self.granule);
        if self.reservation.is_none() {
            let space = round_up(self.device.total_memory()?, self.granule);
            self.reservation = Some(Reservation::new(&self.device, space, Default::default())?);
        }
        let reservation = self
            .reservation
            .as_ref()
            .ok_or_else(|| Error::InvalidConfig {
                message: "the host arena has no reservation".into(),
            })?;
        if held + size > reservation.size() {
            return Err(Error::InvalidRequest {
                message: format!(
                    "a host backup of {bytes} bytes is larger than device {}'s memory",
                    self.device.ordinal()
                ),
            });
        }
        let allocation = Allocation::new(&self.device, size, &self.props)?;
        let mapping = reservation.map(held, &allocation, 0, size)?;
        if let Err(e) = mapping.set_access(&[(&self.device, AccessFlags::ReadWrite)]) {
            if let Err(undo) = mapping.unmap() {
                tracing::error!("undoing a host arena growth: {undo}");
            }
            return Err(e.into());
        }
        self.chunks.push(mapping);
        Ok(true)
    }

    /// Gives back the host allocations past the first `keep` bytes' worth (whole
    /// allocations only); returns the bytes given back. Nothing may use them.
    pub(crate) fn truncate(&mut self, keep: usize) -> usize {
        let mut given = 0;
        while self.chunks.last().is_some_and(|last| last.offset() >= keep) {
            let Some(last) = self.chunks.pop() else {
                break;
            };
            given += last.size();
            if let Err(e) = last.unmap() {
                tracing::error!("giving back host backup memory: {e}");
            }
        }
        given
    }
}
