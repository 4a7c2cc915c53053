//! One regression test per defect found on failure paths (issue 13), each failing before
//! its fix.

use cuda_vmm::{AccessFlags, Reservation, ReserveOptions};
use cuda_vmm_alloc::{
    BufferConfig, ChunkPool, GrowableBuffer, GrowthPolicy, HoleBehavior, PoolConfig, SparseArray,
    SparseConfig,
};
use cuda_vmm_sim::inject_fault;

use super::{cuda, device, gran, pattern_hashed, raw_read, TestResult, FAULT};

fn buffer(
    g: usize,
    chunk: usize,
    pool: Option<ChunkPool>,
) -> cuda_vmm_alloc::Result<GrowableBuffer<u8>> {
    let d = device()?;
    GrowableBuffer::new(
        &d,
        BufferConfig {
            max_capacity: Some(32 * g),
            policy: GrowthPolicy::fixed(chunk),
            pool,
            ..BufferConfig::default()
        },
    )
}

#[test]
fn pool_refuses_a_shared_chunk() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let pool = ChunkPool::new(&d, PoolConfig::default())?;
    let chunk = pool.acquire()?;
    let other = chunk.clone();
    let refused = pool
        .recycle(chunk)
        .expect_err("a chunk another clone holds was accepted");
    assert!(matches!(
        refused.error(),
        cuda_vmm_alloc::Error::ChunkInUse { holders: 2, .. }
    ));
    assert_eq!(pool.stats().chunks_held, 0);
    // The refusal handed the clone back; dropping it leaves `other` the only owner.
    drop(refused);
    // Recycling the same chunk twice would hand one handle to two owners.
    assert!(pool.recycle(other)?);
    assert_eq!(pool.stats().chunks_held, 1);
    Ok(())
}

#[test]
fn pool_refuses_a_mapped_chunk() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let pool = ChunkPool::new(&d, PoolConfig::default())?;
    let chunk = pool.acquire()?;
    let range = Reservation::new(&d, g, ReserveOptions::default())?;
    let mapping = range.map(0, &chunk, 0, g)?;
    range.set_access(0, g, &[(&d, AccessFlags::ReadWrite)])?;
    let refused = pool
        .recycle(chunk)
        .expect_err("a mapped chunk was accepted");
    assert!(matches!(
        refused.error(),
        cuda_vmm_alloc::Error::ChunkInUse { holders: 2, .. }
    ));
    assert_eq!(pool.stats().chunks_held, 0);
    let chunk = refused.into_parts().1.ok_or("the refused chunk was lost")?;
    mapping.unmap()?;
    // Unmapped and uniquely owned now: taken.
    assert!(pool.recycle(chunk)?);
    assert_eq!(pool.stats().chunks_held, 1);
    Ok(())
}

/// Grows a buffer holding `old` with a fault on the `nth` call of `symbol` during `grow`, and
/// checks the buffer is exactly as before.
/// The driver code a failed call reports (`None` if it succeeded or failed otherwise).
fn fault_code<T>(r: cuda_vmm_alloc::Result<T>) -> Option<u32> {
    r.err().and_then(|e| e.code())
}

fn growth_with_failed_copy(
    symbol: &str,
    nth: u64,
    grow: impl FnOnce(&mut GrowableBuffer<u8>) -> cuda_vmm_alloc::Result<()>,
) -> TestResult {
    let d = device()?;
    let g = gran(&d)?;
    let mut buf = buffer(g, g, None)?;
    let old = pattern_hashed(g / 2, 3);
    buf.extend_from_slice(&old)?;
    let (ptr, committed) = (buf.ptr(), buf.committed_bytes());
    let guard = inject_fault(symbol, nth, FAULT);
    let result = grow(&mut buf);
    assert!(guard.fired(), "{symbol} #{nth} was not called");
    assert_eq!(
        result.err().and_then(|e| e.code()),
        Some(FAULT.0),
        "the fault on {symbol} did not reach the caller"
    );
    assert_eq!(buf.len(), old.len());
    assert_eq!(buf.ptr(), ptr);
    assert_eq!(
        buf.committed_bytes(),
        committed,
        "memory committed for the failed growth stayed"
    );
    assert_eq!(buf.to_vec()?, old);
    // The buffer still grows.
    buf.extend_from_slice(&pattern_hashed(3 * g, 4))?;
    assert_eq!(buf.len(), old.len() + 3 * g);
    Ok(())
}

