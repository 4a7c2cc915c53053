//! The safe layer: reserve a range, back it with two allocations, set access once, copy.
//!
//! `cargo run -p cuda-vmm --example reserve_and_map` (the real GPU if present, else the simulator).

use cuda_vmm::{
    AccessFlags, Allocation, AllocationProps, Backend, Cuda, GranularityKind, Reservation,
    ReserveOptions, Stream,
};

fn main() -> Result<(), cuda_vmm::Error> {
    let cuda = match Cuda::real() {
        Ok(c) if c.device_count().unwrap_or(0) > 0 => c,
        // SAFETY: the simulator implements the driver API.
        _ => unsafe { Cuda::from_driver(cuda_vmm_sim::driver(), Backend::Simulator)? },
    };
    println!("{}", cuda.describe());
    let device = cuda.device(0)?;
    let props = AllocationProps::device(&device);
    let g = device.granularity(&props, GranularityKind::Minimum)?;
    let range = Reservation::new(&device, 8 * g, ReserveOptions::default())?;
    let a = Allocation::new(&device, g, &props)?;
    let b = Allocation::new(&device, 2 * g, &props)?;
    let _ma = range.map(0, &a, 0, g)?;
    let _mb = range.map(g, &b, 0, 2 * g)?;
    range.set_access(0, 3 * g, &[(&device, AccessFlags::ReadWrite)])?;
    range.write(g - 3, b"across two allocations")?;
    let mut back = [0u8; 22];
    range.read(g - 3, &mut back)?;
    println!("{}", String::from_utf8_lossy(&back));
    let stream = Stream::new(&device)?;
    range.fill_async(&stream, 2 * g, g, 0xAB)?; // recorded: unmapping waits for it
    println!("{range:?}");
    Ok(())
}
