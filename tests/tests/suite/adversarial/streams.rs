//! Class 2 and 3: uses keyed per (context, stream, thread), unmap policies, and the
//! documented waits, attacked with async copies that fail half-way.

use std::os::unix::net::UnixStream;

use cuda_vmm::{AllocationProps, Device, GranularityKind, HandleTypes, Stream, UnmapWait};
use cuda_vmm_alloc::{
    BufferConfig, GrowableBuffer, GrowthPolicy, SharedBufferConsumer, SharedBufferProducer,
};
use cuda_vmm_sim::inject_fault;
use cuda_vmm_sys::CUresult;

use super::{
    calls_made, is_injected, is_injected_alloc, mapped, pattern_blocks, queries_not_ready,
    simulator_or_skip, TestResult, MIB,
};

/// Class 2: an async write larger than one staging chunk queued its first chunks, then
/// failed on a later chunk's `cuMemcpyHtoDAsync`, and `on_stream` returned the error
/// before recording the use: the queued chunks were no use of the memory, so an unmap
/// under `UnmapWait::RecordedUse` did not wait for them and the simulator poisoned the
/// context (unmap under in-flight work). A failed op must still record what it queued.
#[test]
fn a_write_async_failing_on_a_later_chunk_still_orders_the_unmap() -> TestResult {
    if !simulator_or_skip("injecting a fault at the second chunk")? {
        return Ok(());
    }
    let _memory = crate::memory_shared();
    let device = crate::cuda()?.device(0)?;
    for policy in [UnmapWait::RecordedUse, UnmapWait::Devices] {
        let (r, m) = mapped(&device, 9 * MIB)?;
        // SAFETY: only this crate's copies touch the memory.
        unsafe { r.set_unmap_wait(policy) };
        let stream = Stream::new(&device)?;
        {
            // As on a GPU, the first chunk is still running when the second is queued.
            let _running = queries_not_ready(64);
            let _f = inject_fault("cuMemcpyHtoDAsync_v2", 2, CUresult::CUDA_ERROR_UNKNOWN);
            let e = r
                .write_async(&stream, 0, &pattern_blocks(9 * MIB, 1, 37, 13))
                .expect_err("the injected second-chunk failure");
            assert!(is_injected(&e, "cuMemcpyHtoDAsync_v2"), "{policy:?}: {e:?}");
        }
        drop(m);
        device.synchronize()?;
        stream.synchronize()?;
    }
    Ok(())
}

/// Class 2: a fault at any driver call of `write_async` (9 MiB, three chunks) under
/// `UnmapWait::RecordedUse` must leave every queued chunk recorded (or waited for), so
/// dropping the mapping right after the error never unmaps under in-flight work.
#[test]
fn every_failed_write_async_leaves_the_unmap_ordered() -> TestResult {
    if !simulator_or_skip("the fault sweep")? {
        return Ok(());
    }
    let _memory = crate::memory_shared();
    let device = crate::cuda()?.device(0)?;
    let stream = Stream::new(&device)?;
    let data = pattern_blocks(9 * MIB, 2, 37, 13);
    let calls = {
        let (r, _m) = mapped(&device, 9 * MIB)?;
        calls_made(|| r.write_async(&stream, 0, &data).unwrap())
    };
    stream.synchronize()?;
    assert!(!calls.is_empty());
    for (symbol, nth) in calls {
        let (r, m) = mapped(&device, 9 * MIB)?;
        // SAFETY: only this crate's copies touch the memory.
        unsafe { r.set_unmap_wait(UnmapWait::RecordedUse) };
        let result = {
            let _running = queries_not_ready(64);
            let _f = inject_fault(symbol, nth, CUresult::CUDA_ERROR_UNKNOWN);
            r.write_async(&stream, 0, &data)
        };
        if let Err(e) = &result {
            assert!(is_injected(e, symbol), "{symbol} #{nth}: {e:?}");
        }
        drop(m);
        device
            .synchronize()
            .map_err(|e| format!("{symbol} #{nth} poisoned the context: {e}"))?;
        stream.synchronize()?;
    }
    Ok(())
}

/// Device 0, a stream of its own and a byte buffer of at most 16 MiB on the device.
fn device_stream_and_buffer() -> cuda_vmm_alloc::Result<(Device, Stream, GrowableBuffer<u8>)> {
    let device = crate::cuda()?.device(0)?;
    let stream = Stream::new(&device)?;
    let b = GrowableBuffer::<u8>::with_max_capacity(&device, 16 * MIB)?;
    Ok((device, stream, b))
}

