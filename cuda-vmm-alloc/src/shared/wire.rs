//! The shared-buffer protocol's messages: encoding, one-`sendmsg` sending, and receiving
//! with every field checked before anything is allocated or imported (see the parent
//! module's docs for the format).

use std::io::{IoSlice, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use cuda_vmm::sys::{CUmemLocation, CUmemLocationType};
use cuda_vmm::{AllocationProps, HandleTypes, Location};
use rustix::io::Errno;
use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
};

use crate::error::{Error, Result};

pub(super) const HELLO_MAGIC: [u8; 8] = *b"CUVMMBUF";
pub(super) const UPDATE_MAGIC: [u8; 8] = *b"CUVMMUPD";
pub(super) const VERSION: u32 = 2;
/// Hello bytes: magic, version, element size, reserved bytes, buffer id.
pub(super) const HELLO: usize = 32;
/// Update header bytes: magic, buffer id, generation, length, committed, count, reserved.
pub(super) const UPDATE: usize = 48;
/// Chunk record bytes: offset, size, location type and id, handle types, compression,
/// RDMA, usage, reserved.
pub(super) const RECORD: usize = 40;

/// Most chunks one update carries: its descriptors travel in one `SCM_RIGHTS` message,
/// and Linux passes at most 253 descriptors in one.
pub const MAX_CHUNKS_PER_UPDATE: usize = 250;

pub(super) fn protocol(message: String) -> Error {
    Error::InvalidConfig {
        message: format!("shared buffer: {message}"),
    }
}

pub(super) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(src) = bytes.get(at..at + 8) {
        b.copy_from_slice(src);
    }
    u64::from_le_bytes(b)
}

pub(super) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(src) = bytes.get(at..at + 4) {
        b.copy_from_slice(src);
    }
    u32::from_le_bytes(b)
}

pub(super) fn usize_of(value: u64, what: &str) -> Result<usize> {
    usize::try_from(value).map_err(|_| protocol(format!("{what} {value} does not fit usize")))
}

/// An update's fixed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Header {
    pub(super) buffer_id: u64,
    /// 1 for the first update, one more for each next one.
    pub(super) generation: u64,
    pub(super) len_bytes: u64,
    pub(super) committed: u64,
    pub(super) count: u32,
}

/// One chunk of an update: where the consumer maps it and how to import it.
#[derive(Clone, Debug)]
pub(super) struct Record {
    pub(super) offset: u64,
    pub(super) size: u64,
    pub(super) props: AllocationProps,
}

