//! The shared-buffer protocol's messages: encoding, one-`sendmsg` sending, and receiving
//! with every field checked before anything is allocated or imported (see the parent
//! module's docs for the format).

use std::io::{IoSlice, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use cuda_vmm::AllocationProps;
use rustix::io::Errno;
use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
};
use zerocopy::little_endian::{I32, U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::error::{Error, Result};

pub(super) const HELLO_MAGIC: [u8; 8] = *b"CUVMMBUF";
pub(super) const UPDATE_MAGIC: [u8; 8] = *b"CUVMMUPD";
pub(super) const VERSION: u32 = 2;
/// Hello bytes: magic, version, element size, reserved bytes, buffer id.
pub(super) const HELLO: usize = size_of::<WireHello>();
/// Update header bytes: magic, buffer id, generation, length, committed, count, reserved.
pub(super) const UPDATE: usize = size_of::<WireUpdate>();
/// Chunk record bytes: offset, size, location type and id, handle types, compression,
/// RDMA, usage, reserved.
pub(super) const RECORD: usize = size_of::<WireRecord>();
const _: () = assert!(HELLO == 32 && UPDATE == 48 && RECORD == 40);

/// The hello as it is on the wire.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct WireHello {
    magic: [u8; 8],
    version: U32,
    element: U32,
    reserved: U64,
    buffer_id: U64,
}

/// An update's header as it is on the wire.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct WireUpdate {
    magic: [u8; 8],
    buffer_id: U64,
    generation: U64,
    len_bytes: U64,
    committed: U64,
    count: U32,
    reserved: U32,
}

/// A chunk record as it is on the wire.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct WireRecord {
    offset: U64,
    size: U64,
    location_type: U32,
    location_id: I32,
    handle_types: U32,
    compression: u8,
    rdma: u8,
    usage: U16,
    reserved: U64,
}

/// Most chunks one update carries: its descriptors travel in one `SCM_RIGHTS` message,
/// and Linux passes at most 253 descriptors in one.
pub const MAX_CHUNKS_PER_UPDATE: usize = 250;

/// [`Error::SharedProtocol`]: the peer sent something the protocol does not allow.
pub(super) fn protocol(message: String) -> Error {
    Error::SharedProtocol { message }
}

/// [`Error::InvalidConfig`] naming the shared buffer: this side's configuration or use is
/// unusable.
pub(super) fn config(message: String) -> Error {
    Error::InvalidConfig {
        message: format!("shared buffer: {message}"),
    }
}

/// [`Error::SharedIo`]: the socket failed while doing `message`.
pub(super) fn io(message: String, source: std::io::Error) -> Error {
    Error::SharedIo {
        message,
        source: source.into(),
    }
}

/// [`Error::SharedBroken`]: an earlier failure put this side out of step.
pub(super) fn broken(message: String) -> Error {
    Error::SharedBroken { message }
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

/// The hello's fields (the version is [`VERSION`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Hello {
    pub(super) element: u32,
    pub(super) reserved: u64,
    pub(super) buffer_id: u64,
}

/// The hello as one byte string.
pub(super) fn encode_hello(hello: &Hello) -> Vec<u8> {
    WireHello {
        magic: HELLO_MAGIC,
        version: U32::new(VERSION),
        element: U32::new(hello.element),
        reserved: U64::new(hello.reserved),
        buffer_id: U64::new(hello.buffer_id),
    }
    .as_bytes()
    .to_vec()
}

/// `bytes` read as a `W`, or the error `short(bytes.len())` when they are too few.
fn wire_prefix<W: FromBytes + KnownLayout + Immutable>(
    bytes: &[u8],
    short: impl FnOnce(usize) -> Error,
) -> Result<&W> {
    W::ref_from_prefix(bytes)
        .map(|(w, _)| w)
        .map_err(|_| short(bytes.len()))
}

/// A protocol error (`bad WHAT magic ...`) unless `found` is `expected`.
fn check_magic(found: &[u8; 8], expected: &[u8; 8], what: &str) -> Result<()> {
    if found != expected {
        return Err(protocol(format!("bad {what} magic {:02x?}", &found[..])));
    }
    Ok(())
}

