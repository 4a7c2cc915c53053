//! A typed device buffer that grows in place: its address never changes.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;
use std::time::{Duration, Instant};

use cuda_vmm::{AllocationProps, Device, Stream};

use crate::backing::{Backing, Chunk};
use crate::error::{check_len, check_range, Error, Result};
use crate::memory::{copy_in, overwrite};
use crate::placement::Placement;
use crate::pod::{as_bytes, as_bytes_mut, uniform_byte, zeroed, DevicePod};
use crate::policy::{round_up, split, GrowthPolicy};
use crate::pool::ChunkPool;
use crate::stats::{BlockedLog, BlockedStats, DriverStats};

use churn::{ChurnWatch, SLOW_CREATE_MIN_BYTES};
use prefetch::Prefetcher;

mod churn;
pub(crate) mod prefetch;
mod prefetching;
mod set_len;
mod shrink;
mod sleep;

/// Host bytes staged per non-memset fill before device-side doubling takes over.
const FILL_STAGE_BYTES: usize = 64 << 10;

/// How a [`GrowableBuffer`] is set up. `Default`: capacity up to the device's total memory,
/// nothing committed up front, [`GrowthPolicy::default`], no pool, pinned device memory.
#[derive(Clone, Debug, Default)]
pub struct BufferConfig {
    /// Most elements the buffer can ever hold; its address range is reserved for this many
    /// up front (`None` = the device's total memory), rounded up to whole allocation units
    /// (the granularity or the pool's chunk size):
    /// [`GrowableBuffer::max_capacity`] says what was reserved.
    pub max_capacity: Option<usize>,
    /// Elements to commit at creation.
    pub initial_capacity: usize,
    /// How chunk sizes grow.
    pub policy: GrowthPolicy,
    /// Take chunks from (and return them to) this pool; chunks are then the pool's chunk size.
    pub pool: Option<ChunkPool>,
    /// Allocation properties (`None` = [`AllocationProps::device`]); must match the pool's.
    pub props: Option<AllocationProps>,
    /// Commit the next growth steps on a worker thread ahead of need (see
    /// [`GrowableBuffer::set_prefetch`]).
    pub prefetch: bool,
    /// Which devices the chunks live on ([`Placement::Owner`] by default).
    pub placement: Placement,
}

/// A typed, growable device buffer whose device pointer never moves.
///
/// The whole maximum capacity is reserved as one address range at creation; physical memory
/// is mapped at its end as the buffer grows (see [`GrowthPolicy`]) and unmapped by
/// [`shrink_to_fit`](GrowableBuffer::shrink_to_fit). [`ptr`](GrowableBuffer::ptr) stays valid
/// for kernels of any library for the buffer's whole life, for the first
/// [`capacity`](GrowableBuffer::capacity) elements.
///
/// Growth is transactional: if any driver call fails, length, contents, pointer and
/// committed memory are exactly as before and nothing obtained during the attempt is kept.
///
/// Copies to and from the host are synchronous: complete when they return. The `_async`
/// variants queue on a caller's [`Stream`] and record the use. Unmapping (shrink, drop, a
/// failed growth's rollback) is ordered after device work as the reservation's
/// [`UnmapWait`](cuda_vmm::UnmapWait) says: by default after every recorded use and all
/// work in the contexts that can access the memory, so kernels of any library may still be
/// running when the buffer is shrunk or dropped. A shrink or drop returns at once: the
/// release queue's worker ([`cuda_vmm::release`]) waits and unmaps; a rollback waits in the
/// call. See
/// [`set_unmap_wait`](GrowableBuffer::set_unmap_wait) for the cheaper, `unsafe` opt-outs.
pub struct GrowableBuffer<T: DevicePod> {
    backing: Backing,
    policy: GrowthPolicy,
    /// Mapped chunks, back to back from offset 0.
    chunks: Vec<Chunk>,
    committed: usize,
    len: usize,
    /// The background committer, when prefetch is on.
    prefetch: Option<Prefetcher>,
    /// Time growing calls spent in the allocator.
    blocked: BlockedLog,
    /// Whether creates were recently slow ([`GrowthPolicy::churn_allocation`]).
    churn: ChurnWatch,
    /// Process-wide unique identity (never the address, which a later buffer may reuse).
    id: u64,
    /// Changes whenever chunks are unmapped (shrink, straddling-chunk replacement).
    generation: u64,
    /// Set while the buffer sleeps.
    asleep: Option<sleep::SleptBuffer>,
    /// Host memory for sleep backups.
    host: crate::sleeping::KeptArena,
    _elements: PhantomData<T>,
}