#[test]
fn growth_rolls_back_when_the_copy_fails() -> TestResult {
    let _memory = crate::memory_shared();
    let data = pattern_hashed(3 << 21, 9);
    growth_with_failed_copy("cuMemcpyHtoDAsync_v2", 1, |b| b.extend_from_slice(&data))?;
    growth_with_failed_copy("cuStreamSynchronize", 1, |b| b.extend_from_slice(&data))
}

#[test]
fn resize_rolls_back_when_the_fill_fails() -> TestResult {
    let _memory = crate::memory_shared();
    growth_with_failed_copy("cuMemsetD8Async", 1, |b| b.resize(3 << 21, 7))?;
    growth_with_failed_copy("cuStreamSynchronize", 1, |b| b.resize(3 << 21, 7))
}

#[test]
fn a_rollback_never_pools_a_mapped_chunk() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let pool = ChunkPool::new(&d, PoolConfig::default())?;
    pool.prefill(1)?;
    let mut buf = buffer(g, g, Some(pool.clone()))?;
    let access = inject_fault("cuMemSetAccess", 1, FAULT);
    let unmap = inject_fault("cuMemUnmap", 1, FAULT);
    assert_eq!(fault_code(buf.extend_from_slice(&[1, 2, 3])), Some(FAULT.0));
    assert!(access.fired() && unmap.fired());
    assert_eq!(
        pool.stats().chunks_held,
        0,
        "the chunk whose rollback unmap failed went back to the pool while mapped"
    );
    drop((access, unmap));
    buf.extend_from_slice(&[1, 2, 3])?;
    assert_eq!(buf.to_vec()?, [1, 2, 3]);
    Ok(())
}

/// A buffer of one 4-granule chunk holding `g + 1` bytes: `shrink_to_fit` splits that chunk.
fn straddling_buffer() -> cuda_vmm_alloc::Result<(GrowableBuffer<u8>, Vec<u8>, usize)> {
    let d = device()?;
    let g = gran(&d)?;
    let mut buf = buffer(g, 4 * g, None)?;
    let data = pattern_hashed(g + 1, 5);
    buf.extend_from_slice(&data)?;
    assert_eq!(buf.committed_bytes(), 4 * g);
    Ok((buf, data, g))
}

#[test]
fn a_failed_split_does_not_wedge_the_buffer() -> TestResult {
    let _memory = crate::memory_shared();
    // Each fault (or pair) hits another step of the split: the scratch unmap, the old chunk's
    // unmap, and both the replacement's and the restore's map (then retried: the shrink
    // succeeds).
    let cases: &[(&[(&str, u64)], bool)] = &[
        (&[("cuMemUnmap", 1)], true),
        (&[("cuMemUnmap", 2)], true),
        (&[("cuMemMap", 2), ("cuMemMap", 3)], false),
    ];
    for &(faults, fails) in cases {
        let (mut buf, data, g) = straddling_buffer()?;
        let guards: Vec<_> = faults
            .iter()
            .map(|&(s, n)| inject_fault(s, n, FAULT))
            .collect();
        let result = buf.shrink_to_fit();
        assert!(
            guards.iter().all(|g| g.fired()),
            "{faults:?} did not all fire"
        );
        drop(guards);
        let expected = if fails { Some(FAULT.0) } else { None };
        assert_eq!(
            result.as_ref().err().and_then(|e| e.code()),
            expected,
            "{faults:?}: {result:?}"
        );
        assert_eq!(buf.len(), data.len(), "{faults:?}: the length was cut");
        assert_eq!(buf.to_vec()?, data, "{faults:?}");
        // Growth past the old chunk's end (and past where the scratch copy was) still works.
        let more = pattern_hashed(8 * g, 6);
        buf.extend_from_slice(&more)
            .map_err(|e| format!("{faults:?}: growth after the failed split: {e}"))?;
        assert_eq!(&buf.to_vec()?[..data.len()], data.as_slice());
        buf.truncate(data.len());
        buf.shrink_to_fit()?;
        assert_eq!(buf.committed_bytes(), 2 * g, "{faults:?}");
        assert_eq!(buf.to_vec()?, data, "{faults:?}");
    }
    Ok(())
}

fn zero_array(tiles: usize) -> cuda_vmm_alloc::Result<SparseArray<u8>> {
    let d = device()?;
    let g = gran(&d)?;
    SparseArray::new(
        &d,
        tiles * g,
        SparseConfig {
            holes: HoleBehavior::Zeros,
            ..SparseConfig::default()
        },
    )
}

/// Whether a kernel reading tile `t` of `array` sees zeros.
fn reads_zero(array: &SparseArray<u8>, t: usize) -> bool {
    let tile = array.tile_bytes();
    cuda()
        .map_err(|e| e.to_string())
        .and_then(|c| raw_read(&c, array.ptr() + (t * tile) as u64, 64))
        .is_ok_and(|b| b.iter().all(|&x| x == 0))
}

