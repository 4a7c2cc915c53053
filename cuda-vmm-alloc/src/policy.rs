//! How growable buffers size the physical chunks they map.

use crate::error::{Error, Result};

const MIB: usize = 1 << 20;
/// The speed profile's step cap: 1 TiB, beyond any device's memory.
const SPEED_MAX_CHUNK: usize = 1 << 40;

/// How a [`GrowableBuffer`](crate::GrowableBuffer) sizes the physical memory it maps as it grows.
///
/// When a buffer needs `needed` bytes but has only `committed`, it commits
///
/// ```text
/// step  = clamp(round_down(committed * factor, g), max(min_chunk, g), max_chunk)
/// grown = max(step, round_up(needed - committed, g))
/// ```
///
/// bytes (`g` = allocation granularity, or the pool's chunk size when the buffer uses a
/// [`ChunkPool`](crate::ChunkPool)), capped at the reservation's end. `grown` is backed by one
/// allocation (pieces of at most `max_chunk`, or `max_allocation` if set; pool chunks when
/// pooled), each mapped
/// with one `cuMemMap`, and the whole new run gets ONE `cuMemSetAccess`.
///
/// **Trade-offs.** Larger steps mean fewer driver calls but more over-commit (every step may
/// be partly unused). Because steps grow with the buffer, reaching a size `S` takes
/// `O(log S)` steps, like `Vec` doubling, yet the data never moves.
///
/// **Allocation size.** Measured on an H200 with driver 580 (BENCHMARKS.md, growth to 16 GiB
/// by 2 MiB appends), what a step costs depends on what the device's memory did just before:
/// - *first use and settled memory* (nothing released in the last few hundred ms): creation
///   costs about 0.5 µs per MiB or less whatever the allocation size, while `cuMemSetAccess`
///   costs about 20–25 µs per allocation handle in its range, so one allocation per step is
///   fastest (1.7–3 ms on a process's first use, 6–8 ms settled) and 32 MiB pieces are 4x to
///   16x slower (20 to 28 ms, 524 handles);
/// - *back-to-back churn* (16 GiB released moments before): creating new large allocations
///   costs about 2 µs per MiB, while 32 MiB pieces of sizes just released come back cheaply,
///   so growing in 32 MiB pieces is faster (22.0 ms against 31.5 ms), but dropping them
///   costs as much more (one unmap and release per piece): build and drop take 40.4 ms in
///   whole steps, 42.5 ms in pieces.
///
/// So each step is ONE allocation by default (`max_allocation: 0`, `churn_allocation: 0`).
/// A buffer grown once, right after large frees, and then kept can opt into
/// `churn_allocation` (27.8 ms instead of 31.5 ms there, no change elsewhere). A program that
/// builds and drops large buffers back to back does better still with a
/// [`ChunkPool`](crate::ChunkPool) (about 2.4 ms, no creation at all). See also
/// [`GrowthPolicy::speed`].
///
/// **Bound.** Right after growing to fit `len` bytes, with `m` = `min_chunk` rounded up to
/// `g` (at least `g`): `committed < len + max(m, factor * len)`, so
/// `committed <= (1 + factor) * len` once `factor * len >= m`. With the defaults (`min_chunk`
/// 16 MiB, `factor` 0.25, `max_chunk` 4 GiB, `g` 2 MiB) that is at most 1.25x the length from
/// 64 MiB on, and growing from empty to 16 GiB in 2 MiB appends takes 29 steps (29
/// allocations and `cuMemSetAccess` calls; naive one-granule chunks: 8192 of each). [`GrowthPolicy::fixed`] gives the naive behaviour for
/// comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct GrowthPolicy {
    /// Smallest chunk in bytes; rounded up to the granularity (0 means one granule).
    pub min_chunk: usize,
    /// Largest chunk in bytes; rounded down to the granularity (at least one granule).
    pub max_chunk: usize,
    /// Chunk size as a fraction of the memory already committed (0 disables proportional
    /// growth). Must be finite and in `0.0..=16.0`.
    pub factor: f64,
    /// Largest single physical allocation (`cuMemCreate`) in bytes; a growth step larger than
    /// this is backed by several allocations mapped back to back, still with ONE
    /// `cuMemSetAccess` for the step. 0 (the default) means `max_chunk`: one allocation per
    /// step. See the trade-off above.
    pub max_allocation: usize,
    /// Largest single allocation in bytes while the driver is slow to create memory: when a
    /// buffer's create of at least 64 MiB ran slower than 1.3 µs per MiB (the sign that the
    /// process released memory moments before and the driver is clearing it), its steps for
    /// the next second are backed by allocations of at most this size, which the driver
    /// hands back cheaply in that regime; then one step is tried whole again. 0 (the
    /// default) never switches; 32 MiB is the measured choice. Only steps committed in line
    /// are timed (with prefetch on, the worker's creates are not), and a loaded host can make
    /// a create look slow: the switch is a speed choice, never a correctness one. See the
    /// trade-off above.
    pub churn_allocation: usize,
}

