//! Stream-ordered allocation (`cuMemAllocAsync`, `cuMemFreeAsync`) and memory
//! pools (`cuMemPool*`, `cuDevice*MemPool`).
//!
//! A pool hands out blocks: classic allocations (`model::classic`: a memfd mapped
//! read-write, the size rounded up to the granularity) that it keeps after they
//! are freed. A block in use is also a [`Classic`] record (marked `pooled`), so
//! copies, sets and `cuMemGetAddressRange` see it as they see `cuMemAlloc` memory.
//!
//! `cuMemFreeAsync` removes that record in the call (the pool's used bytes drop
//! then, as on an H200) and queues a marker on the stream: the block can be
//! handed out again once the marker has run, or at once to an allocation on the
//! same stream (which is ordered after the free). A pool's reserved bytes count
//! against its device's memory until they are released: at a synchronisation
//! (stream, event or context), the free blocks beyond the release threshold
//! (default 0); at `cuMemPoolTrimTo`, those beyond what it keeps; at
//! `cuMemPoolDestroy`, all of them (blocks still in use go when they are freed).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use core::ffi::c_int;

use cuda_vmm_sys::{
    CUmemAllocationHandleType as H, CUmemAllocationType, CUmemLocationType, CUmemPoolHandle_st,
    CUmemPoolProps, CUmemPool_attribute as A, CUmemoryPool, CUstream,
};

use crate::model::answers;
use crate::model::state::{Classic, DriverResult, Memory, Sim};
use crate::model::work::{Action, StreamId};

/// A pool's identity: `0..devices` are the devices' default pools.
pub(crate) type PoolId = u64;

const POOL_BASE: usize = 0x00b0_0000_0000;
const STRIDE: usize = 0x10;
/// First identity of a created pool.
const FIRST_CREATED: PoolId = 0x100;

fn pool_handle(id: PoolId) -> CUmemoryPool {
    core::ptr::null_mut::<CUmemPoolHandle_st>().wrapping_byte_add(POOL_BASE + id as usize * STRIDE)
}

fn decode(handle: CUmemoryPool) -> Option<PoolId> {
    let offset = (handle as usize).checked_sub(POOL_BASE)?;
    (offset % STRIDE == 0).then_some((offset / STRIDE) as PoolId)
}

/// A pool attribute's value, in the type the header declares for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    /// The reuse policies (`int`).
    Int(c_int),
    /// The sizes (`cuuint64_t`).
    Wide(u64),
}

/// Whether `attr` takes an `int` (`Some(true)`), a `cuuint64_t` (`Some(false)`),
/// or is not an attribute the header defines (`None`).
pub(crate) fn is_int(attr: A) -> Option<bool> {
    match attr {
        A::CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES
        | A::CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC
        | A::CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES => Some(true),
        A::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD
        | A::CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT
        | A::CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH
        | A::CU_MEMPOOL_ATTR_USED_MEM_CURRENT
        | A::CU_MEMPOOL_ATTR_USED_MEM_HIGH => Some(false),
        _ => None,
    }
}

/// One pool.
#[derive(Debug)]
pub(crate) struct Pool {
    device: usize,
    /// False once destroyed (its blocks in use are released when freed).
    live: bool,
    /// `maxSize` (0: no limit but the device's memory).
    max_size: u64,
    threshold: u64,
    /// The three reuse policies (1 or 0; default 1, as on an H200).
    reuse: [c_int; 3],
    reserved: u64,
    reserved_high: u64,
    used: u64,
    used_high: u64,
}

impl Pool {
    fn new(device: usize, max_size: u64) -> Self {
        Self {
            device,
            live: true,
            max_size,
            threshold: 0,
            reuse: [1; 3],
            reserved: 0,
            reserved_high: 0,
            used: 0,
            used_high: 0,
        }
    }
}

/// Where a block is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Handed out (it has a [`Classic`] record).
    InUse,
    /// Freed on `stream`, effective once the marker `seq` has run.
    Freeing { stream: StreamId, seq: u64 },
    /// Free: kept by the pool until released.
    Free,
}

/// Memory a pool reserved (keyed by start address).
#[derive(Debug)]
struct Block {
    pool: PoolId,
    rounded: u64,
    memory: Arc<Memory>,
    state: State,
}

/// Every pool, the devices' current pools, and the pools' blocks.
#[derive(Debug)]
pub(crate) struct Pools {
    pools: HashMap<PoolId, Pool>,
    /// The pool `cuMemAllocAsync` uses, per device.
    current: Vec<PoolId>,
    blocks: BTreeMap<u64, Block>,
    next_id: PoolId,
}

