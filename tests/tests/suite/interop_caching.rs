//! cudarc interop of the caching allocator (feature `cudarc`): a block's use on a cudarc
//! stream, recorded by hand or by a [`CachedView`], delays its reuse until the kernel ran.

use cuda_vmm_alloc::{CachedView, CachingAllocator};
use cuda_vmm_tests::helpers::{raw_read, TestResult};
use cudarc::driver::{DevicePtr, DevicePtrMut, DeviceSlice, PushKernelArg};

use crate::interop::{gpu_or_skip, kernel, FILL, GRID};

fn assert_cudarc_traits<V: DeviceSlice<u32> + DevicePtr<u32> + DevicePtrMut<u32>>() {}

#[test]
fn cached_view_implements_cudarc_traits() {
    assert_cudarc_traits::<CachedView<'static, u32>>();
}

/// Every word of `n` at `ptr` is `v` (read back after the device is idle).
fn all_words(ptr: u64, n: usize, v: u32) -> Result<bool, Box<dyn std::error::Error>> {
    let words = raw_read(&crate::cuda()?, ptr, n * 4)?;
    Ok(words
        .chunks_exact(4)
        .all(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]) == v))
}

/// A block of the caching allocator written by a slow kernel on a cudarc stream: after
/// `record_cudarc_use` and the drop, it is not reused on the block's own stream while the
/// kernel runs, and every word the kernel wrote is there; once the kernel is done it is.
#[test]
fn gpu_caching_block_used_on_a_cudarc_stream_is_reused_only_after_the_kernel() -> TestResult {
    let _memory = crate::memory_shared();
    let Some((d, stream)) =
        gpu_or_skip("gpu_caching_block_used_on_a_cudarc_stream_is_reused_only_after_the_kernel")?
    else {
        return Ok(());
    };
    let f = kernel(&stream, FILL, "fill")?;
    let allocator = CachingAllocator::new(&d)?;
    let own = cuda_vmm::Stream::new(&d)?;
    let n: u64 = 1 << 20;
    let mut block = allocator.alloc(n as usize * 4, &own)?;
    let ptr = block.ptr();
    let (v, spin): (u32, i64) = (0xC0DE, 400_000_000);
    let mut b = stream.launch_builder(&f);
    b.arg(&ptr);
    b.arg(&n);
    b.arg(&v);
    b.arg(&spin);
    let start = std::time::Instant::now();
    // SAFETY: `fill` takes (u32*, u64, u32, i64) and writes `n` words at `ptr`, which the
    // block keeps mapped read-write; its memory is reused only after the recorded use.
    unsafe { b.launch(GRID) }?;
    // SAFETY: the cudarc stream is of device 0's primary context and outlives `borrowed`.
    let borrowed = unsafe { cuda_vmm::Stream::from_raw(&d, stream.cu_stream().cast()) };
    let launched = start.elapsed();
    let busy = !borrowed.is_idle()?;
    block.record_cudarc_use(&stream)?;
    drop(block);
    let pending = allocator.stats().pending_blocks;
    let other = allocator.alloc(n as usize * 4, &own)?;
    // Busy after the allocation returned means busy while it looked at the pending block.
    let still_busy = !borrowed.is_idle()?;
    eprintln!(
        "cudarc stream {:p}, own {:p}: launch {launched:?}, busy after it {busy}, pending \
         {pending}, still busy {still_busy}, {:?} after the launch",
        stream.cu_stream(),
        own.raw(),
        start.elapsed()
    );
    assert_eq!(pending, 1, "the free did not wait for the cudarc use");
    if still_busy {
        assert_ne!(other.ptr(), ptr, "reused while the cudarc kernel ran");
    } else {
        eprintln!("the kernel ended before the allocation returned: reuse was allowed");
    }
    stream.synchronize()?;
    assert!(all_words(ptr, n as usize, v)?);
    // `other` may hold `ptr` when the kernel ended before it was allocated.
    drop(other);
    let again = allocator.alloc(n as usize * 4, &own)?;
    assert_eq!(again.ptr(), ptr, "reused once the kernel was done");
    Ok(())
}

