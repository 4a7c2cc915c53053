//! `GrowableBuffer<u32>` against a host `Vec<u32>`.

use cuda_vmm::Stream;
use cuda_vmm_alloc::{BufferConfig, ChunkPool, Error, GrowableBuffer, GrowthPolicy};

use super::{check_error, under_fault, Ledger, Step, Tally, COPY_PATH, GROW_PATH, SHRINK_PATH};

/// An element count relative to the granularity: `eighths` eighths of a granule's worth of
/// elements, plus `extra` elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    /// Eighths of a granule.
    pub eighths: u16,
    /// Elements more.
    pub extra: u16,
}

impl Size {
    fn elements(self, granule_elements: usize) -> usize {
        usize::from(self.eighths) * (granule_elements / 8) + usize::from(self.extra)
    }
}

/// One buffer operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BufOp {
    /// `push(value)`.
    Push(u32),
    /// `extend_from_slice` of `len` patterned elements.
    Extend {
        /// How many.
        len: Size,
        /// Pattern seed.
        seed: u8,
    },
    /// `extend_from_slice_async` on the sequence's stream.
    ExtendAsync {
        /// How many.
        len: Size,
        /// Pattern seed.
        seed: u8,
    },
    /// `resize(len, value)`: a memset when all bytes of `value` are equal, else a staged
    /// fill doubled on the device.
    Resize {
        /// New length.
        len: Size,
        /// Fill value.
        value: u32,
    },
    /// `reserve(additional)`.
    Reserve(Size),
    /// `truncate(len)`.
    Truncate(Size),
    /// `clear()`.
    Clear,
    /// `shrink_to_fit()`.
    ShrinkToFit,
    /// `write` at `at / 65535` of the length.
    Write {
        /// Position as a fraction of the length (65535 = the end).
        at: u16,
        /// Elements written.
        len: Size,
        /// Pattern seed.
        seed: u8,
    },
    /// `read` at `at / 65535` of the length.
    Read {
        /// Position as a fraction of the length.
        at: u16,
        /// Elements read.
        len: Size,
    },
}

/// How the buffer is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferSetup {
    /// Chunks from a pool (of one-granule chunks).
    pub pooled: bool,
    /// Growth: fixed one-granule chunks, or proportional steps split into pieces.
    pub proportional: bool,
}

/// Most granules a buffer may commit.
pub const MAX_GRANULES: usize = 4;

/// A buffer, its host model and what the checks need.
pub struct BufferModel {
    /// The buffer.
    pub buf: GrowableBuffer<u32>,
    /// Its contents as they must be.
    pub model: Vec<u32>,
    ptr: u64,
    unit: usize,
    granule_elements: usize,
    stream: Stream,
}

fn values(len: usize, seed: u8, from: usize) -> Vec<u32> {
    (0..len)
        .map(|i| ((from + i) as u32).wrapping_mul(2_654_435_761) ^ (u32::from(seed) * 0x0101_0101))
        .collect()
}

fn vmm(e: Error) -> (Option<u32>, Error) {
    (e.code(), e)
}

impl BufferModel {
    /// A buffer of at most [`MAX_GRANULES`] granules, on `pool` if given.
    pub fn new(setup: BufferSetup, pool: Option<ChunkPool>) -> Result<BufferModel, String> {
        let device = super::sim_device()?;
        let g = super::granularity()?;
        let policy = if setup.proportional {
            GrowthPolicy {
                min_chunk: g,
                max_chunk: 2 * g,
                factor: 0.5,
                max_allocation: g,
                churn_allocation: 0,
            }
        } else {
            GrowthPolicy::fixed(g)
        };
        let pool = if setup.pooled { pool } else { None };
        let unit = pool.as_ref().map_or(g, ChunkPool::chunk_size);
        let buf = GrowableBuffer::<u32>::new(
            &device,
            BufferConfig {
                max_capacity: Some(MAX_GRANULES * g / 4),
                policy,
                pool,
                ..BufferConfig::default()
            },
        )
        .map_err(|e| format!("creating the buffer: {e}"))?;
        let stream = Stream::new(&device).map_err(|e| e.to_string())?;
        Ok(BufferModel {
            ptr: buf.ptr(),
            buf,
            model: Vec::new(),
            unit,
            granule_elements: g / 4,
            stream,
        })
    }

