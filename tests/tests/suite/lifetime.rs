//! Device work and memory lifetime: safe code never unmaps memory the device may still use.
//!
//! Written the way users write code: write then drop, write then shrink, in tight loops and
//! from many threads; device work other code queues (raw async memsets, PTX kernels on the
//! real driver) still in flight when memory is shrunk, decommitted or dropped. Afterwards
//! the context must be healthy: `cuCtxSynchronize` succeeds and a fresh round trip works.
//!
//! Tests that poison a context on purpose run in a child process (this binary, filtered
//! to an `#[ignore]`d `*_child` test).

use std::time::Instant;

use cuda_vmm::raw::bare;
use cuda_vmm::{
    AccessFlags, Allocation, AllocationProps, Cuda, Device, Reservation, ReserveOptions, Stream,
    UnmapWait,
};
use cuda_vmm_alloc::{GrowableBuffer, HoleBehavior, SparseArray, SparseConfig};
use cuda_vmm_sys::{entry, CUcontext, CUresult};

use cuda_vmm_tests::ptx::SlowFill;

const MIB: usize = 1 << 20;
pub(crate) const CHILD_ENV: &str = "CUDA_VMM_LIFETIME_CHILD";

use crate::{cuda, device, on_simulator};
use cuda_vmm_tests::helpers::{gran, pattern_cycle, run_child, TestResult};
use cuda_vmm_tests::test_name;

/// Every test here allocates a lot: hold device memory shared (see `DEVICE_MEMORY`).
fn hold() -> std::sync::RwLockReadGuard<'static, ()> {
    crate::memory_shared()
}

/// The counts on a GPU; a quarter on the simulator, to keep CI short.
fn iterations(gpu: usize) -> cuda_vmm::Result<usize> {
    Ok(if on_simulator()? { gpu / 4 } else { gpu })
}

/// A byte buffer of at most 64 MiB on `device`.
fn buffer(device: &Device) -> cuda_vmm_alloc::Result<GrowableBuffer<u8>> {
    GrowableBuffer::<u8>::with_max_capacity(device, 64 * MIB)
}

/// Device 0 and a stream of its own.
fn device_and_stream() -> cuda_vmm::Result<(Device, Stream)> {
    let d = device()?;
    let stream = Stream::new(&d)?;
    Ok((d, stream))
}

/// The context is usable: a context-wide wait succeeds and a fresh buffer round-trips.
fn assert_healthy(device: &Device) -> TestResult {
    device.synchronize()?;
    let mut b = GrowableBuffer::<u8>::with_max_capacity(device, 4 * MIB)?;
    let data = pattern_cycle(MIB, 99);
    b.extend_from_slice(&data)?;
    assert_eq!(b.to_vec()?, data);
    Ok(())
}

/// Queues `cuMemsetD8Async` through the bare raw tier: work the library does not know about.
fn raw_memset_async(
    device: &Device,
    stream: &Stream,
    ptr: u64,
    byte: u8,
    len: usize,
) -> TestResult {
    let api = device.cuda().api();
    device.make_current()?;
    // SAFETY: the caller passes a range mapped read-write for `device`, and a live stream.
    let rc = unsafe { bare::memset_d8_async(api, ptr, byte, len, stream.raw()) }?;
    assert_eq!(rc, CUresult::CUDA_SUCCESS);
    Ok(())
}

/// A long piece of work on `stream` (a 4 GiB memset of a scratch buffer, over a
/// millisecond on an H200), so the work queued after it is still pending when the host
/// moves on. Returns the scratch buffer, to be dropped after the stream is done.
fn delay(
    device: &Device,
    stream: &Stream,
) -> Result<GrowableBuffer<u8>, Box<dyn std::error::Error>> {
    let size = if on_simulator()? { 8 * MIB } else { 4096 * MIB };
    let mut scratch = GrowableBuffer::<u8>::with_max_capacity(device, size)?;
    scratch.reserve(size)?;
    raw_memset_async(device, stream, scratch.ptr(), 1, size)?;
    Ok(scratch)
}

// ---- write, then drop or shrink, in loops ---------------------------------------------

#[test]
fn growable_write_then_drop_in_a_loop() -> TestResult {
    let _memory = hold();
    let d = device()?;
    let data = pattern_cycle(8 * MIB, 1);
    for _ in 0..iterations(200)? {
        let mut b = buffer(&d)?;
        b.extend_from_slice(&data)?;
    }
    assert_healthy(&d)
}

