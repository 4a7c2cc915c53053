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

mod consumer;
mod wire;

use std::io::Write;
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixStream;

use cuda_vmm::{Allocation, ExportedAllocation, HandleTypes};

use crate::error::Result;
use crate::growable::{element_size, GrowableBuffer};
use crate::pod::DevicePod;

pub use consumer::SharedBufferConsumer;
pub use wire::MAX_CHUNKS_PER_UPDATE;
use wire::{
    broken, config, encode_hello, encode_update, io, send_message, Header, Hello, Record, SendError,
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
    /// a pool or whose properties do not request [`HandleTypes::POSIX_FD`]; a failed send
    /// of the hello is [`Error::SharedIo`](crate::Error::SharedIo).
    pub fn new<T: DevicePod>(
        buffer: &GrowableBuffer<T>,
        stream: UnixStream,
    ) -> Result<SharedBufferProducer> {
        if buffer.uses_pool() {
            return Err(config(
                "the buffer takes chunks from a pool; a shared buffer must create its own".into(),
            ));
        }
        let types = buffer.props().requested_handle_types();
        if !types.contains(HandleTypes::POSIX_FD) {
            return Err(config(format!(
                "the buffer's properties request handle types {types:?}, without \
                 HandleTypes::POSIX_FD: its chunks cannot be exported"
            )));
        }
        let element = u32::try_from(element_size::<T>()?)
            .map_err(|_| config("the element size does not fit u32".into()))?;
        let hello = encode_hello(&Hello {
            element,
            reserved: buffer.reserved_bytes() as u64,
            buffer_id: buffer.id(),
        });
        (&stream)
            .write_all(&hello)
            .map_err(|e| io("sending the hello failed".into(), e))?;
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
    /// These return [`Error::InvalidConfig`](crate::Error::InvalidConfig) saying why (the
    /// last one [`Error::SharedBroken`](crate::Error::SharedBroken)), and change nothing
    /// (nothing is written, the published state is as before):
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
    /// nothing ([`Error::SharedIo`](crate::Error::SharedIo); `BrokenPipe` when the consumer
    /// is gone), changes nothing either: the next call sends the same chunks. Each update is
    /// one message; more than [`MAX_CHUNKS_PER_UPDATE`] new chunks go as several updates,
    /// each whole, exported one update at a time (so at most [`MAX_CHUNKS_PER_UPDATE`]
    /// exported descriptors are open at once, however many chunks are new), and an error
    /// on a later one (its export or its send) leaves the earlier ones published. A send
    /// cut short after its first byte (a signal, then an I/O error) marks the producer broken.
    pub fn publish<T: DevicePod>(&mut self, buffer: &GrowableBuffer<T>) -> Result<usize> {
        if self.broken {
            return Err(broken(
                "an earlier update failed part-way: the stream is out of step".into(),
            ));
        }
        if buffer.id() != self.buffer_id {
            return Err(config(format!(
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
                return Err(config(format!(
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
            .ok_or_else(|| config("the generation counter is exhausted".into()))?;
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
