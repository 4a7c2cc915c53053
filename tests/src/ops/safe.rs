//! The safe layer: one `Reservation`, a few `Allocation`s mapped into it (several times
//! over, aliasing), access set on whole mappings, copies through it; against a host model
//! of every allocation's bytes and every mapping's place and access.

use std::mem::discriminant;

use crate::helpers::pattern_hashed;
use cuda_vmm::{AccessFlags, Allocation, AllocationProps, Error, Mapping, Reservation};

use super::{under_fault, Ledger, Step, Tally, COPY_PATH, FAULT, SHRINK_PATH};

/// Granules in the reservation.
pub const GRANULES: usize = 6;
/// Allocation slots.
pub const SLOTS: usize = 3;

/// One safe-layer operation. Offsets are in granules plus a byte jitter where said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SafeOp {
    /// A new allocation of `granules` (1 or 2) in `slot`, replacing (dropping) the one there.
    Create {
        /// Slot, modulo [`SLOTS`].
        slot: u8,
        /// Size in granules, 1 or 2.
        granules: u8,
    },
    /// Drops the slot's handle (mappings keep the memory).
    Drop(u8),
    /// Maps the slot's allocation at `at` granules.
    Map {
        /// Slot.
        slot: u8,
        /// Offset in granules.
        at: u8,
    },
    /// Unmaps the `index`-th live mapping (modulo their number).
    Unmap(u8),
    /// `set_access` over granules `at..at + granules`, read-only or read-write.
    SetAccess {
        /// First granule.
        at: u8,
        /// Granules.
        granules: u8,
        /// Read-write rather than read-only.
        write: bool,
    },
    /// `write` of `len` patterned bytes at granule `at` plus `jitter` bytes.
    Write {
        /// Granule.
        at: u8,
        /// Bytes past it.
        jitter: u16,
        /// Bytes written, in 1/16 granules plus 5.
        len: u8,
        /// Pattern seed.
        seed: u8,
    },
    /// `read` of the same shape.
    Read {
        /// Granule.
        at: u8,
        /// Bytes past it.
        jitter: u16,
        /// Bytes read, in 1/16 granules plus 5.
        len: u8,
    },
}

struct Mapped {
    /// `None` once a failed unmap leaked it (it stays mapped, by design).
    mapping: Option<Mapping>,
    alloc: usize,
    offset: usize,
    size: usize,
    access: AccessFlags,
}

/// The reservation, the allocations and the model.
pub struct SafeModel {
    range: Reservation,
    slots: [Option<(usize, Allocation)>; SLOTS],
    /// Bytes of every allocation ever made, by id.
    bytes: Vec<Vec<u8>>,
    mapped: Vec<Mapped>,
    g: usize,
}

impl SafeModel {
    /// A fresh reservation of [`GRANULES`] granules, no allocations.
    pub fn new() -> Result<SafeModel, String> {
        let d = super::sim_device()?;
        let g = super::granularity()?;
        let range = Reservation::new(&d, GRANULES * g, Default::default())
            .map_err(|e| format!("reserving: {e}"))?;
        Ok(SafeModel {
            range,
            slots: Default::default(),
            bytes: Vec::new(),
            mapped: Vec::new(),
            g,
        })
    }

    /// The mapping holding byte `p`, if any.
    fn at(&self, p: usize) -> Option<&Mapped> {
        self.mapped
            .iter()
            .find(|m| m.offset <= p && p < m.offset + m.size)
    }

    /// What a copy of `offset..offset + len` needing `need` fails with, if anything.
    fn copy_error(&self, offset: usize, len: usize, need: AccessFlags) -> Option<Error> {
        let limit = GRANULES * self.g;
        if offset + len > limit {
            return Some(Error::OutOfBounds {
                what: "copy range in reservation",
                offset: offset as u64,
                size: len as u64,
                limit: limit as u64,
            });
        }
        if len == 0 {
            return None;
        }
        let mut p = offset;
        let mut min = AccessFlags::ReadWrite;
        while p < offset + len {
            let Some(m) = self.at(p) else {
                return Some(Error::NotMapped { offset, size: len });
            };
            min = min.min(m.access);
            p = m.offset + m.size;
        }
        (min < need).then_some(Error::AccessDenied {
            offset,
            size: len,
            required: need,
            device: 0,
        })
    }

