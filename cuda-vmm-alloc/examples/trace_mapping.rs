//! Mapping changes as `tracing` spans: a buffer grows and shrinks, a sparse array commits
//! tiles from a pool, and every driver call prints with its address, size and duration.
//!
//! ```text
//! cargo run -p cuda-vmm-alloc --example trace_mapping                   # GPU or simulator
//! RUST_LOG=cuda_vmm=debug cargo run -p cuda-vmm-alloc --example trace_mapping  # driver calls only
//! ```
//!
//! `RUST_LOG` is a `tracing-subscriber` `EnvFilter` (default
//! `cuda_vmm=debug,cuda_vmm_alloc=debug`); closing spans print `time.busy`, the call's
//! duration.

use std::io::IsTerminal;

use cuda_vmm::Cuda;
use cuda_vmm_alloc::{ChunkPool, GrowableBuffer, PoolConfig, SparseArray, SparseConfig};
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::EnvFilter;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("cuda_vmm=debug,cuda_vmm_alloc=debug"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::CLOSE)
        .with_ansi(std::io::stdout().is_terminal()) // plain text into logs and pipes
        .init();

    let cuda = Cuda::new()?;
    println!("on {}", cuda.describe());
    let device = cuda.device(0)?;

    // Growth: each new run of chunks is one `commit` span with cuMemCreate, cuMemMap and one
    // cuMemSetAccess inside; shrinking is a `decommit` span with cuMemUnmap and cuMemRelease.
    let mut buffer = GrowableBuffer::<u8>::with_max_capacity(&device, 64 << 20)?;
    buffer.resize(3 << 20, 1)?;
    buffer.truncate(1 << 20);
    buffer.shrink_to_fit()?;

    // A pooled sparse array: `chunk_pool.take` shows hits and misses, `chunk_pool.recycle`
    // whether the chunk was cached.
    let pool = ChunkPool::new(&device, PoolConfig::default())?;
    let config = SparseConfig {
        pool: Some(pool.clone()),
        ..SparseConfig::default()
    };
    let mut array = SparseArray::<u8>::new(&device, 256 << 20, config)?;
    let tile = array.tile_bytes();
    array.commit(0..2 * tile)?;
    array.decommit(0..2 * tile)?;
    array.commit(0..tile)?; // a pool hit: no cuMemCreate
    Ok(())
}
