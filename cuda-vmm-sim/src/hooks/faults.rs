//! Call counting and fault injection.
//!
//! The plain forms are thread-local, so tests running in parallel threads
//! neither see each other's calls nor trip each other's faults. The
//! `_on_thread` forms aim at the threads of one name (a library's worker),
//! and [`call_count_all`] counts every thread.

use core::cell::{Cell, RefCell};
use core::fmt;
use core::marker::PhantomData;

use cuda_vmm_sys::CUresult;

use crate::hooks::targeted;
use crate::model::symbols::{self, Sym, COUNT};

struct Fault {
    id: u64,
    sym: Sym,
    remaining: u64,
    code: CUresult,
}

thread_local! {
    static CALLS: RefCell<[u64; COUNT]> = const { RefCell::new([0; COUNT]) };
    static FAULTS: RefCell<Vec<Fault>> = const { RefCell::new(Vec::new()) };
    static FIRED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
    static NEXT_ID: Cell<u64> = const { Cell::new(1) };
}

/// Records a call of `sym` on this thread; returns the injected error if this
/// call is one that must fail.
pub(crate) fn on_call(sym: Sym) -> Option<CUresult> {
    CALLS.with(|c| {
        if let Ok(mut calls) = c.try_borrow_mut() {
            calls[sym.0] = calls[sym.0].saturating_add(1);
        }
    });
    let local = FAULTS
        .try_with(|f| {
            let mut faults = f.try_borrow_mut().ok()?;
            for fault in faults.iter_mut().filter(|fault| fault.sym == sym) {
                fault.remaining = fault.remaining.saturating_sub(1);
            }
            // Two faults due on the same call: the older fires now, the other on the next call.
            let i = faults
                .iter()
                .position(|fault| fault.sym == sym && fault.remaining == 0)?;
            let fault = faults.remove(i);
            FIRED.with(|fired| {
                if let Ok(mut fired) = fired.try_borrow_mut() {
                    fired.push(fault.id);
                }
            });
            Some(fault.code)
        })
        .ok()
        .flatten();
    // A fault aimed at this thread's name, due now too, fires on the next call.
    let named = targeted::on_call(sym, local.is_none());
    local.or(named)
}

/// Why a fault could not be armed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultError {
    /// The name is not an entry point the simulator exports.
    UnknownSymbol(String),
    /// Calls are counted from 1.
    ZeroCall,
}

impl fmt::Display for FaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownSymbol(name) => {
                write!(f, "`{name}` is not an entry point the simulator exports")
            }
            Self::ZeroCall => write!(f, "nth_call counts from 1; 0 never happens"),
        }
    }
}

impl std::error::Error for FaultError {}

/// An armed fault; dropping it disarms the fault if it has not fired.
///
/// Not `Send`: faults belong to the thread that armed them.
#[must_use = "dropping the guard disarms the fault"]
#[derive(Debug)]
pub struct FaultGuard {
    id: Option<u64>,
    /// Whether the fault is aimed at threads by name ([`inject_fault_on_thread`]).
    named: bool,
    _thread_bound: PhantomData<*const ()>,
}

impl FaultGuard {
    fn inert() -> Self {
        Self {
            id: None,
            named: false,
            _thread_bound: PhantomData,
        }
    }

    /// Whether the fault has fired (the chosen call failed).
    pub fn fired(&self) -> bool {
        let Some(id) = self.id else { return false };
        if self.named {
            return targeted::fired(id);
        }
        FIRED.with(|fired| fired.try_borrow().is_ok_and(|f| f.contains(&id)))
    }

    /// Whether this guard holds a fault at all ([`inject_fault`] with a bad
    /// symbol or a zero call number returns an inert guard).
    pub fn is_armed(&self) -> bool {
        self.id.is_some()
    }
}

