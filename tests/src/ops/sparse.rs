//! `SparseArray<u8>` against host tiles (`None` = a hole).

use std::ops::Range;

use cuda_vmm_alloc::{ChunkPool, Error, HoleBehavior, SparseArray, SparseConfig};

use super::{
    backend, check_error, reset_context, under_fault, Ledger, Step, Tally, COPY_PATH, GROW_PATH,
    SHRINK_PATH,
};
use crate::helpers::{pattern_hashed, raw_read};

/// Tiles of a sparse array in these sequences; the last one is partly used.
pub const TILES: usize = 6;

/// One sparse array operation. Positions are fractions of the length (`p * len / 60000`, so
/// values past 60000 lie out of range).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SparseOp {
    /// `commit(start..end)`.
    Commit(u16, u16),
    /// `decommit(start..end)`.
    Decommit(u16, u16),
    /// `write(at, pattern_hashed(len, seed))`, `len` in 1/64 tiles.
    Write {
        /// Position.
        at: u16,
        /// Length in 1/64 tiles.
        len: u8,
        /// Pattern seed.
        seed: u8,
    },
    /// `read(start..end)`.
    Read(u16, u16),
}

/// How the array is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SparseSetup {
    /// What reading a hole does.
    pub holes: HoleBehavior,
    /// Tiles from a pool.
    pub pooled: bool,
}

/// An array, its host model and what the checks need.
pub struct SparseModel {
    /// The array.
    pub array: SparseArray<u8>,
    /// Each tile's bytes, or `None` for a hole.
    pub tiles: Vec<Option<Vec<u8>>>,
    tile: usize,
}

fn vmm(e: Error) -> (Option<u32>, Error) {
    (e.code(), e)
}

impl SparseModel {
    /// An array of [`TILES`] tiles (the last partly used), on `pool` if given.
    pub fn new(setup: SparseSetup, pool: Option<ChunkPool>) -> Result<SparseModel, String> {
        let device = super::sim_device()?;
        let g = super::granularity()?;
        let pool = if setup.pooled { pool } else { None };
        let array = SparseArray::<u8>::new(
            &device,
            (TILES - 1) * g + g / 2 + 3,
            SparseConfig {
                holes: setup.holes,
                pool,
                ..SparseConfig::default()
            },
        )
        .map_err(|e| format!("creating the sparse array: {e}"))?;
        Ok(SparseModel {
            tile: array.tile_bytes(),
            array,
            tiles: vec![None; TILES],
        })
    }

    fn pos(&self, p: u16) -> usize {
        self.array.len() * usize::from(p) / 60000
    }

    fn range(&self, a: u16, b: u16) -> Range<usize> {
        self.pos(a)..self.pos(b)
    }

    fn out_of_range(&self, what: &'static str, r: &Range<usize>) -> Option<Error> {
        (r.start > r.end || r.end > self.array.len()).then(|| Error::OutOfRange {
            what,
            start: r.start,
            end: r.end,
            len: self.array.len(),
        })
    }

    /// The first hole an access of `r` touches, as the array reports it.
    fn hole_in(&self, r: &Range<usize>) -> Option<Error> {
        if r.is_empty() {
            return None;
        }
        let first = r.start / self.tile;
        let last = (r.end - 1) / self.tile;
        (first..=last)
            .find(|&t| self.tiles[t].is_none())
            .map(|tile| Error::NotCommitted {
                index: (tile * self.tile).max(r.start),
                tile,
            })
    }