impl Default for GrowthPolicy {
    fn default() -> Self {
        GrowthPolicy {
            min_chunk: 16 * MIB,
            max_chunk: 4096 * MIB,
            factor: 0.25,
            max_allocation: 0,
            churn_allocation: 0,
        }
    }
}

impl GrowthPolicy {
    /// Chunks of exactly `chunk_bytes` (rounded to the granularity), whatever the buffer's size:
    /// the most driver calls and the least over-commit.
    pub fn fixed(chunk_bytes: usize) -> Self {
        GrowthPolicy {
            min_chunk: chunk_bytes,
            max_chunk: chunk_bytes,
            factor: 0.0,
            max_allocation: 0,
            churn_allocation: 0,
        }
    }

    /// The speed profile: doubling steps (`factor` 1.0, from 16 MiB, no step cap), each backed
    /// by one allocation, so growth takes the fewest driver calls at the price of memory:
    /// `committed < 2 * len` once the length passes 16 MiB (the default keeps 1.25x).
    pub fn speed() -> Self {
        GrowthPolicy {
            min_chunk: 16 * MIB,
            max_chunk: SPEED_MAX_CHUNK,
            factor: 1.0,
            max_allocation: 0,
            churn_allocation: 0,
        }
    }

    /// Checks that the numbers are usable.
    pub fn validate(&self) -> Result<()> {
        if !self.factor.is_finite() || !(0.0..=16.0).contains(&self.factor) {
            return Err(Error::BadPolicy {
                message: format!("factor {} is not a finite number in 0..=16", self.factor),
            });
        }
        if self.max_chunk == 0 || self.max_chunk < self.min_chunk {
            return Err(Error::BadPolicy {
                message: format!(
                    "max_chunk {} must be nonzero and at least min_chunk {}",
                    self.max_chunk, self.min_chunk
                ),
            });
        }
        Ok(())
    }

    /// The committed size, in bytes, after growing from `committed` to fit `needed` bytes with
    /// allocation unit `unit` (not capped at the reservation). Returns `committed` when it
    /// already fits; saturates at `usize::MAX` rounded down to `unit`.
    pub fn grow_to(&self, committed: usize, needed: usize, unit: usize) -> usize {
        let unit = unit.max(1);
        if needed <= committed {
            return committed;
        }
        let min = round_up(self.min_chunk, unit).max(unit);
        let max = (self.max_chunk / unit * unit).max(min);
        let proportional = ((committed as f64) * self.factor) as usize / unit * unit;
        let step = proportional.clamp(min, max);
        let shortfall = round_up(needed - committed, unit);
        committed.saturating_add(step.max(shortfall)) / unit * unit
    }

