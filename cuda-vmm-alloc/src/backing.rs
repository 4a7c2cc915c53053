//! The reservation, properties, peers and counters shared by buffers and sparse arrays, and
//! the transactional "obtain chunks, map them, set access once" step both use.

use cuda_vmm::{
    AccessFlags, Allocation, AllocationProps, Device, GranularityKind, Mapping, Reservation,
    ReserveOptions,
};

use crate::error::{Error, Result};
use crate::pool::{same_device, ChunkPool, Taken};
use crate::stats::{timed, DriverStats};

/// One physical chunk mapped into the reservation.
pub(crate) struct Chunk {
    pub(crate) mapping: Mapping,
    /// Came from (and goes back to) the pool.
    pub(crate) pooled: bool,
}

impl Chunk {
    pub(crate) fn offset(&self) -> usize {
        self.mapping.offset()
    }

    pub(crate) fn end(&self) -> usize {
        self.mapping.offset() + self.mapping.size()
    }
}

/// Allocations obtained for a run but not mapped yet.
pub(crate) enum Obtained {
    Pooled(Taken),
    Created(Vec<Allocation>),
}

impl Obtained {
    fn allocations(&self) -> &[Allocation] {
        match self {
            Obtained::Pooled(taken) => &taken.allocations,
            Obtained::Created(v) => v,
        }
    }
}

pub(crate) struct Backing {
    pub(crate) device: Device,
    pub(crate) props: AllocationProps,
    pub(crate) reservation: Reservation,
    pub(crate) granularity: usize,
    pub(crate) pool: Option<ChunkPool>,
    /// Devices granted access besides the owner.
    pub(crate) peers: Vec<Device>,
    pub(crate) stats: DriverStats,
}

impl Backing {
    /// Resolves the properties and granularity, checks the pool's size class (naming the owner
    /// `what` in errors), and reserves `size(unit, granularity)` bytes, where `unit` is the
    /// pool's chunk size or the granularity.
    pub(crate) fn new(
        device: &Device,
        props: Option<AllocationProps>,
        pool: Option<ChunkPool>,
        what: &str,
        size: impl FnOnce(usize, usize) -> Result<usize>,
    ) -> Result<Backing> {
        let props = props.unwrap_or_else(|| AllocationProps::device(device));
        let granularity = device.granularity(&props, GranularityKind::Minimum)?;
        if let Some(pool) = &pool {
            pool.check_class(device, &props, pool.chunk_size(), what)?;
        }
        let unit = pool.as_ref().map_or(granularity, ChunkPool::chunk_size);
        let bytes = size(unit, granularity)?;
        let reservation = Reservation::new(device, bytes, ReserveOptions::default())?;
        Ok(Backing {
            device: device.clone(),
            props,
            reservation,
            granularity,
            pool,
            peers: Vec::new(),
            stats: DriverStats::default(),
        })
    }

    /// The allocation unit: the pool's chunk size, else the granularity.
    pub(crate) fn unit(&self) -> usize {
        self.pool
            .as_ref()
            .map_or(self.granularity, ChunkPool::chunk_size)
    }

    pub(crate) fn note_committed(&mut self, bytes: usize) {
        self.stats.peak_committed_bytes = self.stats.peak_committed_bytes.max(bytes);
    }

    /// Gets one allocation per entry of `sizes` (all equal to the pool's chunk size when
    /// pooled). All or nothing.
    pub(crate) fn obtain(&mut self, sizes: &[usize]) -> Result<Obtained> {
        if let Some(pool) = &self.pool {
            let taken = timed(&mut self.stats.time.create, || pool.take(sizes.len()))?;
            self.stats.pool_hits += taken.hits as u64;
            self.stats.creates += (taken.allocations.len() - taken.hits) as u64;
            return Ok(Obtained::Pooled(taken));
        }
        let mut created = Vec::with_capacity(sizes.len());
        for &size in sizes {
            self.stats.creates += 1;
            let made = timed(&mut self.stats.time.create, || {
                Allocation::new(&self.device, size, &self.props)
            });
            match made {
                Ok(a) => created.push(a),
                Err(e) => {
                    self.stats.releases += created.len() as u64;
                    return Err(e.into());
                }
            }
        }
        Ok(Obtained::Created(created))
    }

