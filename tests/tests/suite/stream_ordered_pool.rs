//! Stream-ordered allocation (`cuMemAllocAsync`, `cuMemFreeAsync`) and memory pools
//! (`cuMemPool*`, `cuDevice*MemPool`) through the raw checked tier, on the simulator
//! and on a GPU.
//!
//! The expected codes were recorded on an H200 (driver 580, CUDA 13.0). Sizes are
//! 64 MiB: a multiple of the simulator's granularity and of the chunks an H200
//! reserves (it reserves 32 MiB for anything smaller), so reserved bytes are exact
//! on both. Tests that use a device's default pool, or change its current pool, hold
//! the device memory exclusively; the others use a pool of their own.

use cuda_vmm::raw::{self, Api};
use cuda_vmm::sys::{
    CUdevice, CUmemAllocationType, CUmemLocation, CUmemLocationType, CUmemPoolProps,
    CUmemPool_attribute as A, CUmemoryPool, CUresult, CUstream,
};
use cuda_vmm::{Device, Stream};
use cuda_vmm_tests::helpers::{pattern, TestResult};

use crate::{cuda, memory_exclusive};

const MIB: usize = 1 << 20;
/// The allocation size of these tests (see the module docs).
const SIZE: usize = 64 * MIB;

/// Device 0 (its context current on this thread), its driver handle, a new stream.
fn setup() -> cuda_vmm::Result<(Api, Device, CUdevice, Stream)> {
    let cuda = cuda()?;
    eprintln!("stream_ordered_pool on {}", cuda.describe());
    let device = cuda.device(0)?;
    device.make_current()?;
    let dev = raw::device_get(cuda.api(), 0)?;
    let stream = Stream::new(&device)?;
    Ok((cuda.api(), device, dev, stream))
}

/// The driver's code for a failed call (`None` for success or a non-driver error).
fn code<T: std::fmt::Debug>(result: cuda_vmm::Result<T>) -> Option<CUresult> {
    result
        .err()
        .and_then(|e| e.cuda_error())
        .map(|e| e.result())
}

/// Pinned device memory on `dev`.
fn props(dev: CUdevice) -> CUmemPoolProps {
    CUmemPoolProps {
        allocType: CUmemAllocationType::CU_MEM_ALLOCATION_TYPE_PINNED,
        location: CUmemLocation {
            type_: CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
            id: dev,
        },
        ..Default::default()
    }
}

/// A pool of its own, destroyed on drop.
struct OwnPool {
    api: Api,
    pool: CUmemoryPool,
}

impl OwnPool {
    fn new(api: Api, dev: CUdevice) -> cuda_vmm::Result<OwnPool> {
        let pool = raw::mem_pool_create(api, &props(dev))?;
        Ok(OwnPool { api, pool })
    }

    fn get(&self, attr: A) -> cuda_vmm::Result<u64> {
        // SAFETY: the pool is live until this value drops.
        unsafe { raw::mem_pool_get_attribute(self.api, self.pool, attr) }
    }

    fn set(&self, attr: A, value: u64) -> cuda_vmm::Result<()> {
        // SAFETY: as in `get`.
        unsafe { raw::mem_pool_set_attribute(self.api, self.pool, attr, value) }
    }

    /// `(reserved, used)` bytes.
    fn usage(&self) -> cuda_vmm::Result<(u64, u64)> {
        Ok((
            self.get(A::CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT)?,
            self.get(A::CU_MEMPOOL_ATTR_USED_MEM_CURRENT)?,
        ))
    }

    fn alloc(&self, size: usize, stream: &Stream) -> cuda_vmm::Result<u64> {
        // SAFETY: the pool is live and `stream` a live stream of the current context.
        unsafe { raw::mem_alloc_from_pool_async(self.api, size, self.pool, stream.raw()) }
    }
}

impl Drop for OwnPool {
    fn drop(&mut self) {
        // SAFETY: created in `new`, destroyed once; its memory is freed by then.
        if let Err(e) = unsafe { raw::mem_pool_destroy(self.api, self.pool) } {
            eprintln!("cuMemPoolDestroy: {e}");
        }
    }
}

