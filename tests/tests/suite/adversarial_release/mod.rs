//! Adversarial tests of the release queue (issue 19), through the public API only: flush
//! timeouts at their extremes, the bound toggled while entries are queued, faults aimed at
//! the worker thread, pools and budgets shared by arrays on many threads, and the `Cuda`
//! dropped while entries are queued.
//!
//! Every test opens a `Cuda` of its own with the default queue (the suite's shared one
//! completes releases inline). Tests that hold a simulated stream, or compare the
//! simulator's free memory exactly, run in a process of their own ([`own_process!`]);
//! they open `Cuda::simulator()` and so run the same on a machine with a GPU.

use std::time::{Duration, Instant};

use cuda_vmm::{Cuda, Device};

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

/// The environment variable naming the one test a child process runs.
const CHILD_ENV: &str = "CUDA_VMM_ADV_RELEASE_CHILD";

/// A `Cuda` of its own on the suite's backend, with the default release queue.
pub(crate) fn queued() -> cuda_vmm::Result<Cuda> {
    crate::cuda()?; // prints the backend once
    let cuda = Cuda::new()?;
    assert!(!cuda.releases_complete_inline());
    Ok(cuda)
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