    /// The largest single allocation for allocation unit `unit`.
    pub(crate) fn max_piece(&self, unit: usize) -> usize {
        let unit = unit.max(1);
        let min = round_up(self.min_chunk, unit).max(unit);
        let piece = (self.max_chunk / unit * unit).max(min);
        match self.max_allocation {
            0 => piece,
            cap => piece.min((cap / unit * unit).max(unit)),
        }
    }

    /// The largest single allocation for allocation unit `unit` while creates are slow
    /// (`churn_allocation`, if set, within [`max_piece`](Self::max_piece)).
    pub(crate) fn churn_piece(&self, unit: usize) -> usize {
        let piece = self.max_piece(unit);
        match self.churn_allocation {
            0 => piece,
            cap => piece.min((cap / unit.max(1) * unit).max(unit)),
        }
    }
}

/// A size in bytes: `requested`, or `default` when it is 0. Refused with
/// [`Error::InvalidConfig`] (`message(size)`) unless a multiple of `granularity`.
pub(crate) fn granular(
    requested: usize,
    default: usize,
    granularity: usize,
    message: impl FnOnce(usize) -> String,
) -> Result<usize> {
    let size = if requested == 0 { default } else { requested };
    if size % granularity != 0 {
        return Err(Error::InvalidConfig {
            message: message(size),
        });
    }
    Ok(size)
}

/// `value` rounded up to a multiple of `unit` (saturating at the largest multiple).
pub(crate) fn round_up(value: usize, unit: usize) -> usize {
    let unit = unit.max(1);
    match value.checked_next_multiple_of(unit) {
        Some(v) => v,
        None => usize::MAX / unit * unit,
    }
}

