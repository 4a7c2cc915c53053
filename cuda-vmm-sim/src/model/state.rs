//! The one global simulator state, its records, and initialisation.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cuda_vmm_sys::CUresult;
use parking_lot::{Condvar, Mutex};

use crate::model::answers;
use crate::model::config::{ConfigError, SimConfig};

/// A simulator result: the value, or the driver error code to return.
pub(crate) type DriverResult<T> = Result<T, CUresult>;

/// Why an operation that may wait for held work stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The driver error code to return.
    Driver(CUresult),
    /// Held work must complete first: [`with_waiting`] waits and retries.
    Blocked,
}

impl From<CUresult> for Stop {
    fn from(code: CUresult) -> Self {
        Self::Driver(code)
    }
}

impl From<crate::model::work::Blocked> for Stop {
    fn from(_: crate::model::work::Blocked) -> Self {
        Self::Blocked
    }
}

/// The result of an operation that may wait for held work.
pub(crate) type Waitable<T> = Result<T, Stop>;

/// Physical memory: a memfd and its size. Shared (`Arc`) so that a copy in
/// flight keeps it alive even if it is released meanwhile.
#[derive(Debug)]
pub(crate) struct Memory {
    pub fd: OwnedFd,
    pub size: u64,
}

/// Per-device bookkeeping.
#[derive(Debug, Default)]
pub(crate) struct Device {
    /// Bytes of live physical and classic allocations, and of memory that
    /// stream-ordered pools reserve.
    pub used: u64,
    /// References to the primary context.
    pub primary_refs: u32,
    /// The sticky error of a poisoned primary context (cleared when it is destroyed).
    pub poison: Option<CUresult>,
}

/// Where an allocation's memory lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Home {
    /// Memory of this device: counted in its `used` bytes.
    Device(usize),
    /// Host memory (`CU_MEM_LOCATION_TYPE_HOST`): counted against no device.
    Host,
    /// Host memory on this NUMA node (`CU_MEM_LOCATION_TYPE_HOST_NUMA`): counted against
    /// no device.
    HostNuma(i32),
}

/// The creation properties of an allocation (a `Send` copy of `CUmemAllocationProp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Prop {
    pub home: Home,
    pub handle_types: u32,
    pub rdma: u8,
}

/// A physical allocation (`cuMemCreate` or import), keyed by its handle.
#[derive(Debug)]
pub(crate) struct Allocation {
    pub memory: Arc<Memory>,
    pub prop: Prop,
    /// Handle references (create/import = 1, retain +1, release -1). At 0 the
    /// handle is invalid; the memory lives on while `pieces > 0`.
    pub handle_refs: u32,
    /// Mapping pieces that reference this allocation.
    pub pieces: u32,
    /// Whether the bytes count against the device's memory (imports and host memory do
    /// not).
    pub accounted: bool,
    /// `(st_dev, st_ino)` of the memfd, to recognise same-process imports.
    pub identity: Option<(u64, u64)>,
}

/// A contiguous part of one mapping with uniform access (keyed by start address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Piece {
    pub len: u64,
    /// The `cuMemMap` range this piece belongs to.
    pub map_start: u64,
    pub map_len: u64,
    pub handle: u64,
    /// Offset of the piece's first byte in the allocation.
    pub offset: u64,
    /// Devices (bit per ordinal) with read access.
    pub read: u64,
    /// Devices (bit per ordinal) with write access.
    pub write: u64,
    /// Host (CPU) access: `(read, write)`, granted by a `HOST` or `HOST_NUMA` access
    /// descriptor (host memory only).
    pub host: (bool, bool),
}

/// A classic `cuMemAlloc` allocation (keyed by start address).
#[derive(Debug)]
pub(crate) struct Classic {
    pub size: u64,
    pub rounded: u64,
    pub device: usize,
    pub memory: Arc<Memory>,
    /// Whether a stream-ordered pool owns the memory (`model::pools`).
    pub pooled: bool,
}

