//! Registration hooks: callbacks on mapping changes, for code that registers device memory
//! elsewhere (NCCL user buffers with `ncclCommRegister`, RDMA memory regions, UCX/NIXL).
//!
//! Hooks are added to a [`Cuda`](crate::Cuda) with
//! [`Cuda::add_mapping_hooks`](crate::Cuda::add_mapping_hooks) and see every mapping made
//! through it, by this crate and by `cuda-vmm-alloc`'s structures alike:
//!
//! - [`MappingHooks::accessible`] runs **after** a `cuMemSetAccess` succeeded (a commit, a
//!   growth, [`Reservation::set_access`](crate::Reservation::set_access)), on the thread
//!   that set the access, with no lock of this crate held. Register there.
//! - [`MappingHooks::unmapping`] runs **before** the range can be unmapped, on the thread
//!   that ends the mapping (the one calling `drop`, `decommit`, `shrink_to_fit`,
//!   [`Mapping::unmap`](crate::Mapping::unmap), ...), while the range is still mapped and
//!   before any wait for device work: with the release queue, before the entry is queued.
//!   Deregister there. The memory is unmapped only after every hook returned, so a
//!   registration is gone before its memory, by construction.
//!
//! A registrar that cannot deregister on that thread (an NCCL communicator is used by one
//! thread at a time and its deregistration is collective across ranks) takes an
//! [`UnmapHold`] from the [`UnmapGate`] it is handed and gives it to its owner: the unmap
//! waits until every hold is confirmed ([`UnmapHold::confirm`], or dropped). With the
//! release queue, the wait is on the queue's worker and the call that ended the mapping
//! returns at once; where the unmap completes on the caller's thread (the queue turned off,
//! [`UnmapWait::Caller`](crate::UnmapWait), [`Mapping::unmap`](crate::Mapping::unmap),
//! or a commit over a range whose release is queued), that thread waits, so the owner
//! must confirm from another thread. The queue completes entries in order: an unconfirmed
//! hold also delays the releases queued after it.
//!
//! Each range is reported once: a queued unmap that fails and is retried is not reported
//! again. `unmapping` is reported for every mapping that goes, also one never reported
//! `accessible` (a rollback after a failed access change): ignore ranges you do not hold.
//! The ranges are reported per mapping, `accessible` per access change (which may span
//! several mappings), so a registrar matches them by overlap. A hook that panics is caught and logged; the mapping change goes on.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::{Arc, Mutex};
//! use cuda_vmm::hooks::{MappedRange, MappingHooks, UnmapGate};
//! use cuda_vmm::{AccessFlags, Allocation, AllocationProps, Backend, Cuda, Reservation};
//!
//! /// Keeps the ranges "registered" elsewhere.
//! #[derive(Default)]
//! struct Registrar(Mutex<Vec<MappedRange>>);
//!
//! impl MappingHooks for Registrar {
//!     fn accessible(&self, range: &MappedRange, _: &[(usize, AccessFlags)]) {
//!         self.0.lock().unwrap().push(*range); // register
//!     }
//!     fn unmapping(&self, range: &MappedRange, _: &UnmapGate) {
//!         self.0.lock().unwrap().retain(|r| r.ptr != range.ptr); // deregister
//!     }
//! }
//!
//! // SAFETY: the simulator implements the driver API.
//! let cuda = unsafe { Cuda::from_driver(cuda_vmm_sim::driver(), Backend::Simulator)? };
//! let device = cuda.device(0)?;
//! let registrar = Arc::new(Registrar::default());
//! cuda.add_mapping_hooks(registrar.clone());
//! let props = AllocationProps::device(&device);
//! let size = device.min_granularity(&props)?;
//! let reservation = Reservation::new(&device, size, Default::default())?;
//! let mapping = reservation.map(0, &Allocation::new(&device, size, &props)?, 0, size)?;
//! mapping.set_access(&[(&device, AccessFlags::ReadWrite)])?;
//! assert_eq!(registrar.0.lock().unwrap().len(), 1);
//! mapping.unmap()?;
//! assert!(registrar.0.lock().unwrap().is_empty());
//! # Ok(()) }
//! ```

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, RwLock};

use crate::access::AccessFlags;

/// A mapped range a hook is told about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MappedRange {
    /// Start address.
    pub ptr: u64,
    /// Size in bytes.
    pub size: usize,
    /// Ordinal of the device that owns the reservation.
    pub device: usize,
}

/// Callbacks on mapping changes. Both methods default to doing nothing.
pub trait MappingHooks: Send + Sync {
    /// `range` became accessible with `access` (device ordinal, rights), after a
    /// successful `cuMemSetAccess` over exactly that range. It may span several mappings.
    fn accessible(&self, range: &MappedRange, access: &[(usize, AccessFlags)]) {
        let _ = (range, access);
    }

