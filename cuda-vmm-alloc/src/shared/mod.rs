//! A [`GrowableBuffer`] shared with a consumer process: the producer sends new chunks as it
//! grows, the consumer maps them at its own reservation as they arrive.
//!
//! # Protocol (version 2)
//!
//! Over one connected, blocking [`UnixStream`] (little-endian numbers):
//!
//! 1. **Hello**, once, producer to consumer ([`SharedBufferProducer::new`]), 32 bytes: magic
//!    `b"CUVMMBUF"`, version `u32` (2), element size `u32`, reserved bytes `u64` (the
//!    buffer's maximum capacity in bytes), buffer id `u64` ([`GrowableBuffer::id`]). The
//!    consumer ([`SharedBufferConsumer::connect`]) checks the element size against its `T`
//!    and reserves as many bytes.
//! 2. **Updates**, any number ([`SharedBufferProducer::publish`] /
//!    [`SharedBufferConsumer::receive`]). Each update is ONE `sendmsg`: a 48-byte header,
//!    one 40-byte record per new chunk, and the chunks' descriptors, in record order, as one
//!    `SCM_RIGHTS` control message on its first byte (at most [`MAX_CHUNKS_PER_UPDATE`]).
//!
//! | header field | bytes |
//! | --- | --- |
//! | magic `b"CUVMMUPD"` | 8 |
//! | buffer id (the hello's) | 8 |
//! | generation: 1 for the first update, one more for each next one | 8 |
//! | published length in bytes (a whole number of elements, at most committed) | 8 |
//! | committed bytes after this update | 8 |
//! | chunk records that follow | 4 |
//! | reserved (0) | 4 |
//!
//! | record field | bytes |
//! | --- | --- |
//! | offset in the buffer | 8 |
//! | size in bytes (nonzero) | 8 |
//! | location type (`CUmemLocationType`), location id | 4 + 4 |
//! | requested handle types (with `POSIX_FD`) | 4 |
//! | compression (0/1), RDMA capable (0/1) | 1 + 1 |
//! | usage flags | 2 |
//! | reserved (0) | 8 |
//!
//! The records are the chunks committed since the previous update, in address order, back
//! to back from the previous committed size up to the new one. The consumer checks every
//! field (id, generation, counts, offsets, sizes against its reservation, one descriptor per
//! record) before it imports or maps anything, then maps them at the same offsets, so its
//! layout is the producer's, and grants its own device read access over them with one
//! `cuMemSetAccess`. A refused update maps nothing.
//!
//! The producer closing the stream ends the protocol; the consumer's mappings stay valid
//! (each imported chunk keeps its memory alive) until the consumer drops them.
//!
//! # Ordering
//!
//! A consumer must not read bytes whose write is still in flight. The rule is: **every
//! write to the published length is complete before the update is sent**.
//! [`publish`](SharedBufferProducer::publish) enforces it for the writes the library knows:
//! the buffer's synchronous copies ([`GrowableBuffer::extend_from_slice`],
//! [`GrowableBuffer::write`], ...) are complete when they return, and `publish` first waits,
//! as [`GrowableBuffer::synchronize`] does, for the buffer's recorded uses (the `_async`
//! copies, and kernels recorded with [`GrowableBuffer::record_use`]) and, under the default
//! [`UnmapWait::Devices`](cuda_vmm::UnmapWait), for all work in the contexts that can reach
//! the memory. Work the buffer cannot see (a kernel launched in another context and not
//! recorded, under [`UnmapWait::RecordedUse`](cuda_vmm::UnmapWait) or `Caller`) must be
//! synchronised by the producer (stream or event) before it publishes.
//!
//! Published bytes are a snapshot: the protocol only appends chunks. Bytes the producer
//! rewrites after publishing them, and a truncation, are not ordered against the
//! consumer's reads. A published chunk must stay mapped: once a shrink released (or
//! replaced) one, `publish` refuses, since the consumer would keep mapping memory the
//! producer no longer has. Chunks never published may come and go freely.
//!
//! # Requirements
//!
//! The buffer must not use a [`ChunkPool`](crate::ChunkPool) (pooled chunks outlive the
//! buffer and are reused) and its properties must request
//! [`HandleTypes::POSIX_FD`](cuda_vmm::HandleTypes::POSIX_FD) so that chunks can be exported.

mod wire;

