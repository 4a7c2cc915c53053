//! A [`GrowableBuffer`] shared with a consumer process: the producer sends new chunks as it
//! grows, the consumer maps them at its own reservation as they arrive.
//!
//! # Protocol
//!
//! Over one connected, blocking [`UnixStream`] (little-endian numbers):
//!
//! 1. **Hello**, once, producer to consumer ([`SharedBufferProducer::new`]): magic
//!    `b"CUVMMBUF"`, version `u32` (1), element size `u32`, reserved bytes `u64` (the
//!    buffer's maximum capacity in bytes). The consumer ([`SharedBufferConsumer::connect`])
//!    checks the element size against its `T` and reserves as many bytes.
//! 2. **Updates**, any number ([`SharedBufferProducer::publish`] /
//!    [`SharedBufferConsumer::receive`]): magic `b"CUVMMUPD"`, the published length in bytes
//!    `u64`, the committed bytes `u64`; then one [`send_allocations`] message with the chunks
//!    committed since the previous update, in address order (possibly none). The consumer
//!    maps them back to back after its previous chunks, so its layout is the producer's,
//!    and grants its own device read access over them with one `cuMemSetAccess`.
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
//! Published bytes are a snapshot: the protocol only appends. Bytes the producer rewrites
//! after publishing them, and a shrink or truncation, are not ordered against the
//! consumer's reads; `publish` refuses to continue once the buffer shrank below what was
//! published.
//!
//! # Requirements
//!
//! The buffer must not use a [`ChunkPool`](crate::ChunkPool) (pooled chunks outlive the
//! buffer and are reused) and its properties must request
//! [`HandleTypes::POSIX_FD`](cuda_vmm::HandleTypes::POSIX_FD) so that chunks can be exported.

use std::io::{Read, Write};
use std::marker::PhantomData;
use std::ops::Range;
use std::os::unix::net::UnixStream;

use cuda_vmm::{
    receive_allocations, send_exported, AccessFlags, Allocation, Device, ExportedAllocation,
    HandleTypes, Mapping, Reservation, ReserveOptions,
};

use crate::error::{Error, Result};
use crate::growable::{element_size, GrowableBuffer};
use crate::pod::{as_bytes_mut, zeroed, DevicePod};

const HELLO_MAGIC: [u8; 8] = *b"CUVMMBUF";
const UPDATE_MAGIC: [u8; 8] = *b"CUVMMUPD";
const VERSION: u32 = 1;
const HELLO: usize = 24;
const UPDATE: usize = 24;

fn protocol(message: String) -> Error {
    Error::InvalidConfig {
        message: format!("shared buffer: {message}"),
    }
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

fn usize_of(value: u64, what: &str) -> Result<usize> {
    usize::try_from(value).map_err(|_| protocol(format!("{what} {value} does not fit usize")))
}

/// The producer side: sends a [`GrowableBuffer`]'s chunks to a consumer as it grows.
#[derive(Debug)]
pub struct SharedBufferProducer {
    stream: UnixStream,
    /// The buffer's [`GrowableBuffer::id`], to refuse publishing another buffer.
    buffer_id: u64,
    /// The buffer's [`GrowableBuffer::generation`] at the last publish: a change means
    /// chunks were unmapped, which the protocol cannot express.
    generation: u64,
    /// Committed bytes already sent.
    published: usize,
    /// Set when a send failed part-way: the stream is out of step.
    broken: bool,
}

impl SharedBufferProducer {
    /// Starts sharing `buffer` over `stream`: checks it can be shared and sends the hello.
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
        let mut hello = Vec::with_capacity(HELLO);
        hello.extend_from_slice(&HELLO_MAGIC);
        hello.extend_from_slice(&VERSION.to_le_bytes());
        hello.extend_from_slice(&element.to_le_bytes());
        hello.extend_from_slice(&(buffer.reserved_bytes() as u64).to_le_bytes());
        (&stream)
            .write_all(&hello)
            .map_err(|e| protocol(format!("sending the hello failed: {e}")))?;
        Ok(SharedBufferProducer {
            stream,
            buffer_id: buffer.id(),
            generation: buffer.generation(),
            published: 0,
            broken: false,
        })
    }

    /// Committed bytes sent to the consumer so far.
    pub fn published_bytes(&self) -> usize {
        self.published
    }

    /// Waits for the buffer's device work (see the module docs on ordering), then sends its
    /// length and the chunks committed since the last call. Returns how many chunks it sent.
    pub fn publish<T: DevicePod>(&mut self, buffer: &GrowableBuffer<T>) -> Result<usize> {
        if self.broken {
            return Err(protocol(
                "an earlier update failed part-way: the stream is out of step".into(),
            ));
        }
        if buffer.id() != self.buffer_id {
            return Err(protocol(format!(
                "publishing buffer #{} ({:#x}), but this producer shares buffer #{}",
                buffer.id(),
                buffer.ptr(),
                self.buffer_id
            )));
        }
        let committed = buffer.committed_bytes();
        if buffer.generation() != self.generation || committed < self.published {
            return Err(protocol(format!(
                "the buffer shrank below what was published ({} bytes published, {committed} \
                 committed now, chunks unmapped since the last publish): a shared buffer only \
                 grows",
                self.published
            )));
        }
        let new: Vec<(usize, &Allocation)> = buffer
            .chunk_allocations()
            .filter(|(offset, a)| offset + a.size() > self.published)
            .collect();
        if let Some((offset, _)) = new.first().filter(|(o, _)| *o != self.published) {
            return Err(protocol(format!(
                "the buffer shrank: its chunk at offset {offset} cuts the {} bytes already \
                 published; a shared buffer only grows",
                self.published
            )));
        }
        buffer.synchronize()?;
        // Every chunk becomes a descriptor before any byte is written: a failed export
        // leaves the stream and this producer as they were.
        let exported = new
            .iter()
            .map(|(_, a)| ExportedAllocation::new(a))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let len_bytes = buffer.len() * size_of::<T>();
        let mut update = Vec::with_capacity(UPDATE);
        update.extend_from_slice(&UPDATE_MAGIC);
        update.extend_from_slice(&(len_bytes as u64).to_le_bytes());
        update.extend_from_slice(&(committed as u64).to_le_bytes());
        self.broken = true;
        (&self.stream)
            .write_all(&update)
            .map_err(|e| protocol(format!("sending an update failed: {e}")))?;
        send_exported(&self.stream, &exported)?;
        self.broken = false;
        self.published = committed;
        Ok(exported.len())
    }
}

