//! Sharing allocations between processes over a Unix socket (`SCM_RIGHTS`).
//!
//! A POSIX descriptor exported by the driver (`cuMemExportToShareableHandle`)
//! does not tell its allocation's size or properties: `fstat` reports size 0
//! (H200, driver 580: conformance `exported_fd_reports_no_size`), and importing
//! needs the size to map the memory. [`ExportedAllocation`] keeps a descriptor
//! together with its size and properties; [`send_allocations`] sends them over
//! a connected [`UnixStream`], and [`receive_allocations`] receives and imports
//! them on the importer's device, where the caller maps them at its own
//! addresses ([`Reservation::map`](crate::Reservation::map), then
//! [`Reservation::set_access`](crate::Reservation::set_access) for its device).
//!
//! Every descriptor is an [`OwnedFd`] from the moment it exists on either
//! side: the sender's exports are closed once sent (the kernel holds them in
//! flight), and a receiver that fails anywhere, or a peer that exits early,
//! leaves nothing open. Everything received is validated before it is used.
//!
//! # Wire format (version 1)
//!
//! One call of [`send_allocations`] writes one message: parts of at most
//! [`MAX_PER_PART`] allocations, the last one flagged. Each part is a
//! 24-byte header followed by one 32-byte record per allocation, all numbers
//! little-endian; the part's descriptors travel, in record order, as one
//! `SCM_RIGHTS` control message with its first byte.
//!
//! | header field | bytes |
//! | --- | --- |
//! | magic `b"CUVMMIPC"` | 8 |
//! | version (1) | 4 |
//! | records in this part | 4 |
//! | flags (bit 0: last part) | 4 |
//! | reserved (0) | 4 |
//!
//! | record field | bytes |
//! | --- | --- |
//! | size in bytes | 8 |
//! | location type (`CUmemLocationType`) | 4 |
//! | location id (the exporter's device ordinal) | 4 |
//! | requested handle types | 4 |
//! | compression (0/1), RDMA capable (0/1) | 1 + 1 |
//! | usage flags | 2 |
//! | reserved (0) | 8 |
//!
//! The socket must be blocking, and nothing else may read or write it while a
//! message is under way.

