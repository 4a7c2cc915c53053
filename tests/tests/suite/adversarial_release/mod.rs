//! Adversarial tests of the release queue (issue 19), through the public API only: flush
//! timeouts at their extremes, the bound toggled while entries are queued, faults aimed at
//! the worker thread, pools and budgets shared by arrays on many threads, and the `Cuda`
//! dropped while entries are queued.
//!
//! Every test opens a `Cuda` of its own with the default queue (the suite's shared one
//! completes releases inline). Tests that hold a simulated stream, or compare the
//! simulator's free memory exactly, run in a process of their own ([`own_process!`]);
//! they open `Cuda::simulator()` and so run the same on a machine with a GPU.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cuda_vmm::release::ReleaseError;
use cuda_vmm::{Cuda, Device};
use cuda_vmm_alloc::{ChunkPool, PoolConfig, SparseArray, SparseConfig};
use cuda_vmm_sys::CUresult;
use cuda_vmm_tests::helpers::gran;

mod bound;
mod faults;
mod flush;
mod kept;
mod lifetime;
mod mapping;
mod oom;
mod races;
mod sharing;

/// Long enough for every queued release of a test to complete.
pub(crate) const FLUSH: Duration = Duration::from_secs(30);
/// How long a release that must stay queued is watched.
pub(crate) const STAYS_QUEUED_FOR: Duration = Duration::from_millis(200);

/// The failure the tests inject.
pub(crate) const UNKNOWN: CUresult = CUresult::CUDA_ERROR_UNKNOWN;

/// The environment variable naming the one test a child process runs.
const CHILD_ENV: &str = "CUDA_VMM_ADV_RELEASE_CHILD";

/// A `Cuda` of its own on the suite's backend, with the default release queue.
pub(crate) fn queued() -> cuda_vmm::Result<Cuda> {
    crate::cuda()?; // prints the backend once
    let cuda = Cuda::new()?;
    assert!(!cuda.releases_complete_inline());
    Ok(cuda)
}

/// [`queued`], its device 0 and that device's granularity.
pub(crate) fn queued_device() -> Result<(Cuda, Device, usize), Box<dyn std::error::Error>> {
    let cuda = queued()?;
    let device = cuda.device(0)?;
    let g = gran(&device)?;
    Ok((cuda, device, g))
}

/// A simulator `Cuda` of its own with the default queue, and its device 0.
pub(crate) fn simulated() -> (Cuda, Device) {
    let cuda = Cuda::simulator().expect("simulator");
    assert!(!cuda.releases_complete_inline());
    let device = cuda.device(0).expect("device");
    (cuda, device)
}

