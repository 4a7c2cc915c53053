//! A deterministic allocation trace shaped like a serving step mix, for the caching
//! allocator's benchmark and its peers (the driver pool, PyTorch's caching allocator).
//!
//! Three classes, sizes log-uniform in their range, lifetimes uniform and counted in
//! allocations:
//! - small, 60%: 512 B to 64 KiB, freed within 1–8 allocations;
//! - activations, 35%: 1 to 64 MiB, freed within 8–256 allocations;
//! - long-lived, 5%: 16 to 512 MiB, freed within 2,000–40,000 allocations.
//!
//! Live bytes are capped: an allocation that would pass the cap first frees the oldest live
//! long-lived blocks (then the oldest of any class). Everything left is freed at the end.
//! With several streams, each allocation goes to a random stream, and a share of the blocks
//! is used on another stream before its free (what `record_use` / `record_stream` marks).
//!
//! The file format (one operation per line, read by `scripts/peers/alloc_trace.py` and the
//! driver-pool replay): `a ID SIZE STREAM` allocates, `f ID USED_ON` frees, where `USED_ON` is
//! the other stream the block was used on, or `-` for none.

use std::collections::{BTreeMap, BinaryHeap};
use std::fmt::Write as _;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// One operation of a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceOp {
    /// Allocate `size` bytes on `stream` as block `id`.
    Alloc {
        /// The block's id (its allocation index).
        id: u32,
        /// Bytes requested.
        size: u64,
        /// Stream index, `0..streams`.
        stream: u8,
    },
    /// Free block `id`, after it was used on stream `used_on` too, if any.
    Free {
        /// The block's id.
        id: u32,
        /// Another stream the block was used on before the free.
        used_on: Option<u8>,
    },
}

/// The shape of a trace.
#[derive(Clone, Copy, Debug)]
pub struct TraceConfig {
    /// Allocations (the trace has twice as many operations).
    pub allocations: u32,
    /// Cap on live requested bytes.
    pub live_cap: u64,
    /// Streams the allocations are spread over.
    pub streams: u8,
    /// Share of frees (0..=1) whose block was used on another stream first (streams > 1).
    pub cross_stream: f64,
    /// The generator's seed.
    pub seed: u64,
}

impl TraceConfig {
    /// The benchmark's trace: 100,000 allocations, a 24 GiB cap, one stream, seed 2026.
    pub fn serving() -> TraceConfig {
        TraceConfig {
            allocations: 100_000,
            live_cap: 24 * GIB,
            streams: 1,
            cross_stream: 0.0,
            seed: 2026,
        }
    }

    /// The 4-stream variant: about 10% of frees follow a use on another stream.
    pub fn serving_4_streams() -> TraceConfig {
        TraceConfig {
            streams: 4,
            cross_stream: 0.10,
            ..TraceConfig::serving()
        }
    }
}

/// A generated trace.
#[derive(Clone, Debug)]
pub struct Trace {
    /// The operations, in order.
    pub ops: Vec<TraceOp>,
    /// The most requested bytes live at once.
    pub peak_requested: u64,
    /// Streams used.
    pub streams: u8,
}

/// SplitMix64. Hand-written on purpose: the trace must be the same bytes on every machine
/// and for every future build, and `rand` does not promise value stability of its
/// distributions across versions.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in `[lo, hi]`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// Log-uniform in `[lo, hi]`.
    fn log_uniform(&mut self, lo: u64, hi: u64) -> u64 {
        let (a, b) = ((lo as f64).ln(), (hi as f64).ln());
        ((a + (b - a) * self.unit()).exp() as u64).clamp(lo, hi)
    }
}

/// The generator's live blocks and output.
struct Generator<'c> {
    config: &'c TraceConfig,
    streams: u8,
    rng: SplitMix,
    ops: Vec<TraceOp>,
    /// Live blocks: size and stream, by id.
    live: BTreeMap<u32, (u64, u8)>,
    /// Live long-lived blocks, by id (age order).
    long_lived: BTreeMap<u32, ()>,
    live_bytes: u64,
}

