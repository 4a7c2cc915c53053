//! A per-thread model of what `cuMemCreate` costs while the real driver clears memory that
//! was released moments before.
//!
//! On an H200 with driver 580, creating large allocations under back-to-back create/release
//! churn costs about 2 µs per MiB (the driver appears to wait for released memory to be
//! cleared), against about 0.5 µs per MiB for memory released a while ago and less on first
//! use. The simulator creates at once unless a test asks for that cost with
//! [`model_create_cost`], so that code reacting to slow creates can be tested.

use core::cell::Cell;
use core::marker::PhantomData;
use std::time::Duration;

thread_local! {
    static CREATE_COST_PER_MIB: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

/// Makes every `cuMemCreate` on this thread take `per_mib` for each MiB it creates (at
/// least), until the guard is dropped. Creates on other threads are unaffected.
pub fn model_create_cost(per_mib: Duration) -> CreateCostGuard {
    let previous = CREATE_COST_PER_MIB.with(|c| c.replace(per_mib));
    CreateCostGuard {
        previous,
        _thread_bound: PhantomData,
    }
}

/// Restores the previous create cost of its thread on drop.
#[must_use = "the modelled cost ends when the guard is dropped"]
pub struct CreateCostGuard {
    previous: Duration,
    _thread_bound: PhantomData<*const ()>,
}

impl Drop for CreateCostGuard {
    fn drop(&mut self) {
        CREATE_COST_PER_MIB.with(|c| c.set(self.previous));
    }
}

/// Waits what creating `bytes` costs on this thread (nothing unless modelled).
pub(crate) fn pay_create(bytes: u64) {
    let per_mib = CREATE_COST_PER_MIB.with(Cell::get);
    if per_mib.is_zero() {
        return;
    }
    let mib = u32::try_from(bytes.div_ceil(1 << 20)).unwrap_or(u32::MAX);
    std::thread::sleep(per_mib.saturating_mul(mib));
}
