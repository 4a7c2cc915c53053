//! The end of a backing's chunks: releasing them (on the release queue, or at once when
//! releases complete inline), handing allocations back to the pool or the device, and
//! unmapping (or stranding) mappings.

use std::sync::atomic::Ordering;

use cuda_vmm::release::ReleaseThen;
use cuda_vmm::{Allocation, Mapping};

use super::{Backing, Chunk};
use crate::error::{Error, Result};
use crate::pool::ChunkPool;
use crate::stats::timed;
use crate::trace::Hex;

impl Backing {
    /// Ends `chunks` in order on the release queue: they are unmapped, and each allocation
    /// handed back to the pool or the device, once no device work may touch them (see
    /// [`Mapping::unmap_deferred`]); this returns at once. Their bytes count as pending
    /// ([`pending_bytes`](Backing::pending_bytes)) until then.
    ///
    /// Only a refusal comes back (never for chunks of this backing's reservation), with the
    /// chunks intact. A failure on the queue is logged and kept by the queue (see
    /// `Cuda::take_release_errors`): the chunk is not given back then, so nothing is
    /// released twice.
    #[allow(clippy::result_large_err)]
    pub(crate) fn release_chunks(
        &mut self,
        chunks: Vec<Chunk>,
    ) -> std::result::Result<(), (Error, Vec<Chunk>)> {
        if chunks.is_empty() {
            return Ok(());
        }
        if self.device.cuda().releases_complete_inline() {
            // Enters its own `decommit` span.
            return self.release_chunks_now(chunks);
        }
        let _span = tracing::debug_span!(
            "decommit",
            address = %Hex(chunks.iter().map(|c| c.mapping.ptr()).min().unwrap_or(0)),
            size = chunks.iter().map(|c| c.mapping.size()).sum::<usize>(),
            chunks = chunks.len(),
        )
        .entered();
        let count = chunks.len();
        let bytes: usize = chunks.iter().map(|c| c.mapping.size()).sum();
        let mut owners = Vec::with_capacity(count);
        let mut mappings = Vec::with_capacity(count);
        for chunk in chunks {
            owners.push((chunk.pooled, chunk.serial));
            mappings.push(chunk.mapping);
        }
        let pooled: Vec<bool> = owners.iter().map(|o| o.0).collect();
        let to_pool = pooled.iter().filter(|p| **p).count();
        let pool = self.pool.clone().filter(|_| to_pool > 0);
        if let Some(pool) = &pool {
            pool.note_pending(to_pool);
        }
        let pending = self.pending.clone();
        pending.fetch_add(bytes, Ordering::Relaxed);
        let back_pool = pool.clone();
        let budget = self.budget.clone();
        // Runs with the allocations unmapped, in order: all of them, or (after a failed
        // inline unmap) the ones before the failure; it accounts for exactly those.
        let then: ReleaseThen = Box::new(move |allocations| {
            let given: usize = allocations.iter().map(Allocation::size).sum();
            let result = give_back_all(back_pool.as_ref(), allocations, &pooled);
            pending.fetch_sub(given, Ordering::Relaxed);
            if let Some(budget) = budget {
                budget.refund(given);
            }
            result
        });
        match Mapping::unmap_deferred(mappings, Some(then)) {
            Ok(()) => {
                self.stats.unmaps += count as u64;
                self.stats.releases += (count - to_pool) as u64;
                self.stats.chunks = self.stats.chunks.saturating_sub(count);
                Ok(())
            }
            Err((e, back)) => {
                // Refused (nothing was queued, `then` dropped unrun), or an unmap on this
                // thread failed (`UnmapWait::Caller`): `back` are the mappings not unmapped,
                // the last ones in order; `then` accounted for those before them.
                let done = count - back.len();
                let kept_owners = &owners[done..];
                let kept_bytes: usize = back.iter().map(Mapping::size).sum();
                self.pending.fetch_sub(kept_bytes, Ordering::Relaxed);
                if let Some(pool) = &pool {
                    pool.note_arrived(kept_owners.iter().filter(|o| o.0).count());
                }
                self.stats.unmaps += done as u64;
                self.stats.releases += owners[..done].iter().filter(|o| !o.0).count() as u64;
                self.stats.chunks = self.stats.chunks.saturating_sub(done);
                let kept = back
                    .into_iter()
                    .zip(kept_owners.iter().copied())
                    .map(|(mapping, (pooled, serial))| Chunk {
                        mapping,
                        pooled,
                        cached: false,
                        serial,
                    })
                    .collect();
                Err((e.into(), kept))
            }
        }
    }

