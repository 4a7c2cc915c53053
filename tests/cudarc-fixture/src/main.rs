use cuda_vmm::Cuda;
use cuda_vmm_alloc::GrowableBuffer;
use cudarc::driver::{CudaContext, DeviceSlice, LaunchConfig, PushKernelArg};

const FILL: &str = r#"
extern "C" __global__ void fill(unsigned int* p, unsigned int n, unsigned int v) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) p[i] = v + i;
}"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Cuda::new()?.device(0)?;
    let ctx = CudaContext::new(0)?; // the same primary context as device 0
    let stream = ctx.new_stream()?;
    let fill = ctx
        .load_module(cudarc::nvrtc::compile_ptx(FILL)?)?
        .load_function("fill")?;

    // A kernel writes the buffer through a view; dropping the view records the use.
    let mut buffer = GrowableBuffer::<u32>::with_max_capacity(&device, 1 << 24)?;
    buffer.resize(1 << 20, 0)?;
    let n = buffer.len() as u32;
    let mut view = buffer.cudarc_view(&stream)?; // borrows the buffer
    let mut launch = stream.launch_builder(&fill);
    launch.arg(&mut view).arg(&n).arg(&0u32);
    // SAFETY: `fill` takes (u32*, u32, u32) and writes `n` elements of the view.
    unsafe { launch.launch(LaunchConfig::for_num_elems(n)) }?;
    drop(view);
    buffer.truncate(1 << 19);
    buffer.shrink_to_fit()?; // waits for the kernel

    // A kernel appends on the device: it writes the spare capacity, then `set_len`.
    buffer.reserve(1000)?;
    let old = buffer.len();
    let mut spare = buffer.cudarc_spare_capacity_view(&stream)?;
    let (add, first) = (1000u32, old as u32);
    assert!(spare.len() >= add as usize);
    let mut launch = stream.launch_builder(&fill);
    launch.arg(&mut spare).arg(&add).arg(&first);
    // SAFETY: `fill` writes `add` elements of the spare view, which holds that many.
    unsafe { launch.launch(LaunchConfig::for_num_elems(add)) }?;
    drop(spare);
    // SAFETY: the kernel wrote elements old..old + add; the view's use orders reads after it.
    unsafe { buffer.set_len(old + add as usize)? };

    // A read-only view is a `DevicePtr` (cudarc copies, `const T*` arguments).
    let host = stream.clone_dtoh(&buffer.cudarc_read_view(&stream)?)?;
    assert!(host.iter().enumerate().all(|(i, &x)| x == i as u32));
    println!("{} elements written by kernels, read back", host.len());
    Ok(())
}
