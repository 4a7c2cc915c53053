//! Mappings of allocations into reservations, and per-device access.
//!
//! A mapping is recorded as one or more [`Piece`]s (split where
//! `cuMemSetAccess` gives parts different access). The page protection of a
//! piece is the union of the access of all devices.

use std::os::fd::AsFd;

use cuda_vmm_sys::{CUmemAccessDesc, CUmemAccess_flags as F, CUmemLocation, CUmemLocationType};

use crate::model::answers;
use crate::model::state::{DriverResult, Home, Piece, Sim};
use crate::os::{self, Prot};

/// Whom an access descriptor (or `cuMemGetAccess`) names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Accessor {
    /// A device of this driver.
    Device(usize),
    /// The host CPU (a `HOST` or `HOST_NUMA` location; the id is ignored).
    Host,
}

/// Access rights, as `cuMemGetAccess` reports them.
fn flags_of(piece: &Piece, who: Accessor) -> F {
    let (read, write) = match who {
        Accessor::Device(device) => {
            let bit = 1u64 << device;
            (piece.read & bit != 0, piece.write & bit != 0)
        }
        Accessor::Host => piece.host,
    };
    if write {
        F::CU_MEM_ACCESS_FLAGS_PROT_READWRITE
    } else if read {
        F::CU_MEM_ACCESS_FLAGS_PROT_READ
    } else {
        F::CU_MEM_ACCESS_FLAGS_PROT_NONE
    }
}

/// Page protection: the union over devices and the host.
fn prot_of(piece: &Piece) -> Prot {
    if piece.write != 0 || piece.host.1 {
        Prot::ReadWrite
    } else if piece.read != 0 || piece.host.0 {
        Prot::Read
    } else {
        Prot::None
    }
}

impl Sim {
    /// `cuMemMap`: a whole allocation, starting in a reservation (it may run
    /// past the reservation's end; that overhang is claimed and freed at unmap).
    pub fn map(
        &mut self,
        ptr: u64,
        size: u64,
        offset: u64,
        handle: u64,
        flags: u64,
    ) -> DriverResult<()> {
        self.check_flags_size(
            flags,
            size,
            answers::MAP_ZERO_SIZE,
            ptr,
            answers::MAP_MISALIGNED,
        )?;
        let memory = self.live(handle)?.memory.clone();
        if offset != 0 || size != memory.size {
            return Err(answers::MAP_PARTIAL_ALLOCATION);
        }
        let end = ptr
            .checked_add(size)
            .ok_or(answers::MAP_UNRESERVED_ADDRESS)?;
        if self.reservation_at(ptr).is_none() {
            return Err(answers::MAP_UNRESERVED_ADDRESS);
        }
        let (overhang, touched) = self.unreserved_parts(ptr, end);
        match (
            answers::MAP_PAST_RESERVATION_END,
            answers::MAP_ACROSS_RESERVATIONS,
        ) {
            (Some(code), _) if !overhang.is_empty() => return Err(code),
            (_, Some(code)) if touched > 1 => return Err(code),
            _ => {}
        }
        if self.mapped_within(ptr, end) {
            return Err(answers::MAP_OVER_MAPPED);
        }
        self.claim_overhang(&overhang)?;
        // SAFETY: `[ptr, end)` lies in this simulator's reservations or in
        // overhang it just claimed, and holds no mapping (checked above), so
        // only inaccessible pages it owns are replaced.
        if unsafe { os::map_shared(ptr, size, memory.fd.as_fd(), 0, Prot::None) }.is_err() {
            self.release_overhang(ptr, end);
            return Err(answers::OS_FAILURE);
        }
        self.pieces.insert(
            ptr,
            Piece {
                len: size,
                map_start: ptr,
                map_len: size,
                handle,
                offset,
                read: 0,
                write: 0,
                host: (false, false),
            },
        );
        self.live(handle)?.pieces += 1;
        Ok(())
    }

    /// Claims every `(start, len)` of `parts`, or none of them.
    fn claim_overhang(&mut self, parts: &[(u64, u64)]) -> DriverResult<()> {
        for (i, &(start, len)) in parts.iter().enumerate() {
            if os::claim(start, len).is_err() {
                for &(s, l) in &parts[..i] {
                    // SAFETY: claimed just above and recorded nowhere else.
                    let _ = unsafe { os::release(s, l) };
                }
                return Err(answers::MAP_OVERHANG_OCCUPIED);
            }
        }
        self.overhangs.extend(parts.iter().copied());
        Ok(())
    }

    /// Returns the overhang inside `[start, end)` to the operating system.
    fn release_overhang(&mut self, start: u64, end: u64) {
        let parts: Vec<(u64, u64)> = self
            .overhangs
            .range(start..end)
            .map(|(s, l)| (*s, *l))
            .collect();
        for (s, l) in parts {
            // SAFETY: the overhang was claimed by a mapping of this simulator
            // that is being removed; nothing else refers to it.
            let _ = unsafe { os::release(s, l) };
            self.overhangs.remove(&s);
        }
    }