#[test]
fn zero_tiles_are_mapped_into_every_hole_despite_a_failed_map() -> TestResult {
    let _memory = crate::memory_shared();
    let mut array = zero_array(8)?;
    let g = array.tile_bytes();
    array.commit(2 * g..7 * g)?;
    array.write(2 * g, &[1; 16])?;
    // Decommitting tiles 2..6 (tile 6 stays committed) maps them as blocks 2..4 and 4..6.
    // The first block's map fails: the second must still be mapped.
    let guard = inject_fault("cuMemMap", 1, FAULT);
    assert_eq!(fault_code(array.decommit(2 * g..6 * g)), Some(FAULT.0));
    assert!(guard.fired());
    drop(guard);
    for t in [0, 1, 4, 5, 7] {
        assert!(reads_zero(&array, t), "hole {t} has no zero mapping");
    }
    for t in [2, 3] {
        assert!(
            !reads_zero(&array, t),
            "tile {t} reads zeros: no map failed"
        );
    }
    // The failed block is mapped by the next operation.
    array.commit(0..1)?;
    for t in [1, 2, 3, 4, 5, 7] {
        assert!(
            reads_zero(&array, t),
            "hole {t} has no zero mapping after the next commit"
        );
    }
    Ok(())
}

#[test]
fn zero_tiles_whose_access_failed_are_not_recorded_as_mapped() -> TestResult {
    let _memory = crate::memory_shared();
    let mut array = zero_array(8)?;
    let g = array.tile_bytes();
    array.commit(2 * g..6 * g)?;
    let guard = inject_fault("cuMemSetAccess", 1, FAULT);
    assert_eq!(fault_code(array.decommit(2 * g..6 * g)), Some(FAULT.0));
    assert!(guard.fired());
    drop(guard);
    // The next operation maps (or finishes mapping) zero blocks into those holes.
    array.commit(0..1)?;
    for t in 1..8 {
        assert!(reads_zero(&array, t), "hole {t} is not readable as zeros");
    }
    let mut out = vec![9u8; 4 * g];
    array.read(2 * g..6 * g, &mut out)?;
    assert!(out.iter().all(|&b| b == 0));
    Ok(())
}

#[test]
fn grant_access_is_all_or_nothing() -> TestResult {
    let _memory = crate::memory_shared();
    let cuda = cuda()?;
    if cuda.device_count()? < 2 {
        eprintln!(
            "skipped: grant_access_is_all_or_nothing needs 2 devices (CUDA_VMM_SIM_DEVICES=2)"
        );
        return Ok(());
    }
    let (d0, d1) = (cuda.device(0)?, cuda.device(1)?);
    let g = gran(&d0)?;
    let mut array = SparseArray::<u8>::new(&d0, 8 * g, SparseConfig::default())?;
    array.commit(0..1)?;
    array.commit(4 * g..4 * g + 1)?;
    let guard = inject_fault("cuMemSetAccess", 2, FAULT);
    assert_eq!(
        fault_code(array.grant_access(std::slice::from_ref(&d1))),
        Some(FAULT.0)
    );
    assert!(guard.fired());
    drop(guard);
    // The first run's grant was undone: the peer has no access anywhere.
    assert_eq!(peer_access(array.ptr(), &d1)?, AccessFlags::None);
    // Tiles committed later do not grant the peer either, and a retry grants everything.
    array.commit(6 * g..6 * g + 1)?;
    assert_eq!(
        peer_access(array.ptr() + (6 * g) as u64, &d1)?,
        AccessFlags::None
    );
    array.grant_access(std::slice::from_ref(&d1))?;
    for t in [0, 4, 6] {
        assert_eq!(
            peer_access(array.ptr() + (t * g) as u64, &d1)?,
            AccessFlags::ReadWrite
        );
    }
    Ok(())
}

/// The access `device` has at a raw address (`cuMemGetAccess`).
fn peer_access(ptr: u64, device: &cuda_vmm::Device) -> Result<AccessFlags, String> {
    use cuda_vmm::sys::{CUmemLocation, CUmemLocationType};
    let cuda = cuda().map_err(|e| e.to_string())?;
    let f = cuda_vmm::sys::entry!(cuda.sys().table(), cuMemGetAccess).map_err(|e| e.to_string())?;
    let location = CUmemLocation {
        type_: CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
        id: device.ordinal() as i32,
    };
    let mut flags = 0u64;
    // SAFETY: valid out-pointer and location struct; the simulator validates the address.
    let r = unsafe { f(&mut flags, &location, ptr) };
    if r != cuda_vmm::sys::CUresult::CUDA_SUCCESS {
        return Err(format!("cuMemGetAccess at {ptr:#x} failed with {}", r.0));
    }
    AccessFlags::try_from(flags).map_err(|e| e.to_string())
}

