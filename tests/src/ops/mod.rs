//! Random operation sequences on the simulator (asynchrony on), checked against host models
//! of contents, residency and committed bytes, with an optional injected driver fault per
//! operation. Shared by the property tests (`reliability::props`, proptest) and the fuzz
//! target (`fuzz/`, cargo fuzz), which only generate the [`Step`]s.
//!
//! Every runner checks, after each operation:
//! - with no fault fired, the result is exactly the model's (success, or the error the model
//!   predicts);
//! - with a fault fired, the error reaching the caller is the injected code, and the
//!   structure is as the operation's contract says (as before for growth and commits);
//! - the structure's scalars and its contents, byte for byte, match the model;
//!
//! and, once the structures are dropped, that every allocation, mapping and reservation this
//! thread created was released (`cuda_vmm_sim::call_count`, less the calls a fault failed).

use std::cell::RefCell;
use std::sync::OnceLock;

use cuda_vmm::{Cuda, Device};
use cuda_vmm_alloc::ChunkPool;
use cuda_vmm_sim::{call_count, inject_fault};
use cuda_vmm_sys::{entry, CUresult};

pub mod buffer;
pub mod safe;
pub mod shared_pool;
pub mod sparse;

/// The error an injected fault makes the driver answer.
pub const FAULT: CUresult = CUresult::CUDA_ERROR_UNKNOWN;

/// Driver calls on the paths of growth and commits (with their rollbacks).
pub const GROW_PATH: &[&str] = &[
    "cuMemCreate",
    "cuMemMap",
    "cuMemSetAccess",
    "cuMemcpyHtoDAsync_v2",
    "cuMemsetD8Async",
    "cuMemcpyDtoDAsync_v2",
    "cuStreamSynchronize",
    "cuCtxGetCurrent",
    "cuCtxPushCurrent_v2",
    "cuCtxPopCurrent_v2",
    "cuStreamWaitEvent",
    "cuEventRecord",
    "cuMemUnmap",
    "cuMemRelease",
    "cuCtxSynchronize",
];

/// Driver calls on the paths of shrinks, decommits and unmaps.
pub const SHRINK_PATH: &[&str] = &[
    "cuMemUnmap",
    "cuMemRelease",
    "cuCtxSynchronize",
    "cuEventQuery",
    "cuEventSynchronize",
    "cuCtxGetCurrent",
    "cuCtxPushCurrent_v2",
    "cuCtxPopCurrent_v2",
    "cuMemCreate",
    "cuMemMap",
    "cuMemSetAccess",
    "cuMemcpyDtoDAsync_v2",
    "cuStreamSynchronize",
];

/// Driver calls on the paths of host copies.
pub const COPY_PATH: &[&str] = &[
    "cuMemcpyHtoDAsync_v2",
    "cuMemcpyDtoHAsync_v2",
    "cuStreamSynchronize",
    "cuStreamWaitEvent",
    "cuEventRecord",
    "cuCtxGetCurrent",
    "cuCtxPushCurrent_v2",
    "cuCtxPopCurrent_v2",
];

/// Every symbol of the paths above.
pub const FAULT_SYMBOLS: &[&str] = &[
    "cuMemCreate",
    "cuMemRelease",
    "cuMemMap",
    "cuMemUnmap",
    "cuMemSetAccess",
    "cuMemcpyHtoDAsync_v2",
    "cuMemcpyDtoHAsync_v2",
    "cuMemcpyDtoDAsync_v2",
    "cuMemsetD8Async",
    "cuStreamSynchronize",
    "cuCtxSynchronize",
    "cuStreamWaitEvent",
    "cuEventRecord",
    "cuEventQuery",
    "cuEventSynchronize",
    "cuCtxGetCurrent",
    "cuCtxPushCurrent_v2",
    "cuCtxPopCurrent_v2",
];

/// The in-process simulator, shared by every sequence of the process.
pub fn simulator() -> Result<Cuda, String> {
    static CUDA: OnceLock<Cuda> = OnceLock::new();
    if let Some(c) = CUDA.get() {
        return Ok(c.clone());
    }
    let c = Cuda::simulator().map_err(|e| e.to_string())?;
    // Releases complete on the caller's thread, so each step's model sees them done.
    c.set_max_pending_release_bytes(0);
    Ok(CUDA.get_or_init(|| c).clone())
}

