//! cudarc interop (feature `cudarc`): buffers and tiles as cudarc device memory.
//!
//! On CI the feature builds and the trait checks run; the kernel test needs the real
//! driver and NVRTC (`libnvrtc.so.13` on the loader path), and says so when skipped.

use std::sync::Arc;

use cuda_vmm::{Backend, Cuda, CudarcView};
use cuda_vmm_alloc::{GrowableBuffer, HoleBehavior, SparseArray, SparseConfig};
use cuda_vmm_tests::helpers::TestResult;
use cudarc::driver::{
    CudaContext, CudaStream, DevicePtr, DevicePtrMut, DeviceSlice, LaunchConfig, PushKernelArg,
};

const MIB: usize = 1 << 20;

/// Every thread spins `spin` clock cycles, then the grid writes `v` to `p[0..n)`.
const FILL: &str = r#"
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
}

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