/// Splits `total` bytes into pieces of at most `max_piece` (the last one smaller).
pub(crate) fn split(total: usize, max_piece: usize) -> Vec<usize> {
    let max_piece = max_piece.max(1);
    let mut pieces = Vec::with_capacity(total.div_ceil(max_piece));
    let mut left = total;
    while left > 0 {
        let piece = left.min(max_piece);
        pieces.push(piece);
        left -= piece;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: usize = 2 * MIB;
    const GIB: usize = 1024 * MIB;

    #[test]
    fn defaults_are_valid() {
        GrowthPolicy::default().validate().expect("default policy");
        GrowthPolicy::fixed(G).validate().expect("fixed policy");
    }

    #[test]
    fn max_allocation_caps_pieces_not_steps() {
        let p = GrowthPolicy {
            max_allocation: 32 * MIB,
            ..GrowthPolicy::default()
        };
        assert_eq!(p.max_piece(G), 32 * MIB);
        assert_eq!(
            split(100 * MIB, p.max_piece(G)),
            vec![32 * MIB, 32 * MIB, 32 * MIB, 4 * MIB]
        );
        // The steps themselves are the default ones.
        assert_eq!(p.grow_to(4 * GIB, 4 * GIB + 1, G), 5 * GIB);
        assert_eq!(GrowthPolicy::default().max_piece(G), 4096 * MIB);
        let whole = GrowthPolicy {
            max_allocation: 0,
            ..GrowthPolicy::default()
        };
        assert_eq!(whole.max_piece(G), 4096 * MIB);
    }

    #[test]
    fn rejects_bad_numbers() {
        let bad = GrowthPolicy {
            factor: f64::NAN,
            ..GrowthPolicy::default()
        };
        let err = bad.validate().expect_err("NaN factor");
        assert_eq!(
            err.to_string(),
            "invalid growth policy: factor NaN is not a finite number in 0..=16"
        );
        let bad = GrowthPolicy {
            min_chunk: 4 * G,
            max_chunk: G,
            factor: 0.5,
            max_allocation: 0,
            churn_allocation: 0,
        };
        let err = bad.validate().expect_err("max < min");
        assert_eq!(
            err.to_string(),
            "invalid growth policy: max_chunk 2097152 must be nonzero and at least min_chunk 8388608"
        );
    }

    #[test]
    fn first_step_is_min_chunk() {
        let p = GrowthPolicy::default();
        assert_eq!(p.grow_to(0, 1, G), 16 * MIB);
        assert_eq!(p.grow_to(0, 17 * MIB, G), 18 * MIB);
        assert_eq!(p.grow_to(16 * MIB, 16 * MIB, G), 16 * MIB);
    }

    #[test]
    fn proportional_steps_round_down_and_cap() {
        let p = GrowthPolicy::default();
        // 100 MiB * 0.25 = 25 MiB, rounded down to 24 MiB.
        assert_eq!(p.grow_to(100 * MIB, 100 * MIB + 1, G), 124 * MIB);
        // 32 GiB * 0.25 = 8 GiB, capped at 4 GiB.
        assert_eq!(p.grow_to(32 * GIB, 32 * GIB + 1, G), 36 * GIB);
        // A large request beats the step.
        assert_eq!(p.grow_to(100 * MIB, 300 * MIB + 1, G), 302 * MIB);
    }

    #[test]
    fn fixed_policy_grows_one_chunk() {
        let p = GrowthPolicy::fixed(G);
        assert_eq!(p.grow_to(10 * GIB, 10 * GIB + 1, G), 10 * GIB + G);
        assert_eq!(p.max_piece(G), G);
        assert_eq!(p.grow_to(0, 3 * G, G), 3 * G);
    }

    #[test]
    fn growth_to_16_gib_is_few_chunks_and_bounded() {
        for policy in [
            GrowthPolicy::default(),
            GrowthPolicy {
                min_chunk: 0,
                ..Default::default()
            },
        ] {
            let mut committed = 0;
            let mut steps = 0;
            let mut len = 0;
            while len < 16 * GIB {
                len += G;
                if len > committed {
                    committed = policy.grow_to(committed, len, G);
                    steps += 1;
                    assert!(committed >= len);
                }
                if len >= 64 * MIB {
                    assert!(
                        committed as f64 <= 1.25 * len as f64,
                        "{committed} for {len}"
                    );
                }
            }
            let expected = if policy.min_chunk == 0 { 40 } else { 29 };
            assert_eq!(steps, expected, "{policy:?}");
        }
    }

    #[test]
    fn bound_holds_for_arbitrary_requests() {
        let p = GrowthPolicy::default();
        let mut committed = 0usize;
        let mut needed = 0usize;
        for i in 1..2000usize {
            needed += (i * 7919) % (40 * MIB) + 1;
            let next = p.grow_to(committed, needed, G);
            if next != committed {
                let slack = G.max(16 * MIB).max((needed as f64 * 0.25) as usize);
                assert!(next < needed + slack, "{next} for {needed}");
                assert_eq!(next % G, 0);
                committed = next;
            }
        }
    }

    #[test]
    fn speed_profile_doubles_within_twice_the_length() {
        let p = GrowthPolicy::speed();
        p.validate().expect("speed policy");
        let (mut committed, mut steps, mut len) = (0, 0, 0);
        while len < 16 * GIB {
            len += G;
            if len > committed {
                committed = p.grow_to(committed, len, G);
                steps += 1;
            }
            if len > 16 * MIB {
                assert!(committed < 2 * len, "{committed} for {len}");
            }
        }
        // 16 MiB, then doubling to 16 GiB.
        assert_eq!(steps, 11);
        assert_eq!(committed, 16 * GIB);
        assert_eq!(p.max_piece(G), 1 << 40);
    }

    #[test]
    fn rounding_and_split() {
        assert_eq!(round_up(0, G), 0);
        assert_eq!(round_up(1, G), G);
        assert_eq!(round_up(usize::MAX, G), usize::MAX / G * G);
        assert_eq!(split(5 * G, 2 * G), vec![2 * G, 2 * G, G]);
        assert_eq!(split(0, G), Vec::<usize>::new());
    }
}
