//! Sleep and wake of tags: the pages of a tag's segments go back to the driver (after the
//! device work on them, with the blocks' bytes copied to pinned host memory if asked), the
//! address ranges and blocks stay, and wake maps new pages at the same addresses and
//! restores the bytes. Pointers never change.

use std::time::Instant;

use cuda_vmm::{AccessFlags, Mapping, Reservation};

use super::{CachingAllocator, Inner, State, FLUSH_TIMEOUT};
use crate::caching::sleep::{Backup, SleepReport, WakeReport};
use crate::sleeping::Run;
use crate::{Error, Result};

/// A sleeping pool: the pages to map again, and where its blocks' bytes went.
pub(crate) struct Slept {
    /// Page offsets mapped when it fell asleep.
    pages: Vec<usize>,
    /// `(offset, len, host offset)` of each run of blocks backed up.
    backup: Vec<(usize, usize, usize)>,
}

impl Slept {
    fn bytes(&self, page: usize) -> usize {
        self.pages.len() * page
    }
}

impl CachingAllocator {
    /// Puts `tags` to sleep (see [`alloc_tagged`](Self::alloc_tagged); `""` names the
    /// untagged blocks): waits for the device (a device synchronisation, the same
    /// contract as every unmap: work the library cannot see must be queued before), copies
    /// the blocks handed out to pinned host memory if `backup` says so, then unmaps and
    /// releases every page of those tags' segments, returning once the driver has the
    /// memory back. The page cache's idle chunks are released too. Blocks keep their
    /// addresses; allocating in a sleeping tag is refused with [`Error::Asleep`], and a
    /// kernel that touches sleeping memory faults as on any unmapped address.
    ///
    /// Refused, changing nothing, for a tag asleep already or with a live
    /// `CachedView` (feature `cudarc`) of one of its blocks. A failed backup leaves the
    /// memory awake and intact.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use cuda_vmm::{Cuda, Stream};
    /// use cuda_vmm_alloc::{Backup, CachingAllocator, Error};
    ///
    /// let device = Cuda::simulator()?.device(0)?;
    /// let stream = Stream::new(&device)?;
    /// let allocator = CachingAllocator::new(&device)?;
    /// let weights = allocator.alloc_tagged(4 << 20, &stream, "weights")?;
    /// weights.write(0, b"model")?;
    /// let before = device.memory_info()?.free;
    ///
    /// let slept = allocator.sleep(&["weights"], Backup::Host)?;
    /// assert_eq!(device.memory_info()?.free, before + slept.released_bytes);
    /// assert!(matches!(weights.write(0, b"x"), Err(Error::Asleep { .. })));
    ///
    /// allocator.wake(&["weights"])?; // same address, same bytes
    /// let mut back = [0u8; 5];
    /// weights.read(0, &mut back)?;
    /// assert_eq!(&back, b"model");
    /// # Ok(())
    /// # }
    /// ```
    pub fn sleep(&self, tags: &[&str], backup: Backup) -> Result<SleepReport> {
        let inner = &self.inner;
        let mut state = inner.state.lock();
        // Checked before any tag is registered: a refusal changes nothing.
        if let Some(tag) = tags.iter().find(|t| {
            state
                .find_tag(t)
                .is_some_and(|id| state.asleep.contains(&id))
        }) {
            return Err(Error::InvalidRequest {
                message: format!("tag {tag:?} is asleep already"),
            });
        }
        if let Some(tag) = tags.iter().find(|t| {
            state
                .pools
                .iter()
                .any(|p| p.views > 0 && state.tags[usize::from(p.tag)] == **t)
        }) {
            return Err(Error::InvalidRequest {
                message: format!("a view of a block of tag {tag:?} is alive: drop it first"),
            });
        }
        let unknown = tags.iter().filter(|t| state.find_tag(t).is_none()).count();
        if state.tags.len() + unknown > usize::from(u16::MAX) {
            return Err(Error::InvalidRequest {
                message: format!(
                    "{unknown} new tags: an allocator takes at most {} tags",
                    u16::MAX
                ),
            });
        }
        let ids = tag_ids(&mut state, tags)?;
        let mut report = SleepReport::default();
        let start = Instant::now();
        inner.device.synchronize()?;
        inner.device.cuda().flush_releases(FLUSH_TIMEOUT)?;
        state.poll_pending(inner.device.ordinal());
        report.wait = start.elapsed();
        let pools: Vec<usize> = (0..state.pools.len())
            .filter(|&i| ids.contains(&state.pools[i].tag))
            .collect();
        let backups = match backup {
            Backup::Host => inner.back_up(&mut state, &pools, &mut report)?,
            Backup::Discard => vec![Vec::new(); pools.len()],
        };
        let start = Instant::now();
        // One batch per segment: a batch ends mappings of one reservation.
        let mut batches: Vec<Vec<Mapping>> = Vec::new();
        for (&i, backup) in pools.iter().zip(backups) {
            let pool = &mut state.pools[i];
            let (offsets, mappings) = pool.segment.take_all_pages();
            batches.push(mappings);
            let slept = Slept {
                pages: offsets,
                backup,
            };
            let bytes = slept.bytes(pool.segment.page());
            let used: usize = pool.segment.used_runs().iter().map(|r| r.1).sum();
            pool.asleep = Some(slept);
            state.asleep_allocated += used;
            state.stats.reserved_bytes -= bytes;
            state.stats.asleep_bytes += bytes;
            report.released_bytes += bytes;
        }
        state.asleep.extend(ids);
        // Past the point of no return: the tags are asleep. The device is idle (waited
        // for above), so each segment's pages are unmapped here, after one more wait, and
        // released as their last handles drop. A failure is reported, not returned: the
        // pages it left are dropped (which unmaps them once more, and logs).
        for pages in batches {
            if let Err((e, kept)) = Mapping::unmap_in_order(pages) {
                tracing::error!("releasing sleeping pages: {e}");
                report.release_error = Some(e.to_string());
                drop(kept);
            }
        }
        inner.pages.trim();
        report.release = start.elapsed();
        tracing::debug!(?tags, ?report, "caching.sleep");
        Ok(report)
    }