/// A 9 MiB `extend_from_slice_async` of `b` on `stream` whose second chunk's copy fails
/// (the first still running): the error is the injected one.
#[track_caller]
fn extend_async_failing_at_the_second_chunk(b: &mut GrowableBuffer<u8>, stream: &Stream) {
    let _running = queries_not_ready(64);
    let _f = inject_fault("cuMemcpyHtoDAsync_v2", 2, CUresult::CUDA_ERROR_UNKNOWN);
    let e = b
        .extend_from_slice_async(stream, &pattern_blocks(9 * MIB, 3, 37, 13))
        .expect_err("the injected second-chunk failure");
    assert!(is_injected_alloc(&e, "cuMemcpyHtoDAsync_v2"), "{e:?}");
}

/// Class 2: `GrowableBuffer::extend_from_slice_async` failing on a later chunk under
/// `UnmapWait::RecordedUse`: dropping the buffer must wait for the chunks that were
/// queued (same mechanism as the reservation's `write_async`).
#[test]
fn a_failed_growable_extend_async_is_waited_for_at_drop() -> TestResult {
    if !simulator_or_skip("injecting a fault at the second chunk")? {
        return Ok(());
    }
    let _memory = crate::memory_shared();
    let (device, stream, mut b) = device_stream_and_buffer()?;
    // SAFETY: only this crate's copies touch the memory.
    unsafe { b.set_unmap_wait(UnmapWait::RecordedUse) };
    extend_async_failing_at_the_second_chunk(&mut b, &stream);
    drop(b);
    device.synchronize()?;
    Ok(())
}

/// Class 2: per-thread default streams of two threads are two streams: a use recorded
/// on one thread's per-thread stream, then an async write on the other thread's, then a
/// read: the read sees the write (each record keeps its own event).
#[test]
fn per_thread_streams_of_two_threads_are_two_streams() -> TestResult {
    let _memory = crate::memory_shared();
    let device = crate::cuda()?.device(0)?;
    let (r, _m) = mapped(&device, MIB)?;
    r.fill(0, 4096, 1)?;
    std::thread::scope(|s| -> cuda_vmm::Result<()> {
        s.spawn(|| r.record_use(&Stream::per_thread(&device)))
            .join()
            .unwrap()?;
        s.spawn(|| r.write_async(&Stream::per_thread(&device), 0, &[9u8; 4096]))
            .join()
            .unwrap()?;
        r.record_use(&Stream::per_thread(&device))
    })?;
    // The simulator completes work up to an event its staging queries; a GPU does not.
    let sim = crate::cuda()?.backend() == cuda_vmm::Backend::Simulator;
    let _busy = if sim {
        queries_not_ready(64)
    } else {
        Vec::new()
    };
    let mut out = vec![0u8; 4096];
    r.read(0, &mut out)?;
    assert!(out.iter().all(|&b| b == 9));
    Ok(())
}

/// Class 2: uses on device 1's legacy and per-thread streams, then an async write on
/// device 0's per-thread stream into device-0 memory, then dropping the mapping under
/// every policy but `Caller` (after a `synchronize`, which `Caller` needs): nothing may
/// poison either context and the bytes land.
#[test]
fn drop_after_async_work_on_mixed_streams_never_poisons() -> TestResult {
    let cuda = crate::cuda()?;
    if cuda.device_count()? < 2 {
        eprintln!("skipped: needs two devices");
        return Ok(());
    }
    let _memory = crate::memory_shared();
    let (d0, d1) = (cuda.device(0)?, cuda.device(1)?);
    for policy in [
        UnmapWait::Devices,
        UnmapWait::RecordedUse,
        UnmapWait::Caller,
    ] {
        let (r, m) = mapped(&d0, 5 * MIB)?;
        r.set_access(
            0,
            r.size(),
            &[
                (&d0, cuda_vmm::AccessFlags::ReadWrite),
                (&d1, cuda_vmm::AccessFlags::ReadWrite),
            ],
        )?;
        // SAFETY: only this crate's copies touch the memory; under Caller the test
        // synchronises before the drop.
        unsafe { r.set_unmap_wait(policy) };
        r.record_use(&Stream::legacy(&d1))?;
        r.record_use(&Stream::per_thread(&d1))?;
        let user = Stream::new(&d0)?;
        let data = pattern_blocks(5 * MIB, 4, 37, 13);
        r.write_async(&Stream::per_thread(&d0), 0, &data)?;
        r.fill_async(&user, 0, 0, 0)?;
        r.write_async(&Stream::legacy(&d0), 4 * MIB, &data[4 * MIB..])?;
        if policy == UnmapWait::Caller {
            r.synchronize()?;
        }
        let mut out = vec![0u8; 5 * MIB];
        r.read(0, &mut out)?;
        assert!(out == data, "{policy:?}: the bytes differ");
        r.write_async(&user, 0, &data[..MIB])?;
        if policy == UnmapWait::Caller {
            r.synchronize()?;
        }
        drop(m);
        d0.synchronize()?;
        d1.synchronize()?;
    }
    Ok(())
}

