//! cudarc interop (feature `cudarc`): buffers and tiles as cudarc device memory.
//!
//! On CI the feature builds and the trait checks run; the kernel test needs the real
//! driver and NVRTC (`libnvrtc.so.13` on the loader path), and says so when skipped.

use std::sync::Arc;

use cuda_vmm::{Backend, Cuda, CudarcReadView, CudarcView};
use cuda_vmm_alloc::{GrowableBuffer, HoleBehavior, SparseArray, SparseConfig};
use cuda_vmm_tests::helpers::TestResult;
use cudarc::driver::{
    CudaContext, CudaStream, DevicePtr, DevicePtrMut, DeviceSlice, LaunchConfig, PushKernelArg,
};

const MIB: usize = 1 << 20;

/// Every thread spins `spin` clock cycles, then the grid writes `v` to `p[0..n)`.
pub(crate) const FILL: &str = r#"
extern "C" __global__ void fill(unsigned int* p, unsigned long long n, unsigned int v,
                                long long spin) {
    long long start = clock64();
    while (clock64() - start < spin) { }
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         i < n; i += (unsigned long long)gridDim.x * blockDim.x) {
        p[i] = v;
    }
}
"#;

fn assert_cudarc_traits<V: DeviceSlice<u32> + DevicePtr<u32> + DevicePtrMut<u32>>() {}

#[test]
fn views_implement_cudarc_traits() {
    let _memory = crate::memory_shared();
    assert_cudarc_traits::<CudarcView<'static, u32>>();
    assert_read_only_traits::<CudarcReadView<'static, u32>>();
}

/// A read-only view is a `DevicePtr` (and not a `DevicePtrMut`: no impl exists, so
/// `clone_htod_into`-style writes and `arg(&mut view)` do not compile).
fn assert_read_only_traits<V: DeviceSlice<u32> + DevicePtr<u32>>() {}

