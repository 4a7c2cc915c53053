//! The fault-injection harness: runs an operation once to count every driver call it makes
//! (per-thread `call_count` over every symbol of `cuda_vmm_sys::SYMBOLS`), then for each
//! symbol and each k-th call of it along the path, runs it again on a fresh fixture with
//! that call failing, and checks:
//!
//! - the injected error reaches the caller (or the operation succeeds as without the fault,
//!   for calls whose failure the library tolerates);
//! - the structure is as the scenario's [`OnErr`] says: exactly as before by default
//!   (scalars, and contents byte for byte through a hash);
//! - a later operation succeeds;
//! - once the fixture is dropped, the device's free memory and this thread's live
//!   allocations, mappings and reservations are back at the baseline (less what the
//!   scenario declares leaked).
//!
//! New driver calls on a path are covered without new tests.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use cuda_vmm_sim::{call_count, inject_fault};
use cuda_vmm_sys::SYMBOLS;

use super::{device, FAULT};

/// What a scenario's operation observed: scalars and content hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct State {
    /// Lengths, committed bytes, pointers, residency flags, pool counters...
    pub words: Vec<u64>,
    /// Content hashes of the parts (tiles, the buffer); `None` for a part with no memory.
    pub parts: Vec<Option<u64>>,
}

/// Hash of a byte string.
pub(super) fn digest(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// How an operation failed: the raw driver code if it was a driver error, and the text.
#[derive(Debug)]
pub(super) struct Failure {
    pub code: Option<u32>,
    pub text: String,
}

impl From<cuda_vmm_alloc::Error> for Failure {
    fn from(e: cuda_vmm_alloc::Error) -> Failure {
        Failure {
            code: e.code(),
            text: e.to_string(),
        }
    }
}

impl From<cuda_vmm::Error> for Failure {
    fn from(e: cuda_vmm::Error) -> Failure {
        Failure {
            code: e.code(),
            text: e.to_string(),
        }
    }
}

impl From<cuda_vmm_alloc::RecycleError> for Failure {
    fn from(e: cuda_vmm_alloc::RecycleError) -> Failure {
        cuda_vmm_alloc::Error::from(e).into()
    }
}

pub(super) type Res<T> = Result<T, Failure>;

/// What a failed operation must leave.
#[derive(Clone, Copy)]
pub(super) enum OnErr {
    /// Exactly the state before the operation.
    Unchanged,
    /// Exactly the state the operation reaches without a fault (it is inherently
    /// destructive, e.g. `trim`).
    AsOk,
    /// A state the check accepts, given (before, without fault, after).
    Partial(fn(&State, &State, &State) -> bool),
    /// As before, and the fixture's drop leaks exactly this many bytes of device memory
    /// (an unmap the driver refused: the mapping is leaked by design).
    Leaks(usize),
}

/// A step on a fixture.
pub(super) type Step<F> = Box<dyn Fn(&mut F) -> Res<()>>;
/// An observation of a fixture.
pub(super) type Observe<F> = Box<dyn Fn(&F) -> Res<State>>;

/// One operation under fault injection.
pub(super) struct Scenario<F> {
    pub name: &'static str,
    /// A fresh fixture.
    pub setup: Box<dyn Fn() -> Res<F>>,
    /// The operation.
    pub op: Step<F>,
    pub observe: Observe<F>,
    /// A later operation that must succeed after a failed one.
    pub after: Step<F>,
    pub on_err: OnErr,
}

/// What a sweep did.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Coverage {
    /// Operations swept.
    pub operations: usize,
    /// Driver calls counted along the operations' paths (one injection each).
    pub calls: usize,
    /// Injections that fired.
    pub fired: usize,
    /// Injected failures the operation reported as errors.
    pub errors: usize,
    /// Injected failures the operation tolerated (it succeeded as without the fault).
    pub tolerated: usize,
}

/// Leaves this thread with no current context, so that every run of an operation binds
/// (and restores) the context the same way.
fn reset_context() {
    if let Ok(cuda) = super::cuda() {
        if let Ok(f) = cuda_vmm_sys::entry!(cuda.sys().table(), cuCtxSetCurrent) {
            // SAFETY: a null context is valid and unbinds the thread's current one.
            let _ = unsafe { f(std::ptr::null_mut()) };
        }
    }
}

fn counts() -> Vec<u64> {
    SYMBOLS.iter().map(|s| call_count(s)).collect()
}

fn free_memory() -> u64 {
    device()
        .and_then(|d| d.memory_info())
        .map_or(0, |m| m.free as u64)
}