impl Pools {
    pub(crate) fn new(devices: usize) -> Self {
        Self {
            pools: (0..devices)
                .map(|d| (d as PoolId, Pool::new(d, 0)))
                .collect(),
            current: (0..devices).map(|d| d as PoolId).collect(),
            blocks: BTreeMap::new(),
            next_id: FIRST_CREATED,
        }
    }

    fn live(&self, handle: CUmemoryPool) -> DriverResult<PoolId> {
        decode(handle)
            .filter(|id| self.pools.get(id).is_some_and(|p| p.live))
            .ok_or(answers::POOL_BAD_HANDLE)
    }

    fn pool_mut(&mut self, id: PoolId) -> DriverResult<&mut Pool> {
        self.pools.get_mut(&id).ok_or(answers::POOL_BAD_HANDLE)
    }
}

impl Sim {
    /// `cuDeviceGetDefaultMemPool`.
    pub fn default_pool(&self, device: i64) -> DriverResult<CUmemoryPool> {
        let d = self
            .device(device)
            .ok_or(answers::DEFAULT_POOL_BAD_DEVICE)?;
        Ok(pool_handle(d as PoolId))
    }

    /// `cuDeviceGetMemPool`.
    pub fn current_pool(&self, device: i64) -> DriverResult<CUmemoryPool> {
        let d = self.device(device).ok_or(answers::MEM_POOL_BAD_DEVICE)?;
        Ok(pool_handle(self.pools.current[d]))
    }

    /// `cuDeviceSetMemPool`.
    pub fn set_current_pool(&mut self, device: i64, pool: CUmemoryPool) -> DriverResult<()> {
        let d = self.device(device).ok_or(answers::MEM_POOL_BAD_DEVICE)?;
        let id = self.pools.live(pool)?;
        if self.pools.pools.get(&id).map(|p| p.device) != Some(d) {
            return Err(answers::SET_MEM_POOL_OTHER_DEVICE);
        }
        self.pools.current[d] = id;
        Ok(())
    }

    /// `cuMemPoolCreate`: pinned memory on a device of this driver only.
    pub fn pool_create(&mut self, props: &CUmemPoolProps) -> DriverResult<CUmemoryPool> {
        if props.allocType != CUmemAllocationType::CU_MEM_ALLOCATION_TYPE_PINNED {
            return Err(answers::POOL_PROPS_BAD_TYPE);
        }
        if props.location.type_ != CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE {
            return Err(answers::POOL_PROPS_BAD_LOCATION);
        }
        let device = self
            .device(props.location.id.into())
            .ok_or(answers::POOL_PROPS_BAD_LOCATION)?;
        let types = props.handleTypes.0;
        if types & !H::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR.0 != 0
            || props.usage != 0
            || !props.win32SecurityAttributes.is_null()
            || props.reserved.iter().any(|b| *b != 0)
        {
            return Err(answers::POOL_PROPS_UNSUPPORTED);
        }
        let id = self.pools.next_id;
        self.pools.next_id += 1;
        let pool = Pool::new(device, props.maxSize as u64);
        self.pools.pools.insert(id, pool);
        Ok(pool_handle(id))
    }

    /// `cuMemPoolDestroy`: frees the pool's free blocks now, the others when they
    /// are freed; a device whose current pool it was goes back to its default pool.
    pub fn pool_destroy(&mut self, handle: CUmemoryPool) -> DriverResult<()> {
        let id = self.pools.live(handle)?;
        if id < FIRST_CREATED {
            return Err(answers::POOL_DESTROY_DEFAULT);
        }
        self.pools.pool_mut(id)?.live = false;
        for (d, current) in self.pools.current.iter_mut().enumerate() {
            if *current == id {
                *current = d as PoolId;
            }
        }
        self.settle();
        self.release_free(id, 0)
    }