use std::io::{self, IoSlice, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use rustix::io::Errno;
use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
};
use zerocopy::little_endian::{I32, U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::allocation::Allocation;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::props::AllocationProps;

/// Most allocations (so descriptors) in one part of a message.
pub const MAX_PER_PART: usize = 64;
/// Most allocations [`receive_allocations`] accepts in one message.
pub const MAX_PER_MESSAGE: usize = 1 << 16;

const MAGIC: [u8; 8] = *b"CUVMMIPC";
const VERSION: u32 = 1;
const LAST_PART: u32 = 1;
const HEADER: usize = size_of::<WireHeader>();
const RECORD: usize = size_of::<WireRecord>();
const _: () = assert!(HEADER == 24 && RECORD == 32);

/// A part's header as it is on the wire (see the module docs).
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct WireHeader {
    magic: [u8; 8],
    version: U32,
    count: U32,
    flags: U32,
    reserved: U32,
}

/// One allocation's record as it is on the wire (see the module docs).
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct WireRecord {
    size: U64,
    location_type: U32,
    location_id: I32,
    handle_types: U32,
    compression: u8,
    rdma: u8,
    usage: U16,
    reserved: U64,
}

/// An allocation's POSIX descriptor with the size and properties an importer
/// needs: the one way to import without giving a size by hand.
///
/// Made by [`ExportedAllocation::new`] on the exporting side and by
/// [`receive_exported`] on the importing side.
#[derive(Debug)]
pub struct ExportedAllocation {
    fd: OwnedFd,
    size: usize,
    props: AllocationProps,
}

impl ExportedAllocation {
    /// Exports `allocation` (`cuMemExportToShareableHandle`), which must have
    /// been created with [`HandleTypes::POSIX_FD`](crate::HandleTypes::POSIX_FD).
    pub fn new(allocation: &Allocation) -> Result<ExportedAllocation> {
        Ok(ExportedAllocation {
            fd: allocation.export_posix_fd()?,
            size: allocation.size(),
            props: allocation.props().clone(),
        })
    }

    /// Reassembles what an exporter sent by other means; the values are
    /// checked when it is imported.
    pub fn from_parts(fd: OwnedFd, size: usize, props: AllocationProps) -> ExportedAllocation {
        ExportedAllocation { fd, size, props }
    }

    /// The descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The allocation's size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The properties the exporter created the allocation with (its location
    /// names the exporter's device ordinal).
    pub fn props(&self) -> &AllocationProps {
        &self.props
    }

    /// Descriptor, size and properties.
    pub fn into_parts(self) -> (OwnedFd, usize, AllocationProps) {
        (self.fd, self.size, self.props)
    }

    /// Imports the allocation through `device`
    /// ([`Allocation::import_posix_fd`] with the size and properties sent).
    pub fn import(&self, device: &Device) -> Result<Allocation> {
        Allocation::import_posix_fd(device, self.fd.as_fd(), self.size, &self.props)
    }
}

/// Exports every allocation and sends them, with sizes and properties, over
/// `stream` as one message (see the module docs).
///
/// Each must have been created with [`HandleTypes::POSIX_FD`](crate::HandleTypes::POSIX_FD). The exported
/// descriptors are closed on return, sent or not. Writes the caller made to
/// the memory must be complete before the importer reads it: this crate's
/// synchronous copies are complete when they return; after async copies or
/// kernels, synchronise the stream (or wait on an event) before sending.
pub fn send_allocations(stream: &UnixStream, allocations: &[&Allocation]) -> Result<()> {
    let exported = allocations
        .iter()
        .map(|a| ExportedAllocation::new(a))
        .collect::<Result<Vec<_>>>()?;
    send_exported(stream, &exported)
}

/// Receives one message of [`send_allocations`] and imports every allocation
/// through `device`; the caller maps them.
///
/// On any error nothing is kept: allocations already imported are released
/// and every descriptor received is closed.
pub fn receive_allocations(stream: &UnixStream, device: &Device) -> Result<Vec<Allocation>> {
    receive_exported(stream)?
        .iter()
        .map(|e| e.import(device))
        .collect()
}

/// Sends already exported allocations as one message (what
/// [`send_allocations`] does after exporting). The descriptors stay the caller's.
pub fn send_exported(stream: &UnixStream, exported: &[ExportedAllocation]) -> Result<()> {
    let parts: Vec<&[ExportedAllocation]> = if exported.is_empty() {
        vec![&[]]
    } else {
        exported.chunks(MAX_PER_PART).collect()
    };
    let count = parts.len();
    for (i, part) in parts.into_iter().enumerate() {
        let flags = if i + 1 == count { LAST_PART } else { 0 };
        send_part(stream, part, flags)?;
    }
    Ok(())
}

/// Receives one message of [`send_exported`] without importing it; every
/// record is validated (nonzero size, properties that decode to device
/// memory exportable as a POSIX descriptor, one descriptor per record).
pub fn receive_exported(stream: &UnixStream) -> Result<Vec<ExportedAllocation>> {
    let mut out = Vec::new();
    loop {
        let mut fds = Vec::new();
        let mut header = [0u8; HEADER];
        recv_exact(stream, &mut header, &mut fds, "message header")?;
        let (count, flags) = decode_header(&header)?;
        if out.len() + count > MAX_PER_MESSAGE {
            return Err(ipc_error(format!(
                "the message carries more than {MAX_PER_MESSAGE} allocations"
            )));
        }
        let mut records = vec![0u8; count * RECORD];
        recv_exact(stream, &mut records, &mut fds, "allocation records")?;
        if fds.len() != count {
            return Err(ipc_error(format!(
                "a part announcing {count} allocation(s) carried {} descriptor(s)",
                fds.len()
            )));
        }
        for (i, (record, fd)) in records.chunks_exact(RECORD).zip(fds).enumerate() {
            let (size, props) = decode_record(record, out.len() + i)?;
            out.push(ExportedAllocation { fd, size, props });
        }
        if flags & LAST_PART != 0 {
            return Ok(out);
        }
    }
}

fn ipc_error(message: String) -> Error {
    Error::Sharing { message, io: None }
}

fn io_error(what: &str, e: io::Error) -> Error {
    Error::Sharing {
        message: format!("{what} failed: {e}"),
        io: Some(e.kind()),
    }
}

fn send_part(stream: &UnixStream, part: &[ExportedAllocation], flags: u32) -> Result<()> {
    let count = u32::try_from(part.len())
        .map_err(|_| ipc_error(format!("{} allocations in one part", part.len())))?;
    let mut bytes = Vec::with_capacity(HEADER + part.len() * RECORD);
    bytes.extend_from_slice(encode_header(count, flags).as_bytes());
    for e in part {
        bytes.extend_from_slice(encode_record(e).as_bytes());
    }
    let fds: Vec<BorrowedFd<'_>> = part.iter().map(|e| e.fd.as_fd()).collect();
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_PER_PART))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(ipc_error(format!(
            "{} descriptors do not fit the control buffer",
            fds.len()
        )));
    }
    let sent = loop {
        match sendmsg(
            stream,
            &[IoSlice::new(&bytes)],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Ok(n) => break n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(io_error("sending allocations", e.into())),
        }
    };
    // The descriptors went with the first byte; the rest is plain data.
    let mut writer = stream;
    writer
        .write_all(&bytes[sent..])
        .map_err(|e| io_error("sending allocation records", e))
}