/// Decodes and checks the hello's magic and version (the rest is the consumer's to check).
pub(super) fn decode_hello(h: &[u8; HELLO]) -> Result<Hello> {
    let h: &WireHello = wire_prefix(h, |n| {
        protocol(format!("a hello of {n} bytes is shorter than {HELLO}"))
    })?;
    check_magic(&h.magic, &HELLO_MAGIC, "hello")?;
    let version = h.version.get();
    if version != VERSION {
        return Err(protocol(format!(
            "producer speaks version {version}, this consumer version {VERSION}"
        )));
    }
    Ok(Hello {
        element: h.element.get(),
        reserved: h.reserved.get(),
        buffer_id: h.buffer_id.get(),
    })
}

/// The whole update, header then records, as one byte string.
pub(super) fn encode_update(header: &Header, records: &[Record]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(UPDATE + records.len() * RECORD);
    let wire = WireUpdate {
        magic: UPDATE_MAGIC,
        buffer_id: U64::new(header.buffer_id),
        generation: U64::new(header.generation),
        len_bytes: U64::new(header.len_bytes),
        committed: U64::new(header.committed),
        count: U32::new(header.count),
        reserved: U32::new(0),
    };
    bytes.extend_from_slice(wire.as_bytes());
    for r in records {
        let location = r.props.location().to_raw();
        let wire = WireRecord {
            offset: U64::new(r.offset),
            size: U64::new(r.size),
            location_type: U32::new(location.type_.0),
            location_id: I32::new(location.id),
            handle_types: U32::new(r.props.requested_handle_types().bits()),
            compression: u8::from(r.props.is_compressed()),
            rdma: u8::from(r.props.is_rdma_capable()),
            usage: U16::new(r.props.usage_flags()),
            reserved: U64::new(0),
        };
        bytes.extend_from_slice(wire.as_bytes());
    }
    bytes
}

