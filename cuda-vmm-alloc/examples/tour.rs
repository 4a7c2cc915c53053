//! A tour of cuda-vmm: `cargo run --release --example tour`.
//!
//! Runs on the GPU when the CUDA driver finds one, otherwise on the built-in simulator
//! (set `CUDA_VMM_BACKEND=sim` to force it). In a few seconds it shows
//! 1. the device's virtual memory management capabilities,
//! 2. a growable buffer reaching a few GiB while its pointer stays put,
//! 3. a sparse array's residency map as tiles are committed and decommitted,
//! 4. a caching allocator serving tensors in stream order, with no driver call once warm,
//! 5. the latency of each VMM entry point for one 2 MiB chunk.

use std::error::Error;
use std::time::{Duration, Instant};

use cuda_vmm::{
    AccessFlags, Allocation, AllocationProps, Backend, Cuda, Device, Reservation, ReserveOptions,
    Stream,
};
use cuda_vmm_alloc::{
    Backup, BufferConfig, CachingAllocator, ChunkPool, GrowableBuffer, PoolConfig, SparseArray,
    SparseConfig,
};

const MIB: usize = 1 << 20;
const GIB: usize = 1 << 30;

fn main() -> Result<(), Box<dyn Error>> {
    let cuda = Cuda::new()?;
    match cuda.backend() {
        Backend::RealDriver => println!("Running on the GPU: {}", cuda.describe()),
        Backend::Simulator => println!(
            "No GPU found: running on the simulator ({})",
            cuda.describe()
        ),
    }
    let device = cuda.device(0)?;

    section("1. Capabilities");
    println!("{}", device.capabilities()?);

    section("2. A growable buffer");
    grow_buffer(&device)?;

    section("3. A sparse array");
    sparse_tiles(&device)?;

    section("4. A stream-ordered caching allocator");
    caching(&device)?;

    section("5. Latency of one 2 MiB chunk (median of 15 rounds)");
    latency_table(&device)?;
    Ok(())
}

fn section(title: &str) {
    println!("\n== {title} ==\n");
}

/// How far to grow: 1 GiB on the simulator (nothing is written, so it costs no host memory),
/// else a quarter of the free memory, at most 4 GiB.
fn growth_target(device: &Device) -> Result<usize, Box<dyn Error>> {
    let target = match device.cuda().backend() {
        Backend::Simulator => GIB,
        Backend::RealDriver => (device.memory_info()?.free / 4).min(4 * GIB),
    };
    Ok(target / (2 * MIB) * (2 * MIB))
}

/// Grows a buffer by 2 MiB at a time, printing each time it commits more memory.
fn grow_buffer(device: &Device) -> Result<(), Box<dyn Error>> {
    let target = growth_target(device)?;
    let config = BufferConfig {
        max_capacity: Some(target),
        ..BufferConfig::default()
    };
    let mut buffer = GrowableBuffer::<u8>::new(device, config)?;
    let ptr = buffer.ptr();
    buffer.extend_from_slice(b"hello, VMM")?;
    println!(
        "reserved {} of address space at {ptr:#x}; growing to {} in 2 MiB steps",
        gib(buffer.reserved_bytes()),
        gib(target)
    );
    println!(
        "\n{:>10} {:>10} {:>7} {:>18}",
        "room for", "committed", "chunks", "pointer"
    );

    let mut committed = buffer.committed_bytes();
    let row = |room: usize, buffer: &GrowableBuffer<u8>| {
        let (committed, chunks) = (gib(buffer.committed_bytes()), buffer.stats().chunks);
        println!(
            "{:>10} {committed:>10} {chunks:>7} {:>#18x}",
            gib(room),
            buffer.ptr()
        );
    };
    row(buffer.len(), &buffer); // the 10 bytes written above

    let started = Instant::now();
    for room in (2 * MIB..=target).step_by(2 * MIB) {
        buffer.reserve(room - buffer.len())?; // room for `room` bytes in all
        if buffer.committed_bytes() != committed {
            committed = buffer.committed_bytes();
            row(room, &buffer);
        }
    }
    let elapsed = started.elapsed();

    let mut head = [0u8; 10];
    buffer.read(0..10, &mut head)?;
    let stats = buffer.stats();
    println!(
        "\n{} appends in {elapsed:.2?}; pointer {} moved; first bytes still {:?}",
        target / (2 * MIB),
        if buffer.ptr() == ptr {
            "never"
        } else {
            "MOVED (a bug!)"
        },
        String::from_utf8_lossy(&head),
    );
    println!(
        "driver calls: {} cuMemCreate, {} cuMemMap, {} cuMemSetAccess; committed {} for {} ({:.2}x)",
        stats.creates,
        stats.maps,
        stats.set_access_calls,
        gib(buffer.committed_bytes()),
        gib(target),
        buffer.committed_bytes() as f64 / target as f64,
    );
    let t = stats.time;
    println!(
        "time in the driver: create {:.2?}, map {:.2?}, set access {:.2?}",
        t.create, t.map, t.set_access
    );
    Ok(())
}

