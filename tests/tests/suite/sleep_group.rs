//! `SleepGroup` (issue 21): one `sleep(tags)` over an allocator's tag, buffers and sparse
//! arrays; all or nothing on failure; dropped members are forgotten.

use std::sync::{Arc, Mutex};

use cuda_vmm::{Device, Stream};
use cuda_vmm_alloc::{
    Backup, BufferConfig, CachingAllocator, CachingConfig, Error, GrowableBuffer, SleepGroup,
    SparseArray, SparseConfig,
};
use cuda_vmm_sys::CUresult;

use crate::device;
use cuda_vmm_tests::helpers::{gran, TestResult};

fn values(n: usize, seed: u32) -> Vec<u32> {
    (0..n as u32)
        .map(|i| i.wrapping_mul(0x9E37_79B9) ^ seed)
        .collect()
}

fn buffer(d: &Device, n: usize, seed: u32) -> Result<Arc<Mutex<GrowableBuffer<u32>>>, Error> {
    let mut b = GrowableBuffer::<u32>::new(
        d,
        BufferConfig {
            max_capacity: Some(16 << 20),
            ..BufferConfig::default()
        },
    )?;
    b.extend_from_slice(&values(n, seed))?;
    Ok(Arc::new(Mutex::new(b)))
}

/// A sparse array with its first `tiles` tiles committed and written.
fn array(d: &Device, tiles: usize) -> Result<Arc<Mutex<SparseArray<u32>>>, Error> {
    let per_tile = gran(d)? / 4;
    let mut a = SparseArray::<u32>::new(d, 8 * per_tile, SparseConfig::default())?;
    a.commit(0..tiles * per_tile)?;
    a.write(0, &values(tiles * per_tile, 5))?;
    Ok(Arc::new(Mutex::new(a)))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn a_group_sleeps_and_wakes_an_allocator_tag_buffers_and_arrays_together() -> TestResult {
    let _memory = crate::memory_exclusive();
    let d = device()?;
    let g = gran(&d)?;
    let s = Stream::new(&d)?;
    let alloc = CachingAllocator::with_config(
        &d,
        CachingConfig {
            segment_size: Some(1 << 30),
            ..CachingConfig::default()
        },
    )?;
    let w = alloc.alloc_tagged(3 << 20, &s, "weights")?;
    w.write(0, b"weights")?;
    let kv_buffer = buffer(&d, g / 2, 1)?;
    let kv_array = array(&d, 3)?;
    let group = SleepGroup::new();
    group.add_allocator("weights", &alloc)?;
    group.add_buffer("kv", &kv_buffer)?;
    group.add_array("kv", &kv_array)?;
    assert!(d
        .cuda()
        .flush_releases(std::time::Duration::from_secs(30))?);
    let free0 = d.memory_info()?.free;
    let slept = group.sleep(&["weights", "kv"], Backup::Host)?;
    assert_eq!(d.memory_info()?.free, free0 + slept.released_bytes);
    assert!(alloc.is_asleep("weights"));
    assert!(lock(&kv_buffer).is_asleep() && lock(&kv_array).is_asleep());
    let woke = group.wake(&["weights", "kv"])?;
    assert_eq!(woke.mapped_bytes, slept.released_bytes);
    assert_eq!(d.memory_info()?.free, free0);
    let mut back = [0u8; 7];
    w.read(0, &mut back)?;
    assert_eq!(&back, b"weights");
    assert_eq!(lock(&kv_buffer).to_vec()?, values(g / 2, 1));
    let per_tile = g / 4;
    let mut out = vec![0u32; 3 * per_tile];
    lock(&kv_array).read(0..3 * per_tile, &mut out)?;
    assert_eq!(out, values(3 * per_tile, 5));
    // Only the tags named sleep.
    group.sleep(&["kv"], Backup::Discard)?;
    assert!(!alloc.is_asleep("weights") && lock(&kv_buffer).is_asleep());
    group.wake(&["kv"])?;
    // Discarded: the buffer's bytes are whatever the new chunks hold; write them again.
    lock(&kv_buffer).write(0, &values(g / 2, 1))?;
    // A dropped member is forgotten.
    drop(kv_array);
    group.sleep(&["kv"], Backup::Host)?;
    group.wake(&["kv"])?;
    assert_eq!(lock(&kv_buffer).to_vec()?, values(g / 2, 1));
    Ok(())
}

/// A member that refuses (exportable memory) undoes the sleep of the members before it.
#[test]
fn a_refused_member_wakes_the_members_slept_before_it() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let first = buffer(&d, g / 2, 2)?;
    let exported = Arc::new(Mutex::new(crate::buffer_sleep::exportable(&d, 16)?));
    let group = SleepGroup::new();
    group.add_buffer("kv", &first)?;
    group.add_buffer("kv", &exported)?;
    assert!(matches!(
        group.sleep(&["kv"], Backup::Host),
        Err(Error::InvalidRequest { .. })
    ));
    assert!(
        !lock(&first).is_asleep(),
        "the first member was not woken again"
    );
    assert_eq!(lock(&first).to_vec()?, values(g / 2, 2));
    Ok(())
}

/// A wake that runs out of memory in its second member puts the first back to sleep: the
/// tag stays asleep with its backups, and the retry brings every byte back.
#[test]
fn a_failed_wake_puts_the_woken_members_back_to_sleep() -> TestResult {
    let Some((d, g)) = crate::simulated_device(crate::FAULT_INJECTION)? else {
        return Ok(());
    };
    let _memory = crate::memory_shared();
    let tiles = 4;
    let first = array(&d, tiles)?;
    let second = buffer(&d, g / 2, 4)?;
    let group = SleepGroup::new();
    group.add_array("kv", &first)?;
    group.add_buffer("kv", &second)?;
    group.sleep(&["kv"], Backup::Host)?;
    let failed = {
        // The array's wake creates one allocation per tile; the next one is the buffer's.
        let _f = cuda_vmm_sim::inject_fault(
            "cuMemCreate",
            tiles as u64 + 1,
            CUresult::CUDA_ERROR_OUT_OF_MEMORY,
        );
        group.wake(&["kv"])
    };
    assert!(failed.is_err());
    assert!(
        lock(&first).is_asleep(),
        "the woken member was not put back to sleep"
    );
    assert!(lock(&second).is_asleep());
    group.wake(&["kv"])?;
    let per_tile = g / 4;
    let mut out = vec![0u32; tiles * per_tile];
    lock(&first).read(0..tiles * per_tile, &mut out)?;
    assert_eq!(out, values(tiles * per_tile, 5));
    assert_eq!(lock(&second).to_vec()?, values(g / 2, 4));
    Ok(())
}