    /// `cuMemAllocAsync` (`pool` `None`: the current pool of the stream's device)
    /// and `cuMemAllocFromPoolAsync`.
    pub fn pool_alloc(
        &mut self,
        size: u64,
        pool: Option<CUmemoryPool>,
        stream: CUstream,
    ) -> DriverResult<u64> {
        let (stream, device) = self.stream_of(stream)?;
        let id = match pool {
            Some(handle) => self.pools.live(handle)?,
            None => self.pools.current[device],
        };
        if size == 0 {
            return match answers::ALLOC_ASYNC_ZERO_SIZE {
                code if code == cuda_vmm_sys::CUresult::CUDA_SUCCESS => Ok(0),
                code => Err(code),
            };
        }
        self.settle();
        let need = size
            .checked_next_multiple_of(self.granularity())
            .ok_or(answers::POOL_OUT_OF_MEMORY)?;
        let reusable = self
            .pools
            .blocks
            .iter()
            .filter(|(_, b)| b.pool == id && b.rounded >= need)
            .filter(|(_, b)| match b.state {
                State::Free => true,
                State::Freeing { stream: s, .. } => s == stream,
                State::InUse => false,
            })
            .min_by_key(|(start, b)| (b.rounded, **start))
            .map(|(start, _)| *start);
        let start = match reusable {
            Some(start) => start,
            None => self.pool_grow(id, need)?,
        };
        let (rounded, memory, pool_device) = {
            let pool_device = self.pools.pool_mut(id)?.device;
            let block = self
                .pools
                .blocks
                .get_mut(&start)
                .ok_or(answers::POOL_BAD_HANDLE)?;
            block.state = State::InUse;
            (block.rounded, block.memory.clone(), pool_device)
        };
        self.classic.insert(
            start,
            Classic {
                size,
                rounded,
                device: pool_device,
                memory,
                pooled: true,
            },
        );
        let pool = self.pools.pool_mut(id)?;
        pool.used += size;
        pool.used_high = pool.used_high.max(pool.used);
        Ok(start)
    }

    /// Reserves a new block of `rounded` bytes for pool `id`; returns its start.
    fn pool_grow(&mut self, id: PoolId, rounded: u64) -> DriverResult<u64> {
        let (device, reserved, max_size) = {
            let p = self.pools.pool_mut(id)?;
            (p.device, p.reserved, p.max_size)
        };
        if max_size != 0 && reserved.saturating_add(rounded) > max_size {
            return Err(answers::POOL_OUT_OF_MEMORY);
        }
        if rounded > self.free_bytes(device) {
            return Err(answers::POOL_OUT_OF_MEMORY);
        }
        let (start, memory) = self
            .map_fresh(device, rounded)
            .map_err(|_| answers::POOL_OUT_OF_MEMORY)?;
        self.pools.blocks.insert(
            start,
            Block {
                pool: id,
                rounded,
                memory,
                state: State::InUse,
            },
        );
        let p = self.pools.pool_mut(id)?;
        p.reserved += rounded;
        p.reserved_high = p.reserved_high.max(p.reserved);
        Ok(start)
    }

    /// Takes the in-use pool block at `ptr` back from the application: its
    /// [`Classic`] record goes and its pool's used bytes drop. Returns the block's pool.
    fn pool_take_back(&mut self, ptr: u64) -> DriverResult<PoolId> {
        let in_use = self
            .pools
            .blocks
            .get(&ptr)
            .is_some_and(|b| b.state == State::InUse);
        if !in_use {
            return Err(answers::FREE_ASYNC_UNKNOWN);
        }
        let size = self
            .classic
            .remove(&ptr)
            .map(|c| c.size)
            .ok_or(answers::FREE_ASYNC_UNKNOWN)?;
        let id = self
            .pools
            .blocks
            .get(&ptr)
            .map(|b| b.pool)
            .ok_or(answers::FREE_ASYNC_UNKNOWN)?;
        let pool = self.pools.pool_mut(id)?;
        pool.used = pool.used.saturating_sub(size);
        Ok(id)
    }

    /// `cuMemFreeAsync`: the block goes back to its pool when `stream` reaches
    /// this point.
    pub fn pool_free(&mut self, ptr: u64, stream: CUstream) -> DriverResult<()> {
        let (stream, _) = self.stream_of(stream)?;
        if ptr == 0 {
            return match answers::FREE_ASYNC_NULL {
                code if code == cuda_vmm_sys::CUresult::CUDA_SUCCESS => Ok(()),
                code => Err(code),
            };
        }
        if self.classic.get(&ptr).is_some_and(|c| !c.pooled) {
            return Err(answers::FREE_ASYNC_NOT_POOLED);
        }
        self.pool_take_back(ptr)?;
        let seq = self.work.next_seq();
        if let Some(block) = self.pools.blocks.get_mut(&ptr) {
            block.state = State::Freeing { stream, seq };
        }
        self.submit(stream, Action::Marker, Vec::new(), None)?;
        self.settle();
        Ok(())
    }

    /// `cuMemFree_v2` of pool memory: back in its pool at once, without waiting.
    pub fn pool_free_now(&mut self, ptr: u64) -> DriverResult<()> {
        self.pool_take_back(ptr)?;
        if let Some(block) = self.pools.blocks.get_mut(&ptr) {
            block.state = State::Free;
        }
        self.settle();
        Ok(())
    }