thread_local! {
    static BACKEND: RefCell<Option<Cuda>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's runners on `cuda` (e.g. the real driver) instead of the
/// simulator. Faults are injected in the simulator only, so give such runs no faults.
pub fn on_backend<T>(cuda: &Cuda, f: impl FnOnce() -> T) -> T {
    let previous = BACKEND.with(|b| b.replace(Some(cuda.clone())));
    let out = f();
    BACKEND.with(|b| *b.borrow_mut() = previous);
    out
}

/// The backend this thread's runners use: the simulator unless [`on_backend`] says otherwise.
pub fn backend() -> Result<Cuda, String> {
    match BACKEND.with(|b| b.borrow().clone()) {
        Some(cuda) => Ok(cuda),
        None => simulator(),
    }
}

/// Device 0 of the runners' backend.
pub fn sim_device() -> Result<Device, String> {
    backend()?.device(0).map_err(|e| e.to_string())
}

/// Minimum granularity of plain device memory on the runners' backend.
pub fn granularity() -> Result<usize, String> {
    let d = sim_device()?;
    d.min_granularity(&cuda_vmm::AllocationProps::device(&d))
        .map_err(|e| e.to_string())
}

/// The `nth` call (from 1) of `symbol` during one operation fails with [`FAULT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// One of [`FAULT_SYMBOLS`].
    pub symbol: &'static str,
    /// Which call of it fails.
    pub nth: u64,
}

/// A fault as generated: which symbol of the operation's path, and which call of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultPick {
    /// Index into the path (modulo its length).
    pub symbol: u8,
    /// Call number: 0..=4 (modulo 8) pick the first call, 5, 6, 7 the second to fourth.
    pub nth: u8,
}

impl FaultPick {
    /// The fault this pick names on `path`.
    pub fn on(self, path: &[&'static str]) -> Option<Fault> {
        let symbol = *path.get(usize::from(self.symbol) % path.len().max(1))?;
        let nth = match self.nth % 8 {
            n @ 5..=7 => u64::from(n) - 3,
            _ => 1,
        };
        Some(Fault { symbol, nth })
    }
}

/// One operation, maybe under a fault.
#[derive(Clone, Debug)]
pub struct Step<O> {
    /// The operation.
    pub op: O,
    /// The driver call that fails during it, if any (on the operation's path).
    pub fault: Option<FaultPick>,
}

/// What a run did, summed over sequences for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Sequences run.
    pub sequences: u64,
    /// Operations run.
    pub operations: u64,
    /// Faults armed.
    pub faults_armed: u64,
    /// Faults that fired (the chosen call happened).
    pub faults_fired: u64,
    /// Fired faults the operation reported as the injected error.
    pub errors: u64,
    /// Fired faults the operation tolerated (it succeeded as without them).
    pub tolerated: u64,
}

impl Tally {
    /// Adds `other` to `self`.
    pub fn add(&mut self, other: &Tally) {
        self.sequences += other.sequences;
        self.operations += other.operations;
        self.faults_armed += other.faults_armed;
        self.faults_fired += other.faults_fired;
        self.errors += other.errors;
        self.tolerated += other.tolerated;
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} sequences, {} operations, {} faults armed, {} injected ({} reported as errors, {} tolerated)",
            self.sequences,
            self.operations,
            self.faults_armed,
            self.faults_fired,
            self.errors,
            self.tolerated
        )
    }
}

/// The symbols whose successful calls create or destroy device objects.
const LIFE: [&str; 6] = [
    "cuMemCreate",
    "cuMemRelease",
    "cuMemMap",
    "cuMemUnmap",
    "cuMemAddressReserve",
    "cuMemAddressFree",
];

/// This thread's calls that create and destroy allocations, mappings and reservations since
/// it was made, less the calls an injected fault failed (they had no effect).
#[derive(Clone, Debug)]
pub struct Ledger {
    start: [u64; 6],
    failed: [u64; 6],
}

impl Default for Ledger {
    fn default() -> Self {
        Self::new()
    }
}

impl Ledger {
    /// Starts counting now.
    pub fn new() -> Ledger {
        Ledger {
            start: LIFE.map(call_count),
            failed: [0; 6],
        }
    }

    /// Notes that a call of `symbol` failed by injection.
    pub fn failed(&mut self, symbol: &str) {
        if let Some(i) = LIFE.iter().position(|s| *s == symbol) {
            self.failed[i] += 1;
        }
    }

    /// Live `[allocations, mappings, reservations]` this thread made since [`Ledger::new`].
    pub fn live(&self) -> [i64; 3] {
        let now = LIFE.map(call_count);
        let done = |i: usize| now[i] as i64 - self.start[i] as i64 - self.failed[i] as i64;
        [done(0) - done(1), done(2) - done(3), done(4) - done(5)]
    }
}