use std::io::Write;
use std::marker::PhantomData;
use std::ops::Range;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use cuda_vmm::{
    AccessFlags, Allocation, Device, ExportedAllocation, HandleTypes, Mapping, Reservation,
    ReserveOptions,
};

use crate::error::{check_len, check_range, Result};
use crate::growable::{element_size, GrowableBuffer};
use crate::pod::{as_bytes_mut, zeroed, DevicePod};

pub use wire::MAX_CHUNKS_PER_UPDATE;
use wire::{
    decode_header, decode_hello, decode_record, encode_hello, encode_update, protocol, recv_exact,
    send_message, usize_of, Header, Hello, Received, Record, SendError, HELLO, RECORD, UPDATE,
};

/// A chunk the consumer maps: its offset, size and the buffer's identity for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PublishedChunk {
    offset: usize,
    size: usize,
    serial: u64,
}

/// The producer side: sends a [`GrowableBuffer`]'s chunks to a consumer as it grows.
///
/// Its published state (the chunks sent, [`published_bytes`](Self::published_bytes),
/// [`generation`](Self::generation)) changes only when an update went out whole.
#[derive(Debug)]
pub struct SharedBufferProducer {
    stream: UnixStream,
    /// The buffer's [`GrowableBuffer::id`], to refuse publishing another buffer.
    buffer_id: u64,
    /// The chunks sent so far, in address order: each must stay mapped, unchanged.
    chunks: Vec<PublishedChunk>,
    /// Updates sent so far: the generation of the last one.
    generation: u64,
    /// Committed bytes already sent.
    published: usize,
    /// Set when a send failed part-way: the stream is out of step.
    broken: bool,
}

impl SharedBufferProducer {
    /// Starts sharing `buffer` over `stream`: checks it can be shared and sends the hello.
    ///
    /// Refuses (an [`Error::InvalidConfig`](crate::Error::InvalidConfig) saying why) a buffer that takes its chunks from
    /// a pool or whose properties do not request [`HandleTypes::POSIX_FD`].
    pub fn new<T: DevicePod>(
        buffer: &GrowableBuffer<T>,
        stream: UnixStream,
    ) -> Result<SharedBufferProducer> {
        if buffer.uses_pool() {
            return Err(protocol(
                "the buffer takes chunks from a pool; a shared buffer must create its own".into(),
            ));
        }
        let types = buffer.props().requested_handle_types();
        if !types.contains(HandleTypes::POSIX_FD) {
            return Err(protocol(format!(
                "the buffer's properties request handle types {types:?}, without \
                 HandleTypes::POSIX_FD: its chunks cannot be exported"
            )));
        }
        let element = u32::try_from(element_size::<T>()?)
            .map_err(|_| protocol("the element size does not fit u32".into()))?;
        let hello = encode_hello(&Hello {
            element,
            reserved: buffer.reserved_bytes() as u64,
            buffer_id: buffer.id(),
        });
        (&stream)
            .write_all(&hello)
            .map_err(|e| protocol(format!("sending the hello failed: {e}")))?;
        Ok(SharedBufferProducer {
            stream,
            buffer_id: buffer.id(),
            chunks: Vec::new(),
            generation: 0,
            published: 0,
            broken: false,
        })
    }

    /// Committed bytes sent to the consumer so far.
    pub fn published_bytes(&self) -> usize {
        self.published
    }