/// Frees `ptr` on `stream` (stream-ordered).
fn free_async(api: Api, ptr: u64, stream: CUstream) -> cuda_vmm::Result<()> {
    // SAFETY: every caller passes memory it allocated from a pool and no longer uses,
    // and a live stream of the current context.
    unsafe { raw::mem_free_async(api, ptr, stream) }
}

#[test]
fn alloc_async_write_read_back_free_async() -> TestResult {
    let _memory = memory_exclusive();
    let (api, _device, _, stream) = setup()?;
    let s = stream.raw();
    // SAFETY: `s` is a live stream of the current context.
    let ptr = unsafe { raw::mem_alloc_async(api, SIZE, s) }?;
    assert_ne!(ptr, 0);
    let data = pattern(SIZE, 7);
    let mut back = vec![0u8; SIZE];
    // SAFETY: `ptr` holds SIZE bytes until the free below; `data` and `back` stay
    // alive and untouched until the stream is synchronised.
    unsafe {
        raw::memcpy_htod_async(api, ptr, data.as_ptr().cast(), SIZE, s)?;
        raw::memcpy_dtoh_async(api, back.as_mut_ptr().cast(), ptr, SIZE, s)?;
    }
    free_async(api, ptr, s)?;
    stream.synchronize()?;
    assert!(
        back == data,
        "the bytes read back differ from those written"
    );
    Ok(())
}

#[test]
fn free_memory_goes_down_while_allocated() -> TestResult {
    let _memory = memory_exclusive();
    let (api, _device, dev, stream) = setup()?;
    let pool = raw::device_get_mem_pool(api, dev)?;
    let (before, _) = raw::mem_get_info(api)?;
    // SAFETY: a live stream of the current context.
    let ptr = unsafe { raw::mem_alloc_async(api, SIZE, stream.raw()) }?;
    let (during, _) = raw::mem_get_info(api)?;
    assert!(
        during + SIZE <= before,
        "free memory {before} -> {during} while {SIZE} bytes are allocated"
    );
    free_async(api, ptr, stream.raw())?;
    stream.synchronize()?;
    // The default threshold (0) releases the freed memory at the synchronisation.
    let reserved = A::CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT;
    // SAFETY: a device's current pool lives as long as the device.
    let kept = unsafe { raw::mem_pool_get_attribute(api, pool, reserved) }?;
    assert_eq!(kept, 0);
    Ok(())
}

#[test]
fn release_threshold_round_trips() -> TestResult {
    let (api, _device, dev, _stream) = setup()?;
    let pool = OwnPool::new(api, dev)?;
    let t = A::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD;
    assert_eq!(pool.get(t)?, 0);
    pool.set(t, u64::MAX)?;
    assert_eq!(pool.get(t)?, u64::MAX);
    pool.set(t, 0)?;
    assert_eq!(pool.get(t)?, 0);
    Ok(())
}

#[test]
fn used_and_reserved_are_exact_after_alloc() -> TestResult {
    let (api, _device, dev, stream) = setup()?;
    let pool = OwnPool::new(api, dev)?;
    assert_eq!(pool.usage()?, (0, 0));
    let ptr = pool.alloc(SIZE, &stream)?;
    let size = SIZE as u64;
    assert_eq!(pool.usage()?, (size, size));
    assert_eq!(pool.get(A::CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH)?, size);
    assert_eq!(pool.get(A::CU_MEMPOOL_ATTR_USED_MEM_HIGH)?, size);
    free_async(api, ptr, stream.raw())?;
    stream.synchronize()?;
    assert_eq!(pool.usage()?, (0, 0));
    // The high watermarks stay until reset (only to zero).
    assert_eq!(pool.get(A::CU_MEMPOOL_ATTR_USED_MEM_HIGH)?, size);
    pool.set(A::CU_MEMPOOL_ATTR_USED_MEM_HIGH, 0)?;
    assert_eq!(pool.get(A::CU_MEMPOOL_ATTR_USED_MEM_HIGH)?, 0);
    Ok(())
}