/// Free memory once it equals `want`, or the last reading: other tests of the suite may
/// allocate for a moment even while this one holds the memory lock.
fn settle(want: u64) -> u64 {
    let mut got = free_memory();
    for _ in 0..200 {
        if got == want {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        got = free_memory();
    }
    got
}

/// This thread's live (successful create - release, map - unmap, reserve - free) counts
/// between two snapshots, discounting `fault` (which failed without effect).
fn live(before: &[u64], after: &[u64], fault: Option<usize>) -> [i64; 3] {
    let idx = |name: &str| {
        SYMBOLS
            .iter()
            .position(|s| *s == name)
            .unwrap_or(usize::MAX)
    };
    let done = |name: &str| {
        let i = idx(name);
        let n = after[i] as i64 - before[i] as i64;
        n - i64::from(fault == Some(i))
    };
    [
        done("cuMemCreate") - done("cuMemRelease"),
        done("cuMemMap") - done("cuMemUnmap"),
        done("cuMemAddressReserve") - done("cuMemAddressFree"),
    ]
}

/// Sweeps `s`: every k-th call of every symbol on its path fails once.
pub(super) fn sweep<F>(s: &Scenario<F>) -> Coverage {
    let mut cov = Coverage {
        operations: 1,
        ..Coverage::default()
    };
    let fail = |msg: String| -> ! { panic!("{}: {msg}", s.name) };
    // The path without faults.
    let base_free = free_memory();
    let mut fx = (s.setup)().unwrap_or_else(|e| fail(format!("setup: {e:?}")));
    let before = (s.observe)(&fx).unwrap_or_else(|e| fail(format!("observe: {e:?}")));
    reset_context();
    let c0 = counts();
    (s.op)(&mut fx).unwrap_or_else(|e| fail(format!("the operation without a fault: {e:?}")));
    let c1 = counts();
    let ok_state = (s.observe)(&fx).unwrap_or_else(|e| fail(format!("observe: {e:?}")));
    drop(fx);
    assert_eq!(
        settle(base_free),
        base_free,
        "{}: the fault-free run leaked",
        s.name
    );
    let path: Vec<(usize, u64)> = c0
        .iter()
        .zip(&c1)
        .enumerate()
        .filter(|(_, (a, b))| b > a)
        .map(|(i, (a, b))| (i, b - a))
        .collect();
    for &(sym, calls) in &path {
        for k in 1..=calls {
            cov.calls += 1;
            let what = format!("{} #{k} of {calls}", SYMBOLS[sym]);
            let base_free = free_memory();
            let c_start = counts();
            let mut fx = (s.setup)().unwrap_or_else(|e| fail(format!("{what}: setup: {e:?}")));
            let st_before = (s.observe)(&fx).unwrap_or_else(|e| fail(format!("{what}: {e:?}")));
            assert_eq!(st_before, before, "{}: setup is not deterministic", s.name);
            reset_context();
            let guard = inject_fault(SYMBOLS[sym], k, FAULT);
            let result = (s.op)(&mut fx);
            let fired = guard.fired();
            drop(guard);
            assert!(
                fired,
                "{}: {what} was not reached with the fault armed",
                s.name
            );
            cov.fired += 1;
            let st = (s.observe)(&fx).unwrap_or_else(|e| fail(format!("{what}: observe: {e:?}")));
            let mut leak = 0;
            match &result {
                Ok(()) => {
                    cov.tolerated += 1;
                    eprintln!("{}: {what}: tolerated (the operation succeeded)", s.name);
                    assert_eq!(
                        st, ok_state,
                        "{}: {what}: tolerated, but not as without it",
                        s.name
                    )
                }
                Err(e) => {
                    cov.errors += 1;
                    assert_eq!(
                        e.code,
                        Some(FAULT.0),
                        "{}: {what}: another error came back: {}",
                        s.name,
                        e.text
                    );
                    match s.on_err {
                        OnErr::Unchanged => assert_eq!(st, before, "{}: {what}: not rolled back", s.name),
                        OnErr::AsOk => assert_eq!(st, ok_state, "{}: {what}", s.name),
                        OnErr::Partial(check) => assert!(
                            check(&before, &ok_state, &st),
                            "{}: {what}: state {st:?} (before {before:?}, without fault {ok_state:?})",
                            s.name
                        ),
                        OnErr::Leaks(bytes) => {
                            assert_eq!(st, before, "{}: {what}", s.name);
                            leak = bytes as u64;
                        }
                    }
                }
            }
            (s.after)(&mut fx)
                .unwrap_or_else(|e| fail(format!("{what}: the next operation failed: {e:?}")));
            drop(fx);
            let fault = Some(sym);
            let counts_leak = i64::from(leak > 0);
            assert_eq!(
                live(&c_start, &counts(), fault),
                [counts_leak, counts_leak, counts_leak],
                "{}: {what}: live allocations, mappings, reservations",
                s.name
            );
            assert_eq!(
                settle(base_free - leak),
                base_free - leak,
                "{}: {what}: device memory",
                s.name
            );
        }
    }
    cov
}
