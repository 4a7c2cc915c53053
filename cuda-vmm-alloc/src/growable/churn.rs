//! Telling apart the driver's two costs of creating memory, so that growth can pick its
//! allocation size ([`GrowthPolicy::churn_allocation`](crate::GrowthPolicy::churn_allocation)).
//!
//! Measured on an H200 with driver 580 (BENCHMARKS.md): creating a large allocation costs
//! about 0.5 µs per MiB or less on first use and on memory released a while ago, but about
//! 2 µs per MiB when the process released memory moments before (the driver appears to wait
//! for it to be cleared), while allocations of up to 32 MiB of sizes just released come back
//! cheaply either way. One allocation per growth step is fastest in the first regime, 32 MiB
//! pieces in the second.

use std::time::{Duration, Instant};

/// Creates of fewer bytes than this are not judged: their fixed cost hides the rate.
pub(crate) const SLOW_CREATE_MIN_BYTES: usize = 64 << 20;
/// A create slower than this per MiB means the driver is clearing released memory (1.3 µs:
/// about 2x the slowest rate measured outside churn, 0.65x the rate measured in it).
pub(crate) const SLOW_CREATE_PER_MIB: Duration = Duration::from_nanos(1_300);
/// How long one slow create keeps growth in churn pieces. Pieces are cheap in churn and so
/// show no slowness: after this long the next step is tried whole again.
pub(crate) const CHURN_HOLD: Duration = Duration::from_secs(1);

/// Whether creates were recently slow.
#[derive(Debug, Default)]
pub(crate) struct ChurnWatch {
    until: Option<Instant>,
}

impl ChurnWatch {
    /// Records that creating `bytes` (in allocations of at least
    /// [`SLOW_CREATE_MIN_BYTES`] each) took `took`, at `now`. Returns whether that was slow.
    pub(crate) fn observe(&mut self, bytes: usize, took: Duration, now: Instant) -> bool {
        if bytes < SLOW_CREATE_MIN_BYTES {
            return false;
        }
        let mib = u32::try_from(bytes >> 20).unwrap_or(u32::MAX);
        let slow = took > SLOW_CREATE_PER_MIB.saturating_mul(mib);
        if slow {
            self.until = Some(now + CHURN_HOLD);
        }
        slow
    }

    /// Whether a slow create was seen less than [`CHURN_HOLD`] before `now`.
    pub(crate) fn active(&self, now: Instant) -> bool {
        self.until.is_some_and(|until| now < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn slow_large_creates_switch_for_a_while() {
        let t0 = Instant::now();
        let mut w = ChurnWatch::default();
        assert!(!w.active(t0));
        // 512 MiB in 285 µs (settled memory) and 40 µs (first use): not slow.
        assert!(!w.observe(512 * MIB, Duration::from_micros(285), t0));
        assert!(!w.observe(512 * MIB, Duration::from_micros(40), t0));
        assert!(!w.active(t0));
        // Small creates are not judged, however slow.
        assert!(!w.observe(32 * MIB, Duration::from_millis(5), t0));
        assert!(!w.active(t0));
        // 512 MiB in 1.1 ms (churn): slow, for CHURN_HOLD.
        assert!(w.observe(512 * MIB, Duration::from_micros(1_100), t0));
        assert!(w.active(t0 + CHURN_HOLD / 2));
        assert!(!w.active(t0 + CHURN_HOLD));
        // Just over the threshold counts, just under does not.
        let mut w = ChurnWatch::default();
        assert!(!w.observe(64 * MIB, SLOW_CREATE_PER_MIB * 64, t0));
        assert!(w.observe(
            64 * MIB,
            SLOW_CREATE_PER_MIB * 64 + Duration::from_nanos(1),
            t0
        ));
    }
}