fn launch(
    stream: &Arc<CudaStream>,
    f: &cudarc::driver::CudaFunction,
    view: &mut CudarcView<'_, u32>,
    v: u32,
    spin: i64,
) -> TestResult {
    let n = view.len() as u64;
    let cfg = LaunchConfig {
        grid_dim: (264, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut b = stream.launch_builder(f);
    b.arg(view);
    b.arg(&n);
    b.arg(&v);
    b.arg(&spin);
    // SAFETY: `fill` takes (u32*, u64, u32, i64) and writes `n` elements of the view,
    // which is mapped read-write for the whole launch (the view borrows its buffer, and
    // unmapping waits for the recorded use).
    unsafe { b.launch(cfg) }?;
    Ok(())
}

#[test]
fn nvrtc_kernel_writes_growing_buffer_and_tiles() -> TestResult {
    let _memory = crate::memory_shared();
    let cuda = Cuda::new()?;
    eprintln!("interop suite backend: {}", cuda.describe());
    if cuda.backend() == Backend::Simulator {
        eprintln!("skipped: the cudarc kernel test needs the real driver");
        return Ok(());
    }
    let d = cuda.device(0)?;
    let ctx = CudaContext::new(0)?;
    // One primary context for both libraries.
    assert_eq!(ctx.cu_ctx() as usize, d.raw_context() as usize);
    let stream = ctx.new_stream()?;
    let ptx = cudarc::nvrtc::compile_ptx(FILL)?;
    let module = ctx.load_module(ptx)?;
    let f = module.load_function("fill")?;

    // A buffer growing between launches; the host checks every element each time.
    let mut buf = GrowableBuffer::<u32>::with_max_capacity(&d, 256 * MIB)?;
    for round in 0..6u32 {
        buf.resize((round as usize + 1) * 3 * MIB, 0)?;
        let ptr = buf.ptr();
        {
            let mut view = buf.cudarc_view(&stream)?;
            assert_eq!(view.ptr(), ptr);
            launch(&stream, &f, &mut view, 1000 + round, 0)?;
        }
        // Ordered after the kernel by the use the view recorded.
        let host = buf.to_vec()?;
        assert!(host.iter().all(|&x| x == 1000 + round), "round {round}");
    }

    // Committed tiles of a sparse array; holes stay zero.
    let g = d.min_granularity(&cuda_vmm::AllocationProps::device(&d))?;
    let per = g / 4;
    let config = SparseConfig {
        holes: HoleBehavior::Zeros,
        ..SparseConfig::default()
    };
    let mut tiles = SparseArray::<u32>::new(&d, 16 * per, config)?;
    tiles.commit(2 * per..5 * per)?;
    {
        let mut view = tiles.cudarc_view(&stream, 2 * per..5 * per)?;
        launch(&stream, &f, &mut view, 77, 0)?;
    }
    let mut host = vec![1u32; 8 * per];
    tiles.read(0..8 * per, &mut host)?;
    assert!(host[..2 * per].iter().all(|&x| x == 0));
    assert!(host[2 * per..5 * per].iter().all(|&x| x == 77));
    assert!(host[5 * per..].iter().all(|&x| x == 0));

    // A slow kernel still running when the buffer shrinks, and when it is dropped.
    {
        let mut view = buf.cudarc_view(&stream)?;
        launch(&stream, &f, &mut view, 4242, 50_000_000)?;
    }
    let half = buf.len() / 2;
    buf.truncate(half);
    buf.shrink_to_fit()?;
    assert!(buf.to_vec()?.iter().all(|&x| x == 4242));
    {
        let mut view = buf.cudarc_view(&stream)?;
        launch(&stream, &f, &mut view, 1, 50_000_000)?;
    }
    drop(buf);
    {
        let mut view = tiles.cudarc_view(&stream, 2 * per..5 * per)?;
        launch(&stream, &f, &mut view, 2, 50_000_000)?;
    }
    tiles.decommit(2 * per..5 * per)?;
    drop(tiles);
    d.synchronize()?;
    stream.synchronize()?;
    Ok(())
}

/// A device of the suite and a cudarc stream of its primary context.
pub(crate) type Gpu = (cuda_vmm::Device, Arc<CudaStream>);

/// The suite's device 0 and a cudarc stream of its primary context, or `None` (skipped,
/// said on stderr) on the simulator: cudarc needs the real driver.
pub(crate) fn gpu_or_skip(test: &str) -> Result<Option<Gpu>, Box<dyn std::error::Error>> {
    let cuda = crate::cuda()?;
    if cuda.backend() == Backend::Simulator {
        eprintln!("skipped: {test} runs cudarc kernels, which need the real driver");
        return Ok(None);
    }
    let d = cuda.device(0)?;
    let ctx = CudaContext::new(0)?;
    assert_eq!(ctx.cu_ctx() as usize, d.raw_context() as usize);
    Ok(Some((d, ctx.new_stream()?)))
}

/// Compiles `src` with NVRTC and loads function `name` in `stream`'s context.
pub(crate) fn kernel(
    stream: &Arc<CudaStream>,
    src: &str,
    name: &str,
) -> Result<cudarc::driver::CudaFunction, Box<dyn std::error::Error>> {
    let module = stream
        .context()
        .load_module(cudarc::nvrtc::compile_ptx(src)?)?;
    Ok(module.load_function(name)?)
}

pub(crate) const GRID: LaunchConfig = LaunchConfig {
    grid_dim: (132, 1, 1),
    block_dim: (256, 1, 1),
    shared_mem_bytes: 0,
};

/// One launch over every sequence: sequence `s` owns elements `starts[s]..starts[s] +
/// counts[s]` of the array at `base` and writes `(s + 1) * 1000000 + i` to its element `i`.
const BATCHED: &str = r#"
extern "C" __global__ void batched(unsigned int* base, const unsigned long long* starts,
                                   const unsigned long long* counts, int nseq) {
    for (int s = 0; s < nseq; ++s) {
        for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
             i < counts[s]; i += (unsigned long long)gridDim.x * blockDim.x) {
            base[starts[s] + i] = (unsigned int)((s + 1) * 1000000ull + i);
        }
    }
}
"#;

/// A batched kernel over a sparse array with holes, through `cudarc_view_unchecked` over
/// the whole array; every sequence's elements are committed, the holes between them stay
/// zero (holes read zeros) and the array's committed tiles are unmapped only after it.
#[test]
fn gpu_batched_kernel_over_a_sparse_array_with_holes() -> TestResult {
    let _memory = crate::memory_shared();
    let Some((d, stream)) = gpu_or_skip("gpu_batched_kernel_over_a_sparse_array_with_holes")?
    else {
        return Ok(());
    };
    let f = kernel(&stream, BATCHED, "batched")?;
    let g = d.min_granularity(&cuda_vmm::AllocationProps::device(&d))?;
    let per = g / 4;
    let config = SparseConfig {
        holes: HoleBehavior::Zeros,
        ..SparseConfig::default()
    };
    let mut cache = SparseArray::<u32>::new(&d, 64 * per, config)?;
    // Three sequences with holes between them; the last ends inside a tile.
    let seqs: [(usize, usize); 3] = [(0, 2 * per), (10 * per, per + 17), (40 * per + 5, 3000)];
    for &(start, count) in &seqs {
        cache.commit(start..start + count)?;
    }
    let starts: Vec<u64> = seqs.iter().map(|&(s, _)| s as u64).collect();
    let counts: Vec<u64> = seqs.iter().map(|&(_, c)| c as u64).collect();
    let starts_dev = stream.clone_htod(&starts)?;
    let counts_dev = stream.clone_htod(&counts)?;
    let nseq = seqs.len() as i32;
    // The safe view refuses the holes.
    assert!(matches!(
        cache.cudarc_view(&stream, 0..cache.len()),
        Err(cuda_vmm_alloc::Error::NotCommitted { .. })
    ));
    {
        // SAFETY: the kernel writes only elements of the three sequences, all committed
        // above; the view borrows the array, so nothing is decommitted while it runs.
        let mut view = unsafe { cache.cudarc_view_unchecked(&stream, 0..cache.len())? };
        assert_eq!(view.ptr(), cache.ptr_at(0)?);
        assert_eq!(view.len(), cache.len());
        let mut b = stream.launch_builder(&f);
        b.arg(&mut view);
        b.arg(&starts_dev);
        b.arg(&counts_dev);
        b.arg(&nseq);
        // SAFETY: `batched` takes (u32*, const u64*, const u64*, int) and writes only the
        // sequences' elements, committed and mapped read-write (the view's contract).
        unsafe { b.launch(GRID) }?;
    }
    // Ordered after the kernel by the use the view recorded.
    let mut host = vec![1u32; cache.len()];
    cache.read(0..cache.len(), &mut host)?;
    for (s, &(start, count)) in seqs.iter().enumerate() {
        for i in 0..count {
            assert_eq!(
                host[start + i],
                ((s + 1) * 1_000_000 + i) as u32,
                "seq {s} elem {i}"
            );
        }
    }
    let written: usize = seqs.iter().map(|&(_, c)| c).sum();
    assert_eq!(host.iter().filter(|&&x| x != 0).count(), written);
    // A read view over the whole array: holes read zeros.
    {
        let view = cache.cudarc_read_view(&stream, 0..cache.len())?;
        let copy = stream.clone_dtoh(&view)?;
        assert_eq!(copy, host);
    }
    cache.decommit(0..cache.len())?;
    Ok(())
}

/// `out[0] = sum of p[0..n)`: the consumer side reads through a `const` pointer.
const SUM: &str = r#"
extern "C" __global__ void sum(const unsigned int* p, unsigned long long n,
                               unsigned long long* out) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         i < n; i += (unsigned long long)gridDim.x * blockDim.x) {
        atomicAdd(out, (unsigned long long)p[i]);
    }
}
"#;

