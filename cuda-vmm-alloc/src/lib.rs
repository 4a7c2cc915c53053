//! Growable buffers, sparse arrays and a physical chunk pool on CUDA reserved address ranges.
//!
//! - [`GrowableBuffer`]: a typed device vector whose pointer never moves. It reserves its
//!   maximum capacity up front and maps physical chunks at the end as it grows, sized by a
//!   [`GrowthPolicy`] so that growth takes few driver calls (one `cuMemSetAccess` per new
//!   run). Growth is transactional. Opt-in background commit
//!   ([`GrowableBuffer::set_prefetch`]) maps the next steps on a worker thread ahead of need;
//!   [`BlockedStats`] tells how long growing calls waited.
//! - [`SparseArray`]: a huge logical array of which only committed tiles hold memory; holes
//!   are errors or read as zeros ([`HoleBehavior`]); [`Display`](std::fmt::Display) draws a
//!   residency map.
//! - [`CachingAllocator`]: a stream-ordered caching allocator of device blocks on expandable
//!   segments (PyTorch's `expandable_segments`), with budgets, trims, statistics and snapshots.
//! - [`ChunkPool`]: a bounded, thread-safe cache of physical allocations that buffers and
//!   arrays share to skip `cuMemCreate`/`cuMemRelease`.
//!
//! Commits, decommits and the pool's takes and recycles are debug-level `tracing` spans
//! (`commit`, `decommit`, `chunk_pool.take` with `hits` and `misses`, `chunk_pool.recycle`
//! with `cached`...), around `cuda-vmm`'s spans of the driver calls; see the
//! `trace_mapping` example.
//!
//! Elements are [`bytemuck::Pod`] types (the [`DevicePod`] bound), copied to and from the
//! host byte for byte. A user type is a `#[repr(C)]` struct without padding that derives
//! `Clone`, `Copy`, `bytemuck::Pod` and `bytemuck::Zeroable`. With `bytemuck` (feature
//! `derive`) among your own dependencies, that is all; through this crate's re-export
//! ([`bytemuck`], so that you need no dependency of your own), the derives must also be
//! told where bytemuck is, with `#[bytemuck(crate = "cuda_vmm_alloc::bytemuck")]`, because
//! they name `::bytemuck` otherwise ("cannot find `bytemuck` in the crate root"):
//!
//! ```
//! # fn main() -> Result<(), cuda_vmm_alloc::Error> {
//! use cuda_vmm_alloc::{bytemuck, GrowableBuffer};
//!
//! #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
//! #[bytemuck(crate = "cuda_vmm_alloc::bytemuck")]
//! #[repr(C)]
//! struct Entry {
//!     key: u32,
//!     value: f32,
//! }
//!
//! let cuda = cuda_vmm::Cuda::simulator()?;
//! let mut log = GrowableBuffer::<Entry>::with_max_capacity(&cuda.device(0)?, 1 << 20)?;
//! log.extend_from_slice(&[Entry { key: 1, value: 0.5 }, Entry { key: 2, value: 1.5 }])?;
//! assert_eq!(log.to_vec()?[1], Entry { key: 2, value: 1.5 });
//! # Ok(()) }
//! ```
//!
//! ```
//! # fn main() -> Result<(), cuda_vmm_alloc::Error> {
//! use cuda_vmm::Cuda;
//! use cuda_vmm_alloc::{GrowableBuffer, HoleBehavior, SparseArray, SparseConfig};
//!
//! let cuda = Cuda::simulator()?;
//! let device = cuda.device(0)?;
//!
//! // A buffer of up to 64 Mi u32s (256 MiB of address space, nothing committed yet).
//! let mut buffer = GrowableBuffer::<u32>::with_max_capacity(&device, 64 << 20)?;
//! let ptr = buffer.ptr();
//! buffer.extend_from_slice(&[1, 2, 3])?;
//! buffer.resize(1 << 20, 7)?; // 4 MiB, filled on the device
//! assert_eq!(buffer.ptr(), ptr); // never moves
//! let mut head = [0u32; 4];
//! buffer.read(0..4, &mut head)?;
//! assert_eq!(head, [1, 2, 3, 7]);
//! buffer.truncate(3);
//! buffer.shrink_to_fit()?; // gives memory back
//! let props = cuda_vmm::AllocationProps::device(&device);
//! assert_eq!(buffer.committed_bytes(), device.min_granularity(&props)?);
//!
//! // A 1 GiB logical array backed only where touched.
//! let config = SparseConfig { holes: HoleBehavior::Zeros, ..SparseConfig::default() };
//! let mut array = SparseArray::<f32>::new(&device, 1 << 28, config)?;
//! array.commit(524_288..524_298)?; // tile 1 (tiles are 2 MiB = 524288 f32s)
//! array.write(524_288, &[1.5; 10])?;
//! let mut out = [9.0f32; 4];
//! array.read(524_286..524_290, &mut out)?; // tile 0 is a hole
//! assert_eq!(out, [0.0, 0.0, 1.5, 1.5]);
//! assert_eq!(array.committed_bytes(), array.tile_bytes());
//! println!("{array}");
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod backing;
mod budget;
mod caching;
mod error;
mod growable;
#[cfg(feature = "cudarc")]
mod interop;
mod memory;
mod placement;
mod pod;
mod policy;
mod pool;
mod shared;
mod sleep_group;
mod sleeping;
mod sparse;
mod stats;
mod trace;
mod views;

pub use budget::MemoryBudget;
/// Re-exported so users derive `Pod` with the same version, without a dependency of their
/// own: derive through it with `#[bytemuck(crate = "cuda_vmm_alloc::bytemuck")]` (see the
/// [crate docs](crate)).
pub use bytemuck;
#[cfg(feature = "cudarc")]
pub use caching::CachedView;
pub use caching::{
    Backup, BlockSnapshot, CachedBlock, CachingAllocator, CachingConfig, CachingStats,
    SegmentSnapshot, SizeClassStats, SleepReport, Snapshot, WakeReport, SIZE_CLASSES,
};
pub use error::{Error, Result, SocketError};
pub use growable::{BufferConfig, GrowableBuffer};
pub use memory::DeviceMemory;
pub use placement::Placement;
pub use pod::DevicePod;
pub use policy::GrowthPolicy;
pub use pool::{ChunkPool, PoolConfig, PoolStats, RecycleError};
pub use shared::{SharedBufferConsumer, SharedBufferProducer, MAX_CHUNKS_PER_UPDATE};
pub use sleep_group::SleepGroup;
pub use sparse::{HoleBehavior, SparseArray, SparseConfig, ZeroMemory};
pub use stats::{BlockedStats, DriverStats, DriverTimes};
