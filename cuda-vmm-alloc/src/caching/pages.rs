//! The allocator's cache of physical chunks: one [`ChunkPool`] per chunk size. Its segments
//! take their pages from it, compaction moves pages through it, and buffers and sparse
//! arrays built on one of its pools share it.

use cuda_vmm::Device;
use parking_lot::Mutex;

use crate::pool::{ChunkPool, PoolConfig};
use crate::Result;

/// Chunk pools by chunk size, unbounded: what is cached here is given back by
/// [`trim`](PageCache::trim) (the allocator's `empty_cache` and out-of-memory path).
pub(crate) struct PageCache {
    device: Device,
    pools: Mutex<Vec<ChunkPool>>,
}

impl PageCache {
    pub(crate) fn new(device: &Device) -> PageCache {
        PageCache {
            device: device.clone(),
            pools: Mutex::new(Vec::new()),
        }
    }

    /// The pool of `chunk_size`-byte chunks (a nonzero multiple of the granularity),
    /// created on first use.
    pub(crate) fn pool(&self, chunk_size: usize) -> Result<ChunkPool> {
        let mut pools = self.pools.lock();
        if let Some(pool) = pools.iter().find(|p| p.chunk_size() == chunk_size) {
            return Ok(pool.clone());
        }
        let pool = ChunkPool::new(
            &self.device,
            PoolConfig {
                chunk_size,
                max_chunks: usize::MAX,
                max_bytes: usize::MAX,
                props: None,
            },
        )?;
        pools.push(pool.clone());
        Ok(pool)
    }

    /// Bytes cached in the pools now.
    pub(crate) fn held_bytes(&self) -> usize {
        self.pools.lock().iter().map(|p| p.stats().bytes_held).sum()
    }

    /// Releases every cached chunk to the driver; returns the bytes released.
    pub(crate) fn trim(&self) -> usize {
        let pools: Vec<ChunkPool> = self.pools.lock().clone();
        let mut bytes = 0;
        for pool in pools {
            match pool.trim() {
                Ok(n) => bytes += n * pool.chunk_size(),
                Err(e) => tracing::error!("releasing the page cache's chunks: {e}"),
            }
        }
        bytes
    }
}