    /// Runs one step and checks the array against the model.
    pub fn apply(
        &mut self,
        step: &Step<SparseOp>,
        ledger: &mut Ledger,
        tally: &mut Tally,
    ) -> Result<(), String> {
        let what = format!("{step:?}");
        let tile = self.tile;
        let len = self.array.len();
        let mut expected: Result<usize, Error> = Ok(0);
        let mut read = None;
        let mut decommit = None;
        let mut repairs = false;
        let (result, fired) = match step.op {
            SparseOp::Commit(a, b) => {
                repairs = true;
                let r = self.range(a, b);
                let tiles = if r.is_empty() {
                    0..0
                } else {
                    r.start / tile..r.end.div_ceil(tile)
                };
                expected = match self.out_of_range("commit", &r) {
                    Some(e) => Err(e),
                    None => Ok(tiles.filter(|&t| self.tiles[t].is_none()).count()),
                };
                under_fault(step.fault, GROW_PATH, ledger, tally, || {
                    self.array.commit(r.clone()).map_err(vmm)
                })
            }
            SparseOp::Decommit(a, b) => {
                repairs = true;
                let r = self.range(a, b);
                let inside = if r.is_empty() {
                    0..0
                } else {
                    let first = r.start.div_ceil(tile);
                    let last = if r.end >= len {
                        r.end.div_ceil(tile)
                    } else {
                        r.end / tile
                    };
                    first..last.max(first)
                };
                expected = match self.out_of_range("decommit", &r) {
                    Some(e) => Err(e),
                    None => {
                        decommit = Some(inside.clone());
                        Ok(inside.filter(|&t| self.tiles[t].is_some()).count())
                    }
                };
                under_fault(step.fault, SHRINK_PATH, ledger, tally, || {
                    self.array.decommit(r.clone()).map_err(vmm)
                })
            }
            SparseOp::Write { at, len: n, seed } => {
                let at = self.pos(at);
                let data = pattern_hashed(usize::from(n) * tile / 64, seed);
                let r = at..at + data.len();
                if let Some(e) = self.out_of_range("write", &r).or_else(|| self.hole_in(&r)) {
                    expected = Err(e);
                }
                let (res, fired) = under_fault(step.fault, COPY_PATH, ledger, tally, || {
                    self.array.write(at, &data).map(|()| 0).map_err(vmm)
                });
                let mut landed = None;
                if res.is_err() && fired && expected.is_ok() {
                    // The copy failed or only its wait did: each byte holds its old value or
                    // its new one (a copy staged in chunks may have landed in part).
                    let mut now = vec![0u8; data.len()];
                    self.array
                        .read(r.clone(), &mut now)
                        .map_err(|e| format!("{what}: reading back a failed write: {e}"))?;
                    let old = r
                        .clone()
                        .map(|p| self.tiles[p / tile].as_ref().map_or(0, |t| t[p % tile]));
                    if old
                        .zip(&data)
                        .zip(&now)
                        .any(|((o, d), n)| *n != o && n != d)
                    {
                        return Err(format!("{what}: a failed write left bytes it never held"));
                    }
                    landed = Some(now);
                }
                if let Some(now) = landed.as_ref().or(res.is_ok().then_some(&data)) {
                    for (i, byte) in now.iter().enumerate() {
                        let p = at + i;
                        if let Some(t) = self.tiles[p / tile].as_mut() {
                            t[p % tile] = *byte;
                        }
                    }
                }
                (res, fired)
            }
            SparseOp::Read(a, b) => {
                let r = self.range(a, b);
                let holes_fail = self.array.hole_behavior() == HoleBehavior::Error;
                if let Some(e) = self.out_of_range("read", &r).or_else(|| {
                    if holes_fail {
                        self.hole_in(&r)
                    } else {
                        None
                    }
                }) {
                    expected = Err(e);
                }
                let mut out = vec![0xEEu8; r.len()];
                let res = under_fault(step.fault, COPY_PATH, ledger, tally, || {
                    self.array
                        .read(r.clone(), &mut out)
                        .map(|()| 0)
                        .map_err(vmm)
                });
                read = Some((r, out));
                res
            }
        };
        match (&result, &expected) {
            (Ok(n), Ok(want)) => {
                if fired {
                    tally.tolerated += 1;
                }
                if n != want {
                    return Err(format!("{what}: returned {n}, the model says {want}"));
                }
                if let SparseOp::Commit(a, b) = step.op {
                    let r = self.range(a, b);
                    if !r.is_empty() {
                        for t in r.start / tile..r.end.div_ceil(tile) {
                            self.tiles[t].get_or_insert_with(|| vec![0; tile]);
                        }
                    }
                }
                if let Some(inside) = decommit {
                    for t in inside {
                        self.tiles[t] = None;
                    }
                }
                if let Some((r, out)) = read {
                    for (i, byte) in out.iter().enumerate() {
                        let p = r.start + i;
                        let want = self.tiles[p / tile].as_ref().map_or(0, |t| t[p % tile]);
                        if *byte != want {
                            return Err(format!("{what}: byte {p} reads {byte}, stored {want}"));
                        }
                    }
                }
            }
            (Ok(n), Err(e)) => {
                return Err(format!(
                    "{what}: returned {n}, expected {e:?} (fault fired: {fired})"
                ))
            }
            (Err((code, e)), expected) => {
                check_error(&what, fired, *code, e, expected.as_ref().err(), tally)?;
                // A failed decommit leaves each tile as it was or a hole.
                if let Some(inside) = decommit {
                    for t in inside {
                        if !self.array.is_committed(t * tile) && self.tiles[t].is_some() {
                            self.tiles[t] = None;
                        }
                    }
                }
            }
        }
        self.check(&what, repairs && result.is_ok() && !fired)
    }