crate::memory::device_memory!(GrowableBuffer);

impl<T: crate::pod::DevicePod> GrowableBuffer<T> {
    /// See [`DeviceMemory::set_unmap_wait`](crate::DeviceMemory::set_unmap_wait); written
    /// here rather than by `device_memory!`, so that no macro holds an `unsafe` block.
    ///
    /// # Safety
    /// As for [`DeviceMemory::set_unmap_wait`](crate::DeviceMemory::set_unmap_wait).
    pub unsafe fn set_unmap_wait(&self, policy: cuda_vmm::UnmapWait) {
        // SAFETY: forwarded from this function's contract.
        unsafe { crate::memory::DeviceMemory::set_unmap_wait(self, policy) }
    }
}

/// Source of [`GrowableBuffer::id`].
static NEXT_BUFFER_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl<T: DevicePod> GrowableBuffer<T> {
    /// Reserves the buffer's address range on `device` and commits `initial_capacity`.
    pub fn new(device: &Device, config: BufferConfig) -> Result<Self> {
        let size = element_size::<T>()?;
        config.policy.validate()?;
        let max_capacity = config.max_capacity;
        let backing = Backing::new(
            device,
            config.props,
            config.pool,
            &config.placement,
            "the buffer",
            |unit, _| {
                let bytes = match max_capacity {
                    Some(n) => n.checked_mul(size).ok_or_else(|| Error::InvalidConfig {
                        message: format!("max capacity {n} elements of {size} bytes overflows"),
                    })?,
                    None => device.total_memory()?,
                };
                Ok(round_up(bytes.max(1), unit))
            },
        )?;
        let mut buffer = GrowableBuffer {
            backing,
            policy: config.policy,
            chunks: Vec::new(),
            committed: 0,
            len: 0,
            prefetch: None,
            asleep: None,
            host: crate::sleeping::KeptArena::new(),
            blocked: BlockedLog::default(),
            churn: ChurnWatch::default(),
            id: NEXT_BUFFER_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            generation: 0,
            _elements: PhantomData,
        };
        buffer.reserve(config.initial_capacity)?;
        // Only the caller's growing calls count.
        buffer.blocked = BlockedLog::default();
        buffer.set_prefetch(config.prefetch)?;
        Ok(buffer)
    }

    /// A buffer that can hold up to `max_capacity` elements, otherwise with the defaults.
    ///
    /// The reservation is whole allocation units (the allocation granularity, 2 MiB on
    /// most GPUs, or the pool's chunk size), so `max_capacity` is rounded **up** to them:
    /// [`max_capacity()`](Self::max_capacity) tells what you got, here 262,144 `u64`s for
    /// 10 asked for with 2 MiB granules. The same rounding applies to
    /// [`BufferConfig::max_capacity`].
    ///
    /// ```
    /// # fn main() -> Result<(), cuda_vmm_alloc::Error> {
    /// use cuda_vmm::{AllocationProps, Cuda};
    /// use cuda_vmm_alloc::GrowableBuffer;
    ///
    /// let cuda = Cuda::simulator()?;
    /// let device = cuda.device(0)?;
    /// let buffer = GrowableBuffer::<u64>::with_max_capacity(&device, 10)?;
    /// let granule = device.min_granularity(&AllocationProps::device(&device))?;
    /// assert_eq!(buffer.max_capacity(), granule / 8);
    /// assert_eq!((buffer.len(), buffer.committed_bytes()), (0, 0));
    /// # Ok(()) }
    /// ```
    pub fn with_max_capacity(device: &Device, max_capacity: usize) -> Result<Self> {
        Self::new(
            device,
            BufferConfig {
                max_capacity: Some(max_capacity),
                ..BufferConfig::default()
            },
        )
    }

    /// The buffer's identity, unique in the process (unlike its address, which a later
    /// buffer may be given).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// A counter that changes whenever chunks are unmapped (a shrink replaced or released
    /// memory); growth leaves it alone. It does not say which chunks went:
    /// [`SharedBufferProducer`](crate::SharedBufferProducer) follows each chunk's identity
    /// instead, so that releasing chunks it never published does not stop it.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Elements stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no elements are stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Elements that fit in the memory committed now.
    pub fn capacity(&self) -> usize {
        self.committed / size_of::<T>()
    }

    /// Elements that fit in the reserved address range: the most the buffer can ever hold.
    pub fn max_capacity(&self) -> usize {
        self.backing.reservation.size() / size_of::<T>()
    }

    /// The mapped chunks in address order, as `(byte offset, allocation)`: back to back
    /// from offset 0 up to [`committed_bytes`](GrowableBuffer::committed_bytes).
    pub fn chunk_allocations(&self) -> impl Iterator<Item = (usize, &cuda_vmm::Allocation)> {
        self.chunks
            .iter()
            .map(|c| (c.offset(), c.mapping.allocation()))
    }

    /// The mapped chunks in address order as `(byte offset, mapped bytes, serial,
    /// allocation)`; a chunk's serial is unique in the process and changes whenever the
    /// chunk is unmapped and replaced, even at the same offset.
    pub(crate) fn chunk_records(
        &self,
    ) -> impl Iterator<Item = (usize, usize, u64, &cuda_vmm::Allocation)> {
        self.chunks.iter().map(|c| {
            (
                c.offset(),
                c.mapping.size(),
                c.serial,
                c.mapping.allocation(),
            )
        })
    }

    /// Whether chunks come from a [`ChunkPool`].
    pub fn uses_pool(&self) -> bool {
        self.backing.pool.is_some()
    }

    /// The properties every chunk is created with.
    pub fn props(&self) -> &AllocationProps {
        &self.backing.props
    }

    /// Bytes of physical memory mapped now.
    pub fn committed_bytes(&self) -> usize {
        self.committed
    }

    /// The growth policy in use.
    pub fn policy(&self) -> &GrowthPolicy {
        &self.policy
    }

    /// Driver calls made so far (the prefetch worker's included once its steps are collected)
    /// and the physical footprint.
    pub fn stats(&self) -> DriverStats {
        self.backing.stats
    }

    /// How long growing calls kept the caller in the allocator: p50, p99, max per call.
    pub fn blocked_stats(&self) -> BlockedStats {
        self.blocked.stats()
    }

    /// Appends one element: one synchronous host-to-device copy per call (and a commit
    /// when the buffer is full), so a loop of `push`es pays one copy per element. Append
    /// many elements with [`extend_from_slice`](Self::extend_from_slice) (one copy for the
    /// slice) or [`resize`](Self::resize) (filled on the device) instead.
    ///
    /// ```
    /// # fn main() -> Result<(), cuda_vmm_alloc::Error> {
    /// use cuda_vmm_alloc::GrowableBuffer;
    ///
    /// let cuda = cuda_vmm::Cuda::simulator()?;
    /// let mut buffer = GrowableBuffer::<u32>::with_max_capacity(&cuda.device(0)?, 1 << 20)?;
    /// buffer.push(7)?; // one copy
    /// buffer.extend_from_slice(&[8, 9, 10])?; // one copy for all three
    /// assert_eq!(buffer.to_vec()?, [7, 8, 9, 10]);
    /// # Ok(()) }
    /// ```
    pub fn push(&mut self, value: T) -> Result<()> {
        self.extend_from_slice(std::slice::from_ref(&value))
    }

    /// Appends host elements, growing as needed. On error the buffer is exactly as before.
    pub fn extend_from_slice(&mut self, values: &[T]) -> Result<()> {
        self.append(values, None)
    }

    /// Sets the length to `new_len`; new elements are set to `value` on the device (a memset
    /// when all bytes of `value` are equal, otherwise one small host copy doubled by
    /// device-to-device copies). On error the buffer is exactly as before.
    pub fn resize(&mut self, new_len: usize, value: T) -> Result<()> {
        if new_len <= self.len {
            self.truncate(new_len);
            return Ok(());
        }
        self.grow_and(new_len, |b| b.fill(b.len, new_len - b.len, value))?;
        self.len = new_len;
        Ok(())
    }

    /// Commits memory for at least `additional` more elements without changing the length.
    pub fn reserve(&mut self, additional: usize) -> Result<()> {
        let needed = self.grown_len(additional)?;
        self.grow_and(needed, |_| Ok(()))
    }

    /// Shortens the buffer to `len` elements (no effect if already shorter); memory stays
    /// committed.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Removes every element; memory stays committed.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Copies elements `range` to the host, into `out`, which must hold exactly
    /// `range.len()` elements: a shorter or longer `out` is [`Error::LengthMismatch`]
    /// (nothing copied), and a range past [`len`](Self::len) is [`Error::OutOfRange`].
    /// Synchronous: the copy is complete when this returns.
    ///
    /// ```
    /// # fn main() -> Result<(), cuda_vmm_alloc::Error> {
    /// use cuda_vmm_alloc::{Error, GrowableBuffer};
    ///
    /// let cuda = cuda_vmm::Cuda::simulator()?;
    /// let mut buffer = GrowableBuffer::<u32>::with_max_capacity(&cuda.device(0)?, 1 << 20)?;
    /// buffer.extend_from_slice(&[1, 2, 3, 4])?;
    /// let mut out = [0u32; 2];
    /// buffer.read(1..3, &mut out)?;
    /// assert_eq!(out, [2, 3]);
    /// assert_eq!(
    ///     buffer.read(0..4, &mut out),
    ///     Err(Error::LengthMismatch { expected: 4, actual: 2 })
    /// );
    /// # Ok(()) }
    /// ```
    pub fn read(&self, range: Range<usize>, out: &mut [T]) -> Result<()> {
        self.check_awake("read")?;
        check_range("read", &range, self.len)?;
        check_len(&range, out.len())?;
        if out.is_empty() {
            return Ok(());
        }
        self.backing
            .reservation
            .read(self.byte_offset(range.start), as_bytes_mut(out))?;
        Ok(())
    }

    /// Copies the whole buffer to a new host vector.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        let mut out = vec![zeroed::<T>(); self.len];
        self.read(0..self.len, &mut out)?;
        Ok(out)
    }

    /// Overwrites elements from `offset` on with host data; the range must lie within the
    /// length. If it fails after a driver call, each element holds its old value or its new
    /// one (the copy is staged in chunks, which may have landed).
    pub fn write(&mut self, offset: usize, values: &[T]) -> Result<()> {
        self.overwrite(offset, values, None)
    }

    /// Appends host elements, growing as needed; the copy is queued on `stream`
    /// (`cuMemcpyHtoDAsync`) and recorded as a use. `values` are staged before this returns
    /// (never read afterwards, also when it fails: see `cuda_vmm::staging`).
    pub fn extend_from_slice_async(&mut self, stream: &Stream, values: &[T]) -> Result<()> {
        self.append(values, Some(stream))
    }

    /// Overwrites elements from `offset` on, queued on `stream` and recorded as a use;
    /// `values` are staged before this returns.
    pub fn write_async(&mut self, stream: &Stream, offset: usize, values: &[T]) -> Result<()> {
        self.overwrite(offset, values, Some(stream))
    }

    /// [`overwrite`] on this structure's reservation and length.
    fn overwrite(&self, offset: usize, values: &[T], stream: Option<&Stream>) -> Result<()> {
        self.check_awake("write")?;
        let reservation = &self.backing.reservation;
        overwrite(reservation, self.len, offset, values, |_| Ok(()), stream)
    }

    /// Appends `values`, growing as needed, copied in by [`copy_in`] (synchronously, or
    /// queued on `stream`). On error the buffer is exactly as before.
    fn append(&mut self, values: &[T], stream: Option<&Stream>) -> Result<()> {
        let new_len = self.grown_len(values.len())?;
        self.grow_and(new_len, |b| {
            let at = b.byte_offset(b.len);
            copy_in(&b.backing.reservation, stream, at, as_bytes(values))
        })?;
        self.len = new_len;
        Ok(())
    }

    /// Gives `devices` read-write access to the buffer, now (one `cuMemSetAccess` carrying
    /// every descriptor) and for memory mapped later. The owning device always has access.
    pub fn grant_access(&mut self, devices: &[Device]) -> Result<()> {
        self.check_awake("grant_access")?;
        // Steps prefetched for the old peer set are given back, and the worker restarts with
        // the new one once the grant is done.
        let prefetch = self.prefetch();
        self.set_prefetch(false)?;
        let ranges: &[(usize, usize, bool)] = if self.committed > 0 {
            &[(0, self.committed, false)]
        } else {
            &[]
        };
        let granted = self.backing.grant_access(devices, ranges);
        granted.and(self.set_prefetch(prefetch))
    }

    fn byte_offset(&self, index: usize) -> usize {
        index * size_of::<T>()
    }

    fn grown_len(&self, additional: usize) -> Result<usize> {
        self.len
            .checked_add(additional)
            .ok_or(Error::CapacityExceeded {
                requested: usize::MAX,
                max: self.max_capacity(),
            })
    }

    /// Commits memory for `len` elements, then runs `op`; if either fails, the memory
    /// committed for it is given back and the buffer is exactly as before, its placement
    /// rotation, [`blocked_stats`](Self::blocked_stats) and prefetch queue included.
    fn grow_and(&mut self, len: usize, op: impl FnOnce(&Self) -> Result<()>) -> Result<()> {
        self.check_awake("growth")?;
        let (chunks, committed) = (self.chunks.len(), self.committed);
        let rotation = self.backing.homes.position();
        let queued = self.prefetch.as_ref().map_or(0, Prefetcher::queued);
        match self
            .ensure_capacity(len)
            .and_then(|grew| op(self).map(|()| grew))
        {
            // Only a call that succeeded counts in the blocked times.
            Ok(None) => self.blocked.idle(),
            Ok(Some((blocked, prefetched))) => self.blocked.grew(blocked, prefetched),
            Err(e) => {
                let fresh = self.chunks.split_off(chunks);
                self.committed = committed;
                self.backing.rollback(fresh);
                // The chunks given back give their turns in the placement rotation back too.
                self.backing.homes.set_position(rotation);
                if self.prefetch.as_ref().map_or(0, Prefetcher::queued) != queued {
                    // Steps were collected (and given back with the rest): those still
                    // queued start past the restored edge. Queue afresh from it.
                    self.cancel_prefetch();
                    self.request_prefetch();
                }
                return Err(e);
            }
        }
        self.request_prefetch();
        Ok(())
    }

    /// Commits memory for `len` elements: the prefetched step if one is ready, then (if still
    /// short) in line. Leaves what it committed in place on error, for
    /// [`grow_and`](Self::grow_and) to roll back. Returns, if it grew, how long it blocked
    /// and whether it took a prefetched step.
    fn ensure_capacity(&mut self, len: usize) -> Result<Option<(Duration, bool)>> {
        let reserved = self.reserved_bytes();
        let needed = match len.checked_mul(size_of::<T>()) {
            Some(bytes) if bytes <= reserved => bytes,
            _ => {
                return Err(Error::CapacityExceeded {
                    requested: len,
                    max: self.max_capacity(),
                })
            }
        };
        if needed <= self.committed {
            return Ok(None);
        }
        let start = Instant::now();
        let prefetched = self.take_prefetched(needed);
        // Mappings a rollback left may sit where the buffer grows.
        self.backing.retry_stranded()?;
        if needed > self.committed {
            let unit = self.backing.unit();
            let target = if prefetched {
                // A step was just taken: only the shortfall, so the policy's bound holds.
                self.committed + round_up(needed - self.committed, unit)
            } else {
                self.policy.grow_to(self.committed, needed, unit)
            }
            .min(reserved);
            let sizes = self.step_sizes(target - self.committed);
            let created_before = self.backing.stats.time.create;
            let chunks = self.backing.commit_run(self.committed, &sizes, false)?;
            self.judge_creates(&sizes, created_before);
            self.chunks.extend(chunks);
            self.committed = target;
            self.backing.note_committed(target);
        }
        Ok(Some((start.elapsed(), prefetched)))
    }

    /// The chunk sizes backing a growth of `grow` bytes: pool chunks, or pieces of at most
    /// the policy's largest allocation (its churn allocation while creates are slow).
    fn step_sizes(&self, grow: usize) -> Vec<usize> {
        let unit = self.backing.unit();
        if self.backing.pool.is_some() {
            vec![unit; grow / unit]
        } else if self.churn.active(Instant::now()) {
            split(grow, self.policy.churn_piece(unit))
        } else {
            split(grow, self.policy.max_piece(unit))
        }
    }

    /// Judges the creates of a step of `sizes` made in line, `created_before` being the
    /// create time spent before it; counts a slow one in the stats.
    fn judge_creates(&mut self, sizes: &[usize], created_before: Duration) {
        if self.backing.pool.is_some() || self.policy.churn_allocation == 0 {
            return;
        }
        // A step split by `max_allocation` or `max_chunk` is judged on its total, as long as
        // its largest piece is large enough for the rate to show.
        let largest = sizes.iter().copied().max().unwrap_or(0);
        if largest < SLOW_CREATE_MIN_BYTES {
            return;
        }
        let took = self
            .backing
            .stats
            .time
            .create
            .saturating_sub(created_before);
        if self.churn.observe(sizes.iter().sum(), took, Instant::now()) {
            self.backing.stats.slow_creates += 1;
        }
    }

    /// Fills `count` elements from `start` with `value`.
    fn fill(&self, start: usize, count: usize, value: T) -> Result<()> {
        let offset = self.byte_offset(start);
        let bytes = count * size_of::<T>();
        let reservation = &self.backing.reservation;
        if let Some(byte) = uniform_byte(&value) {
            reservation.fill(offset, bytes, byte)?;
            return Ok(());
        }
        let staged = vec![value; count.min((FILL_STAGE_BYTES / size_of::<T>()).max(1))];
        reservation.write(offset, as_bytes(&staged))?;
        let mut done = size_of_val(staged.as_slice());
        while done < bytes {
            let n = done.min(bytes - done);
            reservation.copy_within(offset, offset + done, n)?;
            done += n;
        }
        Ok(())
    }
}

impl<T: DevicePod> Drop for GrowableBuffer<T> {
    fn drop(&mut self) {
        self.cancel_prefetch();
        if let Err(e) = self.release_from(0) {
            tracing::error!("dropping a growable buffer: {e}");
        }
    }
}

impl<T: DevicePod> fmt::Debug for GrowableBuffer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrowableBuffer")
            .field("ptr", &format_args!("{:#x}", self.ptr()))
            .field("len", &self.len)
            .field("committed_bytes", &self.committed)
            .field("reserved_bytes", &self.reserved_bytes())
            .field("chunks", &self.chunks.len())
            .finish()
    }
}

/// `size_of::<T>()`, refusing zero-sized types.
pub(crate) fn element_size<T>() -> Result<usize> {
    match size_of::<T>() {
        0 => Err(Error::ZeroSizedElement {
            type_name: std::any::type_name::<T>(),
        }),
        n => Ok(n),
    }
}