/// A consumer kernel through a read-only view of a shared buffer's consumer side, which
/// maps the producer's chunks read-only: the read-write view is refused, the read view is
/// a kernel argument, and its use is recorded before the consumer unmaps.
#[test]
fn gpu_consumer_kernel_through_a_read_only_view() -> TestResult {
    use cuda_vmm_alloc::{BufferConfig, GrowthPolicy, SharedBufferConsumer, SharedBufferProducer};
    let _memory = crate::memory_shared();
    let Some((d, stream)) = gpu_or_skip("gpu_consumer_kernel_through_a_read_only_view")? else {
        return Ok(());
    };
    let f = kernel(&stream, SUM, "sum")?;
    let g = d.min_granularity(&cuda_vmm::AllocationProps::device(&d))?;
    let props = cuda_vmm::AllocationProps::device(&d).handle_types(cuda_vmm::HandleTypes::POSIX_FD);
    let mut b = GrowableBuffer::<u32>::new(
        &d,
        BufferConfig {
            max_capacity: Some(16 * g / 4),
            policy: GrowthPolicy::fixed(g),
            props: Some(props),
            ..BufferConfig::default()
        },
    )?;
    let values: Vec<u32> = (0..(3 * g / 4 + 100) as u32).collect();
    b.extend_from_slice(&values)?;
    let (tx, rx) = std::os::unix::net::UnixStream::pair()?;
    let mut producer = SharedBufferProducer::new(&b, tx)?;
    let mut consumer = SharedBufferConsumer::<u32>::connect(&d, rx)?;
    producer.publish(&b)?;
    assert!(consumer.receive()?);
    let n = consumer.len();
    assert_eq!(n, values.len());
    // Read-only mappings: a read-write view is refused.
    assert!(matches!(
        consumer.reservation().cudarc_view::<u32>(&stream, 0, n),
        Err(cuda_vmm::Error::AccessDenied { .. })
    ));
    let mut out = stream.alloc_zeros::<u64>(1)?;
    {
        let view = consumer.cudarc_read_view(&stream)?;
        assert_eq!(view.len(), n);
        let n64 = n as u64;
        let mut launch = stream.launch_builder(&f);
        launch.arg(&view);
        launch.arg(&n64);
        launch.arg(&mut out);
        // SAFETY: `sum` takes (const u32*, u64, u64*) and reads `n` elements of the view,
        // mapped readable for the whole launch (the view borrows the consumer).
        unsafe { launch.launch(GRID) }?;
    }
    let total = stream.clone_dtoh(&out)?;
    let expected: u64 = values.iter().map(|&v| v as u64).sum();
    assert_eq!(total, vec![expected]);
    // The recorded read orders the consumer's drop after the kernel.
    consumer.record_cudarc_use(&stream)?;
    drop(consumer);
    drop(producer);
    stream.synchronize()?;
    Ok(())
}