/// Fills `buf` from `stream`, keeping every descriptor that arrives in `fds`.
fn recv_exact(
    stream: &UnixStream,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    what: &str,
) -> Result<()> {
    let mut got = 0;
    while got < buf.len() {
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_PER_PART))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let received = match recvmsg(
            stream,
            &mut [IoSliceMut::new(&mut buf[got..])],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(r) => r,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(io_error(&format!("receiving the {what}"), e.into())),
        };
        // Own every descriptor first, so that all are closed on any error below.
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = message {
                fds.extend(received);
            }
        }
        if received.flags.contains(ReturnFlags::CTRUNC) {
            return Err(ipc_error(format!(
                "the {what} came with more descriptors than a part may carry ({MAX_PER_PART}); \
                 the kernel dropped the rest"
            )));
        }
        if received.bytes == 0 {
            return Err(ipc_error(format!(
                "the peer closed the connection after {got} of the {} bytes of the {what}",
                buf.len()
            )));
        }
        got += received.bytes;
    }
    Ok(())
}

fn encode_header(count: u32, flags: u32) -> WireHeader {
    WireHeader {
        magic: MAGIC,
        version: U32::new(VERSION),
        count: U32::new(count),
        flags: U32::new(flags),
        reserved: U32::new(0),
    }
}

fn decode_header(header: &[u8; HEADER]) -> Result<(usize, u32)> {
    let (header, _) = WireHeader::ref_from_prefix(header).map_err(|_| {
        ipc_error(format!(
            "a message header of {} bytes is shorter than {HEADER}",
            header.len()
        ))
    })?;
    if header.magic != MAGIC {
        return Err(ipc_error(format!(
            "bad magic {:02x?}: not a cuda-vmm allocation message",
            &header.magic[..]
        )));
    }
    let (version, count, flags, reserved) = (
        header.version.get(),
        header.count.get(),
        header.flags.get(),
        header.reserved.get(),
    );
    if version != VERSION {
        return Err(ipc_error(format!(
            "message version {version}; this library speaks version {VERSION}"
        )));
    }
    if count as usize > MAX_PER_PART {
        return Err(ipc_error(format!(
            "a part announces {count} allocations; at most {MAX_PER_PART} are allowed"
        )));
    }
    if flags & !LAST_PART != 0 || reserved != 0 {
        return Err(ipc_error(format!(
            "unknown header flags {flags:#x} or reserved word {reserved:#x}"
        )));
    }
    Ok((count as usize, flags))
}