    /// Runs one step and checks the buffer against the model.
    pub fn apply(
        &mut self,
        step: &Step<BufOp>,
        ledger: &mut Ledger,
        tally: &mut Tally,
    ) -> Result<(), String> {
        let ge = self.granule_elements;
        let max = self.buf.max_capacity();
        let len = self.model.len();
        let before_committed = self.buf.committed_bytes();
        let what = format!("{:?}", step);
        // The expected outcome without a fault: the new model, or the error.
        let mut expected: Result<Vec<u32>, Error> = Ok(self.model.clone());
        let mut grows = false;
        let mut shrink = false;
        let mut read_out = None;
        let mut written = None;
        let buf = &mut self.buf;
        let stream = &self.stream;
        let (result, fired): (Result<(), (Option<u32>, Error)>, bool) = match step.op {
            BufOp::Push(v) => {
                grows = true;
                expected = grown(&self.model, &[v], max);
                under_fault(step.fault, GROW_PATH, ledger, tally, || {
                    buf.push(v).map_err(vmm)
                })
            }
            BufOp::Extend { len: n, seed } | BufOp::ExtendAsync { len: n, seed } => {
                grows = true;
                let v = values(n.elements(ge), seed, len);
                expected = grown(&self.model, &v, max);
                let is_async = matches!(step.op, BufOp::ExtendAsync { .. });
                under_fault(step.fault, GROW_PATH, ledger, tally, || {
                    if is_async {
                        buf.extend_from_slice_async(stream, &v).map_err(vmm)
                    } else {
                        buf.extend_from_slice(&v).map_err(vmm)
                    }
                })
            }
            BufOp::Resize { len: n, value } => {
                let n = n.elements(ge);
                grows = n > len;
                expected = if n <= len {
                    Ok(self.model[..n].to_vec())
                } else {
                    grown(&self.model, &vec![value; n - len], max)
                };
                under_fault(step.fault, GROW_PATH, ledger, tally, || {
                    buf.resize(n, value).map_err(vmm)
                })
            }
            BufOp::Reserve(n) => {
                grows = true;
                let n = n.elements(ge);
                if len + n > max {
                    expected = Err(Error::CapacityExceeded {
                        requested: len + n,
                        max,
                    });
                }
                under_fault(step.fault, GROW_PATH, ledger, tally, || {
                    buf.reserve(n).map_err(vmm)
                })
            }
            BufOp::Truncate(n) => {
                let n = n.elements(ge);
                expected = Ok(self.model[..n.min(len)].to_vec());
                under_fault(step.fault, GROW_PATH, ledger, tally, || {
                    buf.truncate(n);
                    Ok(())
                })
            }
            BufOp::Clear => {
                expected = Ok(Vec::new());
                under_fault(step.fault, GROW_PATH, ledger, tally, || {
                    buf.clear();
                    Ok(())
                })
            }
            BufOp::ShrinkToFit => {
                shrink = true;
                under_fault(step.fault, SHRINK_PATH, ledger, tally, || {
                    buf.shrink_to_fit().map_err(vmm)
                })
            }
            BufOp::Write { at, len: n, seed } => {
                let offset = len * usize::from(at) / 65535;
                let v = values(n.elements(ge), seed, offset);
                let end = offset + v.len();
                if end > len {
                    expected = Err(Error::OutOfRange {
                        what: "write",
                        start: offset,
                        end,
                        len,
                    });
                } else {
                    let mut m = self.model.clone();
                    m[offset..end].copy_from_slice(&v);
                    expected = Ok(m.clone());
                    written = Some((offset..end, m));
                }
                under_fault(step.fault, COPY_PATH, ledger, tally, || {
                    buf.write(offset, &v).map_err(vmm)
                })
            }
            BufOp::Read { at, len: n } => {
                let offset = len * usize::from(at) / 65535;
                let end = offset + n.elements(ge);
                if end > len {
                    expected = Err(Error::OutOfRange {
                        what: "read",
                        start: offset,
                        end,
                        len,
                    });
                }
                let mut out = vec![0u32; end - offset];
                let r = under_fault(step.fault, COPY_PATH, ledger, tally, || {
                    buf.read(offset..end, &mut out).map_err(vmm)
                });
                if end <= len {
                    read_out = Some((out, offset..end));
                }
                r
            }
        };
        match (&result, expected) {
            (Ok(()), Ok(model)) => {
                if fired {
                    tally.tolerated += 1;
                }
                if let Some((out, range)) = read_out {
                    if out[..] != model[range] {
                        return Err(format!("{what}: read different elements than stored"));
                    }
                }
                self.model = model;
            }
            (Ok(()), Err(e)) => {
                return Err(format!(
                    "{what}: succeeded, expected {e:?} (fault fired: {fired})"
                ))
            }
            (Err((code, e)), expected) => {
                check_error(&what, fired, *code, e, expected.as_ref().err(), tally)?;
                if let Some((range, new)) = written {
                    // The copy failed or only its wait did: each element holds its old value
                    // or its new one (a copy staged in chunks may have landed in part).
                    let mut now = vec![0u32; range.len()];
                    self.buf
                        .read(range.clone(), &mut now)
                        .map_err(|e| format!("{what}: reading back a failed write: {e}"))?;
                    let (old, new) = (&self.model[range.clone()], &new[range.clone()]);
                    if now
                        .iter()
                        .zip(old.iter().zip(new))
                        .any(|(n, (o, w))| n != o && n != w)
                    {
                        return Err(format!(
                            "{what}: a failed write left elements it never held"
                        ));
                    }
                    self.model[range].copy_from_slice(&now);
                }
                // A failed operation leaves length and contents as they were.
                if grows && self.buf.committed_bytes() != before_committed {
                    return Err(format!(
                        "{what}: failed growth changed committed bytes {before_committed} -> {}",
                        self.buf.committed_bytes()
                    ));
                }
            }
        }
        self.check(
            &what,
            shrink && result.is_ok(),
            shrink.then_some(before_committed),
        )
    }