    /// Checks residency, committed bytes and every committed tile's bytes; with zero holes and
    /// `kernel_view`, that every hole reads as zeros at its raw address.
    pub fn check(&self, what: &str, kernel_view: bool) -> Result<(), String> {
        let a = &self.array;
        let tile = self.tile;
        let committed = self.tiles.iter().filter(|t| t.is_some()).count();
        if a.committed_bytes() != committed * tile {
            return Err(format!(
                "{what}: committed {} bytes, the model {} tiles",
                a.committed_bytes(),
                committed
            ));
        }
        for (t, model) in self.tiles.iter().enumerate() {
            let start = t * tile;
            let end = ((t + 1) * tile).min(a.len());
            if a.is_committed(start) != model.is_some() {
                return Err(format!(
                    "{what}: tile {t} committed {}, the model {}",
                    a.is_committed(start),
                    model.is_some()
                ));
            }
            if let Some(bytes) = model {
                let mut out = vec![0u8; end - start];
                a.read(start..end, &mut out)
                    .map_err(|e| format!("{what}: reading tile {t}: {e}"))?;
                if out[..] != bytes[..end - start] {
                    return Err(format!("{what}: tile {t} differs from the model"));
                }
            } else if kernel_view && a.hole_behavior() == HoleBehavior::Zeros {
                // Read as a kernel would; the raw call leaves device 0 current: undone.
                let got = backend().and_then(|cuda| raw_read(&cuda, a.ptr() + start as u64, 64));
                reset_context();
                let got = got.map_err(|e| format!("{what}: hole {t} as a kernel reads it: {e}"))?;
                if got.iter().any(|&b| b != 0) {
                    return Err(format!("{what}: hole {t} does not read as zeros"));
                }
            }
        }
        Ok(())
    }
}

/// Runs `steps` on a fresh array (and pool), then checks nothing stays allocated.
pub fn run(setup: SparseSetup, steps: &[Step<SparseOp>]) -> Result<Tally, String> {
    super::run_model::<SparseModel>(setup, steps)
}

impl super::Model for SparseModel {
    type Setup = SparseSetup;
    type Op = SparseOp;
    const POOL_CHUNKS: usize = 2;
    const NAME: &'static str = "array";

    fn pooled(setup: &SparseSetup) -> bool {
        setup.pooled
    }

    fn new(setup: SparseSetup, pool: Option<ChunkPool>) -> Result<Self, String> {
        SparseModel::new(setup, pool)
    }

    fn apply(
        &mut self,
        step: &Step<SparseOp>,
        ledger: &mut Ledger,
        tally: &mut Tally,
    ) -> Result<(), String> {
        SparseModel::apply(self, step, ledger, tally)
    }
}