impl Drop for FaultGuard {
    fn drop(&mut self) {
        let Some(id) = self.id else { return };
        if self.named {
            targeted::disarm(id);
            return;
        }
        FAULTS.with(|f| {
            if let Ok(mut faults) = f.try_borrow_mut() {
                faults.retain(|fault| fault.id != id);
            }
        });
        FIRED.with(|fired| {
            if let Ok(mut fired) = fired.try_borrow_mut() {
                fired.retain(|x| *x != id);
            }
        });
    }
}

/// Makes the `nth_call`-th future call (1-based) of `symbol` on this thread
/// fail with `code`, without side effects; the guard disarms it on drop.
///
/// `symbol` is an exported name (`"cuMemGetInfo_v2"`) or its plain name
/// (`"cuMemGetInfo"`). An unknown symbol or `nth_call == 0` gives an inert guard
/// ([`FaultGuard::is_armed`] is false); [`try_inject_fault`] reports those as errors.
pub fn inject_fault(symbol: &str, nth_call: u64, code: CUresult) -> FaultGuard {
    try_inject_fault(symbol, nth_call, code).unwrap_or_else(|_| FaultGuard::inert())
}

/// [`inject_fault`], refusing an unknown symbol or a zero call number.
pub fn try_inject_fault(
    symbol: &str,
    nth_call: u64,
    code: CUresult,
) -> Result<FaultGuard, FaultError> {
    let sym = symbols::lookup(symbol).ok_or_else(|| FaultError::UnknownSymbol(symbol.into()))?;
    if nth_call == 0 {
        return Err(FaultError::ZeroCall);
    }
    let id = NEXT_ID.with(|n| {
        let id = n.get();
        n.set(id + 1);
        id
    });
    FAULTS.with(|f| {
        f.borrow_mut().push(Fault {
            id,
            sym,
            remaining: nth_call,
            code,
        })
    });
    Ok(FaultGuard {
        id: Some(id),
        named: false,
        _thread_bound: PhantomData,
    })
}

/// [`inject_fault`] aimed at other threads: makes the `nth_call`-th future call
/// (1-based, counted from now) of `symbol` by a thread named `thread_name`
/// (`std::thread::current().name()`; all threads of that name count together)
/// fail with `code`. Calls by other threads (this one included, unless it has
/// that name) neither count nor fail. The guard disarms it on drop; it stays
/// with the arming thread (not `Send`), like [`inject_fault`]'s.
pub fn inject_fault_on_thread(
    thread_name: &str,
    symbol: &str,
    nth_call: u64,
    code: CUresult,
) -> FaultGuard {
    try_inject_fault_on_thread(thread_name, symbol, nth_call, code)
        .unwrap_or_else(|_| FaultGuard::inert())
}

/// [`inject_fault_on_thread`], refusing an unknown symbol or a zero call number.
pub fn try_inject_fault_on_thread(
    thread_name: &str,
    symbol: &str,
    nth_call: u64,
    code: CUresult,
) -> Result<FaultGuard, FaultError> {
    let sym = symbols::lookup(symbol).ok_or_else(|| FaultError::UnknownSymbol(symbol.into()))?;
    if nth_call == 0 {
        return Err(FaultError::ZeroCall);
    }
    Ok(FaultGuard {
        id: Some(targeted::arm(thread_name, sym, nth_call, code)),
        named: true,
        _thread_bound: PhantomData,
    })
}

/// How many times threads named `thread_name` have called `symbol` (exported
/// or plain name) since the process started; 0 for names the simulator does
/// not export and for names no calling thread had.
pub fn call_count_on_thread(thread_name: &str, symbol: &str) -> u64 {
    symbols::lookup(symbol).map_or(0, |sym| targeted::count_on(thread_name, sym))
}

/// How many times any thread of the process has called `symbol` (exported or
/// plain name); 0 for names the simulator does not export.
pub fn call_count_all(symbol: &str) -> u64 {
    symbols::lookup(symbol).map_or(0, targeted::count_all)
}

