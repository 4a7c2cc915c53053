//! Call counts and fault injection aimed at threads by name, and process-wide
//! call counts: for tests of work a library does on its own threads (a worker
//! the test cannot run code on). Threads are matched by
//! `std::thread::current().name()`; all threads of one name count together.

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use cuda_vmm_sys::CUresult;
use parking_lot::Mutex;

use crate::model::symbols::{Sym, COUNT};

type Counters = [AtomicU64; COUNT];

/// Calls by every thread.
static ALL: Counters = [const { AtomicU64::new(0) }; COUNT];
/// Calls by the threads of each name.
static NAMED: Mutex<BTreeMap<String, Arc<Counters>>> = Mutex::new(BTreeMap::new());
/// Faults armed for named threads.
static FAULTS: Mutex<Vec<NamedFault>> = Mutex::new(Vec::new());
/// How many faults [`FAULTS`] holds (read without the lock on every call).
static ARMED: AtomicUsize = AtomicUsize::new(0);
/// Faults of [`FAULTS`] that fired (until their guard is dropped).
static FIRED: Mutex<Vec<u64>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

struct NamedFault {
    id: u64,
    thread: String,
    sym: Sym,
    remaining: u64,
    code: CUresult,
}

thread_local! {
    /// This thread's name and its name's counters (`None`: an unnamed thread).
    static MINE: OnceCell<Option<(String, Arc<Counters>)>> = const { OnceCell::new() };
}

fn counters_of(name: &str) -> Arc<Counters> {
    NAMED
        .lock()
        .entry(name.to_owned())
        .or_insert_with(|| Arc::new([const { AtomicU64::new(0) }; COUNT]))
        .clone()
}

/// This thread's name (none for unnamed threads, or when it can no longer be
/// asked: during thread-local destruction).
fn my_name() -> Option<String> {
    catch_unwind(AssertUnwindSafe(|| {
        std::thread::current().name().map(str::to_owned)
    }))
    .ok()
    .flatten()
}

/// Records a call of `sym` (process-wide and for this thread's name); returns
/// the injected error if a fault aimed at this thread's name is due. `fire`:
/// whether a due fault may fire now (false when a per-thread fault already
/// failed this call: the named one then fires on the next call).
pub(crate) fn on_call(sym: Sym, fire: bool) -> Option<CUresult> {
    ALL[sym.0].fetch_add(1, Ordering::Relaxed);
    MINE.try_with(|mine| {
        let mine = mine.get_or_init(|| my_name().map(|n| (n.clone(), counters_of(&n))));
        let (name, counters) = mine.as_ref()?;
        counters[sym.0].fetch_add(1, Ordering::Relaxed);
        if ARMED.load(Ordering::Acquire) == 0 {
            return None;
        }
        due(name, sym, fire)
    })
    .ok()
    .flatten()
}

/// Counts a call of `sym` by a thread named `name` against its faults; the
/// code of the one that fires now, if `fire` allows.
fn due(name: &str, sym: Sym, fire: bool) -> Option<CUresult> {
    let mut faults = FAULTS.lock();
    for fault in faults
        .iter_mut()
        .filter(|f| f.sym == sym && f.thread == name)
    {
        fault.remaining = fault.remaining.saturating_sub(1);
    }
    if !fire {
        return None;
    }
    // Two faults due on the same call: the older fires now, the other on the next call.
    let i = faults
        .iter()
        .position(|f| f.sym == sym && f.thread == name && f.remaining == 0)?;
    let fault = faults.remove(i);
    ARMED.store(faults.len(), Ordering::Release);
    FIRED.lock().push(fault.id);
    Some(fault.code)
}

/// Arms a fault for the `nth_call`-th (from 1) future call of `sym` by a thread
/// named `thread`; its identity.
pub(crate) fn arm(thread: &str, sym: Sym, nth_call: u64, code: CUresult) -> u64 {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut faults = FAULTS.lock();
    faults.push(NamedFault {
        id,
        thread: thread.to_owned(),
        sym,
        remaining: nth_call,
        code,
    });
    ARMED.store(faults.len(), Ordering::Release);
    id
}

/// Disarms fault `id` (if it has not fired) and forgets whether it fired.
pub(crate) fn disarm(id: u64) {
    let mut faults = FAULTS.lock();
    faults.retain(|f| f.id != id);
    ARMED.store(faults.len(), Ordering::Release);
    drop(faults);
    FIRED.lock().retain(|f| *f != id);
}

/// Whether fault `id` fired.
pub(crate) fn fired(id: u64) -> bool {
    FIRED.lock().contains(&id)
}

/// Calls of `sym` by threads named `thread`.
pub(crate) fn count_on(thread: &str, sym: Sym) -> u64 {
    NAMED
        .lock()
        .get(thread)
        .map_or(0, |c| c[sym.0].load(Ordering::Relaxed))
}

/// Calls of `sym` by every thread.
pub(crate) fn count_all(sym: Sym) -> u64 {
    ALL[sym.0].load(Ordering::Relaxed)
}