    /// Updates sent so far (the generation of the last one on the wire).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Waits for the buffer's device work (see the module docs on ordering), then sends its
    /// length and the chunks committed since the last call. Returns how many chunks it sent.
    ///
    /// # Refusals
    ///
    /// These return [`Error::InvalidConfig`](crate::Error::InvalidConfig) saying why, and change nothing (nothing is
    /// written, the published state is as before):
    ///
    /// - `buffer` is not the buffer this producer was made for (by [`GrowableBuffer::id`],
    ///   never by address, which a later buffer may reuse);
    /// - a chunk already published was released or replaced (a
    ///   [`shrink_to_fit`](GrowableBuffer::shrink_to_fit) below the published committed
    ///   size): the consumer still maps it, and the protocol only appends. Chunks never
    ///   published may have been released and regrown;
    /// - an earlier update failed part-way on the wire (the producer is then broken for good).
    ///
    /// # Other errors
    ///
    /// A failed wait or export (`cuMemExportToShareableHandle`), or a `sendmsg` that wrote
    /// nothing, changes nothing either: the next call sends the same chunks. Each update is
    /// one message; more than [`MAX_CHUNKS_PER_UPDATE`] new chunks go as several updates,
    /// each whole, exported one update at a time (so at most [`MAX_CHUNKS_PER_UPDATE`]
    /// exported descriptors are open at once, however many chunks are new), and an error
    /// on a later one (its export or its send) leaves the earlier ones published. A send
    /// cut short after its first byte (a signal, then an I/O error) marks the producer broken.
    pub fn publish<T: DevicePod>(&mut self, buffer: &GrowableBuffer<T>) -> Result<usize> {
        if self.broken {
            return Err(protocol(
                "an earlier update failed part-way: the stream is out of step".into(),
            ));
        }
        if buffer.id() != self.buffer_id {
            return Err(protocol(format!(
                "publishing buffer #{} ({:#x}), but this producer shares buffer #{}: a \
                 different buffer, even at the same address, is no continuation",
                buffer.id(),
                buffer.ptr(),
                self.buffer_id
            )));
        }
        let current: Vec<(usize, usize, u64, &Allocation)> = buffer.chunk_records().collect();
        for (i, p) in self.chunks.iter().enumerate() {
            let same = current
                .get(i)
                .is_some_and(|&(o, s, id, _)| (o, s, id) == (p.offset, p.size, p.serial));
            if !same {
                return Err(protocol(format!(
                    "the published chunk at offset {} ({} bytes) was released since it was \
                     published ({} bytes published, {} committed now): the consumer still \
                     maps it, and a shared buffer only grows past what it published",
                    p.offset,
                    p.size,
                    self.published,
                    buffer.committed_bytes()
                )));
            }
        }
        // Every published chunk is there (checked above): the rest are new.
        let new = current.get(self.chunks.len()..).unwrap_or_default();
        buffer.synchronize()?;
        let len = (buffer.len() * size_of::<T>(), size_of::<T>());
        if new.is_empty() {
            self.send_update(len, &[], &[])?;
            return Ok(0);
        }
        for part in new.chunks(MAX_CHUNKS_PER_UPDATE) {
            // Each chunk of an update becomes a descriptor before any byte of it is written
            // (a failed export leaves the stream as it was), and only one update's
            // descriptors are open at a time: exporting every new chunk first would need
            // as many free descriptors as chunks, and a producer past its descriptor limit
            // would fail every publish, for good.
            let exports = part
                .iter()
                .map(|(_, _, _, a)| ExportedAllocation::new(a))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            self.send_update(len, part, &exports)?;
        }
        Ok(new.len())
    }

    /// Sends one update bringing `part` (exported as `exports`) and publishing up to
    /// `len_bytes` (cut to the whole `element`s committed after it); the published state
    /// changes only once the whole message is written.
    fn send_update(
        &mut self,
        (len_bytes, element): (usize, usize),
        part: &[(usize, usize, u64, &Allocation)],
        exports: &[ExportedAllocation],
    ) -> Result<()> {
        let committed = part.last().map_or(self.published, |&(o, s, _, _)| o + s);
        let generation = self
            .generation
            .checked_add(1)
            .ok_or_else(|| protocol("the generation counter is exhausted".into()))?;
        let header = Header {
            buffer_id: self.buffer_id,
            generation,
            len_bytes: (len_bytes.min(committed) / element.max(1) * element.max(1)) as u64,
            committed: committed as u64,
            count: part.len() as u32,
        };
        let records: Vec<Record> = part
            .iter()
            .map(|&(offset, size, _, a)| Record {
                offset: offset as u64,
                size: size as u64,
                props: a.props().clone(),
            })
            .collect();
        let bytes = encode_update(&header, &records);
        let fds: Vec<BorrowedFd<'_>> = exports.iter().map(ExportedAllocation::fd).collect();
        match send_message(&self.stream, &bytes, &fds) {
            Ok(()) => {}
            Err(SendError::NothingSent(e)) => return Err(e),
            Err(SendError::Partial(e)) => {
                self.broken = true;
                return Err(e);
            }
        }
        self.chunks.extend(
            part.iter()
                .map(|&(offset, size, serial, _)| PublishedChunk {
                    offset,
                    size,
                    serial,
                }),
        );
        self.generation = generation;
        self.published = committed;
        Ok(())
    }
}