    /// Gives back allocations that were obtained but are no longer needed.
    pub(crate) fn unobtain(&mut self, obtained: Obtained) {
        match obtained {
            Obtained::Pooled(taken) => {
                self.stats.pool_hits -= taken.hits as u64;
                self.stats.releases += (taken.allocations.len() - taken.hits) as u64;
                if let Some(pool) = &self.pool {
                    pool.untake(taken);
                }
            }
            Obtained::Created(created) => {
                self.stats.releases += created.len() as u64;
                drop(created);
            }
        }
    }

    /// Maps the obtained allocations back to back from `offset` and sets access on the whole
    /// run with ONE call. On failure every mapping made is undone and the allocations given
    /// back, leaving the reservation as it was.
    pub(crate) fn map_run(
        &mut self,
        offset: usize,
        obtained: Obtained,
        read_only: bool,
    ) -> Result<Vec<Chunk>> {
        let mut mappings = Vec::with_capacity(obtained.allocations().len());
        let mut at = offset;
        let mut failure = None;
        for allocation in obtained.allocations() {
            self.stats.maps += 1;
            let reservation = &self.reservation;
            let mapped = timed(&mut self.stats.time.map, || {
                reservation.map(at, allocation, 0, allocation.size())
            });
            match mapped {
                Ok(m) => mappings.push(m),
                Err(e) => {
                    failure = Some(Error::from(e));
                    break;
                }
            }
            at += allocation.size();
        }
        if failure.is_none() {
            if let Err(e) = self.set_access(offset, at - offset, read_only) {
                failure = Some(e);
            }
        }
        if let Some(e) = failure {
            for m in mappings.into_iter().rev() {
                self.unmap(m);
            }
            self.unobtain(obtained);
            return Err(e);
        }
        let pooled = matches!(obtained, Obtained::Pooled(_));
        self.stats.chunks += mappings.len();
        Ok(mappings
            .into_iter()
            .map(|mapping| Chunk { mapping, pooled })
            .collect())
    }

    /// Obtains chunks of `sizes` and maps them as one run at `offset` (see
    /// [`map_run`](Backing::map_run)).
    pub(crate) fn commit_run(
        &mut self,
        offset: usize,
        sizes: &[usize],
        read_only: bool,
    ) -> Result<Vec<Chunk>> {
        let obtained = self.obtain(sizes)?;
        self.map_run(offset, obtained, read_only)
    }