/// Class 3: `Reservation::synchronize` under `UnmapWait::Caller` waits for an async
/// write in flight (Caller waives only the wait at unmap): after it, dropping the
/// mapping is safe and the context is not poisoned.
#[test]
fn synchronize_under_caller_waits_for_the_write_in_flight() -> TestResult {
    let _memory = crate::memory_shared();
    let device = crate::cuda()?.device(0)?;
    let (r, m) = mapped(&device, 9 * MIB)?;
    // SAFETY: the test synchronises before the drop.
    unsafe { r.set_unmap_wait(UnmapWait::Caller) };
    let stream = Stream::new(&device)?;
    let data = pattern_blocks(9 * MIB, 5, 37, 13);
    r.write_async(&stream, 0, &data)?;
    r.synchronize()?;
    assert!(
        stream.is_idle()?,
        "synchronize returned before the write finished"
    );
    drop(m);
    device.synchronize()?;
    Ok(())
}

/// Class 3: `SharedBufferProducer::publish` documents that it waits for the recorded
/// uses under every policy; under `UnmapWait::Caller` (which waives only the wait at
/// unmap), a `write_async` still in flight must have landed before the consumer is
/// told: the consumer (a thread here) reads the written values, not the zeros before.
#[test]
fn publish_under_caller_waits_for_the_async_write_in_flight() -> TestResult {
    let _memory = crate::memory_shared();
    let d = crate::cuda()?.device(0)?;
    let props = AllocationProps::device(&d).handle_types(HandleTypes::POSIX_FD);
    let g = d.granularity(&props, GranularityKind::Minimum)?;
    let mut buffer: GrowableBuffer<u32> = GrowableBuffer::new(
        &d,
        BufferConfig {
            max_capacity: Some(4 * g / 4),
            policy: GrowthPolicy::fixed(g),
            props: Some(props),
            ..BufferConfig::default()
        },
    )?;
    // SAFETY: the test synchronises the stream before the buffer drops.
    unsafe { buffer.set_unmap_wait(UnmapWait::Caller) };
    let (ours, theirs) = UnixStream::pair()?;
    let consumer_device = d.clone();
    let sim = crate::cuda()?.backend() == cuda_vmm::Backend::Simulator;
    let consumer = std::thread::spawn(move || -> Result<Vec<u32>, String> {
        // The simulator completes work up to an event its staging queries; a GPU does
        // not: answer the consumer's queries "not ready", as a busy GPU would.
        let _busy = if sim {
            queries_not_ready(64)
        } else {
            Vec::new()
        };
        let mut c = SharedBufferConsumer::<u32>::connect(&consumer_device, theirs)
            .map_err(|e| e.to_string())?;
        if !c.receive().map_err(|e| e.to_string())? {
            return Err("the producer hung up before an update".into());
        }
        c.to_vec().map_err(|e| e.to_string())
    });
    let mut producer = SharedBufferProducer::new(&buffer, ours.try_clone()?)?;
    let values: Vec<u32> = (0..(g / 4) as u32).map(|i| i.wrapping_mul(7) | 1).collect();
    buffer.resize(values.len(), 0)?;
    let stream = Stream::new(&d)?;
    buffer.write_async(&stream, 0, &values)?;
    producer.publish(&buffer)?;
    let seen = consumer.join().unwrap()?;
    assert!(
        seen == values,
        "the consumer saw bytes from before the write"
    );
    drop(producer);
    drop(ours);
    stream.synchronize()?;
    Ok(())
}

/// Class 2: under `UnmapWait::Caller` the caller synchronises before the unmaps it
/// causes, but a failed `extend_from_slice_async` rolls its fresh chunks back inside
/// the call, after the failed copy may have queued its first chunks: that internal
/// unmap must wait for them whatever the policy (else the context is poisoned).
#[test]
fn a_failed_growable_extend_async_rolls_back_safely_under_caller() -> TestResult {
    if !simulator_or_skip("injecting a fault at the second chunk")? {
        return Ok(());
    }
    let _memory = crate::memory_shared();
    let (device, stream, mut b) = device_stream_and_buffer()?;
    // SAFETY: the test synchronises before dropping the buffer; the rollback inside
    // the failed call is the library's to order.
    unsafe { b.set_unmap_wait(UnmapWait::Caller) };
    extend_async_failing_at_the_second_chunk(&mut b, &stream);
    assert_eq!((b.len(), b.committed_bytes()), (0, 0));
    device.synchronize()?;
    b.extend_from_slice(&[1, 2, 3])?;
    assert_eq!(b.to_vec()?, [1, 2, 3]);
    Ok(())
}

