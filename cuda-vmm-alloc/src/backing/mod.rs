//! The reservation, properties, peers and counters shared by buffers and sparse arrays, and
//! the transactional "obtain chunks, map them, set access once" step both use.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use cuda_vmm::{
    AccessFlags, Allocation, AllocationProps, Device, GranularityKind, Mapping, Reservation,
    ReserveOptions,
};

use crate::budget::MemoryBudget;
use crate::error::{Error, Result};
use crate::placement::{Homes, Placement};
use crate::pool::{same_device, ChunkPool, Taken};
use crate::stats::{timed, DriverStats};
use crate::trace::Hex;

mod release;

/// One physical chunk mapped into the reservation.
pub(crate) struct Chunk {
    pub(crate) mapping: Mapping,
    /// Came from (and goes back to) the pool.
    pub(crate) pooled: bool,
    /// Came from the pool's cache (rather than being created) when it was committed: a
    /// rollback of that commit puts it back in the cache, where a created one is released.
    pub(crate) cached: bool,
    /// Process-wide unique identity of this mapping of this allocation ([`next_serial`]):
    /// a chunk unmapped and replaced, even by one at the same offset, gets a new one.
    pub(crate) serial: u64,
}

/// Source of [`Chunk::serial`].
static NEXT_CHUNK_SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A fresh [`Chunk::serial`].
pub(crate) fn next_serial() -> u64 {
    NEXT_CHUNK_SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
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

/// How long an over-budget commit waits for queued releases to give their tiles back.
const BUDGET_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub(crate) struct Backing {
    pub(crate) device: Device,
    pub(crate) props: AllocationProps,
    pub(crate) reservation: Reservation,
    pub(crate) granularity: usize,
    pub(crate) pool: Option<ChunkPool>,
    /// The devices chunks are created on, in round-robin order.
    pub(crate) homes: Homes,
    /// Devices granted access besides the owner.
    pub(crate) peers: Vec<Device>,
    pub(crate) stats: DriverStats,
    /// Mappings a rollback could not unmap: still live and owned here, so nothing is freed
    /// under them; unmapped again by [`retry_stranded`](Backing::retry_stranded) before the
    /// next change, and on drop.
    pub(crate) stranded: Vec<Mapping>,
    /// Bytes of chunks whose release is queued (shared with the queue's entries).
    pub(crate) pending: Arc<AtomicUsize>,
    /// Counts the allocations obtained and not yet given back, when set.
    pub(crate) budget: Option<MemoryBudget>,
}

impl Backing {
    /// Resolves the properties, placement and granularity (the largest over the devices
    /// involved), checks the pool's size class (naming the owner `what` in errors), and
    /// reserves `size(unit, granularity)` bytes, where `unit` is the pool's chunk size or the
    /// granularity.
    pub(crate) fn new(
        device: &Device,
        props: Option<AllocationProps>,
        pool: Option<ChunkPool>,
        placement: &Placement,
        what: &str,
        size: impl FnOnce(usize, usize) -> Result<usize>,
    ) -> Result<Backing> {
        let props = props.unwrap_or_else(|| AllocationProps::device(device));
        let homes = Homes::new(device, &props, placement)?;
        let granularity = homes.granularity(device, &props, GranularityKind::Minimum)?;
        if let Some(pool) = &pool {
            let Some(home) = homes.only() else {
                return Err(Error::PoolMismatch {
                    message: format!(
                        "{what} stripes chunks over several devices, but a pool serves one \
                         (device {}): use no pool with Placement::RoundRobin",
                        pool.device().ordinal()
                    ),
                });
            };
            let home_props = homes.home(0).1.clone();
            pool.check_class(home, &home_props, pool.chunk_size(), what)?;
        }
        let unit = pool.as_ref().map_or(granularity, ChunkPool::chunk_size);
        let bytes = size(unit, granularity)?;
        let options = ReserveOptions {
            alignment: granularity,
            ..ReserveOptions::default()
        };
        let reservation = Reservation::new(device, bytes, options)?;
        let peers = homes.peers(device);
        Ok(Backing {
            device: device.clone(),
            props,
            reservation,
            granularity,
            pool,
            homes,
            peers,
            stats: DriverStats::default(),
            stranded: Vec::new(),
            pending: Arc::new(AtomicUsize::new(0)),
            budget: None,
        })
    }

    /// A copy for another thread: the same reservation, device, properties, pool, placement
    /// (at the same point of its rotation) and peers, fresh counters, nothing stranded.
    pub(crate) fn shadow(&self) -> Backing {
        Backing {
            device: self.device.clone(),
            props: self.props.clone(),
            reservation: self.reservation.clone(),
            granularity: self.granularity,
            pool: self.pool.clone(),
            homes: self.homes.clone(),
            peers: self.peers.clone(),
            stats: DriverStats::default(),
            stranded: Vec::new(),
            pending: self.pending.clone(),
            budget: self.budget.clone(),
        }
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
    /// pooled), the `k`-th on the placement's `k`-th home from where its rotation stands.
    /// All or nothing. The rotation does not move: only a mapped run takes its turns (see
    /// [`map_run`](Backing::map_run)), so a run given back never consumed any.
    /// A [`MemoryBudget`] set on the backing is charged for the sizes first: a refusal
    /// makes no driver call. Tiles whose release is still queued stay charged until the
    /// queue gives them back; when they are what stands in the way, the queue is flushed
    /// once (waiting on the caller's thread, as a caching allocator frees its cache before
    /// it reports out of memory) and the charge tried again.
    pub(crate) fn obtain(&mut self, sizes: &[usize]) -> Result<Obtained> {
        let charged = sizes.iter().sum::<usize>();
        if let Some(budget) = &self.budget {
            if let Err(refused) = budget.charge(charged) {
                let cuda = self.device.cuda();
                if cuda.release_stats().pending_entries == 0 {
                    return Err(refused);
                }
                // The flush's own failure (another structure's release failed again) is
                // that structure's to report; what matters here is whether it fits now.
                if let Err(e) = cuda.flush_releases(BUDGET_FLUSH_TIMEOUT) {
                    tracing::warn!("flushing queued releases for the memory budget: {e}");
                }
                budget.charge(charged)?;
            }
        }
        let obtained = self.obtain_charged(sizes);
        if let (Err(_), Some(budget)) = (&obtained, &self.budget) {
            budget.refund(charged);
        }
        obtained
    }

    /// [`obtain`](Backing::obtain) once the budget is charged.
    fn obtain_charged(&mut self, sizes: &[usize]) -> Result<Obtained> {
        if let Some(pool) = &self.pool {
            let taken = match timed(&mut self.stats.time.create, || pool.take(sizes.len())) {
                Ok(taken) => taken,
                Err(failed) => {
                    // Counted like creates made here: attempted, and the ones made released.
                    self.stats.creates += failed.creates as u64;
                    self.stats.releases += failed.creates.saturating_sub(1) as u64;
                    return Err(failed.error);
                }
            };
            self.stats.pool_hits += taken.hits as u64;
            self.stats.creates += (taken.allocations.len() - taken.hits) as u64;
            return Ok(Obtained::Pooled(taken));
        }
        let mut created = Vec::with_capacity(sizes.len());
        for (k, &size) in sizes.iter().enumerate() {
            self.stats.creates += 1;
            let (home, props) = self.homes.home(k);
            let made = timed(&mut self.stats.time.create, || {
                Allocation::new(home, size, props)
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
        if let Some(budget) = &self.budget {
            budget.refund(obtained.allocations().iter().map(Allocation::size).sum());
        }
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
    /// run with ONE call, then moves the placement rotation past the run. On failure every
    /// mapping made is undone and the allocations given back, leaving the reservation and
    /// the rotation as they were. (A caller that rolls a mapped run back later restores the
    /// rotation from its [`position`](Homes::position), taken before the transaction.)
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
            mappings.reverse();
            if let Err(undo) = self.unmap_or_strand(mappings) {
                tracing::error!("undoing a partial map failed: {undo}");
            }
            self.unobtain(obtained);
            return Err(e);
        }
        let (pooled, hits) = match &obtained {
            Obtained::Pooled(taken) => (true, taken.hits),
            Obtained::Created(_) => (false, 0),
        };
        self.stats.chunks += mappings.len();
        // The run is in: its chunks took their turns in the placement rotation.
        self.homes.advance(mappings.len());
        Ok(mappings
            .into_iter()
            .enumerate()
            .map(|(i, mapping)| Chunk {
                mapping,
                pooled,
                cached: pooled && i < hits,
                serial: next_serial(),
            })
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
        let _span = tracing::debug_span!(
            "commit",
            address = %Hex(self.reservation.ptr() + offset as u64),
            size = sizes.iter().sum::<usize>(),
            chunks = sizes.len(),
            pooled = self.pool.is_some(),
        )
        .entered();
        let obtained = self.obtain(sizes)?;
        self.map_run(offset, obtained, read_only)
    }

    /// Undoes a commit that succeeded but whose operation failed later (a copy, a fill):
    /// unmaps `chunks` (in reverse) and hands them back as [`unobtain`](Backing::unobtain)
    /// does, so the pool and the device are as before the commit. A mapping that cannot be
    /// unmapped is stranded (its allocation is not given back).
    pub(crate) fn rollback(&mut self, chunks: Vec<Chunk>) {
        let Some(pooled) = chunks.first().map(|c| c.pooled) else {
            return;
        };
        self.stats.chunks = self.stats.chunks.saturating_sub(chunks.len());
        let (mut cached, mut created, mut mappings) = (Vec::new(), Vec::new(), Vec::new());
        for chunk in chunks {
            let allocation = chunk.mapping.allocation().clone();
            if chunk.cached {
                cached.push(allocation);
            } else {
                created.push(allocation);
            }
            mappings.push(chunk.mapping);
        }
        mappings.reverse();
        if let Err(e) = self.unmap_or_strand(mappings) {
            tracing::error!("rolling back a commit: {e}");
        }
        let obtained = if pooled {
            let hits = cached.len();
            cached.append(&mut created);
            Obtained::Pooled(Taken {
                allocations: cached,
                hits,
            })
        } else {
            Obtained::Created(created)
        };
        self.unobtain(obtained);
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

    /// One `cuMemSetAccess` over `offset..offset + size` for the owner and every peer.
    pub(crate) fn set_access(&mut self, offset: usize, size: usize, read_only: bool) -> Result<()> {
        self.stats.set_access_calls += 1;
        let (reservation, device, peers) = (&self.reservation, &self.device, &self.peers);
        timed(&mut self.stats.time.set_access, || {
            set_access_for(reservation, device, peers, offset, size, read_only)
        })
    }

    /// Adds `devices` to the peers and sets access on every `(offset, size, read_only)` range
    /// (one call each) for the new set. All or nothing: if a call fails, the ranges already
    /// granted are set back to no access for the new peers and the peer list stays as it was;
    /// if that undo fails too, the new peers are recorded (they keep access where it was
    /// granted and get it on memory mapped later) and the grant's error is returned.
    pub(crate) fn grant_access(
        &mut self,
        devices: &[Device],
        ranges: &[(usize, usize, bool)],
    ) -> Result<()> {
        let mut added: Vec<Device> = Vec::new();
        for d in devices {
            let known = same_device(d, &self.device)
                || self.peers.iter().chain(&added).any(|p| same_device(p, d));
            if !known {
                added.push(d.clone());
            }
        }
        let mut peers = self.peers.clone();
        peers.extend(added.iter().cloned());
        for (i, &(offset, size, read_only)) in ranges.iter().enumerate() {
            self.stats.set_access_calls += 1;
            let granted = set_access_for(
                &self.reservation,
                &self.device,
                &peers,
                offset,
                size,
                read_only,
            );
            if let Err(e) = granted {
                let mut undone = true;
                for &(offset, size, _) in &ranges[..i] {
                    self.stats.set_access_calls += 1;
                    let access: Vec<(&Device, AccessFlags)> =
                        added.iter().map(|d| (d, AccessFlags::None)).collect();
                    if let Err(undo) = self.reservation.set_access(offset, size, &access) {
                        tracing::error!(
                            "undoing a grant at offset {offset} (+{size}) failed, the peers stay: {undo}"
                        );
                        undone = false;
                    }
                }
                if !undone {
                    self.peers = peers;
                }
                return Err(e);
            }
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