    /// Checks the buffer against the model: length, contents, pointer, committed bytes and
    /// chunks back to back.
    pub fn check(
        &self,
        what: &str,
        shrunk: bool,
        shrink_from: Option<usize>,
    ) -> Result<(), String> {
        let b = &self.buf;
        if b.len() != self.model.len() {
            return Err(format!(
                "{what}: length {} but the model holds {}",
                b.len(),
                self.model.len()
            ));
        }
        if b.ptr() != self.ptr {
            return Err(format!("{what}: the pointer moved"));
        }
        let contents = b
            .to_vec()
            .map_err(|e| format!("{what}: reading back: {e}"))?;
        if contents != self.model {
            let at = contents
                .iter()
                .zip(&self.model)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Err(format!("{what}: contents differ from element {at} on"));
        }
        let committed = b.committed_bytes();
        let used = b.len() * 4;
        if !committed.is_multiple_of(self.unit) {
            return Err(format!("{what}: committed {committed} is not whole units"));
        }
        if committed < used || committed > b.reserved_bytes() {
            return Err(format!(
                "{what}: committed {committed} outside [{used}, {}]",
                b.reserved_bytes()
            ));
        }
        let mut at = 0;
        for (offset, a) in b.chunk_allocations() {
            if offset != at {
                return Err(format!("{what}: chunk at {offset}, expected {at}"));
            }
            at += a.size();
        }
        if at != committed {
            return Err(format!("{what}: chunks end at {at}, committed {committed}"));
        }
        let target = used.div_ceil(self.unit) * self.unit;
        if let Some(from) = shrink_from {
            if committed > from || committed < target {
                return Err(format!(
                    "{what}: committed {committed} after a shrink from {from} to {target}"
                ));
            }
            if shrunk && committed != target {
                // Only a straddling chunk with no room for its replacement past it stays whole.
                let last = b.chunk_allocations().last().map(|(o, a)| (o, a.size()));
                let kept_whole = !b.uses_pool()
                    && last.is_some_and(|(o, s)| o + s + (target - o) > b.reserved_bytes());
                if !kept_whole {
                    return Err(format!(
                        "{what}: committed {committed} after a shrink to {target}"
                    ));
                }
            }
        }
        Ok(())
    }
}

fn grown(model: &[u32], more: &[u32], max: usize) -> Result<Vec<u32>, Error> {
    let n = model.len() + more.len();
    if n > max {
        return Err(Error::CapacityExceeded { requested: n, max });
    }
    let mut m = model.to_vec();
    m.extend_from_slice(more);
    Ok(m)
}

/// Runs `steps` on a fresh buffer (and pool), then checks nothing stays allocated.
pub fn run(setup: BufferSetup, steps: &[Step<BufOp>]) -> Result<Tally, String> {
    super::run_model::<BufferModel>(setup, steps)
}

impl super::Model for BufferModel {
    type Setup = BufferSetup;
    type Op = BufOp;
    const POOL_CHUNKS: usize = 3;
    const NAME: &'static str = "buffer";

    fn pooled(setup: &BufferSetup) -> bool {
        setup.pooled
    }

    fn new(setup: BufferSetup, pool: Option<ChunkPool>) -> Result<Self, String> {
        BufferModel::new(setup, pool)
    }

    fn apply(
        &mut self,
        step: &Step<BufOp>,
        ledger: &mut Ledger,
        tally: &mut Tally,
    ) -> Result<(), String> {
        BufferModel::apply(self, step, ledger, tally)
    }
}
