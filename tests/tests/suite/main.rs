//! The workspace's integration and conformance suites, in one test binary.
//!
//! Run with `cargo test -p cuda-vmm-tests`. `CUDA_VMM_BACKEND=sim|cuda` picks the
//! backend; by default the real driver is used when it loads and has a device.

#![allow(clippy::unwrap_used, clippy::field_reassign_with_default)]

mod adversarial;
mod adversarial_alloc;
mod adversarial_pool;
mod adversarial_release;
mod adversarial_shared;
mod alloc;
mod budget;
mod buffer_sleep;
mod c_abi;
mod caching;
mod churn;
mod conformance;
mod hooks;
mod host_memory;
#[cfg(feature = "cudarc")]
mod interop;
#[cfg(feature = "cudarc")]
mod interop_caching;
mod leak;
mod lifetime;
mod loader;
mod multi_gpu;
mod prefetch;
mod release_queue;
pub(crate) mod reliability;
mod safe;
mod sharing;
mod sim;
mod sleep_faults;
mod sleep_group;
mod soundness;
mod soundness_pool;
mod soundness_shared;
mod spares;
mod spares_background;
mod spares_background_adversarial;
mod sparse_sleep;
mod stream_capture;
mod stream_ordered_pool;
mod tracing_spans;
mod views;

/// Whether the suite runs on the simulator.
pub fn on_simulator() -> cuda_vmm::Result<bool> {
    Ok(cuda()?.backend() == cuda_vmm::Backend::Simulator)
}

/// Device 0 of the suite's [`cuda`].
pub fn device() -> cuda_vmm::Result<cuda_vmm::Device> {
    cuda()?.device(0)
}

/// Device 0 of the suite's [`cuda`], kept for the whole run so its primary context stays
/// alive.
pub fn pinned_device() -> cuda_vmm::Result<cuda_vmm::Device> {
    static DEVICE: std::sync::OnceLock<cuda_vmm::Device> = std::sync::OnceLock::new();
    if let Some(d) = DEVICE.get() {
        return Ok(d.clone());
    }
    let d = cuda()?.device(0)?;
    Ok(DEVICE.get_or_init(|| d).clone())
}

/// Device memory is shared by the whole process: the conformance suite, whose cases
/// compare free memory exactly, holds this exclusively; tests that allocate gigabytes
/// hold it shared.
pub static DEVICE_MEMORY: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Shared hold of [`DEVICE_MEMORY`].
pub fn memory_shared() -> std::sync::RwLockReadGuard<'static, ()> {
    DEVICE_MEMORY.read().unwrap_or_else(|e| e.into_inner())
}

/// Exclusive hold of [`DEVICE_MEMORY`].
pub fn memory_exclusive() -> std::sync::RwLockWriteGuard<'static, ()> {
    DEVICE_MEMORY.write().unwrap_or_else(|e| e.into_inner())
}

/// The process's [`cuda_vmm::Cuda`] on the selected backend (`CUDA_VMM_BACKEND`, else the
/// real driver when it has a device), opened once and shared by the suite's modules, with
/// releases completed on the caller's thread; the first call prints the backend and its
/// devices.
pub fn cuda() -> cuda_vmm::Result<cuda_vmm::Cuda> {
    static CUDA: std::sync::OnceLock<cuda_vmm::Cuda> = std::sync::OnceLock::new();
    if let Some(c) = CUDA.get() {
        return Ok(c.clone());
    }
    let c = cuda_vmm::Cuda::new()?;
    // The shared instance completes every release on the caller's thread, so the suite's
    // checks of state right after a decommit, shrink or drop (and its per-thread fault
    // injection) see the release done; `release_queue` tests open their own instance
    // with the default queue and worker.
    c.set_max_pending_release_bytes(0);
    let c = CUDA.get_or_init(|| c);
    static PRINTED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    PRINTED.get_or_init(|| {
        let n = c.device_count().unwrap_or(0);
        eprintln!("suite backend: {}, {n} device(s)", c.describe());
    });
    Ok(c.clone())
}

/// What a test skipped off the simulator says it needs.
pub const FAULT_INJECTION: &str = "needs the simulator's fault injection";

/// Whether the suite runs on the simulator; if not, says "skipped: {why}" on stderr, and
/// the caller returns.
pub fn simulator_or_skip(why: &str) -> cuda_vmm::Result<bool> {
    let on = on_simulator()?;
    if !on {
        eprintln!("skipped: {why}");
    }
    Ok(on)
}

/// Device 0 and its granularity on the simulator, or `None` (after saying "skipped: {why}")
/// to skip.
pub fn simulated_device(why: &str) -> cuda_vmm::Result<Option<(cuda_vmm::Device, usize)>> {
    if !simulator_or_skip(why)? {
        return Ok(None);
    }
    let d = device()?;
    let g = cuda_vmm_tests::helpers::gran(&d)?;
    Ok(Some((d, g)))
}

/// A chunk pool of `d`'s one-granule chunks with these limits.
pub fn limited_pool(
    d: &cuda_vmm::Device,
    max_chunks: usize,
    max_bytes: usize,
) -> cuda_vmm_alloc::Result<cuda_vmm_alloc::ChunkPool> {
    cuda_vmm_alloc::ChunkPool::new(
        d,
        cuda_vmm_alloc::PoolConfig {
            max_chunks,
            max_bytes,
            ..cuda_vmm_alloc::PoolConfig::default()
        },
    )
}

/// Devices 0 and 1 on the simulator, or `None` (with a line saying why) to skip.
pub fn two_simulated_devices() -> cuda_vmm::Result<Option<(cuda_vmm::Device, cuda_vmm::Device)>> {
    let cuda = cuda()?;
    if cuda.backend() != cuda_vmm::Backend::Simulator {
        eprintln!("skipped: {FAULT_INJECTION}");
        return Ok(None);
    }
    if cuda.device_count()? < 2 {
        eprintln!("skipped: needs two devices (CUDA_VMM_SIM_DEVICES=2)");
        return Ok(None);
    }
    Ok(Some((cuda.device(0)?, cuda.device(1)?)))
}

/// Devices 0 and 1 on the simulator with the larger of their granularities, or `None` (with
/// a line saying why) to skip.
pub fn two_simulated_devices_and_granule(
) -> cuda_vmm::Result<Option<(cuda_vmm::Device, cuda_vmm::Device, usize)>> {
    let Some((d0, d1)) = two_simulated_devices()? else {
        return Ok(None);
    };
    let g = cuda_vmm_tests::helpers::gran(&d0)?.max(cuda_vmm_tests::helpers::gran(&d1)?);
    Ok(Some((d0, d1, g)))
}