    /// Runs one step and checks the reservation against the model.
    pub fn apply(
        &mut self,
        step: &Step<SafeOp>,
        ledger: &mut Ledger,
        tally: &mut Tally,
    ) -> Result<(), String> {
        let what = format!("{step:?}");
        let g = self.g;
        let d = super::sim_device()?;
        let (result, fired, expected): (Result<(), Error>, bool, Option<Error>) = match step.op {
            SafeOp::Create { slot, granules } => {
                let slot = usize::from(slot) % SLOTS;
                let size = (usize::from(granules) % 2 + 1) * g;
                let (made, fired) =
                    under_fault(step.fault, &["cuMemCreate"], ledger, tally, || {
                        Allocation::new(&d, size, &AllocationProps::device(&d))
                    });
                match made {
                    Ok(a) => {
                        zero(&a)?;
                        self.bytes.push(vec![0; size]);
                        self.slots[slot] = Some((self.bytes.len() - 1, a));
                        (Ok(()), fired, None)
                    }
                    Err(e) => (Err(e), fired, None),
                }
            }
            SafeOp::Drop(slot) => {
                self.slots[usize::from(slot) % SLOTS] = None;
                return self.check(&what);
            }
            SafeOp::Map { slot, at } => {
                let Some((id, alloc)) = &self.slots[usize::from(slot) % SLOTS] else {
                    return Ok(());
                };
                let (id, size) = (*id, alloc.size());
                let offset = usize::from(at) % (GRANULES + 1) * g;
                let expected = if offset + size > GRANULES * g {
                    Some(Error::OutOfBounds {
                        what: "mapping in reservation",
                        offset: offset as u64,
                        size: size as u64,
                        limit: (GRANULES * g) as u64,
                    })
                } else {
                    self.mapped
                        .iter()
                        .filter(|m| m.offset < offset + size && offset < m.offset + m.size)
                        .min_by_key(|m| m.offset)
                        .map(|m| Error::Overlap {
                            offset,
                            size,
                            existing_offset: m.offset,
                            existing_size: m.size,
                        })
                };
                let range = &self.range;
                let (made, fired) = under_fault(step.fault, &["cuMemMap"], ledger, tally, || {
                    range.map(offset, alloc, 0, size)
                });
                match made {
                    Ok(mapping) => {
                        self.mapped.push(Mapped {
                            mapping: Some(mapping),
                            alloc: id,
                            offset,
                            size,
                            access: AccessFlags::None,
                        });
                        (Ok(()), fired, expected)
                    }
                    Err(e) => (Err(e), fired, expected),
                }
            }
            SafeOp::Unmap(i) => {
                let live: Vec<usize> = (0..self.mapped.len())
                    .filter(|&k| self.mapped[k].mapping.is_some())
                    .collect();
                if live.is_empty() {
                    return Ok(());
                }
                let k = live[usize::from(i) % live.len()];
                let Some(mapping) = self.mapped[k].mapping.take() else {
                    return Ok(());
                };
                let (r, fired) =
                    under_fault(step.fault, SHRINK_PATH, ledger, tally, || mapping.unmap());
                // A refused unmap leaks the mapping (it stays mapped); a refused release of
                // the allocation it held last comes back after the unmap took effect.
                let (offset, size) = (self.mapped[k].offset, self.mapped[k].size);
                if r.is_ok() || !self.range.is_mapped(offset, size) {
                    self.mapped.remove(k);
                }
                (r, fired, None)
            }
            SafeOp::SetAccess {
                at,
                granules,
                write,
            } => {
                let offset = usize::from(at) % GRANULES * g;
                let size = usize::from(granules) % 4 * g;
                let flags = if write {
                    AccessFlags::ReadWrite
                } else {
                    AccessFlags::Read
                };
                let end = offset + size;
                let covered = (offset..end).step_by(g).all(|p| self.at(p).is_some());
                let cut = self.mapped.iter().any(|m| {
                    (m.offset < offset && offset < m.offset + m.size)
                        || (m.offset < end && end < m.offset + m.size)
                });
                let expected = if size == 0 {
                    Some(Error::InvalidArgument {
                        message: String::new(),
                    })
                } else if end > GRANULES * g {
                    Some(Error::OutOfBounds {
                        what: "access range in reservation",
                        offset: offset as u64,
                        size: size as u64,
                        limit: (GRANULES * g) as u64,
                    })
                } else if !covered {
                    Some(Error::NotMapped { offset, size })
                } else if cut {
                    Some(Error::InvalidArgument {
                        message: String::new(),
                    })
                } else {
                    None
                };
                let range = &self.range;
                let (r, fired) =
                    under_fault(step.fault, &["cuMemSetAccess"], ledger, tally, || {
                        range.set_access(offset, size, &[(&d, flags)])
                    });
                if r.is_ok() {
                    for m in &mut self.mapped {
                        if offset <= m.offset && m.offset + m.size <= end {
                            m.access = flags;
                        }
                    }
                }
                (r, fired, expected)
            }
            SafeOp::Write {
                at,
                jitter,
                len,
                seed,
            } => {
                let offset = usize::from(at) % GRANULES * g + usize::from(jitter);
                let data = pattern_hashed(usize::from(len) * g / 16 + 5, seed);
                let expected = self.copy_error(offset, data.len(), AccessFlags::ReadWrite);
                let range = &self.range;
                let (r, fired) = under_fault(step.fault, COPY_PATH, ledger, tally, || {
                    range.write(offset, &data)
                });
                if r.is_ok() || (fired && self.holds(offset, &data)) {
                    self.store(offset, &data);
                }
                (r, fired, expected)
            }
            SafeOp::Read { at, jitter, len } => {
                let offset = usize::from(at) % GRANULES * g + usize::from(jitter);
                let n = usize::from(len) * g / 16 + 5;
                let expected = self.copy_error(offset, n, AccessFlags::Read);
                let mut out = vec![0u8; n];
                let range = &self.range;
                let (r, fired) = under_fault(step.fault, COPY_PATH, ledger, tally, || {
                    range.read(offset, &mut out)
                });
                if r.is_ok() && out != self.load(offset, n) {
                    return Err(format!("{what}: read bytes differ from the model"));
                }
                (r, fired, expected)
            }
        };
        match (&result, &expected) {
            (Ok(()), None) => {
                if fired {
                    tally.tolerated += 1;
                }
            }
            (Ok(()), Some(e)) => {
                return Err(format!(
                    "{what}: succeeded, expected {e:?} (fault fired: {fired})"
                ))
            }
            (Err(e), _) if fired && e.code() == Some(FAULT.0) => tally.errors += 1,
            (Err(e), Some(want)) if discriminant(e) == discriminant(want) => {
                let same = !matches!(
                    e,
                    Error::OutOfBounds { .. }
                        | Error::NotMapped { .. }
                        | Error::AccessDenied { .. }
                        | Error::Overlap { .. }
                ) || e == want;
                if !same {
                    return Err(format!("{what}: error {e:?}, expected {want:?}"));
                }
            }
            (Err(e), want) => {
                return Err(format!(
                    "{what}: error {e:?}, expected {want:?} (fault fired: {fired})"
                ))
            }
        }
        self.check(&what)
    }