    /// Unmaps `chunks` after ONE wait for device work on the reservation, then hands each
    /// allocation back to the pool or the device. Every chunk is attempted; a chunk whose
    /// unmap fails stays mapped (leaked, never recycled). Reports the first error.
    pub(crate) fn release_chunks(&mut self, chunks: Vec<Chunk>) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        let mut owners = Vec::with_capacity(chunks.len());
        let mut mappings = Vec::with_capacity(chunks.len());
        for chunk in chunks {
            owners.push((chunk.mapping.allocation().clone(), chunk.pooled));
            mappings.push(chunk.mapping);
        }
        let count = mappings.len();
        self.stats.chunks = self.stats.chunks.saturating_sub(count);
        self.stats.unmaps += count as u64;
        let reservation = &self.reservation;
        let outcomes = timed(&mut self.stats.time.unmap, || {
            reservation.unmap_batch(mappings)
        })?;
        let mut result = Ok(());
        for ((allocation, pooled), outcome) in owners.into_iter().zip(outcomes) {
            let step = match outcome {
                // A failed unmap leaked the mapping, which keeps the allocation alive:
                // dropping this clone releases nothing.
                Err(e) => Err(e.into()),
                Ok(()) => self.give_back(allocation, pooled),
            };
            if let Err(e) = step {
                log::error!("releasing a chunk failed: {e}");
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        result
    }

    /// Hands an unmapped allocation back to the pool (if it came from there) or the device.
    fn give_back(&mut self, allocation: Allocation, pooled: bool) -> Result<()> {
        let times = &mut self.stats.time;
        match (&self.pool, pooled) {
            (Some(pool), true) => {
                timed(&mut times.release, || pool.recycle(allocation))?;
            }
            _ => {
                self.stats.releases += 1;
                timed(&mut times.release, || allocation.release())?;
            }
        }
        Ok(())
    }

    /// Maps `size` bytes of a shared allocation at `offset` (no access set).
    pub(crate) fn map_shared(
        &mut self,
        offset: usize,
        allocation: &Allocation,
        size: usize,
    ) -> Result<Mapping> {
        self.stats.maps += 1;
        let reservation = &self.reservation;
        Ok(timed(&mut self.stats.time.map, || {
            reservation.map(offset, allocation, 0, size)
        })?)
    }

    /// Unmaps mappings after ONE wait for device work, logging failures (rollbacks, zero tiles).
    pub(crate) fn unmap_many(&mut self, mappings: Vec<Mapping>) {
        if mappings.is_empty() {
            return;
        }
        self.stats.unmaps += mappings.len() as u64;
        let reservation = &self.reservation;
        match timed(&mut self.stats.time.unmap, || {
            reservation.unmap_batch(mappings)
        }) {
            Ok(outcomes) => {
                for e in outcomes.into_iter().filter_map(|r| r.err()) {
                    log::error!("unmapping failed, the mapping is leaked: {e}");
                }
            }
            Err(e) => log::error!("waiting for device work before unmapping failed: {e}"),
        }
    }

    /// Unmaps a mapping, logging a failure (used on rollback paths).
    pub(crate) fn unmap(&mut self, mapping: Mapping) {
        self.stats.unmaps += 1;
        let offset = mapping.offset();
        if let Err(e) = timed(&mut self.stats.time.unmap, || mapping.unmap()) {
            log::error!("unmapping offset {offset} during rollback failed: {e}");
        }
    }

    /// One `cuMemSetAccess` over `offset..offset + size` for the owner and every peer.
    pub(crate) fn set_access(&mut self, offset: usize, size: usize, read_only: bool) -> Result<()> {
        self.stats.set_access_calls += 1;
        let (reservation, device, peers) = (&self.reservation, &self.device, &self.peers);
        timed(&mut self.stats.time.set_access, || {
            set_access_for(reservation, device, peers, offset, size, read_only)
        })
    }

    /// Adds `devices` to the peers and sets access on every `(offset, size, read_only)` range
    /// (one call each) for the new set. The peer list changes only if every call succeeds.
    pub(crate) fn grant_access(
        &mut self,
        devices: &[Device],
        ranges: &[(usize, usize, bool)],
    ) -> Result<()> {
        let mut peers = self.peers.clone();
        for d in devices {
            let known = same_device(d, &self.device) || peers.iter().any(|p| same_device(p, d));
            if !known {
                peers.push(d.clone());
            }
        }
        for &(offset, size, read_only) in ranges {
            self.stats.set_access_calls += 1;
            set_access_for(
                &self.reservation,
                &self.device,
                &peers,
                offset,
                size,
                read_only,
            )?;
        }
        self.peers = peers;
        Ok(())
    }
}

fn flags(read_only: bool) -> AccessFlags {
    if read_only {
        AccessFlags::Read
    } else {
        AccessFlags::ReadWrite
    }
}

fn set_access_for(
    reservation: &Reservation,
    owner: &Device,
    peers: &[Device],
    offset: usize,
    size: usize,
    read_only: bool,
) -> Result<()> {
    let mut access = Vec::with_capacity(1 + peers.len());
    access.push((owner, flags(read_only)));
    access.extend(peers.iter().map(|p| (p, flags(read_only))));
    Ok(reservation.set_access(offset, size, &access)?)
}
