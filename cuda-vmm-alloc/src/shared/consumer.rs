//! The consumer side of a shared buffer: maps the chunks a producer sends.

use std::marker::PhantomData;
use std::ops::Range;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use cuda_vmm::{
    AccessFlags, Allocation, Device, ExportedAllocation, Mapping, Reservation, ReserveOptions,
};

use super::wire::{
    broken, config, decode_header, decode_hello, decode_record, io, protocol, readable, recv_exact,
    usize_of, Header, Received, Record, HELLO, RECORD, UPDATE,
};
#[cfg(doc)]
use super::{SharedBufferProducer, MAX_CHUNKS_PER_UPDATE};
use crate::error::{check_len, check_range, Result};
use crate::growable::element_size;
use crate::pod::{as_bytes_mut, zeroed, DevicePod};

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
    /// Refuses a bad magic or version, a reserved size of 0, or a stream closed before the
    /// hello ([`Error::SharedProtocol`](crate::Error::SharedProtocol)), another element
    /// size ([`Error::InvalidConfig`](crate::Error::InvalidConfig): the two sides disagree
    /// on `T`); a failed receive is [`Error::SharedIo`](crate::Error::SharedIo). Blocks
    /// until the hello arrives.
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
            return Err(config(format!(
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
    /// update would start past what is mapped): every later call returns
    /// [`Error::SharedBroken`](crate::Error::SharedBroken) naming the first one.
    ///
    /// What the peer sent wrong is [`Error::SharedProtocol`](crate::Error::SharedProtocol);
    /// a failed socket is [`Error::SharedIo`](crate::Error::SharedIo); a failed import or
    /// map here is [`Error::Vmm`](crate::Error::Vmm).
    ///
    /// Blocks until an update (or the end of the stream) arrives; see
    /// [`try_receive`](Self::try_receive) and [`receive_timeout`](Self::receive_timeout)
    /// for forms that do not.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::os::unix::net::UnixStream;
    /// use cuda_vmm::{AllocationProps, Cuda, HandleTypes};
    /// use cuda_vmm_alloc::{BufferConfig, GrowableBuffer, SharedBufferConsumer, SharedBufferProducer};
    ///
    /// let cuda = Cuda::simulator()?;
    /// let device = cuda.device(0)?;
    /// // Shared chunks must be exportable as POSIX descriptors.
    /// let props = AllocationProps::device(&device).handle_types(HandleTypes::POSIX_FD);
    /// let config = BufferConfig { max_capacity: Some(1 << 20), props: Some(props), ..BufferConfig::default() };
    /// let mut buffer = GrowableBuffer::<u32>::new(&device, config)?;
    /// // In one process for the example; the other end normally goes to another process.
    /// let (tx, rx) = UnixStream::pair()?;
    /// let mut producer = SharedBufferProducer::new(&buffer, tx)?;
    /// let mut consumer = SharedBufferConsumer::<u32>::connect(&device, rx)?;
    /// buffer.extend_from_slice(&[1, 2, 3])?;
    /// assert_eq!(producer.publish(&buffer)?, 1); // one new chunk
    /// assert!(consumer.receive()?);
    /// assert_eq!(consumer.to_vec()?, [1, 2, 3]);
    /// drop(producer);
    /// assert!(!consumer.receive()?); // the producer closed the stream
    /// # Ok(()) }
    /// ```
    pub fn receive(&mut self) -> Result<bool> {
        if let Some(why) = &self.broken {
            return Err(broken(format!(
                "an earlier update failed ({why}): this consumer no longer follows the producer"
            )));
        }
        // Still set if receiving panics part-way.
        self.broken = Some("receiving it panicked".into());
        let got = self.receive_update();
        self.broken = got.as_ref().err().map(ToString::to_string);
        got
    }

    /// [`receive`](Self::receive) if an update (or the end of the stream) has begun to
    /// arrive, else `Ok(None)` at once, changing nothing. `Some(true)`: an update was
    /// mapped; `Some(false)`: the producer closed the stream.
    pub fn try_receive(&mut self) -> Result<Option<bool>> {
        self.receive_timeout(Duration::ZERO)
    }

    /// [`receive`](Self::receive) once an update (or the end of the stream) begins to
    /// arrive within `timeout`, else `Ok(None)`, changing nothing (no byte is read).
    /// `Some(true)`: an update was mapped; `Some(false)`: the producer closed the stream.
    /// Once its first byte is there, the call waits for the rest of the update (one
    /// message from [`SharedBufferProducer::publish`], which arrives whole).
    ///
    /// A nonzero `timeout` is set as the stream's read timeout while the call waits; reads
    /// block without a timeout afterwards.
    pub fn receive_timeout(&mut self, timeout: Duration) -> Result<Option<bool>> {
        if let Some(why) = &self.broken {
            return Err(broken(format!(
                "an earlier update failed ({why}): this consumer no longer follows the producer"
            )));
        }
        let ready = if timeout.is_zero() {
            readable(&self.stream, false)?
        } else {
            self.stream
                .set_read_timeout(Some(timeout))
                .map_err(|e| io("setting the stream's read timeout".into(), e))?;
            let ready = readable(&self.stream, true);
            self.stream
                .set_read_timeout(None)
                .map_err(|e| io("restoring blocking reads".into(), e))?;
            ready?
        };
        if !ready {
            return Ok(None);
        }
        self.receive().map(Some)
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

    /// The producer's [`GrowableBuffer::id`](crate::GrowableBuffer::id), from the hello.
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