/// A view of a block as the `fill` kernel's argument on a cudarc stream other than the
/// block's: the view's drop records the use, so the block is not reused while the kernel
/// runs; refusals first (zero-sized elements, a block smaller than one element).
#[test]
fn gpu_cached_view_as_a_kernel_argument_records_its_use() -> TestResult {
    let _memory = crate::memory_shared();
    let Some((d, stream)) = gpu_or_skip("gpu_cached_view_as_a_kernel_argument_records_its_use")?
    else {
        return Ok(());
    };
    let f = kernel(&stream, FILL, "fill")?;
    let allocator = CachingAllocator::new(&d)?;
    let own = cuda_vmm::Stream::new(&d)?;
    let mut tiny = allocator.alloc(3, &own)?;
    assert!(matches!(
        tiny.cudarc_view::<u32>(&stream),
        Err(cuda_vmm_alloc::Error::InvalidRequest { .. })
    ));
    assert!(matches!(
        tiny.cudarc_view::<()>(&stream),
        Err(cuda_vmm_alloc::Error::InvalidRequest { .. })
    ));
    assert_eq!(tiny.cudarc_view::<u8>(&stream)?.len(), 3);
    let n: u64 = 1 << 20;
    let mut block = allocator.alloc(n as usize * 4 + 2, &own)?;
    let ptr = block.ptr();
    let (v, spin): (u32, i64) = (0xFEED, 400_000_000);
    let busy = {
        let mut view = block.cudarc_view::<u32>(&stream)?;
        assert_eq!((view.len(), view.ptr()), (n as usize, ptr));
        let mut b = stream.launch_builder(&f);
        b.arg(&mut view);
        b.arg(&n);
        b.arg(&v);
        b.arg(&spin);
        // SAFETY: `fill` takes (u32*, u64, u32, i64) and writes `n` words through the
        // view, which holds `n` words of a block mapped read-write while it lives.
        unsafe { b.launch(GRID) }?;
        // SAFETY: the cudarc stream is of device 0's primary context and outlives it.
        let borrowed = unsafe { cuda_vmm::Stream::from_raw(&d, stream.cu_stream().cast()) };
        !borrowed.is_idle()?
    };
    drop(block);
    let pending = allocator.stats().pending_blocks;
    let other = allocator.alloc(n as usize * 4 + 2, &own)?;
    // SAFETY: as above.
    let borrowed = unsafe { cuda_vmm::Stream::from_raw(&d, stream.cu_stream().cast()) };
    let still_busy = !borrowed.is_idle()?;
    eprintln!("busy after the launch {busy}, pending {pending}, still busy {still_busy}");
    assert_eq!(pending, 1, "the view's drop recorded no use");
    if still_busy {
        assert_ne!(other.ptr(), ptr, "reused while the kernel ran");
    }
    stream.synchronize()?;
    assert!(all_words(ptr, n as usize, v)?);
    drop(other);
    let again = allocator.alloc(n as usize * 4 + 2, &own)?;
    assert_eq!(again.ptr(), ptr, "reused once the kernel was done");
    Ok(())
}

/// `device_ptr_mut` on a second cudarc stream (not the view's): that stream waits for the
/// view's stream first, and cudarc's guard synchronises it, so the use is over when the
/// guard drops and the block is free at once after the view and the block drop.
#[test]
fn gpu_cached_view_used_on_another_stream_is_over_when_the_guard_drops() -> TestResult {
    let _memory = crate::memory_shared();
    let Some((d, stream)) =
        gpu_or_skip("gpu_cached_view_used_on_another_stream_is_over_when_the_guard_drops")?
    else {
        return Ok(());
    };
    let f = kernel(&stream, FILL, "fill")?;
    let second = stream.context().new_stream()?;
    let allocator = CachingAllocator::new(&d)?;
    let own = cuda_vmm::Stream::new(&d)?;
    let n: u64 = 1 << 20;
    let mut block = allocator.alloc(n as usize * 4, &own)?;
    let ptr = block.ptr();
    let (first, v, spin): (u32, u32, i64) = (0xAAAA, 0xBEEF, 100_000_000);
    {
        let mut view = block.cudarc_view::<u32>(&stream)?;
        // A slow write on the view's stream, then one on the second stream: the second
        // must run after it (its value is the one left).
        let mut b = stream.launch_builder(&f);
        b.arg(&mut view);
        b.arg(&n);
        b.arg(&first);
        b.arg(&spin);
        // SAFETY: `fill` takes (u32*, u64, u32, i64) and writes `n` words through the
        // view, which holds `n` words of a block mapped read-write while it lives.
        unsafe { b.launch(GRID) }?;
        let (raw, guard) = view.device_ptr_mut(&second);
        let mut b = second.launch_builder(&f);
        b.arg(&raw);
        b.arg(&n);
        b.arg(&v);
        b.arg(&0i64);
        // SAFETY: as above, at `raw`, the view's memory.
        unsafe { b.launch(GRID) }?;
        drop(guard);
        // SAFETY: the second cudarc stream is of device 0's primary context and outlives it.
        let borrowed = unsafe { cuda_vmm::Stream::from_raw(&d, second.cu_stream().cast()) };
        assert!(
            borrowed.is_idle()?,
            "the guard did not synchronise the second stream"
        );
    }
    stream.synchronize()?;
    assert!(
        all_words(ptr, n as usize, v)?,
        "the second stream's write ran first"
    );
    drop(block);
    let again = allocator.alloc(n as usize * 4, &own)?;
    assert_eq!(again.ptr(), ptr);
    Ok(())
}

/// A live view keeps its tag awake: sleep is refused, changing nothing; once it drops the
/// tag sleeps, and a view of a sleeping block is refused with `Error::Asleep`.
#[test]
fn gpu_a_live_cached_view_keeps_its_tag_awake() -> TestResult {
    let _memory = crate::memory_shared();
    let Some((d, stream)) = gpu_or_skip("gpu_a_live_cached_view_keeps_its_tag_awake")? else {
        return Ok(());
    };
    let allocator = CachingAllocator::new(&d)?;
    let own = cuda_vmm::Stream::new(&d)?;
    let mut block = allocator.alloc_tagged(1 << 20, &own, "weights")?;
    block.write(0, &[7u8; 64])?;
    {
        let _view = block.cudarc_view::<u32>(&stream)?;
        let before = allocator.stats();
        assert!(matches!(
            allocator.sleep(&["weights"], cuda_vmm_alloc::Backup::Host),
            Err(cuda_vmm_alloc::Error::InvalidRequest { .. })
        ));
        assert_eq!(allocator.stats(), before);
        assert!(!allocator.is_asleep("weights"));
    }
    allocator.sleep(&["weights"], cuda_vmm_alloc::Backup::Host)?;
    assert!(matches!(
        block.cudarc_view::<u32>(&stream),
        Err(cuda_vmm_alloc::Error::Asleep { .. })
    ));
    allocator.wake(&["weights"])?;
    let mut back = [0u8; 64];
    block.read(0, &mut back)?;
    assert_eq!(back, [7u8; 64]);
    Ok(())
}