#[test]
fn growable_write_then_shrink_in_a_loop() -> TestResult {
    let _memory = hold();
    let d = device()?;
    let data = pattern_cycle(8 * MIB, 2);
    let mut b = buffer(&d)?;
    for _ in 0..iterations(200)? {
        b.extend_from_slice(&data)?;
        b.truncate(0);
        b.shrink_to_fit()?;
        assert_eq!(b.committed_bytes(), 0);
    }
    assert_healthy(&d)
}

#[test]
fn threads_write_then_drop() -> TestResult {
    let _memory = hold();
    let d = device()?;
    let n = iterations(100)?;
    on_eight_threads(&d, |d, t| {
        let data = pattern_cycle(2 * MIB, t);
        for i in 0..n {
            let mut b = buffer(d).map_err(|e| e.to_string())?;
            b.extend_from_slice(&data).map_err(|e| e.to_string())?;
            if i % 2 == 1 {
                b.truncate(0);
                b.shrink_to_fit().map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    })?;
    assert_healthy(&d)
}

/// Runs `body(device, thread)` on 8 threads at once; returns the first failure.
fn on_eight_threads(
    d: &Device,
    body: impl Fn(&Device, u8) -> Result<(), String> + Sync,
) -> TestResult {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8u8)
            .map(|t| {
                let body = &body;
                s.spawn(move || body(d, t))
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| "thread panicked")??;
        }
        Ok(())
    })
}