/// Everything the simulated driver knows.
#[derive(Debug)]
pub(crate) struct Sim {
    pub config: SimConfig,
    pub devices: Vec<Device>,
    /// Reservations: start -> size.
    pub reservations: BTreeMap<u64, u64>,
    pub pieces: BTreeMap<u64, Piece>,
    /// Address space claimed outside any reservation by mappings that run
    /// past a reservation's end: start -> size (freed at unmap).
    pub overhangs: BTreeMap<u64, u64>,
    pub allocations: HashMap<u64, Allocation>,
    pub classic: BTreeMap<u64, Classic>,
    /// Streams, events, pending work and pinned host memory.
    pub work: crate::model::work::Work,
    /// Stream-ordered memory pools and their blocks.
    pub pools: crate::model::pools::Pools,
    next_handle: u64,
}

impl Sim {
    pub(crate) fn new(config: SimConfig) -> Self {
        let devices: Vec<Device> = (0..config.device_count())
            .map(|_| Device::default())
            .collect();
        let devices_len = devices.len();
        Self {
            config,
            devices,
            reservations: BTreeMap::new(),
            pieces: BTreeMap::new(),
            overhangs: BTreeMap::new(),
            allocations: HashMap::new(),
            classic: BTreeMap::new(),
            work: crate::model::work::Work::new(devices_len),
            pools: crate::model::pools::Pools::new(devices_len),
            // Handles are never reused, so a released handle stays detectable.
            next_handle: 0x5100_0000_0001,
        }
    }

    /// The allocation granularity.
    pub fn granularity(&self) -> u64 {
        self.config.allocation_granularity()
    }

    /// Whether `x` is a multiple of the granularity.
    pub fn aligned(&self, x: u64) -> bool {
        x % self.granularity() == 0
    }

    /// The checks that open `cuMemCreate`, `cuMemAddressReserve` and `cuMemMap`, in order:
    /// [`BAD_FLAGS`](answers::BAD_FLAGS) unless `flags` is 0, `zero` for a size of 0, and
    /// `misaligned` unless `granular` is a multiple of the granularity.
    pub(crate) fn check_flags_size(
        &self,
        flags: u64,
        size: u64,
        zero: CUresult,
        granular: u64,
        misaligned: CUresult,
    ) -> DriverResult<()> {
        if flags != 0 {
            return Err(answers::BAD_FLAGS);
        }
        if size == 0 {
            return Err(zero);
        }
        if !self.aligned(granular) {
            return Err(misaligned);
        }
        Ok(())
    }

    /// The device ordinal `dev` names, if it exists.
    pub fn device(&self, dev: i64) -> Option<usize> {
        usize::try_from(dev)
            .ok()
            .filter(|d| *d < self.devices.len())
    }

    /// A fresh handle value.
    pub fn new_handle(&mut self) -> u64 {
        let h = self.next_handle;
        self.next_handle += 1;
        h
    }

    /// Memory left on `device`.
    pub fn free_bytes(&self, device: usize) -> u64 {
        self.config
            .memory()
            .saturating_sub(self.devices[device].used)
    }

    /// Whether any mapping overlaps `[start, end)`.
    pub fn mapped_within(&self, start: u64, end: u64) -> bool {
        // Pieces are disjoint and sorted: only the last one starting before
        // `end` can reach past `start`.
        self.pieces
            .range(..end)
            .next_back()
            .is_some_and(|(s, p)| s + p.len > start)
    }

    /// The piece containing `addr`, as `(start, piece)`.
    pub fn piece_at(&self, addr: u64) -> Option<(u64, Piece)> {
        self.pieces
            .range(..=addr)
            .next_back()
            .filter(|(start, p)| addr - **start < p.len)
            .map(|(s, p)| (*s, *p))
    }
}

struct Global {
    pending: Option<SimConfig>,
    sim: Option<Sim>,
}

static GLOBAL: Mutex<Global> = Mutex::new(Global {
    pending: None,
    sim: None,
});
static INITIALIZED: AtomicBool = AtomicBool::new(false);
/// Signalled when a hold is dropped or held work is discarded (poisoning).
static CHANGED: Condvar = Condvar::new();

/// How long a blocked thread waits before re-checking even without a signal:
/// a safety net only (holds and poisoning signal [`CHANGED`]).
const RECHECK: Duration = Duration::from_millis(50);