    /// Where `cuMemSetAccess` over `[ptr, end)` applies: the first and last
    /// byte must be mapped, the range must not cut a mapping, and the access
    /// reaches from `ptr` to the first hole (see [`answers::SET_ACCESS_STOPS_AT_HOLE`]).
    fn access_run(&self, ptr: u64, end: u64) -> DriverResult<u64> {
        let (_, first) = self.piece_at(ptr).ok_or(answers::SET_ACCESS_NOT_MAPPED)?;
        let (_, last) = self
            .piece_at(end - 1)
            .ok_or(answers::SET_ACCESS_NOT_MAPPED)?;
        if first.map_start != ptr || last.map_start + last.map_len != end {
            return Err(answers::SET_ACCESS_PARTIAL_MAPPING);
        }
        let mut cursor = ptr;
        for (start, piece) in self.pieces.range(ptr..end) {
            if *start != cursor {
                if answers::SET_ACCESS_STOPS_AT_HOLE {
                    return Ok(cursor);
                }
                return Err(answers::SET_ACCESS_NOT_MAPPED);
            }
            cursor = start + piece.len;
        }
        Ok(cursor.min(end))
    }

    /// `cuMemUnmap`: every mapping in the range, each whole; unmapped
    /// reserved bytes in between are fine.
    pub fn unmap(&mut self, ptr: u64, size: u64) -> DriverResult<()> {
        if size == 0 || !self.aligned(ptr) || !self.aligned(size) {
            return Err(answers::UNMAP_MISALIGNED);
        }
        let end = ptr.checked_add(size).ok_or(answers::UNMAP_UNRESERVED)?;
        let mut starts: Vec<u64> = self.piece_at(ptr).map(|(s, _)| s).into_iter().collect();
        starts.extend(self.pieces.range(ptr..end).map(|(s, _)| *s));
        starts.dedup();
        let mut holes = Vec::new();
        let mut cursor = ptr;
        for s in &starts {
            let p = &self.pieces[s];
            if p.map_start < ptr || p.map_start + p.map_len > end {
                return Err(answers::UNMAP_PARTIAL_MAPPING);
            }
            if *s > cursor {
                holes.push((cursor, *s));
            }
            cursor = s + p.len;
        }
        if cursor < end {
            holes.push((cursor, end));
        }
        if !holes.is_empty() {
            if let Some(code) = answers::UNMAP_NOT_MAPPED {
                return Err(code);
            }
        }
        if holes
            .iter()
            .any(|(a, b)| !self.unreserved_parts(*a, *b).0.is_empty())
        {
            return Err(answers::UNMAP_UNRESERVED);
        }
        // The driver neither waits nor fails: work still pending on the range
        // poisons its context instead.
        self.poison_pending_in(ptr, end, answers::UNMAP_WITH_PENDING_WORK);
        for start in starts {
            let Some(piece) = self.pieces.remove(&start) else {
                continue;
            };
            // SAFETY: the piece is a whole mapping of this simulator (checked
            // above) in its own reservation or overhang; it goes back to
            // inaccessible reserved pages.
            let _ = unsafe { os::unmap_to_reserved(start, piece.len) };
            if let Some(a) = self.allocations.get_mut(&piece.handle) {
                a.pieces -= 1;
            }
            self.drop_if_unused(piece.handle);
        }
        self.release_overhang(ptr, end);
        Ok(())
    }

    /// Checks an access descriptor's location: one of this driver's devices, or the host
    /// (a `HOST` or `HOST_NUMA` location, whatever its id: on an H200 both grant the host
    /// access).
    pub fn check_access_location(&self, location: &CUmemLocation) -> DriverResult<Accessor> {
        match location.type_ {
            CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE => self
                .device(location.id.into())
                .map(Accessor::Device)
                .ok_or(answers::ACCESS_BAD_LOCATION),
            CUmemLocationType::CU_MEM_LOCATION_TYPE_HOST
            | CUmemLocationType::CU_MEM_LOCATION_TYPE_HOST_NUMA => Ok(Accessor::Host),
            _ => Err(answers::ACCESS_BAD_LOCATION),
        }
    }

    /// Whether every mapping in `[ptr, end)` maps host memory (created at `HOST` or
    /// `HOST_NUMA`).
    fn all_host_memory(&self, ptr: u64, end: u64) -> bool {
        self.pieces.range(ptr..end).all(|(_, p)| {
            self.allocations
                .get(&p.handle)
                .is_some_and(|a| matches!(a.prop.home, Home::Host | Home::HostNuma(_)))
        })
    }

    /// Splits the piece containing `addr` so that a piece starts at `addr`.
    fn split_at(&mut self, addr: u64) {
        let Some((start, piece)) = self.piece_at(addr) else {
            return;
        };
        if start == addr {
            return;
        }
        let head = addr - start;
        let tail = Piece {
            len: piece.len - head,
            offset: piece.offset + head,
            ..piece
        };
        if let Some(p) = self.pieces.get_mut(&start) {
            p.len = head;
        }
        self.pieces.insert(addr, tail);
        if let Some(a) = self.allocations.get_mut(&piece.handle) {
            a.pieces += 1;
        }
    }