fn sparse_loop(d: &Device, seed: u8, n: usize, holes: HoleBehavior) -> Result<(), String> {
    let g = gran(d).map_err(|e| e.to_string())?;
    let config = SparseConfig {
        holes,
        ..SparseConfig::default()
    };
    let mut a = SparseArray::<u8>::new(d, 16 * g, config).map_err(|e| e.to_string())?;
    let data = pattern_cycle(g, seed);
    for i in 0..n {
        let t = (i * 7) % 16;
        let tile = t * g..(t + 1) * g;
        a.commit(tile.clone()).map_err(|e| e.to_string())?;
        a.write(tile.start, &data).map_err(|e| e.to_string())?;
        a.decommit(tile).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[test]
fn sparse_commit_write_decommit_in_a_loop() -> TestResult {
    let _memory = hold();
    let d = device()?;
    sparse_loop(&d, 3, iterations(200)?, HoleBehavior::Error)?;
    sparse_loop(&d, 4, iterations(40)?, HoleBehavior::Zeros)?;
    assert_healthy(&d)
}

#[test]
fn threads_sparse_commit_write_decommit() -> TestResult {
    let _memory = hold();
    let d = device()?;
    let n = iterations(100)?;
    on_eight_threads(&d, |d, t| sparse_loop(d, t, n, HoleBehavior::Error))?;
    assert_healthy(&d)
}

/// Arrays with spare tiles, grown tile by tile (taking spares), written asynchronously and
/// dropped at once: the taken tiles, still being written, and the spares go back after the
/// device work.
fn spares_loop(d: &Device, seed: u8, n: usize) -> Result<(), String> {
    let g = gran(d).map_err(|e| e.to_string())?;
    let data = pattern_cycle(g, seed);
    let stream = Stream::new(d).map_err(|e| e.to_string())?;
    for i in 0..n {
        let holes = if i % 2 == 0 {
            HoleBehavior::Error
        } else {
            HoleBehavior::Zeros
        };
        let config = SparseConfig {
            holes,
            spare_tiles: 3,
            ..SparseConfig::default()
        };
        let mut a = SparseArray::<u8>::new(d, 8 * g, config).map_err(|e| e.to_string())?;
        for t in 0..3 {
            a.commit(t * g..(t + 1) * g).map_err(|e| e.to_string())?;
            a.write_async(&stream, t * g, &data)
                .map_err(|e| e.to_string())?;
        }
        if a.spare_count() != 1 {
            return Err(format!("{} spares, expected 1", a.spare_count()));
        }
        drop(a);
    }
    stream.synchronize().map_err(|e| e.to_string())
}

#[test]
fn threads_spares_write_then_drop() -> TestResult {
    let _memory = hold();
    let d = device()?;
    let n = iterations(40)?;
    on_eight_threads(&d, |d, t| spares_loop(d, t, n))?;
    assert_healthy(&d)
}

#[test]
fn reservation_and_mapping_write_then_drop_in_a_loop() -> TestResult {
    let _memory = hold();
    let d = device()?;
    let g = gran(&d)?;
    let size = 8 * MIB;
    let props = AllocationProps::device(&d);
    let data = pattern_cycle(size, 5);
    for _ in 0..iterations(200)? {
        let r = Reservation::new(&d, size.max(g), ReserveOptions::default())?;
        let a = Allocation::new(&d, size.max(g), &props)?;
        let m = r.map(0, &a, 0, size.max(g))?;
        m.set_access(&[(&d, AccessFlags::ReadWrite)])?;
        r.write(0, &data)?;
        drop(m);
    }
    assert_healthy(&d)
}

#[test]
fn async_writes_then_drop_in_a_loop() -> TestResult {
    let _memory = hold();
    let (d, stream) = device_and_stream()?;
    let data = pattern_cycle(8 * MIB, 6);
    for _ in 0..iterations(100)? {
        let mut b = buffer(&d)?;
        b.extend_from_slice_async(&stream, &data)?;
        b.write_async(&stream, 0, &data[..MIB])?;
    }
    stream.synchronize()?;
    assert_healthy(&d)
}

// ---- work other code queued is waited for ------------------------------------------------

/// Raw async memsets (unknown to the library) still queued behind a long one when the
/// buffer shrinks: the default policy waits, so the kept bytes are the memset's.
#[test]
fn unrecorded_work_is_waited_for_by_default() -> TestResult {
    let _memory = hold();
    let (d, stream) = device_and_stream()?;
    let len = 32 * MIB;
    let mut b = buffer(&d)?;
    b.resize(len, 0)?;
    assert_eq!(b.unmap_wait(), UnmapWait::Devices);
    for round in 0..iterations(20)? {
        let scratch = delay(&d, &stream)?;
        let byte = 0x40 + round as u8;
        raw_memset_async(&d, &stream, b.ptr(), byte, len)?;
        b.truncate(len / 4);
        b.shrink_to_fit()?;
        assert!(b.to_vec()?.iter().all(|&x| x == byte), "round {round}");
        b.resize(len, 0)?;
        drop(scratch);
    }
    let _scratch = delay(&d, &stream)?;
    raw_memset_async(&d, &stream, b.ptr(), 7, len)?;
    drop(b);
    assert_healthy(&d)
}

/// With `RecordedUse`, recording the use on the stream is what makes shrinking wait.
#[test]
fn recorded_use_is_waited_for() -> TestResult {
    let _memory = hold();
    let (d, stream) = device_and_stream()?;
    let len = 32 * MIB;
    let mut b = buffer(&d)?;
    b.resize(len, 0)?;
    // SAFETY: every piece of work this test queues on the buffer is recorded below.
    unsafe { b.set_unmap_wait(UnmapWait::RecordedUse) };
    for round in 0..iterations(20)? {
        let scratch = delay(&d, &stream)?;
        let byte = 0x80 + round as u8;
        raw_memset_async(&d, &stream, b.ptr(), byte, len)?;
        b.record_use(&stream)?;
        b.truncate(len / 2);
        b.shrink_to_fit()?;
        // The library's own read is ordered after the recorded use, too.
        assert!(b.to_vec()?.iter().all(|&x| x == byte), "round {round}");
        b.resize(len, 0)?;
        drop(scratch);
    }
    assert_healthy(&d)
}

/// With `Caller`, the caller synchronises itself; doing so keeps the context healthy.
#[test]
fn caller_synchronised_opt_out() -> TestResult {
    let _memory = hold();
    let (d, stream) = device_and_stream()?;
    for _ in 0..iterations(20)? {
        let mut b = buffer(&d)?;
        b.resize(8 * MIB, 0)?;
        // SAFETY: the stream is synchronised before the buffer is dropped.
        unsafe { b.set_unmap_wait(UnmapWait::Caller) };
        let _scratch = delay(&d, &stream)?;
        raw_memset_async(&d, &stream, b.ptr(), 3, 8 * MIB)?;
        stream.synchronize()?;
        drop(b);
    }
    assert_healthy(&d)
}

/// The opt-out means what it says: nothing waits, so dropping with work in flight poisons
/// the context (a child process; on the simulator it happens every time).
#[test]
fn caller_opt_out_does_not_wait() -> TestResult {
    let _memory = hold();
    let test = test_name!(caller_opt_out_does_not_wait_child);
    let out = run_child(&test, |c| {
        c.env(CHILD_ENV, &test);
    })?
    .stdout;
    assert!(out.contains("poisoned: "), "{out}");
    Ok(())
}

#[test]
#[ignore = "child process of caller_opt_out_does_not_wait"]
fn caller_opt_out_does_not_wait_child() -> TestResult {
    let _memory = hold();
    if std::env::var(CHILD_ENV).is_err() {
        return Ok(());
    }
    let (d, stream) = device_and_stream()?;
    let mut b = buffer(&d)?;
    b.resize(32 * MIB, 0)?;
    // SAFETY: deliberately broken: this child process shows what the opt-out does.
    unsafe { b.set_unmap_wait(UnmapWait::Caller) };
    let scratch = delay(&d, &stream)?;
    raw_memset_async(&d, &stream, b.ptr(), 3, 32 * MIB)?;
    drop(b);
    let e = stream
        .synchronize()
        .err()
        .ok_or("the stream survived the race")?;
    println!("poisoned: {e}");
    assert!(matches!(e.code(), Some(719 | 700)), "{e}");
    std::mem::forget(scratch);
    Ok(())
}

/// On the simulator, the race itself is deterministic: through the raw table, a pageable
/// `cuMemcpyHtoD` followed by `cuMemUnmap` poisons the context every time, while the same
/// steps through the safe layer never do.
#[test]
fn raw_race_faults_and_safe_layer_does_not() -> TestResult {
    let _memory = hold();
    if !crate::simulator_or_skip("the raw race is only deterministic on the simulator")? {
        return Ok(());
    }
    let test = test_name!(raw_race_child);
    let out = run_child(&test, |c| {
        c.env(CHILD_ENV, &test);
    })?
    .stdout;
    assert!(out.contains("raw race: CUDA_ERROR_LAUNCH_FAILED"), "{out}");
    // The same steps through the safe layer: clean, every time.
    let d = device()?;
    let data = pattern_cycle(8 * MIB, 1);
    for _ in 0..10 {
        let mut b = buffer(&d)?;
        b.extend_from_slice(&data)?;
    }
    assert_healthy(&d)
}

#[test]
#[ignore = "child process of raw_race_faults_and_safe_layer_does_not"]
fn raw_race_child() -> TestResult {
    let _memory = hold();
    if std::env::var(CHILD_ENV).is_err() {
        return Ok(());
    }
    let d = device()?;
    let g = gran(&d)?;
    let t = d.cuda().sys().table();
    d.make_current()?;
    let r = Reservation::new(&d, 4 * g, ReserveOptions::default())?;
    let a = Allocation::new(&d, 4 * g, &AllocationProps::device(&d))?;
    let m = r.map(0, &a, 0, 4 * g)?;
    m.set_access(&[(&d, AccessFlags::ReadWrite)])?;
    let data = pattern_cycle(4 * g, 7);
    let (htod, unmap, sync) = (
        entry!(t, cuMemcpyHtoD_v2)?,
        entry!(t, cuMemUnmap)?,
        entry!(t, cuCtxSynchronize)?,
    );
    // SAFETY: the range is mapped read-write; the unmap races the copy on purpose, in this
    // child process; the Mapping is forgotten so it is not unmapped twice.
    let rc = unsafe {
        assert_eq!(
            htod(r.ptr(), data.as_ptr().cast(), data.len()),
            CUresult::CUDA_SUCCESS
        );
        assert_eq!(unmap(r.ptr(), 4 * g), CUresult::CUDA_SUCCESS);
        sync()
    };
    std::mem::forget(m);
    println!("raw race: {}", cuda_vmm_sys::result_name(rc).unwrap_or("?"));
    Ok(())
}

// ---- kernels (real driver) ---------------------------------------------------------------

fn kernel(d: &Device) -> Result<Option<SlowFill>, Box<dyn std::error::Error>> {
    if on_simulator()? {
        eprintln!("skipped: kernels need the real driver");
        return Ok(None);
    }
    Ok(Some(SlowFill::load(d)?))
}

/// A kernel still running when the buffer shrinks and when it is dropped is waited for:
/// no fault, and every byte it wrote is there.
#[test]
fn running_kernel_is_waited_for_on_shrink_and_drop() -> TestResult {
    let _memory = hold();
    let d = device()?;
    let Some(k) = kernel(&d)? else { return Ok(()) };
    let stream = Stream::new(&d)?;
    let n = 16 * MIB; // u32 elements: 64 MiB
    for round in 0..5u32 {
        let mut b = GrowableBuffer::<u32>::with_max_capacity(&d, 2 * n)?;
        b.resize(n, 0)?;
        let value = 0xC0DE_0000 + round;
        // SAFETY: the buffer's first n elements are mapped read-write; the buffer waits
        // for the kernel before unmapping any of it.
        unsafe { k.launch(&stream, b.ptr(), n as u64, value, 50_000_000)? };
        let t = Instant::now();
        b.truncate(n / 2);
        b.shrink_to_fit()?;
        let waited = t.elapsed();
        let v = b.to_vec()?;
        assert_eq!(v.len(), n / 2);
        assert!(v.iter().all(|&x| x == value), "round {round}");
        eprintln!("round {round}: shrink waited {waited:?} for a 50 ms kernel");
        // SAFETY: as above, for the remaining half.
        unsafe { k.launch(&stream, b.ptr(), (n / 2) as u64, value, 20_000_000)? };
        drop(b);
    }
    assert_healthy(&d)
}

#[test]
fn running_kernel_is_waited_for_on_decommit() -> TestResult {
    let _memory = hold();
    let d = device()?;
    let Some(k) = kernel(&d)? else { return Ok(()) };
    let g = gran(&d)?;
    let stream = Stream::new(&d)?;
    let per = g / 4;
    let mut a = SparseArray::<u32>::new(&d, 64 * per, SparseConfig::default())?;
    for round in 0..5u32 {
        a.commit(0..8 * per)?;
        let value = 0xABCD_0000 + round;
        // SAFETY: tiles 0..8 are committed read-write; decommit waits for the kernel.
        unsafe { k.launch(&stream, a.ptr(), (8 * per) as u64, value, 30_000_000)? };
        a.decommit(4 * per..8 * per)?;
        let mut out = vec![0u32; 4 * per];
        a.read(0..4 * per, &mut out)?;
        assert!(out.iter().all(|&x| x == value), "round {round}");
        a.decommit(0..4 * per)?;
    }
    a.commit(0..per)?;
    // SAFETY: tile 0 is committed; dropping the array waits for the kernel.
    unsafe { k.launch(&stream, a.ptr(), per as u64, 1, 30_000_000)? };
    drop(a);
    assert_healthy(&d)
}

// ---- the caller's current context --------------------------------------------------------

fn current_context(cuda: &Cuda) -> Result<CUcontext, Box<dyn std::error::Error>> {
    let f = entry!(cuda.sys().table(), cuCtxGetCurrent)?;
    let mut ctx = std::ptr::null_mut();
    // SAFETY: `ctx` is a valid out-pointer.
    assert_eq!(unsafe { f(&mut ctx) }, CUresult::CUDA_SUCCESS);
    Ok(ctx)
}

/// Operations on a device-0 buffer leave a thread's current context (device 1's, or none)
/// exactly as they found it. Runs on two devices: a GPU pair, or the simulator configured
/// with two (child process).
#[test]
fn current_context_is_left_alone() -> TestResult {
    let _memory = hold();
    if on_simulator()? {
        let test = test_name!(current_context_is_left_alone_child);
        let out = run_child(&test, |c| {
            c.env(CHILD_ENV, &test).env(cuda_vmm_sim::ENV_DEVICES, "2");
        })?
        .stdout;
        assert!(out.contains("context left alone"), "{out}");
        return Ok(());
    }
    context_left_alone_body()
}

#[test]
#[ignore = "child process of current_context_is_left_alone"]
fn current_context_is_left_alone_child() -> TestResult {
    let _memory = hold();
    if std::env::var(CHILD_ENV).is_err() {
        return Ok(());
    }
    context_left_alone_body()
}

fn context_left_alone_body() -> TestResult {
    let cuda = cuda()?;
    if cuda.device_count()? < 2 {
        eprintln!("skipped: current_context_is_left_alone needs 2 devices");
        return Ok(());
    }
    let (d0, d1) = (cuda.device(0)?, cuda.device(1)?);
    d1.make_current()?;
    let before = current_context(&cuda)?;
    assert_eq!(before, d1.raw_context());
    let stream = Stream::new(&d0)?;
    let mut b = GrowableBuffer::<u8>::with_max_capacity(&d0, 64 * MIB)?;
    b.extend_from_slice(&pattern_cycle(3 * MIB, 1))?;
    assert_eq!(current_context(&cuda)?, before);
    b.extend_from_slice_async(&stream, &pattern_cycle(MIB, 2))?;
    b.resize(10 * MIB, 9)?;
    let _ = b.to_vec()?;
    b.truncate(MIB);
    b.shrink_to_fit()?;
    d0.memory_info()?;
    drop(b);
    drop(stream);
    assert_eq!(current_context(&cuda)?, before);
    println!("context left alone");
    Ok(())
}