#[test]
fn trim_to_zero_releases_what_the_threshold_kept() -> TestResult {
    let (api, _device, dev, stream) = setup()?;
    let pool = OwnPool::new(api, dev)?;
    pool.set(A::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, u64::MAX)?;
    let ptr = pool.alloc(SIZE, &stream)?;
    free_async(api, ptr, stream.raw())?;
    stream.synchronize()?;
    assert_eq!(pool.usage()?, (SIZE as u64, 0), "the threshold keeps it");
    // SAFETY: the pool is live.
    unsafe { raw::mem_pool_trim_to(api, pool.pool, 0) }?;
    assert_eq!(pool.usage()?, (0, 0));
    Ok(())
}

#[test]
fn the_error_codes_of_the_driver() -> TestResult {
    let (api, _device, dev, stream) = setup()?;
    let s = stream.raw();
    let invalid = Some(CUresult::CUDA_ERROR_INVALID_VALUE);
    // Size 0: an H200 answers CUDA_SUCCESS and a null pointer (not INVALID_VALUE).
    // SAFETY: a live stream of the current context.
    assert_eq!(unsafe { raw::mem_alloc_async(api, 0, s) }?, 0);
    // SAFETY: as above.
    let (rc, ptr) = unsafe { raw::bare::mem_alloc_async(api, 0, s) }?;
    assert_eq!((rc, ptr), (CUresult::CUDA_SUCCESS, 0));
    // Freeing a pointer no pool handed out (H200: INVALID_VALUE), or null (success).
    assert_eq!(code(free_async(api, 0x1234, s)), invalid);
    free_async(api, 0, s)?;
    // A second free of the same memory.
    let pool = OwnPool::new(api, dev)?;
    let ptr = pool.alloc(MIB, &stream)?;
    free_async(api, ptr, s)?;
    assert_eq!(code(free_async(api, ptr, s)), invalid);
    stream.synchronize()?;
    // Attributes the header does not define.
    assert_eq!(code(pool.get(A(99))), invalid);
    // A device's default pool cannot be destroyed.
    let default = raw::device_get_default_mem_pool(api, dev)?;
    // SAFETY: refused by the driver (a default pool is never destroyed).
    let destroyed = unsafe { raw::mem_pool_destroy(api, default) };
    assert_eq!(code(destroyed), invalid);
    // Pools of anything but pinned memory.
    let mut bad = props(dev);
    bad.allocType = CUmemAllocationType::CU_MEM_ALLOCATION_TYPE_INVALID;
    assert_eq!(code(raw::mem_pool_create(api, &bad)), invalid);
    Ok(())
}

#[test]
fn a_created_pool_can_be_made_current() -> TestResult {
    let _memory = memory_exclusive();
    let (api, _device, dev, stream) = setup()?;
    let default = raw::device_get_default_mem_pool(api, dev)?;
    assert_eq!(raw::device_get_mem_pool(api, dev)?, default);
    let pool = OwnPool::new(api, dev)?;
    // SAFETY: the pool lives until it is no longer current (below).
    unsafe { raw::device_set_mem_pool(api, dev, pool.pool) }?;
    assert_eq!(raw::device_get_mem_pool(api, dev)?, pool.pool);
    // SAFETY: a live stream of the current context.
    let ptr = unsafe { raw::mem_alloc_async(api, SIZE, stream.raw()) };
    // SAFETY: the default pool lives as long as the device.
    unsafe { raw::device_set_mem_pool(api, dev, default) }?;
    let ptr = ptr?;
    assert_eq!(
        pool.usage()?.1,
        SIZE as u64,
        "allocated from the current pool"
    );
    free_async(api, ptr, stream.raw())?;
    stream.synchronize()?;
    assert_eq!(raw::device_get_mem_pool(api, dev)?, default);
    Ok(())
}