/// The whole update, header then records, as one byte string.
pub(super) fn encode_update(header: &Header, records: &[Record]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(UPDATE + records.len() * RECORD);
    bytes.extend_from_slice(&UPDATE_MAGIC);
    for word in [
        header.buffer_id,
        header.generation,
        header.len_bytes,
        header.committed,
    ] {
        bytes.extend_from_slice(&word.to_le_bytes());
    }
    bytes.extend_from_slice(&header.count.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    for r in records {
        let location = r.props.location().to_raw();
        bytes.extend_from_slice(&r.offset.to_le_bytes());
        bytes.extend_from_slice(&r.size.to_le_bytes());
        bytes.extend_from_slice(&location.type_.0.to_le_bytes());
        bytes.extend_from_slice(&location.id.to_le_bytes());
        bytes.extend_from_slice(&r.props.requested_handle_types().bits().to_le_bytes());
        bytes.push(u8::from(r.props.is_compressed()));
        bytes.push(u8::from(r.props.is_rdma_capable()));
        bytes.extend_from_slice(&r.props.usage_flags().to_le_bytes());
        bytes.extend_from_slice(&0u64.to_le_bytes());
    }
    bytes
}

/// Decodes and checks an update header (not yet against the consumer's state).
pub(super) fn decode_header(h: &[u8; UPDATE]) -> Result<Header> {
    if h[..8] != UPDATE_MAGIC {
        return Err(protocol(format!("bad update magic {:02x?}", &h[..8])));
    }
    let header = Header {
        buffer_id: u64_at(h, 8),
        generation: u64_at(h, 16),
        len_bytes: u64_at(h, 24),
        committed: u64_at(h, 32),
        count: u32_at(h, 40),
    };
    let reserved = u32_at(h, 44);
    if reserved != 0 {
        return Err(protocol(format!(
            "update header's reserved word is {reserved:#x}, not 0"
        )));
    }
    if header.count as usize > MAX_CHUNKS_PER_UPDATE {
        return Err(protocol(format!(
            "an update announces {} chunks; at most {MAX_CHUNKS_PER_UPDATE} are allowed",
            header.count
        )));
    }
    Ok(header)
}

/// Decodes and checks record `index`'s own fields.
pub(super) fn decode_record(r: &[u8], index: usize) -> Result<Record> {
    let bad = |what: String| protocol(format!("chunk {index} of the update: {what}"));
    let (offset, size) = (u64_at(r, 0), u64_at(r, 8));
    if size == 0 {
        return Err(bad("size 0".into()));
    }
    let location = Location::from_raw(CUmemLocation {
        type_: CUmemLocationType(u32_at(r, 16)),
        id: u32_at(r, 20) as i32,
    })
    .map_err(|e| bad(e.to_string()))?;
    if !matches!(location, Location::Device(_)) {
        return Err(bad(format!("location {location:?} is not device memory")));
    }
    let handle_types = u32_at(r, 24);
    if handle_types & !HandleTypes::ALL.bits() != 0
        || !HandleTypes::from_bits_retain(handle_types).contains(HandleTypes::POSIX_FD)
    {
        return Err(bad(format!(
            "handle types {handle_types:#x} are not known ones including POSIX_FD"
        )));
    }
    let (compression, rdma) = (r.get(28).copied(), r.get(29).copied());
    let usage = u16::from_le_bytes([
        r.get(30).copied().unwrap_or(0),
        r.get(31).copied().unwrap_or(0),
    ]);
    let (Some(compression @ 0..=1), Some(rdma @ 0..=1), 0) = (compression, rdma, u64_at(r, 32))
    else {
        return Err(bad(format!(
            "compression {compression:?}, RDMA {rdma:?} or the reserved word are not 0/1/0"
        )));
    };
    let props = AllocationProps::new(location)
        .handle_types(HandleTypes::from_bits_retain(handle_types))
        .compression(compression == 1)
        .rdma_capable(rdma == 1)
        .usage(usage);
    Ok(Record {
        offset,
        size,
        props,
    })
}

/// How a send failed.
pub(super) enum SendError {
    /// Nothing reached the socket: the stream is as before.
    NothingSent(Error),
    /// Part of the message was written: the stream is out of step.
    Partial(Error),
}

/// Sends `bytes` with `fds` attached to its first byte in ONE `sendmsg`. A blocking stream
/// socket takes the whole message unless a signal or error cuts it short; the rest is then
/// written in a loop, and a failure there is [`SendError::Partial`].
pub(super) fn send_message(
    stream: &UnixStream,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> std::result::Result<(), SendError> {
    let mut space =
        [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_CHUNKS_PER_UPDATE))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if fds.len() > MAX_CHUNKS_PER_UPDATE
        || (!fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)))
    {
        return Err(SendError::NothingSent(protocol(format!(
            "{} descriptors do not fit one update's control message",
            fds.len()
        ))));
    }
    let sent = loop {
        match sendmsg(
            stream,
            &[IoSlice::new(bytes)],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Ok(n) => break n,
            Err(Errno::INTR) => continue,
            Err(e) => {
                return Err(SendError::NothingSent(protocol(format!(
                    "sending an update failed: {}",
                    std::io::Error::from(e)
                ))))
            }
        }
    };
    let mut writer = stream;
    writer
        .write_all(&bytes[sent.min(bytes.len())..])
        .map_err(|e| {
            SendError::Partial(protocol(format!(
                "sending an update failed after {sent} of its {} bytes: {e}",
                bytes.len()
            )))
        })
}

/// What [`recv_exact`] found.
pub(super) enum Received {
    /// `buf` is full.
    Full,
    /// The peer closed the stream before the first byte.
    Closed,
}

/// Fills `buf` from `stream`, keeping every descriptor that arrives in `fds` (at most
/// [`MAX_CHUNKS_PER_UPDATE`] in all).
pub(super) fn recv_exact(
    stream: &UnixStream,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    what: &str,
) -> Result<Received> {
    let mut got = 0;
    while got < buf.len() {
        let mut space =
            [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_CHUNKS_PER_UPDATE))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let received = match recvmsg(
            stream,
            &mut [IoSliceMut::new(&mut buf[got..])],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(r) => r,
            Err(Errno::INTR) => continue,
            Err(e) => {
                return Err(protocol(format!(
                    "receiving the {what} failed: {}",
                    std::io::Error::from(e)
                )))
            }
        };
        // Own every descriptor first, so that all are closed on any error below.
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = message {
                fds.extend(received);
            }
        }
        if received.flags.contains(ReturnFlags::CTRUNC) || fds.len() > MAX_CHUNKS_PER_UPDATE {
            return Err(protocol(format!(
                "the {what} came with more descriptors than an update may carry \
                 ({MAX_CHUNKS_PER_UPDATE})"
            )));
        }
        if received.bytes == 0 {
            if got == 0 && fds.is_empty() {
                return Ok(Received::Closed);
            }
            return Err(protocol(format!(
                "the producer closed the stream after {got} of the {} bytes of the {what}",
                buf.len()
            )));
        }
        got += received.bytes;
    }
    Ok(Received::Full)
}