/// How many times this thread has called `symbol` (exported or plain name);
/// 0 for names the simulator does not export.
pub fn call_count(symbol: &str) -> u64 {
    match symbols::lookup(symbol) {
        Some(sym) => CALLS.with(|c| c.try_borrow().map_or(0, |calls| calls[sym.0])),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::symbols::sym;

    #[test]
    fn nth_call_fires_once_and_only_on_this_thread() {
        let s = sym("cuMemMap");
        let before = call_count("cuMemMap");
        let guard = inject_fault("cuMemMap", 2, CUresult::CUDA_ERROR_OUT_OF_MEMORY);
        assert!(guard.is_armed());
        assert_eq!(on_call(s), None);
        assert!(!guard.fired());
        std::thread::spawn(move || assert_eq!(on_call(s), None))
            .join()
            .unwrap();
        assert_eq!(on_call(s), Some(CUresult::CUDA_ERROR_OUT_OF_MEMORY));
        assert!(guard.fired());
        assert_eq!(on_call(s), None);
        assert_eq!(call_count("cuMemMap"), before + 3);
    }

    #[test]
    fn dropped_guard_disarms() {
        let s = sym("cuMemUnmap");
        drop(inject_fault("cuMemUnmap", 1, CUresult::CUDA_ERROR_UNKNOWN));
        assert_eq!(on_call(s), None);
    }

    #[test]
    fn a_fault_aimed_at_a_name_fires_only_on_threads_of_that_name() {
        let s = sym("cuMemRelease");
        let name = "faults-unit-named-thread";
        let code = CUresult::CUDA_ERROR_UNKNOWN;
        let run = move |calls: usize| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || (0..calls).map(|_| on_call(s)).collect::<Vec<_>>())
                .unwrap()
                .join()
                .unwrap()
        };
        let all = call_count_all("cuMemRelease");
        let guard = inject_fault_on_thread(name, "cuMemRelease", 2, code);
        assert!(guard.is_armed());
        // This thread has another name: neither counted nor failed.
        for _ in 0..3 {
            assert_eq!(on_call(s), None);
        }
        assert_eq!(run(1), vec![None]);
        assert!(!guard.fired());
        // The second call by a thread of that name (another thread: names count together).
        assert_eq!(run(2), vec![Some(code), None]);
        assert!(guard.fired());
        assert_eq!(call_count_on_thread(name, "cuMemRelease"), 3);
        assert_eq!(
            call_count_on_thread("faults-unit-nobody", "cuMemRelease"),
            0
        );
        assert!(call_count_all("cuMemRelease") >= all + 6);
        drop(guard);
        // Dropped before it is due: never fires.
        drop(inject_fault_on_thread(name, "cuMemRelease", 1, code));
        assert_eq!(run(1), vec![None]);
        assert_eq!(
            try_inject_fault_on_thread(name, "cuMemMap", 0, code).unwrap_err(),
            FaultError::ZeroCall
        );
    }

    #[test]
    fn a_local_and_a_named_fault_due_together_fire_on_consecutive_calls() {
        let s = sym("cuMemsetD8_v2");
        let code = CUresult::CUDA_ERROR_UNKNOWN;
        let other = CUresult::CUDA_ERROR_OUT_OF_MEMORY;
        std::thread::Builder::new()
            .name("faults-unit-both".into())
            .spawn(move || {
                let local = inject_fault("cuMemsetD8", 1, code);
                let named = inject_fault_on_thread("faults-unit-both", "cuMemsetD8", 1, other);
                assert_eq!(on_call(s), Some(code));
                assert_eq!(on_call(s), Some(other));
                assert_eq!(on_call(s), None);
                assert!(local.fired() && named.fired());
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn bad_requests_are_refused() {
        assert_eq!(
            try_inject_fault("cuGraphLaunch", 1, CUresult::CUDA_ERROR_UNKNOWN).unwrap_err(),
            FaultError::UnknownSymbol("cuGraphLaunch".into())
        );
        assert_eq!(
            try_inject_fault("cuMemMap", 0, CUresult::CUDA_ERROR_UNKNOWN).unwrap_err(),
            FaultError::ZeroCall
        );
        assert!(!inject_fault("nope", 1, CUresult::CUDA_ERROR_UNKNOWN).is_armed());
    }
}