fn encode_record(e: &ExportedAllocation) -> WireRecord {
    let location = e.props.location().to_raw();
    WireRecord {
        size: U64::new(e.size as u64),
        location_type: U32::new(location.type_.0),
        location_id: I32::new(location.id),
        handle_types: U32::new(e.props.requested_handle_types().bits()),
        compression: u8::from(e.props.is_compressed()),
        rdma: u8::from(e.props.is_rdma_capable()),
        usage: U16::new(e.props.usage_flags()),
        reserved: U64::new(0),
    }
}

/// Decodes and validates record `index` of a message.
fn decode_record(r: &[u8], index: usize) -> Result<(usize, AllocationProps)> {
    let bad = |what: String| ipc_error(format!("allocation {index}: {what}"));
    let (r, _) = WireRecord::ref_from_prefix(r).map_err(|_| {
        bad(format!(
            "{} bytes are shorter than a record ({RECORD})",
            r.len()
        ))
    })?;
    let size = r.size.get();
    let size = usize::try_from(size)
        .ok()
        .filter(|&s| s != 0)
        .ok_or_else(|| bad(format!("size {size} is not a nonzero usize")))?;
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
    if compression > 1 || rdma > 1 || r.reserved.get() != 0 {
        return Err(bad(format!(
            "compression {compression}, RDMA {rdma} or the reserved word are not 0/1/0"
        )));
    }
    Ok((size, props))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::props::{HandleTypes, Location};

    /// Computed with the hand-written encoder this module had before zerocopy.
    const GOLDEN_HEADER: [u8; HEADER] = [
        67, 85, 86, 77, 77, 73, 80, 67, 1, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0,
    ];
    /// Computed with the hand-written encoder this module had before zerocopy.
    const GOLDEN_RECORD: [u8; RECORD] = [
        239, 205, 171, 137, 103, 69, 35, 1, 1, 0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 1, 0, 239, 190, 0,
        0, 0, 0, 0, 0, 0, 0,
    ];

    fn golden_props() -> AllocationProps {
        AllocationProps::new(Location::Device(1))
            .handle_types(HandleTypes::POSIX_FD | HandleTypes::FABRIC)
            .compression(true)
            .rdma_capable(false)
            .usage(0xbeef)
    }

    #[test]
    fn header_encoding_is_byte_identical() {
        assert_eq!(encode_header(3, LAST_PART).as_bytes(), &GOLDEN_HEADER[..]);
        assert_eq!(decode_header(&GOLDEN_HEADER).unwrap(), (3, LAST_PART));
    }

    #[test]
    fn record_encoding_is_byte_identical() {
        let fd: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        let e = ExportedAllocation::from_parts(fd, 0x0123_4567_89ab_cdef, golden_props());
        assert_eq!(encode_record(&e).as_bytes(), &GOLDEN_RECORD[..]);
        let (size, props) = decode_record(&GOLDEN_RECORD, 0).unwrap();
        assert_eq!(size, 0x0123_4567_89ab_cdef);
        assert_eq!(props, golden_props());
    }

    #[test]
    fn truncated_record_is_a_sharing_error() {
        let err = decode_record(&GOLDEN_RECORD[..RECORD - 1], 5).unwrap_err();
        assert!(
            matches!(&err, Error::Sharing { message, io: None } if message.starts_with("allocation 5:")),
            "{err:?}"
        );
    }
}