impl Generator<'_> {
    /// Frees block `id` if it is live, drawing whether another stream used it.
    fn free(&mut self, id: u32) {
        let Some((size, stream)) = self.live.remove(&id) else {
            return;
        };
        self.long_lived.remove(&id);
        self.live_bytes -= size;
        let streams = self.streams;
        let used_on = (streams > 1 && self.rng.unit() < self.config.cross_stream).then(|| {
            let step = self.rng.between(1, u64::from(streams) - 1) as u8;
            (stream + step) % streams
        });
        self.ops.push(TraceOp::Free { id, used_on });
    }
}

/// Generates the trace `config` describes.
pub fn generate(config: &TraceConfig) -> Trace {
    let streams = config.streams.max(1);
    let mut g = Generator {
        config,
        streams,
        rng: SplitMix(config.seed),
        ops: Vec::with_capacity(2 * config.allocations as usize),
        live: BTreeMap::new(),
        long_lived: BTreeMap::new(),
        live_bytes: 0,
    };
    // (Reverse(death), id) of live blocks.
    let mut deaths: BinaryHeap<std::cmp::Reverse<(u32, u32)>> = BinaryHeap::new();
    let mut peak = 0u64;
    for id in 0..config.allocations {
        while let Some(&std::cmp::Reverse((death, victim))) = deaths.peek() {
            if death > id {
                break;
            }
            deaths.pop();
            g.free(victim);
        }
        let class = g.rng.unit();
        let (size, lifetime, long) = if class < 0.60 {
            (g.rng.log_uniform(512, 64 * KIB), g.rng.between(1, 8), false)
        } else if class < 0.95 {
            (
                g.rng.log_uniform(MIB, 64 * MIB),
                g.rng.between(8, 256),
                false,
            )
        } else {
            (
                g.rng.log_uniform(16 * MIB, 512 * MIB),
                g.rng.between(2_000, 40_000),
                true,
            )
        };
        while g.live_bytes + size > config.live_cap {
            let oldest = g
                .long_lived
                .keys()
                .next()
                .or_else(|| g.live.keys().next())
                .copied();
            let Some(victim) = oldest else { break };
            g.free(victim);
        }
        let stream = g.rng.between(0, u64::from(streams) - 1) as u8;
        g.ops.push(TraceOp::Alloc { id, size, stream });
        g.live.insert(id, (size, stream));
        if long {
            g.long_lived.insert(id, ());
        }
        g.live_bytes += size;
        peak = peak.max(g.live_bytes);
        deaths.push(std::cmp::Reverse((id.saturating_add(lifetime as u32), id)));
    }
    while let Some(std::cmp::Reverse((_, victim))) = deaths.pop() {
        g.free(victim);
    }
    Trace {
        ops: g.ops,
        peak_requested: peak,
        streams,
    }
}

impl Trace {
    /// The trace in its file format (see the module docs).
    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(self.ops.len() * 16);
        for op in &self.ops {
            // Writing to a String cannot fail.
            let _ = match *op {
                TraceOp::Alloc { id, size, stream } => writeln!(out, "a {id} {size} {stream}"),
                TraceOp::Free { id, used_on: None } => writeln!(out, "f {id} -"),
                TraceOp::Free {
                    id,
                    used_on: Some(s),
                } => writeln!(out, "f {id} {s}"),
            };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FNV-1a of the file text: the traces the H200 figures were measured on.
    fn fingerprint(trace: &Trace) -> u64 {
        trace.to_text().bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
    }

    #[test]
    fn the_traces_are_the_measured_ones() {
        let one = fingerprint(&generate(&TraceConfig::serving()));
        let four = fingerprint(&generate(&TraceConfig::serving_4_streams()));
        assert_eq!((one, four), (0xa371_5b92_f2c8_d939, 0xb338_d36e_f7c3_cdc0));
    }

    #[test]
    fn the_serving_trace_has_its_shape() {
        let trace = generate(&TraceConfig::serving());
        assert_eq!(trace.ops.len(), 200_000);
        assert!(trace.peak_requested <= 24 * GIB);
        assert!(trace.peak_requested > 23 * GIB, "{}", trace.peak_requested);
        let again = generate(&TraceConfig::serving());
        assert_eq!(trace.ops, again.ops);
        let four = generate(&TraceConfig::serving_4_streams());
        let cross = four
            .ops
            .iter()
            .filter(|op| {
                matches!(
                    op,
                    TraceOp::Free {
                        used_on: Some(_),
                        ..
                    }
                )
            })
            .count();
        assert!((9_000..11_000).contains(&cross), "{cross}");
    }
}