/// Wakes the threads blocked in [`with_waiting`] (they re-check their work).
pub(crate) fn notify_changed() {
    CHANGED.notify_all();
}

/// Whether `cuInit` has succeeded.
pub(crate) fn initialized() -> bool {
    INITIALIZED.load(Ordering::Acquire)
}

/// Runs `f` on the initialised state, under the global lock.
pub(crate) fn with<T>(f: impl FnOnce(&mut Sim) -> DriverResult<T>) -> DriverResult<T> {
    let mut global = GLOBAL.lock();
    match global.sim.as_mut() {
        Some(sim) => f(sim),
        None => Err(answers::NOT_INITIALIZED),
    }
}

/// Runs `f` on the initialised state, under the global lock; while it answers
/// [`Stop::Blocked`], waits (the lock released, so other threads keep calling the
/// driver) until a hold is dropped, and runs it again. `f` must change nothing
/// it cannot redo before it reports `Blocked` (completing work that is not held is fine).
pub(crate) fn with_waiting<T>(mut f: impl FnMut(&mut Sim) -> Waitable<T>) -> DriverResult<T> {
    let mut global = GLOBAL.lock();
    loop {
        let Some(sim) = global.sim.as_mut() else {
            return Err(answers::NOT_INITIALIZED);
        };
        match f(sim) {
            Ok(value) => return Ok(value),
            Err(Stop::Driver(code)) => return Err(code),
            Err(Stop::Blocked) => {
                CHANGED.wait_for(&mut global, RECHECK);
            }
        }
    }
}

/// `cuInit`: builds the state from the configured (or environment) settings.
pub(crate) fn init() -> DriverResult<()> {
    let mut global = GLOBAL.lock();
    if global.sim.is_some() {
        return Ok(());
    }
    let config = match global.pending.clone() {
        Some(c) => c,
        None => SimConfig::from_env().map_err(|e| {
            eprintln!("cuda-vmm-sim: cuInit: {e}");
            answers::INIT_BAD_CONFIG
        })?,
    };
    if config.device_count() == 0 {
        return Err(answers::INIT_NO_DEVICE);
    }
    crate::os::raise_open_file_limit();
    global.sim = Some(Sim::new(config));
    INITIALIZED.store(true, Ordering::Release);
    Ok(())
}

/// Sets the configuration used by the first `cuInit`.
pub(crate) fn configure(config: SimConfig) -> Result<(), ConfigError> {
    let mut global = GLOBAL.lock();
    if global.sim.is_some() {
        return Err(ConfigError::AlreadyInitialized);
    }
    config.validate()?;
    global.pending = Some(config);
    Ok(())
}

/// The version `cuDriverGetVersion` reports (works before `cuInit`).
pub(crate) fn driver_version() -> i32 {
    let global = GLOBAL.lock();
    match (&global.sim, &global.pending) {
        (Some(sim), _) => sim.config.version(),
        (None, Some(pending)) => pending.version(),
        (None, None) => SimConfig::from_env().unwrap_or_default().version(),
    }
}

/// The configuration in effect, once `cuInit` has succeeded.
pub(crate) fn active_config() -> Option<SimConfig> {
    GLOBAL.lock().sim.as_ref().map(|s| s.config.clone())
}

/// Operations queued and not yet run, all contexts (0 before `cuInit`).
pub(crate) fn pending_work() -> usize {
    GLOBAL
        .lock()
        .sim
        .as_ref()
        .map_or(0, |s| s.work.pending.len())
}

/// Operations queued and not yet run in `device`'s context (0 before `cuInit`).
pub(crate) fn pending_work_on(device: usize) -> usize {
    GLOBAL.lock().sim.as_ref().map_or(0, |s| {
        s.work
            .pending
            .values()
            .filter(|op| op.device == device)
            .count()
    })
}

/// Runs `f` on the state if it is initialised (else nothing), under the lock.
pub(crate) fn with_initialised(f: impl FnOnce(&mut Sim)) {
    if let Some(sim) = GLOBAL.lock().sim.as_mut() {
        f(sim);
    }
}
