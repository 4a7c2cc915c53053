//! The fault loop the sleep tests of buffers and sparse arrays share: every driver call of
//! a sleep with a backup (before its release) and of a wake, failed once. A failed sleep
//! leaves the structure awake and intact, a failed wake leaves it asleep with its backup,
//! and the retry succeeds with every byte.

use std::time::Duration;

use cuda_vmm::Device;
use cuda_vmm_alloc::{Backup, Error, GrowableBuffer, SparseArray};
use cuda_vmm_sys::CUresult;

use crate::adversarial::calls_made_of;
use cuda_vmm_tests::helpers::TestResult;

/// The calls a sleep with a backup and a wake make on the caller's thread.
const CALLS: &[&str] = &[
    "cuCtxSynchronize",
    "cuMemAddressReserve",
    "cuMemCreate",
    "cuMemMap",
    "cuMemSetAccess",
    "cuMemcpyDtoDAsync_v2",
    "cuStreamSynchronize",
];

/// A structure that sleeps on its own.
pub(crate) trait Sleeper {
    fn sleep_host(&mut self) -> Result<(), Error>;
    fn wake_up(&mut self) -> Result<(), Error>;
    fn asleep(&self) -> bool;
    fn committed(&self) -> usize;
}

impl Sleeper for GrowableBuffer<u32> {
    fn sleep_host(&mut self) -> Result<(), Error> {
        self.sleep(Backup::Host).map(drop)
    }
    fn wake_up(&mut self) -> Result<(), Error> {
        self.wake().map(drop)
    }
    fn asleep(&self) -> bool {
        self.is_asleep()
    }
    fn committed(&self) -> usize {
        self.committed_bytes()
    }
}

impl Sleeper for SparseArray<u32> {
    fn sleep_host(&mut self) -> Result<(), Error> {
        self.sleep(Backup::Host).map(drop)
    }
    fn wake_up(&mut self) -> Result<(), Error> {
        self.wake().map(drop)
    }
    fn asleep(&self) -> bool {
        self.is_asleep()
    }
    fn committed(&self) -> usize {
        self.committed_bytes()
    }
}

/// Runs the fault loop on structures made by `make`, whose bytes `check` verifies.
pub(crate) fn every_fault<S: Sleeper>(
    d: &Device,
    make: impl Fn() -> Result<S, Box<dyn std::error::Error>>,
    check: impl Fn(&S) -> TestResult,
) -> TestResult {
    let (sleep_calls, wake_calls) = {
        let mut s = make()?;
        let sleep = calls_made_of(CALLS, || drop(s.sleep_host()));
        let wake = calls_made_of(CALLS, || drop(s.wake_up()));
        (sleep, wake)
    };
    assert!(
        wake_calls.iter().any(|c| c.0 == "cuMemCreate"),
        "{wake_calls:?}"
    );
    for &(symbol, nth) in &sleep_calls {
        let mut s = make()?;
        let committed = s.committed();
        let failed = {
            let _f = cuda_vmm_sim::inject_fault(symbol, nth, CUresult::CUDA_ERROR_UNKNOWN);
            s.sleep_host()
        };
        assert!(failed.is_err(), "sleep: {symbol} #{nth} did not fail");
        assert!(!s.asleep(), "sleep: {symbol} #{nth}");
        assert_eq!(s.committed(), committed, "sleep: {symbol} #{nth}");
        check(&s)?;
        s.sleep_host()?;
        s.wake_up()?;
        check(&s)?;
    }
    for &(symbol, nth) in &wake_calls {
        let mut s = make()?;
        s.sleep_host()?;
        let failed = {
            let _f = cuda_vmm_sim::inject_fault(symbol, nth, CUresult::CUDA_ERROR_OUT_OF_MEMORY);
            s.wake_up()
        };
        assert!(failed.is_err(), "wake: {symbol} #{nth} did not fail");
        assert!(s.asleep(), "wake: {symbol} #{nth}");
        assert!(d.cuda().flush_releases(Duration::from_secs(30))?);
        s.wake_up()?;
        check(&s)?;
    }
    Ok(())
}