/// The consumer side: maps the chunks a [`SharedBufferProducer`] sends at its own
/// reservation, readable by its device.
pub struct SharedBufferConsumer<T: DevicePod> {
    stream: UnixStream,
    device: Device,
    mappings: Vec<Mapping>,
    reservation: Reservation,
    /// The producer's buffer, from the hello: every update must name it.
    buffer_id: u64,
    /// The generation of the last update mapped.
    generation: u64,
    committed: usize,
    len_bytes: usize,
    /// Set, to what went wrong, once an update was refused or failed: the stream may be out
    /// of step, or the update was read whole but not mapped here; either way the next
    /// update cannot follow what is mapped.
    broken: Option<String>,
    _elements: PhantomData<T>,
}

impl<T: DevicePod> SharedBufferConsumer<T> {
    /// Receives the hello from `stream` and reserves the buffer's maximum size on `device`.
    ///
    /// Refuses a bad magic or version, another element size, or a reserved size of 0.
    pub fn connect(device: &Device, stream: UnixStream) -> Result<SharedBufferConsumer<T>> {
        let mut hello = [0u8; HELLO];
        let mut fds = Vec::new();
        match recv_exact(&stream, &mut hello, &mut fds, "hello")? {
            Received::Full if fds.is_empty() => {}
            Received::Full => return Err(protocol("the hello came with descriptors".into())),
            Received::Closed => {
                return Err(protocol(
                    "the producer closed the stream before the hello".into(),
                ))
            }
        }
        let hello = decode_hello(&hello)?;
        let element = hello.element;
        if element as usize != element_size::<T>()? {
            return Err(protocol(format!(
                "the producer's elements are {element} bytes, this consumer's {} bytes",
                size_of::<T>()
            )));
        }
        let reserved = usize_of(hello.reserved, "reserved size")?;
        if reserved == 0 {
            return Err(protocol("reserved size 0".into()));
        }
        let reservation = Reservation::new(device, reserved, ReserveOptions::default())?;
        Ok(SharedBufferConsumer {
            stream,
            device: device.clone(),
            mappings: Vec::new(),
            reservation,
            buffer_id: hello.buffer_id,
            generation: 0,
            committed: 0,
            len_bytes: 0,
            broken: None,
            _elements: PhantomData,
        })
    }

    /// Receives one update and maps its chunks. `Ok(false)` when the producer closed the
    /// stream between updates.
    ///
    /// Every field is checked before anything is imported or mapped; a refused update (an
    /// error saying why: truncated, another buffer id, a generation that is not the next
    /// one, more chunks than [`MAX_CHUNKS_PER_UPDATE`] or than descriptors sent, offsets
    /// that overlap, leave a gap or pass the reservation, lengths that do not add up) maps
    /// nothing and leaves [`len`](Self::len) and the mappings as they were; so does an
    /// update read whole whose import, map or access grant failed here. Either way the
    /// consumer no longer follows the producer (the stream may be out of step, or the next
    /// update would start past what is mapped): every later call returns an error naming
    /// the first one.
    pub fn receive(&mut self) -> Result<bool> {
        if let Some(why) = &self.broken {
            return Err(protocol(format!(
                "an earlier update failed ({why}): this consumer no longer follows the producer"
            )));
        }
        // Still set if receiving panics part-way.
        self.broken = Some("receiving it panicked".into());
        let got = self.receive_update();
        self.broken = got.as_ref().err().map(ToString::to_string);
        got
    }