    fn holds(&self, offset: usize, data: &[u8]) -> bool {
        let mut now = vec![0u8; data.len()];
        self.range.read(offset, &mut now).is_ok() && now == data
    }

    /// Writes `data` at reservation `offset` into the model (through every alias).
    fn store(&mut self, offset: usize, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            let p = offset + i;
            if let Some((id, off)) = self.at(p).map(|m| (m.alloc, p - m.offset)) {
                self.bytes[id][off] = *b;
            }
        }
    }

    fn load(&self, offset: usize, len: usize) -> Vec<u8> {
        (offset..offset + len)
            .map(|p| self.at(p).map_or(0, |m| self.bytes[m.alloc][p - m.offset]))
            .collect()
    }

    /// Checks mapping count, residency, access and the bytes of every readable mapping.
    pub fn check(&self, what: &str) -> Result<(), String> {
        let d = super::sim_device()?;
        if self.range.mapping_count() != self.mapped.len() {
            return Err(format!(
                "{what}: {} mappings, the model has {}",
                self.range.mapping_count(),
                self.mapped.len()
            ));
        }
        for m in &self.mapped {
            if !self.range.is_mapped(m.offset, m.size) {
                return Err(format!("{what}: offset {} is not mapped", m.offset));
            }
            let access = self
                .range
                .access(m.offset, &d)
                .map_err(|e| format!("{what}: access at {}: {e}", m.offset))?;
            if access != m.access {
                return Err(format!(
                    "{what}: access {access:?} at {}, the model {:?}",
                    m.offset, m.access
                ));
            }
            if m.access != AccessFlags::None {
                let mut out = vec![0u8; m.size];
                self.range
                    .read(m.offset, &mut out)
                    .map_err(|e| format!("{what}: reading {}: {e}", m.offset))?;
                if out != self.bytes[m.alloc] {
                    return Err(format!("{what}: mapping at {} differs", m.offset));
                }
            }
        }
        Ok(())
    }

    /// What stays allocated by design once everything is dropped: the leaked mappings, their
    /// allocations, and the reservation if any leaked.
    pub fn leaked(&self) -> [i64; 3] {
        let leaked: Vec<&Mapped> = self.mapped.iter().filter(|m| m.mapping.is_none()).collect();
        let mut allocs: Vec<usize> = leaked.iter().map(|m| m.alloc).collect();
        allocs.sort_unstable();
        allocs.dedup();
        [
            allocs.len() as i64,
            leaked.len() as i64,
            i64::from(!leaked.is_empty()),
        ]
    }
}