    /// Joins neighbouring pieces of one mapping with equal access in `[from, to]`.
    fn merge(&mut self, from: u64, to: u64) {
        let starts: Vec<u64> = self.pieces.range(from..=to).map(|(s, _)| *s).collect();
        let mut current: Option<u64> = None;
        for start in starts {
            let Some(&next) = self.pieces.get(&start) else {
                continue;
            };
            if let Some(cur) = current {
                let prev = self.pieces[&cur];
                let joins = cur + prev.len == start
                    && prev.map_start == next.map_start
                    && prev.handle == next.handle
                    && prev.offset + prev.len == next.offset
                    && prev.read == next.read
                    && prev.write == next.write
                    && prev.host == next.host;
                if joins {
                    self.pieces.remove(&start);
                    if let Some(p) = self.pieces.get_mut(&cur) {
                        p.len += next.len;
                    }
                    if let Some(a) = self.allocations.get_mut(&next.handle) {
                        a.pieces -= 1;
                    }
                    continue;
                }
            }
            current = Some(start);
        }
    }

    /// `cuMemSetAccess`: applies every descriptor to the whole mappings of the
    /// range, up to its first hole.
    pub fn set_access(
        &mut self,
        ptr: u64,
        size: u64,
        descs: &[CUmemAccessDesc],
    ) -> DriverResult<()> {
        if size == 0 || !self.aligned(ptr) || !self.aligned(size) {
            return Err(answers::SET_ACCESS_MISALIGNED);
        }
        if descs.is_empty() {
            return Err(answers::SET_ACCESS_EMPTY);
        }
        let mut changes = Vec::with_capacity(descs.len());
        for desc in descs {
            let who = self.check_access_location(&desc.location)?;
            let (read, write) = match desc.flags {
                F::CU_MEM_ACCESS_FLAGS_PROT_NONE => (false, false),
                F::CU_MEM_ACCESS_FLAGS_PROT_READ => (true, false),
                F::CU_MEM_ACCESS_FLAGS_PROT_READWRITE => (true, true),
                _ => return Err(answers::ACCESS_BAD_FLAGS),
            };
            changes.push((who, read, write));
        }
        let end = ptr
            .checked_add(size)
            .ok_or(answers::SET_ACCESS_NOT_MAPPED)?;
        let end = self.access_run(ptr, end)?;
        if changes.iter().any(|(who, ..)| *who == Accessor::Host) && !self.all_host_memory(ptr, end)
        {
            return Err(answers::ACCESS_HOST_ON_DEVICE_MEMORY);
        }
        self.split_at(ptr);
        self.split_at(end);
        let starts: Vec<u64> = self.pieces.range(ptr..end).map(|(s, _)| *s).collect();
        for start in starts {
            let Some(piece) = self.pieces.get_mut(&start) else {
                continue;
            };
            for (who, read, write) in &changes {
                let bit = match who {
                    Accessor::Device(device) => 1u64 << device,
                    Accessor::Host => {
                        piece.host = (*read, *write);
                        continue;
                    }
                };
                piece.read = if *read {
                    piece.read | bit
                } else {
                    piece.read & !bit
                };
                piece.write = if *write {
                    piece.write | bit
                } else {
                    piece.write & !bit
                };
            }
            let (len, prot) = (piece.len, prot_of(piece));
            // SAFETY: the piece is a mapping this simulator made in its own
            // reservation; only its protection changes.
            unsafe { os::protect(start, len, prot) }.map_err(|_| answers::OS_FAILURE)?;
        }
        let before = self
            .pieces
            .range(..ptr)
            .next_back()
            .map_or(ptr, |(s, _)| *s);
        self.merge(before, end);
        Ok(())
    }

    /// `cuMemGetAccess`: `Err` leaves the flags untouched; `Ok((flags, answer))`
    /// gives the flags to write and the call's answer (an unmapped address
    /// writes 0 and fails: [`answers::GET_ACCESS_NOT_MAPPED`]).
    pub fn get_access(
        &self,
        location: &CUmemLocation,
        ptr: u64,
    ) -> DriverResult<(F, DriverResult<()>)> {
        let who = self
            .check_access_location(location)
            .map_err(|_| answers::GET_ACCESS_BAD_LOCATION)?;
        Ok(match self.piece_at(ptr) {
            Some((_, piece)) => (flags_of(&piece, who), Ok(())),
            None => (
                F::CU_MEM_ACCESS_FLAGS_PROT_NONE,
                Err(answers::GET_ACCESS_NOT_MAPPED),
            ),
        })
    }

    /// `cuMemGetAddressRange_v2`: the classic allocation or `cuMemMap` range holding `ptr`.
    pub fn address_range(&self, ptr: u64) -> DriverResult<(u64, u64)> {
        if let Some((start, c)) = self.classic.range(..=ptr).next_back() {
            if ptr - start < c.size {
                return Ok((*start, c.size));
            }
        }
        self.piece_at(ptr)
            .map(|(_, p)| (p.map_start, p.map_len))
            .ok_or(answers::ADDRESS_RANGE_UNKNOWN)
    }
}