/// Runs the ignored test `test` in a child process (on the simulator), failing unless it
/// ran and passed.
pub(crate) fn run_in_child(test: &str, env: &[(&str, String)]) {
    cuda_vmm_tests::helpers::run_child(test, |cmd| {
        cmd.env(CHILD_ENV, test);
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

/// Whether this process is the child spawned for `test`.
pub(crate) fn is_child(test: &str) -> bool {
    let me = std::env::var(CHILD_ENV).unwrap_or_default();
    if me == test {
        return true;
    }
    println!("skipped: {test} runs only in its own process (spawned by its parent test)");
    false
}

/// A test `$parent` that runs `$body` in a process of its own (as the ignored test
/// `$child`), optionally with more environment (`env = [(name, value), ...]`).
macro_rules! own_process_impl {
    ($(#[$attr:meta])* $parent:ident, $child:ident, $body:block) => {
        $crate::adversarial_release::own_process!($(#[$attr])* $parent, $child, env = [], $body);
    };
    ($(#[$attr:meta])* $parent:ident, $child:ident, env = [$($env:expr),*], $body:block) => {
        #[test]
        $(#[$attr])*
        fn $parent() {
            let _memory = crate::memory_shared();
            crate::adversarial_release::run_in_child(
                &cuda_vmm_tests::test_name!($child),
                &[$($env),*],
            );
        }

        #[test]
        #[ignore = "child process; its parent test spawns it"]
        fn $child() {
            if !crate::adversarial_release::is_child(&cuda_vmm_tests::test_name!($child)) {
                return;
            }
            $body
        }
    };
}

pub(crate) use own_process_impl as own_process;

/// Polls `done` until it holds, failing after [`FLUSH`].
#[track_caller]
pub(crate) fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + FLUSH;
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits (bounded) until the worker of `cuda` has entered `symbol` at least `n` times.
#[track_caller]
pub(crate) fn until_worker_called(cuda: &Cuda, symbol: &str, n: u64) {
    let name = cuda.release_worker_name().to_owned();
    eventually(&format!("the worker called {symbol} {n} times"), || {
        cuda_vmm_sim::call_count_on_thread(&name, symbol) >= n
    });
}

/// The simulated device's free memory.
pub(crate) fn free(device: &Device) -> usize {
    device.memory_info().expect("memory info").free
}

/// The driver code of a `cuda_vmm` error, if it has one.
pub(crate) fn code(e: &cuda_vmm::Error) -> Option<cuda_vmm_sys::CUresult> {
    e.cuda_error().map(|c| c.result())
}

/// [`simulated`], the device's granularity (a tile), and an array of `tiles` tiles with the
/// first `committed` committed.
pub(crate) fn simulated_array(
    tiles: usize,
    committed: usize,
) -> (Cuda, Device, usize, SparseArray<u8>) {
    let (cuda, device) = simulated();
    let tile = gran(&device).expect("granularity");
    let mut array =
        SparseArray::<u8>::new(&device, tiles * tile, SparseConfig::default()).expect("array");
    array.commit(0..committed * tile).expect("commit");
    (cuda, device, tile, array)
}

/// [`simulated`], the device's granularity (a tile), and a pool of the device.
pub(crate) fn simulated_pool() -> (Cuda, Device, usize, ChunkPool) {
    let (cuda, device) = simulated();
    let tile = gran(&device).expect("granularity");
    let pool = ChunkPool::new(&device, PoolConfig::default()).expect("pool");
    (cuda, device, tile, pool)
}

/// Another simulator `Cuda` watching the same simulated device: its device 0, and that
/// device's free memory now.
pub(crate) fn observer() -> (Cuda, Device, usize) {
    let observer = Cuda::simulator().expect("simulator");
    let seen = observer.device(0).expect("device");
    let baseline = free(&seen);
    (observer, seen, baseline)
}

/// Runs `end` with the worker's next `cuMemUnmap` failing, and waits until that failure is
/// reported: the entry `end` queued is kept.
pub(crate) fn with_failing_worker_unmap(cuda: &Cuda, end: impl FnOnce()) {
    let worker = cuda.release_worker_name().to_owned();
    let fault = cuda_vmm_sim::inject_fault_on_thread(&worker, "cuMemUnmap", 1, UNKNOWN);
    end();
    eventually("the unmap failed", || cuda.release_stats().errors == 1);
    drop(fault);
}

/// Takes the queue's reports, checking they are one failure with [`UNKNOWN`], kept or not
/// and from a wait or not as given.
#[track_caller]
pub(crate) fn take_one_unknown_error(
    cuda: &Cuda,
    kept: bool,
    from_wait: bool,
) -> Vec<ReleaseError> {
    let errors = cuda.take_release_errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].kept == kept && errors[0].from_wait == from_wait,
        "{errors:?}"
    );
    assert_eq!(code(&errors[0].error), Some(UNKNOWN));
    errors
}

/// Drops `hold` (a held stream) on another thread after `after`.
pub(crate) fn drop_later<T: Send + 'static>(hold: T, after: Duration) -> JoinHandle<()> {
    std::thread::spawn(move || {
        std::thread::sleep(after);
        drop(hold);
    })
}

/// Runs `call` while `hold` is dropped after [`STAYS_QUEUED_FOR`] on another thread,
/// checking that `call` (`who`) waited for it.
#[track_caller]
pub(crate) fn waits_for_the_hold<T: Send + 'static>(hold: T, who: &str, call: impl FnOnce()) {
    let release = drop_later(hold, STAYS_QUEUED_FOR);
    let start = Instant::now();
    call();
    assert!(start.elapsed() >= STAYS_QUEUED_FOR, "{who} did not wait");
    release.join().expect("thread");
}

/// Checks that `refused` is the refusal of a range still mapped (an overlap).
#[track_caller]
pub(crate) fn assert_overlap(refused: &cuda_vmm_alloc::Error) {
    assert!(
        matches!(
            refused,
            cuda_vmm_alloc::Error::Vmm(cuda_vmm::Error::Overlap { .. })
        ),
        "{refused:?}"
    );
}

/// With the worker's first call of `symbol` failing (the returned guard keeps the fault
/// armed), decommits the first tile of `array` and flushes the queue. Returns the guard and
/// the device's free memory before the decommit.
#[track_caller]
pub(crate) fn decommit_first_tile_failing(
    cuda: &Cuda,
    device: &Device,
    array: &mut SparseArray<u8>,
    tile: usize,
    symbol: &str,
) -> (cuda_vmm_sim::FaultGuard, usize) {
    let worker = cuda.release_worker_name().to_owned();
    let fault = cuda_vmm_sim::inject_fault_on_thread(&worker, symbol, 1, UNKNOWN);
    let before = free(device);
    assert_eq!(array.decommit(0..tile).expect("decommit"), 1);
    assert!(cuda.flush_releases(FLUSH).expect("flush"));
    (fault, before)
}

/// Flushes the queue of `cuda`, checking that it drained and that nothing failed.
#[track_caller]
pub(crate) fn flush_cleanly(cuda: &Cuda) {
    assert!(cuda.flush_releases(FLUSH).expect("flush"));
    assert!(cuda.take_release_errors().is_empty());
}