/// Commits and decommits tiles of a 128 MiB sparse array backed by a chunk pool.
fn sparse_tiles(device: &Device) -> Result<(), Box<dyn Error>> {
    let pool = ChunkPool::new(device, PoolConfig::default())?;
    let config = SparseConfig {
        pool: Some(pool.clone()),
        ..SparseConfig::default()
    };
    let mut array = SparseArray::<f32>::new(device, 128 * MIB / 4, config)?;
    let tile = array.tile_elements(0).len(); // elements per tile
    let tiles = |r: std::ops::Range<usize>| r.start * tile..r.end * tile;

    array.commit(tiles(0..1))?;
    array.commit(tiles(8..16))?; // one run: one cuMemSetAccess
    array.commit(tiles(60..64))?;
    println!("{array}\n");

    array.decommit(tiles(10..14))?; // chunks go back to the pool
    array.commit(tiles(30..32))?; // ...and are reused here
    println!("{array}\n");

    let (stats, pooled) = (array.stats(), pool.stats());
    println!(
        "committed {} MiB; {} cuMemCreate, {} pool hits, {} cuMemSetAccess; pool holds {} chunks",
        array.committed_bytes() / MIB,
        stats.creates,
        stats.pool_hits,
        stats.set_access_calls,
        pooled.chunks_held,
    );
    Ok(())
}

/// A tensor-library step loop: activations of 1-64 MiB allocated and freed on one stream.
/// The first steps grow the stream's segment; later ones are served from its cache.
fn caching(device: &Device) -> Result<(), Box<dyn Error>> {
    let stream = Stream::new(device)?;
    let allocator = CachingAllocator::new(device)?;
    let mut first_step = Duration::ZERO;
    let start = Instant::now();
    for step in 0..100 {
        let t = Instant::now();
        let tensors = (0..16)
            .map(|i| allocator.alloc(((i * 7 + step) % 64 + 1) * MIB, &stream))
            .collect::<Result<Vec<_>, _>>()?;
        drop(tensors); // back to the stream's cache at once
        if step == 0 {
            first_step = t.elapsed();
        }
    }
    let total = start.elapsed();
    let stats = allocator.stats();
    println!(
        "{} allocations: {} from the cache, {} growths; first step {:.0} µs, then {:.2} µs per \
         allocation; peak {} allocated, {} reserved",
        stats.allocs,
        stats.cache_hits,
        stats.growths,
        first_step.as_secs_f64() * 1e6,
        (total - first_step).as_secs_f64() * 1e6 / (stats.allocs - 16) as f64,
        gib(stats.peak_allocated_bytes),
        gib(stats.peak_reserved_bytes),
    );
    // Sleep and wake: weights (backed up to host memory) give their pages back, keep
    // their address, and come back with their bytes.
    let weights = allocator.alloc_tagged(8 * MIB, &stream, "weights")?;
    weights.write(0, b"weights")?;
    let free = device.memory_info()?.free;
    let slept = allocator.sleep(&["weights"], Backup::Host)?;
    let asleep = device.memory_info()?.free;
    let woke = allocator.wake(&["weights"])?;
    let mut back = [0u8; 7];
    weights.read(0, &mut back)?;
    println!(
        "sleep gave {} back ({} more free), wake restored {} in {:.0} µs: {:?} at {:#x}",
        gib(slept.released_bytes),
        gib(asleep - free),
        gib(woke.restored_bytes),
        (woke.map + woke.restore).as_secs_f64() * 1e6,
        String::from_utf8_lossy(&back),
        weights.ptr()
    );
    drop(weights);
    let given = allocator.empty_cache();
    println!(
        "empty_cache gave {} back (after the device work on it)",
        gib(given)
    );
    Ok(())
}

/// Times each VMM entry point on a 2 MiB chunk through the safe layer. A demo printout, not a
/// benchmark: see `cargo bench -p cuda-vmm-benches` for measurements.
fn latency_table(device: &Device) -> Result<(), Box<dyn Error>> {
    const ROUNDS: usize = 15;
    let names = [
        "reserve",
        "create",
        "map",
        "set access",
        "unmap",
        "release",
        "free",
    ];
    let mut samples = vec![Vec::with_capacity(ROUNDS); names.len()];
    let props = AllocationProps::device(device);
    let rw = [(device, AccessFlags::ReadWrite)];

    for _ in 0..ROUNDS {
        let mut t = Timer::default();
        let reservation =
            t.time(|| Reservation::new(device, 2 * MIB, ReserveOptions::default()))?;
        let allocation = t.time(|| Allocation::new(device, 2 * MIB, &props))?;
        let mapping = t.time(|| reservation.map(0, &allocation, 0, 2 * MIB))?;
        t.time(|| mapping.set_access(&rw))?;
        t.time(|| mapping.unmap())?;
        t.time(|| allocation.release())?;
        t.time(|| reservation.free())?;
        for (sample, lap) in samples.iter_mut().zip(t.laps) {
            sample.push(lap);
        }
    }

    println!("{:<12} {:>10}", "entry point", "median");
    for (name, mut sample) in names.iter().zip(samples) {
        sample.sort();
        println!(
            "{name:<12} {:>7.1} µs",
            sample[ROUNDS / 2].as_secs_f64() * 1e6
        );
    }
    Ok(())
}

/// Collects the duration of each timed call.
#[derive(Default)]
struct Timer {
    laps: Vec<Duration>,
}

impl Timer {
    fn time<T>(&mut self, call: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let result = call();
        self.laps.push(start.elapsed());
        result
    }
}

/// `1.50 GiB`, `64 MiB`, `10 B`. (An example sees only the public API, which has no byte
/// formatter: the tile maps' `Bytes` is private to cuda-vmm-alloc.)
fn gib(bytes: usize) -> String {
    if bytes < MIB {
        format!("{bytes} B")
    } else if bytes >= GIB {
        format!("{:.2} GiB", bytes as f64 / GIB as f64)
    } else {
        format!("{} MiB", bytes / MIB)
    }
}