    /// Wakes `tags`: maps new pages where each sleeping segment had them, grants access to
    /// the device and every peer granted before, restores the bytes backed up, and only
    /// then reports success. Refused, changing nothing, for a tag that is not asleep. A
    /// failure (out of memory) leaves the tags asleep with their backups: retry later.
    pub fn wake(&self, tags: &[&str]) -> Result<WakeReport> {
        let inner = &self.inner;
        let mut state = inner.state.lock();
        let mut ids: Vec<u16> = Vec::with_capacity(tags.len());
        for tag in tags {
            match state.find_tag(tag) {
                Some(id) if state.asleep.contains(&id) => {
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
                _ => {
                    return Err(Error::InvalidRequest {
                        message: format!("tag {tag:?} is not asleep"),
                    })
                }
            }
        }
        let mut report = WakeReport::default();
        let pools: Vec<usize> = (0..state.pools.len())
            .filter(|&i| ids.contains(&state.pools[i].tag) && state.pools[i].asleep.is_some())
            .collect();
        let wanted: usize = pools
            .iter()
            .filter_map(|&i| {
                let p = &state.pools[i];
                p.asleep.as_ref().map(|s| s.bytes(p.segment.page()))
            })
            .sum();
        if let Some(max) = inner.config.max_reserved {
            if inner.held(&state) + wanted > max {
                inner.give_back_for_retry(&mut state);
            }
            if inner.held(&state) + wanted > max {
                state.stats.out_of_memory += 1;
                return Err(Error::AllocatorOutOfMemory {
                    requested: wanted,
                    reserved: state.stats.reserved_bytes,
                    allocated: state.stats.allocated_bytes,
                    releasing: inner.releasing.load(std::sync::atomic::Ordering::Acquire),
                    device_free: inner.device.memory_info().map_or(0, |m| m.free),
                    max_reserved: Some(max),
                });
            }
        }
        let start = Instant::now();
        let peers = state.peers.clone();
        let mut access = vec![(&inner.device, AccessFlags::ReadWrite)];
        access.extend(peers.iter().map(|p| (p, AccessFlags::ReadWrite)));
        let mut woken: Vec<usize> = Vec::new();
        let mut failed = None;
        for &i in &pools {
            let pool = &state.pools[i];
            let Some(slept) = &pool.asleep else { continue };
            let offsets = slept.pages.clone();
            let chunks = pool.chunks.clone();
            match state.pools[i].segment.map_again(&offsets, &access, &chunks) {
                Ok(_) => woken.push(i),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        report.map = start.elapsed();
        let start = Instant::now();
        if failed.is_none() {
            failed = inner.restore(&state, &woken, &mut report).err();
        }
        report.restore = start.elapsed();
        if let Some(e) = failed {
            inner.back_to_sleep(&mut state, &woken);
            return Err(e);
        }
        for &i in &woken {
            let pool = &mut state.pools[i];
            let bytes = pool
                .asleep
                .take()
                .map_or(0, |s| s.bytes(pool.segment.page()));
            let used: usize = pool.segment.used_runs().iter().map(|r| r.1).sum();
            state.asleep_allocated -= used;
            state.stats.reserved_bytes += bytes;
            state.stats.asleep_bytes -= bytes;
            report.mapped_bytes += bytes;
        }
        let held = inner.held(&state);
        state.stats.peak_reserved_bytes = state.stats.peak_reserved_bytes.max(held);
        state.asleep.retain(|id| !ids.contains(id));
        // The host memory past the backups still asleep is free for the next one.
        state.host_used = state
            .pools
            .iter()
            .filter_map(|p| p.asleep.as_ref())
            .flat_map(|s| s.backup.iter().map(|&(_, len, at)| at + len))
            .max()
            .unwrap_or(0);
        if state.host_used == 0 && !inner.config.keep_host_backup {
            report.host_released_bytes = state.host.truncate(0);
        }
        tracing::debug!(?tags, ?report, "caching.wake");
        Ok(report)
    }

    /// Gives the pinned host memory that no backup uses now back to the driver; returns
    /// the bytes given back.
    pub fn release_host_backup(&self) -> usize {
        let mut state = self.inner.state.lock();
        let used = state.host_used;
        state.host.truncate(used)
    }

    /// Whether `tag` is asleep.
    pub fn is_asleep(&self, tag: &str) -> bool {
        let state = self.inner.state.lock();
        state
            .tags
            .iter()
            .position(|t| t == tag)
            .is_some_and(|i| state.asleep.iter().any(|&a| usize::from(a) == i))
    }
}

/// The ids of `tags`, registering new ones; duplicates are folded.
fn tag_ids(state: &mut State, tags: &[&str]) -> Result<Vec<u16>> {
    let mut ids = Vec::with_capacity(tags.len());
    for tag in tags {
        let id = state.tag_id(tag)?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

impl Inner {
    /// The reservation of `pool`'s segment, for a block's copies; refused with
    /// [`Error::Asleep`] while the pool's tag sleeps.
    pub(crate) fn segment_of(&self, pool: usize, operation: &'static str) -> Result<Reservation> {
        let state = self.state.lock();
        let p = &state.pools[pool];
        if p.asleep.is_some() {
            return Err(Error::Asleep {
                tag: state.tags[usize::from(p.tag)].clone(),
                operation,
            });
        }
        Ok(p.segment.reservation().clone())
    }

    #[cfg(feature = "cudarc")]
    /// Counts a view of a block of `pool` opened (`+1`) or closed (`-1`); refused while
    /// the pool sleeps.
    pub(crate) fn count_view(&self, pool: usize, opened: bool) -> Result<()> {
        let mut state = self.state.lock();
        let tag = state.pools[pool].tag;
        let p = &mut state.pools[pool];
        if opened {
            if p.asleep.is_some() {
                return Err(Error::Asleep {
                    tag: state.tags[usize::from(tag)].clone(),
                    operation: "cudarc_view",
                });
            }
            p.views += 1;
        } else {
            p.views = p.views.saturating_sub(1);
        }
        Ok(())
    }

    /// Copies the blocks handed out in `pools` to the host arena (grown if needed, after
    /// the backups asleep now); returns each pool's runs. A failure gives back what the
    /// arena grew by and changes nothing else.
    fn back_up(
        &self,
        state: &mut State,
        pools: &[usize],
        report: &mut SleepReport,
    ) -> Result<Vec<Vec<(usize, usize, usize)>>> {
        let mut at = state.host_used;
        let mut plans = Vec::with_capacity(pools.len());
        for &i in pools {
            let runs: Vec<(usize, usize, usize)> = state.pools[i]
                .segment
                .used_runs()
                .into_iter()
                .map(|(offset, len)| {
                    let host = at;
                    at += len;
                    (offset, len, host)
                })
                .collect();
            plans.push(runs);
        }
        let sources: Vec<(&Reservation, &[Run])> = pools
            .iter()
            .zip(&plans)
            .map(|(&i, runs)| (state.pools[i].segment.reservation(), runs.as_slice()))
            .collect();
        state.host.back_up(&self.device, &sources, report)?;
        state.host_used = at;
        Ok(plans)
    }

    /// Copies the backups of `woken` pools back from the host arena.
    fn restore(&self, state: &State, woken: &[usize], report: &mut WakeReport) -> Result<()> {
        for &i in woken {
            let pool = &state.pools[i];
            let Some(slept) = &pool.asleep else { continue };
            if slept.backup.is_empty() {
                continue;
            }
            let dst = pool.segment.reservation();
            state.host.restore(&self.device, dst, &slept.backup)?;
            report.restored_bytes += slept.backup.iter().map(|r| r.1).sum::<usize>();
        }
        Ok(())
    }

    /// Undoes a failed wake: the pages mapped for it go back to the driver; the pools stay
    /// asleep with their backups.
    fn back_to_sleep(&self, state: &mut State, woken: &[usize]) {
        for &i in woken {
            let pages = state.pools[i].segment.take_all_pages().1;
            if let Err((e, kept)) = Mapping::unmap_deferred(pages, None) {
                tracing::error!("undoing a failed wake: {e}");
                drop(kept);
            }
        }
        if let Err(e) = self.device.cuda().flush_releases(FLUSH_TIMEOUT) {
            tracing::warn!("flushing the releases of a failed wake: {e}");
        }
    }
}