/// Element `i` of `p[0..n)` gets `first + i`.
const APPEND: &str = r#"
extern "C" __global__ void append(unsigned int* p, unsigned long long n, unsigned int first) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         i < n; i += (unsigned long long)gridDim.x * blockDim.x) {
        p[i] = first + (unsigned int)i;
    }
}
"#;

/// A kernel appending on the device through the spare-capacity view, then `set_len`; and a
/// kernel on a raw pointer ordered by `record_cudarc_use` under `UnmapWait::RecordedUse`.
#[test]
fn gpu_kernel_appends_through_set_len() -> TestResult {
    let _memory = crate::memory_shared();
    let Some((d, stream)) = gpu_or_skip("gpu_kernel_appends_through_set_len")? else {
        return Ok(());
    };
    let f = kernel(&stream, APPEND, "append")?;
    let mut log = GrowableBuffer::<u32>::with_max_capacity(&d, 64 * MIB)?;
    log.extend_from_slice(&[7, 8, 9])?;
    let mut expected = vec![7u32, 8, 9];
    for round in 0..4u32 {
        let add = (round as usize + 1) * MIB + 3;
        log.reserve(add)?;
        let old = log.len();
        {
            let mut spare = log.cudarc_spare_capacity_view(&stream)?;
            assert_eq!(spare.len(), log.capacity() - old);
            assert_eq!(spare.ptr(), log.ptr() + 4 * old as u64);
            let n = add as u64;
            let first = round * 10_000_000;
            let mut b = stream.launch_builder(&f);
            b.arg(&mut spare);
            b.arg(&n);
            b.arg(&first);
            // SAFETY: `append` takes (u32*, u64, u32) and writes `add` elements of the
            // spare view, which holds at least that many (reserved above).
            unsafe { b.launch(GRID) }?;
            expected.extend((0..add as u32).map(|i| first + i));
        }
        // SAFETY: the kernel wrote elements old..old + add, and the view's dropped use
        // orders the buffer's reads after it.
        unsafe { log.set_len(old + add)? };
        assert_eq!(log.to_vec()?, expected, "round {round}");
    }

    // A raw-pointer kernel, recorded with `record_cudarc_use`, is what a shrink under
    // `RecordedUse` waits for.
    // SAFETY: every use below is a recorded cudarc use or this crate's own copy.
    unsafe { log.set_unmap_wait(cuda_vmm::UnmapWait::RecordedUse) };
    let ptr = log.ptr();
    let n = log.len() as u64;
    let mut b = stream.launch_builder(&f);
    b.arg(&ptr);
    b.arg(&n);
    b.arg(&5u32);
    // SAFETY: `append` writes `n` = len() elements at the buffer's address, all committed;
    // the use is recorded before anything is unmapped.
    unsafe { b.launch(GRID) }?;
    log.record_cudarc_use(&stream)?;
    log.truncate(MIB);
    log.shrink_to_fit()?;
    let host = log.to_vec()?;
    assert!(host.iter().enumerate().all(|(i, &x)| x == 5 + i as u32));
    drop(log);
    stream.synchronize()?;
    Ok(())
}