    /// `range`, one mapping, is about to be unmapped; `gate` lets the hook hold the unmap
    /// until its owner confirms (see [`UnmapGate::hold`]).
    fn unmapping(&self, range: &MappedRange, gate: &UnmapGate) {
        let _ = (range, gate);
    }
}

/// Identifies hooks added with [`Cuda::add_mapping_hooks`](crate::Cuda::add_mapping_hooks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HooksId(u64);

/// Hands out holds on an unmap (see [`MappingHooks::unmapping`]).
#[derive(Debug)]
pub struct UnmapGate {
    state: Arc<GateState>,
}

/// Keeps an unmap waiting until it is confirmed or dropped. `Send`: give it to the thread
/// that owns the registration.
#[derive(Debug)]
#[must_use = "dropping the hold confirms it at once"]
pub struct UnmapHold {
    state: Arc<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    open: Mutex<usize>,
    confirmed: Condvar,
}

impl UnmapGate {
    /// Holds the unmap until the returned hold is confirmed (or dropped).
    pub fn hold(&self) -> UnmapHold {
        *self.state.open.lock() += 1;
        UnmapHold {
            state: self.state.clone(),
        }
    }
}

impl UnmapHold {
    /// The registration is gone: the unmap may go on once no other hold remains.
    pub fn confirm(self) {
        drop(self);
    }
}

impl Drop for UnmapHold {
    fn drop(&mut self) {
        let mut open = self.state.open.lock();
        *open = open.saturating_sub(1);
        if *open == 0 {
            self.state.confirmed.notify_all();
        }
    }
}

/// The holds taken on one unmap, waited for before the driver is called.
#[derive(Debug)]
pub(crate) struct Holds {
    state: Arc<GateState>,
}

impl Holds {
    /// Blocks until every hold is confirmed.
    pub(crate) fn wait(&self) {
        let mut open = self.state.open.lock();
        while *open > 0 {
            self.state.confirmed.wait(&mut open);
        }
    }
}

type Registered = Vec<(HooksId, Arc<dyn MappingHooks>)>;

/// The hooks of one [`Cuda`](crate::Cuda).
#[derive(Default)]
pub(crate) struct HookRegistry {
    hooks: RwLock<Registered>,
    /// Set while any hook is registered: the fast path takes no lock.
    any: AtomicBool,
    next: AtomicU64,
}

impl HookRegistry {
    pub(crate) fn add(&self, hooks: Arc<dyn MappingHooks>) -> HooksId {
        let id = HooksId(self.next.fetch_add(1, Ordering::Relaxed));
        let mut all = self.hooks.write();
        all.push((id, hooks));
        self.any.store(true, Ordering::Release);
        id
    }

    pub(crate) fn remove(&self, id: HooksId) -> bool {
        let mut all = self.hooks.write();
        let before = all.len();
        all.retain(|(i, _)| *i != id);
        self.any.store(!all.is_empty(), Ordering::Release);
        all.len() != before
    }

    /// Whether any hook is registered (no lock taken).
    pub(crate) fn is_active(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    /// The hooks now, cloned so that none is called under the registry's lock.
    fn current(&self) -> Option<Vec<Arc<dyn MappingHooks>>> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let all = self.hooks.read();
        Some(all.iter().map(|(_, h)| h.clone()).collect())
    }

    /// Tells every hook that `range` became accessible.
    pub(crate) fn accessible(&self, range: MappedRange, access: &[(usize, AccessFlags)]) {
        for hook in self.current().unwrap_or_default() {
            guarded("accessible", || hook.accessible(&range, access));
        }
    }

    /// Tells every hook that `ranges` are about to be unmapped; the holds they took, if any.
    pub(crate) fn unmapping(&self, ranges: impl Iterator<Item = MappedRange>) -> Option<Holds> {
        let hooks = self.current()?;
        let gate = UnmapGate {
            state: Arc::new(GateState::default()),
        };
        for range in ranges {
            for hook in &hooks {
                guarded("unmapping", || hook.unmapping(&range, &gate));
            }
        }
        let held = *gate.state.open.lock() > 0;
        held.then_some(Holds { state: gate.state })
    }
}

/// Runs a hook, logging a panic instead of unwinding through the library (a hook may run
/// in `drop` or on the release worker).
fn guarded(what: &str, hook: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(hook)).is_err() {
        tracing::error!("a mapping hook panicked in `{what}`; the mapping change goes on");
    }
}

impl crate::Cuda {
    /// Adds hooks told about every access set and every unmap through this `Cuda` (see
    /// [`crate::hooks`]); they stay until [`remove_mapping_hooks`](Self::remove_mapping_hooks).
    pub fn add_mapping_hooks(&self, hooks: Arc<dyn MappingHooks>) -> HooksId {
        self.hook_registry().add(hooks)
    }

    /// Removes hooks added by [`add_mapping_hooks`](Self::add_mapping_hooks); false if
    /// `id` is not registered. Holds already taken stay in force.
    pub fn remove_mapping_hooks(&self, id: HooksId) -> bool {
        self.hook_registry().remove(id)
    }
}