/// Leaves this thread with no current context, so every operation binds and restores its
/// context the same way (and a failed pop does not carry over).
pub fn reset_context() {
    if let Ok(cuda) = backend() {
        if let Ok(f) = entry!(cuda.sys().table(), cuCtxSetCurrent) {
            // SAFETY: a null context is valid and unbinds the thread's current one.
            let _ = unsafe { f(std::ptr::null_mut()) };
        }
    }
}

/// Runs `op` with `fault` (a call of `path`) armed. Returns its result and whether the fault fired; counts
/// both in `tally` and a fired fault of a creating or destroying call in `ledger`.
pub fn under_fault<T>(
    fault: Option<FaultPick>,
    path: &[&'static str],
    ledger: &mut Ledger,
    tally: &mut Tally,
    op: impl FnOnce() -> T,
) -> (T, bool) {
    reset_context();
    tally.operations += 1;
    let Some(fault) = fault.and_then(|f| f.on(path)) else {
        return (op(), false);
    };
    tally.faults_armed += 1;
    let guard = inject_fault(fault.symbol, fault.nth, FAULT);
    let out = op();
    let fired = guard.fired();
    drop(guard);
    reset_context();
    if fired {
        tally.faults_fired += 1;
        ledger.failed(fault.symbol);
    }
    (out, fired)
}

/// Checks a failed operation's error: the injected code when a fault fired, else exactly
/// `expected`.
pub fn check_error<E: std::fmt::Debug + PartialEq>(
    what: &str,
    fired: bool,
    code: Option<u32>,
    error: &E,
    expected: Option<&E>,
    tally: &mut Tally,
) -> Result<(), String> {
    if fired && code == Some(FAULT.0) {
        tally.errors += 1;
        return Ok(());
    }
    match expected {
        Some(e) if e == error => Ok(()),
        _ => Err(format!(
            "{what}: unexpected error {error:?} (fault fired: {fired}, expected {expected:?})"
        )),
    }
}

/// Checks that this thread's live counts are `want` once the structures are gone. The
/// counts are the simulator's: on another backend (see [`on_backend`]) there is nothing to
/// check here, and the caller compares the device's free memory instead.
pub fn check_live(ledger: &Ledger, want: [i64; 3], when: &str) -> Result<(), String> {
    if backend()?.backend() != cuda_vmm::Backend::Simulator {
        return Ok(());
    }
    let live = ledger.live();
    if live == want {
        Ok(())
    } else {
        Err(format!(
            "{when}: live [allocations, mappings, reservations] {live:?}, expected {want:?}"
        ))
    }
}

/// A model-checked structure the property tests drive: built on an optional pool, then
/// given one step at a time.
pub trait Model: Sized {
    /// What a sequence is set up with.
    type Setup: Copy;
    /// One operation of a sequence.
    type Op;
    /// The pool's `max_chunks` when the setup asks for one.
    const POOL_CHUNKS: usize;
    /// What is dropped before the pool (for the ledger check's message).
    const NAME: &'static str;
    /// Whether `setup` asks for a pool.
    fn pooled(setup: &Self::Setup) -> bool;
    /// A fresh structure for `setup`, on `pool` if given.
    fn new(setup: Self::Setup, pool: Option<ChunkPool>) -> Result<Self, String>;
    /// Runs one step and checks the structure against the model.
    fn apply(
        &mut self,
        step: &Step<Self::Op>,
        ledger: &mut Ledger,
        tally: &mut Tally,
    ) -> Result<(), String>;
}

/// Runs `steps` on a fresh `M` (and pool), then checks nothing stays allocated: with the
/// structure dropped only the pool's chunks are live, and with both dropped nothing is.
pub fn run_model<M: Model>(setup: M::Setup, steps: &[Step<M::Op>]) -> Result<Tally, String> {
    let mut tally = Tally {
        sequences: 1,
        ..Tally::default()
    };
    let mut ledger = Ledger::new();
    {
        let pool = if M::pooled(&setup) {
            let config = cuda_vmm_alloc::PoolConfig {
                max_chunks: M::POOL_CHUNKS,
                ..cuda_vmm_alloc::PoolConfig::default()
            };
            Some(ChunkPool::new(&sim_device()?, config).map_err(|e| e.to_string())?)
        } else {
            None
        };
        let mut m = M::new(setup, pool.clone())?;
        for step in steps {
            m.apply(step, &mut ledger, &mut tally)?;
        }
        drop(m);
        if let Some(pool) = &pool {
            let held = pool.stats().chunks_held as i64;
            let when = format!("{} dropped, pool alive", M::NAME);
            check_live(&ledger, [held, 0, 0], &when)?;
        }
    }
    check_live(&ledger, [0, 0, 0], "after the sequence")?;
    Ok(tally)
}