/// Decodes and checks an update header (not yet against the consumer's state).
pub(super) fn decode_header(h: &[u8; UPDATE]) -> Result<Header> {
    let h: &WireUpdate = wire_prefix(h, |n| {
        protocol(format!(
            "an update header of {n} bytes is shorter than {UPDATE}"
        ))
    })?;
    check_magic(&h.magic, &UPDATE_MAGIC, "update")?;
    let header = Header {
        buffer_id: h.buffer_id.get(),
        generation: h.generation.get(),
        len_bytes: h.len_bytes.get(),
        committed: h.committed.get(),
        count: h.count.get(),
    };
    let reserved = h.reserved.get();
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
    let r: &WireRecord = wire_prefix(r, |n| {
        bad(format!("{n} bytes are shorter than a record ({RECORD})"))
    })?;
    let (offset, size) = (r.offset.get(), r.size.get());
    if size == 0 {
        return Err(bad("size 0".into()));
    }
    let (compression, rdma) = (r.compression, r.rdma);
    let props = AllocationProps::from_exported_fields(
        r.location_type.get(),
        r.location_id.get(),
        r.handle_types.get(),
        compression == 1,
        rdma == 1,
        r.usage.get(),
    )
    .map_err(bad)?;
    let (0..=1, 0..=1, 0) = (compression, rdma, r.reserved.get()) else {
        return Err(bad(format!(
            "compression {:?}, RDMA {:?} or the reserved word are not 0/1/0",
            Some(compression),
            Some(rdma)
        )));
    };
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
        return Err(SendError::NothingSent(config(format!(
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
                return Err(SendError::NothingSent(io(
                    "sending an update failed".into(),
                    std::io::Error::from(e),
                )))
            }
        }
    };
    let mut writer = stream;
    writer
        .write_all(&bytes[sent.min(bytes.len())..])
        .map_err(|e| {
            SendError::Partial(io(
                format!(
                    "sending an update failed after {sent} of its {} bytes",
                    bytes.len()
                ),
                e,
            ))
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
                return Err(io(
                    format!("receiving the {what} failed"),
                    std::io::Error::from(e),
                ))
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

/// Whether a byte, or the end of the stream, is there to read. Peeks: reads no byte and
/// takes no descriptor (those of a message stay with it). `wait`: blocks, up to the
/// stream's read timeout, instead of answering at once.
pub(super) fn readable(stream: &UnixStream, wait: bool) -> Result<bool> {
    let mut byte = [0u8; 1];
    let flags = if wait {
        RecvFlags::PEEK
    } else {
        RecvFlags::PEEK | RecvFlags::DONTWAIT
    };
    loop {
        let mut control = RecvAncillaryBuffer::default();
        match recvmsg(
            stream,
            &mut [IoSliceMut::new(&mut byte)],
            &mut control,
            flags,
        ) {
            Ok(_) => return Ok(true),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Ok(false),
            Err(e) => return Err(io("waiting for an update".into(), std::io::Error::from(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cuda_vmm::{HandleTypes, Location};

    /// The encodings below were computed with the hand-written encoder this module had
    /// before zerocopy.
    const GOLDEN_HELLO: [u8; HELLO] = [
        67, 85, 86, 77, 77, 66, 85, 70, 2, 0, 0, 0, 12, 0, 0, 0, 0, 96, 69, 35, 1, 0, 0, 0, 7, 0,
        0, 0, 0, 0, 0, 0,
    ];
    const GOLDEN_HEADER: [u8; UPDATE] = [
        67, 85, 86, 77, 77, 85, 80, 68, 136, 119, 102, 85, 68, 51, 34, 17, 3, 0, 0, 0, 0, 0, 0, 0,
        0, 48, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0,
    ];
    const GOLDEN_RECORDS: [u8; 2 * RECORD] = [
        0, 0, 32, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 1,
        2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 96, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0, 0, 0, 0, 1, 0, 0, 0,
        0, 0, 0, 0, 9, 0, 0, 0, 1, 0, 90, 165, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    fn golden_hello() -> Hello {
        Hello {
            element: 12,
            reserved: 0x0000_0001_2345_6000,
            buffer_id: 7,
        }
    }

    fn golden_header() -> Header {
        Header {
            buffer_id: 0x1122_3344_5566_7788,
            generation: 3,
            len_bytes: 0x3000,
            committed: 0x4000,
            count: 2,
        }
    }

    fn golden_records() -> [Record; 2] {
        [
            Record {
                offset: 0x20_0000,
                size: 0x40_0000,
                props: AllocationProps::new(Location::Device(2))
                    .handle_types(HandleTypes::POSIX_FD)
                    .compression(false)
                    .rdma_capable(true)
                    .usage(0x0102),
            },
            Record {
                offset: 0x60_0000,
                size: 0x20_0000,
                props: AllocationProps::new(Location::Device(0))
                    .handle_types(HandleTypes::POSIX_FD | HandleTypes::FABRIC)
                    .compression(true)
                    .rdma_capable(false)
                    .usage(0xa55a),
            },
        ]
    }

    #[test]
    fn hello_encoding_is_byte_identical() {
        assert_eq!(encode_hello(&golden_hello()), GOLDEN_HELLO);
        assert_eq!(decode_hello(&GOLDEN_HELLO).unwrap(), golden_hello());
    }

    #[test]
    fn update_header_encoding_is_byte_identical() {
        let bytes = encode_update(&golden_header(), &[]);
        assert_eq!(bytes, GOLDEN_HEADER);
        assert_eq!(decode_header(&GOLDEN_HEADER).unwrap(), golden_header());
    }

    #[test]
    fn record_encoding_is_byte_identical() {
        let bytes = encode_update(&golden_header(), &golden_records());
        assert_eq!(bytes[..UPDATE], GOLDEN_HEADER);
        assert_eq!(bytes[UPDATE..], GOLDEN_RECORDS);
        for (i, (raw, want)) in GOLDEN_RECORDS
            .chunks_exact(RECORD)
            .zip(golden_records())
            .enumerate()
        {
            let got = decode_record(raw, i).unwrap();
            assert_eq!((got.offset, got.size), (want.offset, want.size));
            assert_eq!(got.props, want.props);
        }
    }

    #[test]
    fn truncated_record_is_a_protocol_error() {
        let err = decode_record(&GOLDEN_RECORDS[..RECORD - 1], 3).unwrap_err();
        assert!(
            matches!(&err, Error::SharedProtocol { message }
                if message.starts_with("chunk 3 of the update:")),
            "{err:?}"
        );
    }
}