    fn receive_update(&mut self) -> Result<bool> {
        let mut fds: Vec<OwnedFd> = Vec::new();
        let mut raw = [0u8; UPDATE];
        if let Received::Closed = recv_exact(&self.stream, &mut raw, &mut fds, "update header")? {
            return Ok(false);
        }
        let header = decode_header(&raw)?;
        // `count` is at most MAX_CHUNKS_PER_UPDATE: this allocation is bounded.
        let count = header.count as usize;
        let mut records = vec![0u8; count * RECORD];
        if let Received::Closed = recv_exact(&self.stream, &mut records, &mut fds, "chunk records")?
        {
            return Err(protocol(format!(
                "the producer closed the stream before the {count} chunk records"
            )));
        }
        let records = records
            .chunks_exact(RECORD)
            .enumerate()
            .map(|(i, r)| decode_record(r, i))
            .collect::<Result<Vec<_>>>()?;
        let (len_bytes, committed) = self.check(&header, &records, fds.len())?;
        let allocations = records
            .iter()
            .zip(fds)
            .map(|(r, fd)| {
                ExportedAllocation::from_parts(fd, r.size as usize, r.props.clone())
                    .import(&self.device)
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        self.map_new(&allocations)?;
        self.generation = header.generation;
        self.committed = committed;
        self.len_bytes = len_bytes;
        Ok(true)
    }

    /// Checks an update against this consumer: returns its length and committed bytes.
    fn check(&self, h: &Header, records: &[Record], fds: usize) -> Result<(usize, usize)> {
        if h.buffer_id != self.buffer_id {
            return Err(protocol(format!(
                "an update for buffer #{} on a stream sharing buffer #{}",
                h.buffer_id, self.buffer_id
            )));
        }
        if Some(h.generation) != self.generation.checked_add(1) {
            let how = if h.generation <= self.generation {
                "goes backwards or repeats"
            } else {
                "skips updates"
            };
            return Err(protocol(format!(
                "update generation {} after generation {}: it {how}",
                h.generation, self.generation
            )));
        }
        if fds != records.len() {
            return Err(protocol(format!(
                "the update announces {} chunks but carried {fds} descriptors",
                records.len()
            )));
        }
        let len_bytes = usize_of(h.len_bytes, "published length")?;
        let committed = usize_of(h.committed, "committed size")?;
        let size = self.reservation.size();
        if committed > size || len_bytes > committed || len_bytes % size_of::<T>() != 0 {
            return Err(protocol(format!(
                "update of length {len_bytes} bytes over {committed} committed bytes does not \
                 fit a {size}-byte reservation of {}-byte elements",
                size_of::<T>()
            )));
        }
        let mut end = self.committed;
        for (i, r) in records.iter().enumerate() {
            let offset = usize_of(r.offset, "chunk offset")?;
            let chunk = usize_of(r.size, "chunk size")?;
            let chunk_end = offset
                .checked_add(chunk)
                .filter(|&e| e <= size)
                .ok_or_else(|| {
                    protocol(format!(
                        "chunk {i} at offset {offset} of {chunk} bytes passes the end of the \
                         {size}-byte reservation"
                    ))
                })?;
            if offset != end {
                let what = if offset < end {
                    "overlaps what is mapped"
                } else {
                    "leaves a gap after what is mapped"
                };
                return Err(protocol(format!(
                    "chunk {i} at offset {offset} {what} (up to {end})"
                )));
            }
            end = chunk_end;
        }
        if end != committed {
            return Err(protocol(format!(
                "the update's chunks end at {end} bytes, but it announces {committed} \
                 committed bytes"
            )));
        }
        Ok((len_bytes, committed))
    }

    /// Maps `allocations` back to back after the committed bytes and makes them readable,
    /// or maps none of them.
    fn map_new(&mut self, allocations: &[Allocation]) -> Result<()> {
        let mut new = Vec::with_capacity(allocations.len());
        let mut offset = self.committed;
        for a in allocations {
            // On an error, `new` drops and unmaps what this update mapped.
            new.push(self.reservation.map(offset, a, 0, a.size())?);
            offset += a.size();
        }
        if offset > self.committed {
            self.reservation.set_access(
                self.committed,
                offset - self.committed,
                &[(&self.device, AccessFlags::Read)],
            )?;
        }
        self.mappings.extend(new);
        Ok(())
    }

    /// Elements published by the producer.
    pub fn len(&self) -> usize {
        self.len_bytes / size_of::<T>()
    }

    /// Whether no elements are published.
    pub fn is_empty(&self) -> bool {
        self.len_bytes == 0
    }

    /// Bytes of the producer's chunks mapped here.
    pub fn committed_bytes(&self) -> usize {
        self.committed
    }

    /// The generation of the last update mapped (0 before the first).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The producer's [`GrowableBuffer::id`], from the hello.
    pub fn buffer_id(&self) -> u64 {
        self.buffer_id
    }

    /// The consumer's device address of element 0 (not the producer's).
    pub fn ptr(&self) -> u64 {
        self.reservation.ptr()
    }

    /// The consumer's reservation, e.g. to record kernels that read it.
    pub fn reservation(&self) -> &Reservation {
        &self.reservation
    }

    /// Copies published elements `range` to `out`.
    pub fn read(&self, range: Range<usize>, out: &mut [T]) -> Result<()> {
        check_range("read", &range, self.len())?;
        check_len(&range, out.len())?;
        self.reservation
            .read(range.start * size_of::<T>(), as_bytes_mut(out))?;
        Ok(())
    }

    /// Every published element, copied to the host.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        let mut out = vec![zeroed::<T>(); self.len()];
        self.read(0..self.len(), &mut out)?;
        Ok(out)
    }
}