/// On the real driver, new memory holds whatever it held before: zeroes it, through a
/// scratch mapping, so the model's zeros hold. The simulator zeroes new allocations.
fn zero(a: &Allocation) -> Result<(), String> {
    if a.device().cuda().backend() != cuda_vmm::Backend::RealDriver {
        return Ok(());
    }
    let d = a.device();
    let scratch = Reservation::new(d, a.size(), Default::default()).map_err(|e| e.to_string())?;
    let m = scratch.map(0, a, 0, a.size()).map_err(|e| e.to_string())?;
    scratch
        .set_access(0, a.size(), &[(d, AccessFlags::ReadWrite)])
        .and_then(|()| scratch.fill(0, a.size(), 0))
        .and_then(|()| m.unmap())
        .map_err(|e| e.to_string())
}

/// Runs `steps` on a fresh reservation, then checks that only what failed unmaps leaked
/// stays allocated.
pub fn run(steps: &[Step<SafeOp>]) -> Result<Tally, String> {
    let mut tally = Tally {
        sequences: 1,
        ..Tally::default()
    };
    let mut ledger = Ledger::new();
    let leaked = {
        let mut m = SafeModel::new()?;
        for step in steps {
            m.apply(step, &mut ledger, &mut tally)?;
        }
        m.leaked()
    };
    super::check_live(&ledger, leaked, "after the sequence")?;
    Ok(tally)
}