/// Class 2: the synchronous `extend_from_slice` failing on its second chunk's copy
/// left the first chunk queued on the device's private stream (recorded as a use, not
/// waited for); the buffer's rollback then unmapped the fresh chunk under it, which
/// `UnmapWait::Caller` does not wait for: the context was poisoned. A failed
/// synchronous copy must leave nothing in flight when the stream can still be waited.
#[test]
fn a_failed_growable_extend_rolls_back_safely_under_caller() -> TestResult {
    if !simulator_or_skip("injecting a fault at the second chunk")? {
        return Ok(());
    }
    let _memory = crate::memory_shared();
    let device = crate::cuda()?.device(0)?;
    let mut b = GrowableBuffer::<u8>::with_max_capacity(&device, 16 * MIB)?;
    // SAFETY: the test synchronises before dropping the buffer; the rollback inside
    // the failed call is the library's to order.
    unsafe { b.set_unmap_wait(UnmapWait::Caller) };
    for symbol in ["cuMemcpyHtoDAsync_v2", "cuEventRecord"] {
        {
            let _running = queries_not_ready(64);
            let _f = inject_fault(symbol, 2, CUresult::CUDA_ERROR_UNKNOWN);
            let e = b
                .extend_from_slice(&pattern_blocks(9 * MIB, 3, 37, 13))
                .expect_err("the injected second-chunk failure");
            assert!(is_injected_alloc(&e, symbol), "{e:?}");
        }
        assert_eq!((b.len(), b.committed_bytes()), (0, 0), "{symbol}");
        device.synchronize()?;
    }
    b.extend_from_slice(&[1, 2, 3])?;
    assert_eq!(b.to_vec()?, [1, 2, 3]);
    Ok(())
}

/// Class 2: a synchronous fill or device copy whose wait fails (`cuStreamSynchronize`,
/// once) left the operation queued on the private stream; `GrowableBuffer::resize` and
/// `SparseArray::commit` (which zero-fills new tiles) then rolled back, unmapping under
/// it, which `UnmapWait::Caller` does not wait for: the context was poisoned.
#[test]
fn failed_fills_roll_back_safely_under_caller() -> TestResult {
    if !simulator_or_skip("injecting a failed wait")? {
        return Ok(());
    }
    let _memory = crate::memory_shared();
    let device = crate::cuda()?.device(0)?;
    let mut b = GrowableBuffer::<u8>::with_max_capacity(&device, 16 * MIB)?;
    // SAFETY: the rollbacks inside the failed calls are the library's to order.
    unsafe { b.set_unmap_wait(UnmapWait::Caller) };
    {
        let _f = inject_fault("cuStreamSynchronize", 1, CUresult::CUDA_ERROR_UNKNOWN);
        let e = b.resize(9 * MIB, 7).expect_err("the injected wait failure");
        assert!(is_injected_alloc(&e, "cuStreamSynchronize"), "{e:?}");
    }
    assert_eq!((b.len(), b.committed_bytes()), (0, 0));
    device.synchronize()?;
    let mut a = cuda_vmm_alloc::SparseArray::<u8>::new(
        &device,
        16 * MIB,
        cuda_vmm_alloc::SparseConfig::default(),
    )?;
    // SAFETY: as above.
    unsafe { a.set_unmap_wait(UnmapWait::Caller) };
    let calls = super::calls_made(|| {
        a.commit(0..4 * MIB).unwrap();
    });
    a.decommit(0..16 * MIB)?;
    device.synchronize()?;
    for (symbol, nth) in calls
        .into_iter()
        .filter(|(s, _)| *s == "cuStreamSynchronize")
    {
        let result = {
            let _f = inject_fault(symbol, nth, CUresult::CUDA_ERROR_UNKNOWN);
            a.commit(0..4 * MIB)
        };
        match result {
            Ok(_) => {
                a.decommit(0..16 * MIB)?;
            }
            Err(e) => {
                assert!(is_injected_alloc(&e, symbol), "{symbol} #{nth}: {e:?}");
                assert_eq!(a.committed_bytes(), 0, "{symbol} #{nth}");
            }
        }
        device
            .synchronize()
            .map_err(|e| format!("{symbol} #{nth} poisoned the context: {e}"))?;
    }
    Ok(())
}