#[test]
fn tile_elements_of_any_tile_is_a_range() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let array = SparseArray::<u32>::new(&d, 1000, SparseConfig::default())?;
    assert_eq!(array.tile_elements(usize::MAX), 1000..1000);
    assert_eq!(array.tile_elements(usize::MAX / 2), 1000..1000);
    assert_eq!(array.tile_elements(1), 1000..1000);
    assert_eq!(array.tile_elements(0), 0..1000);
    Ok(())
}

/// Found by the property tests: an async append whose use could not be recorded
/// (`cuEventRecord` failed after the copy was queued) left the copy in flight, unordered:
/// it landed after a later fill of the same elements and overwrote it.
#[test]
fn an_unrecorded_async_copy_is_waited_for() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let stream = cuda_vmm::Stream::new(&d)?;
    let mut buf = buffer(g, g, None)?;
    buf.push(1)?;
    let guard = inject_fault("cuEventRecord", 1, FAULT);
    let result = buf.extend_from_slice_async(&stream, &[0xEE]);
    assert!(guard.fired(), "cuEventRecord was not called");
    drop(guard);
    assert_eq!(fault_code(result), Some(FAULT.0));
    assert_eq!(buf.len(), 1);
    // The failed append's copy must not land over what comes next.
    buf.resize(2, 0)?;
    stream.synchronize()?;
    assert_eq!(buf.to_vec()?, [1, 0]);
    Ok(())
}

/// A failed `cuCtxPopCurrent` (the crate's context stays current on the caller's thread) was
/// only logged; operations that return no handle now report it.
#[test]
fn a_failed_context_pop_reaches_the_caller() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let range = Reservation::new(&d, g, ReserveOptions::default())?;
    let chunk = cuda_vmm::Allocation::new(&d, g, &cuda_vmm::AllocationProps::device(&d))?;
    let _mapping = range.map(0, &chunk, 0, g)?;
    range.set_access(0, g, &[(&d, AccessFlags::ReadWrite)])?;
    let unbind = || -> TestResult {
        let f = cuda_vmm::sys::entry!(cuda()?.sys().table(), cuCtxSetCurrent)?;
        // SAFETY: a null context is valid and unbinds the thread's current one.
        unsafe { f(std::ptr::null_mut()) };
        Ok(())
    };
    let ops: [(&str, &dyn Fn() -> cuda_vmm::Result<()>); 3] = [
        ("synchronize", &|| d.synchronize()),
        ("memory_info", &|| d.memory_info().map(|_| ())),
        ("write", &|| range.write(0, b"pop")),
    ];
    for (what, op) in ops {
        unbind()?;
        let guard = inject_fault("cuCtxPopCurrent_v2", 1, FAULT);
        let result = op();
        assert!(guard.fired(), "{what}: no context was popped");
        assert_eq!(
            result.err().and_then(|e| e.code()),
            Some(FAULT.0),
            "{what}: the failed pop did not reach the caller"
        );
    }
    unbind()?;
    Ok(())
}

/// Found by the property tests: unmapping a mapping that held the last handle of its
/// allocation released it as the handle dropped, so a refused release was only logged and
/// the memory leaked. `Mapping::unmap` now releases it, reports the refusal, and the handle's
/// drop tries once more.
#[test]
fn a_refused_release_after_the_last_unmap_reaches_the_caller() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let range = Reservation::new(&d, g, ReserveOptions::default())?;
    let chunk = cuda_vmm::Allocation::new(&d, g, &cuda_vmm::AllocationProps::device(&d))?;
    let mapping = range.map(0, &chunk, 0, g)?;
    drop(chunk);
    let releases = cuda_vmm_sim::call_count("cuMemRelease");
    let guard = inject_fault("cuMemRelease", 1, FAULT);
    let result = mapping.unmap();
    assert!(guard.fired(), "the allocation was not released");
    drop(guard);
    assert_eq!(
        result.err().and_then(|e| e.code()),
        Some(FAULT.0),
        "the refused release did not reach the caller"
    );
    assert!(!range.is_mapped(0, g));
    assert_eq!(
        cuda_vmm_sim::call_count("cuMemRelease") - releases,
        2,
        "the release was not tried again"
    );
    Ok(())
}