/// The consumer side: maps the chunks a [`SharedBufferProducer`] sends at its own
/// reservation, readable by its device.
pub struct SharedBufferConsumer<T: DevicePod> {
    stream: UnixStream,
    device: Device,
    mappings: Vec<Mapping>,
    reservation: Reservation,
    committed: usize,
    len_bytes: usize,
    _elements: PhantomData<T>,
}

impl<T: DevicePod> SharedBufferConsumer<T> {
    /// Receives the hello from `stream` and reserves the buffer's maximum size on `device`.
    pub fn connect(device: &Device, stream: UnixStream) -> Result<SharedBufferConsumer<T>> {
        let mut hello = [0u8; HELLO];
        (&stream)
            .read_exact(&mut hello)
            .map_err(|e| protocol(format!("receiving the hello failed: {e}")))?;
        if hello[..8] != HELLO_MAGIC {
            return Err(protocol(format!("bad hello magic {:02x?}", &hello[..8])));
        }
        let version = u32::from_le_bytes([hello[8], hello[9], hello[10], hello[11]]);
        let element = u32::from_le_bytes([hello[12], hello[13], hello[14], hello[15]]);
        if version != VERSION {
            return Err(protocol(format!(
                "producer speaks version {version}, this consumer version {VERSION}"
            )));
        }
        if element as usize != element_size::<T>()? {
            return Err(protocol(format!(
                "the producer's elements are {element} bytes, this consumer's {} bytes",
                size_of::<T>()
            )));
        }
        let reserved = usize_of(u64_at(&hello, 16), "reserved size")?;
        if reserved == 0 {
            return Err(protocol("reserved size 0".into()));
        }
        let reservation = Reservation::new(device, reserved, ReserveOptions::default())?;
        Ok(SharedBufferConsumer {
            stream,
            device: device.clone(),
            mappings: Vec::new(),
            reservation,
            committed: 0,
            len_bytes: 0,
            _elements: PhantomData,
        })
    }

    /// Receives one update and maps its chunks. `Ok(false)` when the producer closed the
    /// stream between updates. On an error the chunks of that update are not kept; the
    /// stream may then be out of step, so drop the consumer.
    pub fn receive(&mut self) -> Result<bool> {
        let mut update = [0u8; UPDATE];
        let mut got = 0;
        while got < UPDATE {
            match (&self.stream).read(&mut update[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => {
                    return Err(protocol(format!(
                        "the producer closed the stream after {got} of {UPDATE} update bytes"
                    )))
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(protocol(format!("receiving an update failed: {e}"))),
            }
        }
        if update[..8] != UPDATE_MAGIC {
            return Err(protocol(format!("bad update magic {:02x?}", &update[..8])));
        }
        let len_bytes = usize_of(u64_at(&update, 8), "published length")?;
        let committed = usize_of(u64_at(&update, 16), "committed size")?;
        let allocations = receive_allocations(&self.stream, &self.device)?;
        if committed > self.reservation.size()
            || len_bytes > committed
            || len_bytes % size_of::<T>() != 0
        {
            return Err(protocol(format!(
                "update of length {len_bytes} bytes over {committed} committed bytes does not \
                 fit a {}-byte reservation of {}-byte elements",
                self.reservation.size(),
                size_of::<T>()
            )));
        }
        let grown: usize = allocations.iter().map(Allocation::size).sum();
        if Some(committed) != self.committed.checked_add(grown) {
            return Err(protocol(format!(
                "the update brings {grown} bytes of chunks after {} bytes, but announces {committed} committed bytes",
                self.committed
            )));
        }
        self.map_new(&allocations)?;
        self.committed = committed;
        self.len_bytes = len_bytes;
        Ok(true)
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
        if range.start > range.end || range.end > self.len() {
            return Err(Error::OutOfRange {
                what: "read",
                start: range.start,
                end: range.end,
                len: self.len(),
            });
        }
        if out.len() != range.len() {
            return Err(Error::LengthMismatch {
                expected: range.len(),
                actual: out.len(),
            });
        }
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