    /// With releases completed on the caller's thread (the queue's bound is 0): unmaps
    /// `chunks` in order after ONE wait for device work on the reservation, handing
    /// each allocation back to the pool or the device. Stops at the first failed unmap: the
    /// error comes back with the chunks not unmapped (that one first, then those not tried),
    /// still mapped and intact, for the caller to keep. A failure to hand an unmapped chunk
    /// back (a refused release, retried as the handle drops) is reported after all are done.
    #[allow(clippy::result_large_err)]
    fn release_chunks_now(
        &mut self,
        chunks: Vec<Chunk>,
    ) -> std::result::Result<(), (Error, Vec<Chunk>)> {
        if chunks.is_empty() {
            return Ok(());
        }
        let _span = tracing::debug_span!(
            "decommit",
            address = %Hex(chunks.iter().map(|c| c.mapping.ptr()).min().unwrap_or(0)),
            size = chunks.iter().map(|c| c.mapping.size()).sum::<usize>(),
            chunks = chunks.len(),
        )
        .entered();
        let mut owners = Vec::with_capacity(chunks.len());
        let mut mappings = Vec::with_capacity(chunks.len());
        for chunk in chunks {
            owners.push((
                chunk.mapping.allocation().clone(),
                (chunk.pooled, chunk.serial),
            ));
            mappings.push(chunk.mapping);
        }
        let count = mappings.len();
        self.stats.unmaps += count as u64;
        let unmapped = timed(&mut self.stats.time.unmap, || {
            Mapping::unmap_in_order(mappings)
        });
        let (failure, kept) = match unmapped {
            Ok(()) => (None, Vec::new()),
            Err((e, kept)) => (Some(Error::from(e)), kept),
        };
        let done = count - kept.len();
        self.stats.chunks = self.stats.chunks.saturating_sub(done);
        let mut owners = owners.into_iter();
        let mut result = Ok(());
        for (allocation, (pooled, _)) in owners.by_ref().take(done) {
            if let Err(e) = self.give_back(allocation, pooled) {
                tracing::error!("releasing a chunk failed: {e}");
                result = result.and(Err(e));
            }
        }
        match failure {
            None => result.map_err(|e| (e, Vec::new())),
            Some(e) => Err((
                e,
                kept.into_iter()
                    .zip(owners)
                    .map(|(mapping, (_, (pooled, serial)))| Chunk {
                        mapping,
                        pooled,
                        cached: false,
                        serial,
                    })
                    .collect(),
            )),
        }
    }

    /// Hands an unmapped allocation back to the pool (if it came from there) or the device.
    fn give_back(&mut self, allocation: Allocation, pooled: bool) -> Result<()> {
        if let Some(budget) = &self.budget {
            budget.refund(allocation.size());
        }
        let times = &mut self.stats.time;
        match (&self.pool, pooled) {
            (Some(pool), true) => {
                if let Err(refused) = timed(&mut times.release, || pool.recycle(allocation)) {
                    let (e, allocation) = refused.into_parts();
                    tracing::error!("the pool refused a chunk, releasing it: {e}");
                    if let Some(allocation) = allocation {
                        self.stats.releases += 1;
                        timed(&mut times.release, || allocation.release())?;
                    }
                    return Err(e);
                }
            }
            _ => {
                self.stats.releases += 1;
                timed(&mut times.release, || allocation.release())?;
            }
        }
        Ok(())
    }

    /// Bytes of this backing's chunks whose release is queued, waiting for device work.
    pub(crate) fn pending_bytes(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// Unmaps `mappings` in order after one wait; the ones that cannot be unmapped are kept
    /// in [`stranded`](Backing::stranded). Reports the first error.
    pub(crate) fn unmap_or_strand(&mut self, mappings: Vec<Mapping>) -> Result<()> {
        if mappings.is_empty() {
            return Ok(());
        }
        self.stats.unmaps += mappings.len() as u64;
        let unmapped = timed(&mut self.stats.time.unmap, || {
            Mapping::unmap_in_order(mappings)
        });
        match unmapped {
            Ok(()) => Ok(()),
            Err((e, kept)) => {
                tracing::error!(
                    "{} mapping(s) could not be unmapped, kept for a retry: {e}",
                    kept.len()
                );
                self.stats.unmaps -= kept.len() as u64;
                self.stranded.extend(kept);
                Err(e.into())
            }
        }
    }

    /// Unmaps the mappings a rollback left behind, so that their addresses are free again.
    /// Fails, keeping them, if the driver still refuses.
    pub(crate) fn retry_stranded(&mut self) -> Result<()> {
        let stranded = std::mem::take(&mut self.stranded);
        self.unmap_or_strand(stranded)
    }
}

/// Hands unmapped allocations back on the release queue's thread: pooled ones to `pool`
/// (released if it refuses them), the others to the device. Reports the first failure
/// after trying all.
fn give_back_all(
    pool: Option<&ChunkPool>,
    allocations: Vec<Allocation>,
    pooled: &[bool],
) -> cuda_vmm::Result<()> {
    let mut result = Ok(());
    let mut arrived = 0;
    for (allocation, &is_pooled) in allocations.into_iter().zip(pooled) {
        let outcome = match pool.filter(|_| is_pooled) {
            Some(pool) => {
                arrived += 1;
                match pool.recycle(allocation) {
                    Ok(_) => Ok(()),
                    Err(refused) => {
                        let (e, allocation) = refused.into_parts();
                        tracing::error!("the pool refused a chunk, releasing it: {e}");
                        match allocation {
                            Some(a) => a.release(),
                            None => Ok(()),
                        }
                    }
                }
            }
            None => allocation.release(),
        };
        if let Err(e) = outcome {
            result = result.and(Err(e));
        }
    }
    if let Some(pool) = pool {
        pool.note_arrived(arrived);
    }
    result
}
