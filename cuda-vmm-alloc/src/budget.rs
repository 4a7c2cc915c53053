//! A bound on the physical memory that several structures commit together.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};

/// A memory budget: the most bytes of physical memory the structures given it may hold at
/// once (the class of vLLM's `gpu_memory_utilization`). Cheap to clone: clones share one
/// count, so one budget handed to every [`SparseArray`](crate::SparseArray) of a device
/// bounds them together; a budget of its own bounds one array.
///
/// A commit that would pass the limit is refused with [`Error::BudgetExceeded`] before any
/// driver call, and changes nothing. Counted: the tiles an array commits, spares included,
/// from the moment they are obtained (created or taken from a pool) until they are given
/// back (to the pool or the device). Not counted: what a [`ChunkPool`](crate::ChunkPool)
/// caches ([`PoolConfig::max_bytes`](crate::PoolConfig::max_bytes) bounds that), zero
/// memory, and address space. A tile whose unmap failed stays counted, and so does a tile
/// whose release is queued behind device work (see [`cuda_vmm::release`]) until the queue
/// gives it back: a commit the budget would refuse while releases are queued first waits
/// for them (once, on the caller's thread), then is refused only if it still does not fit.
///
/// Set with [`SparseConfig::budget`](crate::SparseConfig::budget); a spare batch refused
/// by the budget falls back to the tiles asked for, as any failed spare batch does.
///
/// ```
/// # fn main() -> Result<(), cuda_vmm_alloc::Error> {
/// use cuda_vmm::{AllocationProps, Cuda};
/// use cuda_vmm_alloc::{MemoryBudget, SparseArray, SparseConfig};
///
/// let cuda = Cuda::simulator()?;
/// let device = cuda.device(0)?;
/// let tile = device.min_granularity(&AllocationProps::device(&device))?;
/// let budget = MemoryBudget::new(3 * tile);
/// let config = SparseConfig { budget: Some(budget.clone()), ..SparseConfig::default() };
/// let mut a = SparseArray::<u8>::new(&device, 16 * tile, config.clone())?;
/// let mut b = SparseArray::<u8>::new(&device, 16 * tile, config)?;
/// a.commit(0..2 * tile)?;
/// let refused = b.commit(0..2 * tile).unwrap_err();
/// assert!(refused.is_budget_exceeded());
/// assert_eq!((b.committed_bytes(), budget.used()), (0, 2 * tile));
/// a.decommit(0..2 * tile)?;
/// b.commit(0..2 * tile)?;
/// assert_eq!(budget.available(), tile);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MemoryBudget {
    inner: Arc<Inner>,
}

struct Inner {
    limit: usize,
    used: AtomicUsize,
}

impl MemoryBudget {
    /// A budget of `limit_bytes`, nothing used.
    pub fn new(limit_bytes: usize) -> MemoryBudget {
        MemoryBudget {
            inner: Arc::new(Inner {
                limit: limit_bytes,
                used: AtomicUsize::new(0),
            }),
        }
    }

    /// The most bytes the structures sharing this budget may hold.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Bytes held now by the structures sharing this budget.
    pub fn used(&self) -> usize {
        self.inner.used.load(Ordering::Acquire)
    }

    /// Bytes that may still be committed: [`limit`](Self::limit) - [`used`](Self::used).
    pub fn available(&self) -> usize {
        self.limit().saturating_sub(self.used())
    }

    /// Counts `bytes` as used, or refuses with [`Error::BudgetExceeded`], counting nothing.
    pub(crate) fn charge(&self, bytes: usize) -> Result<()> {
        let limit = self.inner.limit;
        self.inner
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= limit)
            })
            .map(|_| ())
            .map_err(|used| Error::BudgetExceeded {
                requested: bytes,
                used,
                limit,
            })
    }

    /// Counts `bytes` as no longer used.
    pub(crate) fn refund(&self, bytes: usize) {
        let refunded = self
            .inner
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
        if let Ok(used) = refunded {
            if used < bytes {
                tracing::error!("memory budget: refunding {bytes} bytes of {used} used");
            }
        }
    }
}

impl fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBudget")
            .field("limit", &self.limit())
            .field("used", &self.used())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_past_the_limit_are_refused_and_count_nothing() {
        let budget = MemoryBudget::new(10);
        let shared = budget.clone();
        assert_eq!(budget.charge(6), Ok(()));
        assert_eq!(
            shared.charge(5),
            Err(Error::BudgetExceeded {
                requested: 5,
                used: 6,
                limit: 10
            })
        );
        assert_eq!((budget.used(), budget.available()), (6, 4));
        assert_eq!(shared.charge(4), Ok(()));
        assert_eq!(
            budget
                .charge(usize::MAX)
                .map_err(|e| e.is_budget_exceeded()),
            Err(true)
        );
        budget.refund(7);
        assert_eq!((shared.used(), shared.limit()), (3, 10));
    }
}