    /// Blocks whose stream-ordered free has run become free; free blocks of
    /// destroyed pools are released.
    fn settle(&mut self) {
        let pending = &self.work.pending;
        for block in self.pools.blocks.values_mut() {
            if let State::Freeing { seq, .. } = block.state {
                if !pending.contains_key(&seq) {
                    block.state = State::Free;
                }
            }
        }
        let dead: Vec<PoolId> = self
            .pools
            .pools
            .iter()
            .filter(|(_, p)| !p.live)
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            // Releasing only fails if the host refuses to unmap; the block is
            // then kept and the next settle tries again.
            let _ = self.release_free(id, 0);
        }
    }

    /// Releases free blocks of pool `id` (in address order) until it reserves at
    /// most `keep` bytes; forgets a destroyed pool that has no blocks left.
    fn release_free(&mut self, id: PoolId, keep: u64) -> DriverResult<()> {
        let free: Vec<(u64, u64)> = self
            .pools
            .blocks
            .iter()
            .filter(|(_, b)| b.pool == id && b.state == State::Free)
            .map(|(start, b)| (*start, b.rounded))
            .collect();
        for (start, rounded) in free {
            let (device, reserved) = {
                let p = self.pools.pool_mut(id)?;
                (p.device, p.reserved)
            };
            if reserved <= keep {
                break;
            }
            self.pools.blocks.remove(&start);
            // SAFETY: the block was made by `map_fresh`; it is free, so it has no
            // `Classic` record, and its own record is gone.
            unsafe { self.unmap_fresh(device, start, rounded) }?;
            let p = self.pools.pool_mut(id)?;
            p.reserved = p.reserved.saturating_sub(rounded);
        }
        let orphan = self.pools.pools.get(&id).is_some_and(|p| !p.live)
            && !self.pools.blocks.values().any(|b| b.pool == id);
        if orphan {
            self.pools.pools.remove(&id);
        }
        Ok(())
    }

    /// After a synchronisation: every pool releases its free blocks beyond its
    /// release threshold.
    pub fn pools_after_sync(&mut self) -> DriverResult<()> {
        self.settle();
        let mut ids: Vec<(PoolId, u64)> = self
            .pools
            .pools
            .iter()
            .map(|(id, p)| (*id, p.threshold))
            .collect();
        ids.sort_unstable();
        for (id, threshold) in ids {
            self.release_free(id, threshold)?;
        }
        Ok(())
    }

    /// `cuMemPoolTrimTo`.
    pub fn pool_trim(&mut self, handle: CUmemoryPool, keep: u64) -> DriverResult<()> {
        let id = self.pools.live(handle)?;
        self.settle();
        self.release_free(id, keep)
    }

    /// `cuMemPoolGetAttribute`.
    pub fn pool_get_attribute(&mut self, handle: CUmemoryPool, attr: A) -> DriverResult<Value> {
        let id = self.pools.live(handle)?;
        self.settle();
        let p = self.pools.pool_mut(id)?;
        Ok(match attr {
            A::CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES => Value::Int(p.reuse[0]),
            A::CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC => Value::Int(p.reuse[1]),
            A::CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES => Value::Int(p.reuse[2]),
            A::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD => Value::Wide(p.threshold),
            A::CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT => Value::Wide(p.reserved),
            A::CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH => Value::Wide(p.reserved_high),
            A::CU_MEMPOOL_ATTR_USED_MEM_CURRENT => Value::Wide(p.used),
            A::CU_MEMPOOL_ATTR_USED_MEM_HIGH => Value::Wide(p.used_high),
            _ => return Err(answers::POOL_BAD_ATTRIBUTE),
        })
    }

    /// `cuMemPoolSetAttribute`: the reuse policies are stored (any non-zero value
    /// as 1, as on an H200) but change nothing; the threshold takes effect at the
    /// next synchronisation; the high watermarks can only be reset (to the current value).
    pub fn pool_set_attribute(
        &mut self,
        handle: CUmemoryPool,
        attr: A,
        value: Value,
    ) -> DriverResult<()> {
        let id = self.pools.live(handle)?;
        let p = self.pools.pool_mut(id)?;
        match (attr, value) {
            (A::CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES, Value::Int(v)) => {
                p.reuse[0] = c_int::from(v != 0)
            }
            (A::CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC, Value::Int(v)) => {
                p.reuse[1] = c_int::from(v != 0)
            }
            (A::CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES, Value::Int(v)) => {
                p.reuse[2] = c_int::from(v != 0)
            }
            (A::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, Value::Wide(v)) => p.threshold = v,
            (A::CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH, Value::Wide(0)) => p.reserved_high = p.reserved,
            (A::CU_MEMPOOL_ATTR_USED_MEM_HIGH, Value::Wide(0)) => p.used_high = p.used,
            (attr, _) if is_int(attr).is_some() => return Err(answers::POOL_READ_ONLY_ATTRIBUTE),
            _ => return Err(answers::POOL_BAD_ATTRIBUTE),
        }
        Ok(())
    }
}
