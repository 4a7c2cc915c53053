//! Shareable POSIX descriptors that behave like the driver's: `fstat` reports
//! no size, so nothing can learn an allocation's size from the descriptor.
//!
//! The driver's exported descriptor is not the memory itself (an H200 reports
//! size 0: conformance `exported_fd_reports_no_size`). The simulator exports
//! one end of a datagram socket pair whose queue holds exactly one message: a
//! tag and the size, with the allocation's memfd attached (`SCM_RIGHTS`). The
//! other end is closed at once, so nothing more can be queued. Importing peeks
//! at that message: `MSG_PEEK` installs a duplicate of the attached memfd and
//! leaves the message queued, so a descriptor can be imported any number of
//! times, after a `dup`, and in every process it is passed to (the kernel
//! carries sockets with descriptors in their queue across `SCM_RIGHTS`). The
//! memory stays alive while the descriptor is open, as the driver's does.
//!
//! Built on `rustix::net` (socketpair, sendmsg, recvmsg and the ancillary
//! buffers), so no control-message layout is written by hand.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::net::{
    recvmsg, sendmsg, socketpair, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage,
    RecvFlags, ReturnFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags,
    SocketType,
};

/// Marks a message queued by this simulator.
const TAG: [u8; 8] = *b"cuvmmsim";
/// Tag and size.
const MESSAGE: usize = 16;

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// A new descriptor (close-on-exec, owned by the caller) that carries `memfd`
/// and `size` for [`unwrap`], and reports size 0 to `fstat`.
pub(crate) fn wrap(memfd: BorrowedFd<'_>, size: u64) -> io::Result<OwnedFd> {
    let (keep, send) = socketpair(
        AddressFamily::UNIX,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    let mut message = [0u8; MESSAGE];
    message[..8].copy_from_slice(&TAG);
    message[8..].copy_from_slice(&size.to_ne_bytes());
    let fds = [memfd];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(invalid("no room for the descriptor in the control buffer"));
    }
    let sent = sendmsg(
        &send,
        &[IoSlice::new(&message)],
        &mut control,
        SendFlags::empty(),
    )?;
    if sent != MESSAGE {
        return Err(invalid("short send of the shareable handle's message"));
    }
    // The peer goes: the one queued message stays, nothing else can be sent.
    drop(send);
    Ok(keep)
}

/// The memfd and size carried by a descriptor made by [`wrap`] (in this
/// process or another); an error for any other descriptor.
pub(crate) fn unwrap(fd: BorrowedFd<'_>) -> io::Result<(OwnedFd, u64)> {
    // One byte more than expected, to notice a longer message.
    let mut message = [0u8; MESSAGE + 1];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = recvmsg(
        fd,
        &mut [IoSliceMut::new(&mut message)],
        &mut control,
        RecvFlags::PEEK | RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
    )?;
    // Take ownership of every descriptor received before judging the message,
    // so that all of them are closed if it is refused.
    let mut fds: Vec<OwnedFd> = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = m {
            fds.extend(received);
        }
    }
    if got
        .flags
        .intersects(ReturnFlags::TRUNC | ReturnFlags::CTRUNC)
        || got.bytes != MESSAGE
        || message[..8] != TAG
        || fds.len() != 1
    {
        return Err(invalid("not a shareable handle exported by the simulator"));
    }
    let mut size = [0u8; 8];
    size.copy_from_slice(&message[8..MESSAGE]);
    let memfd = fds
        .pop()
        .ok_or_else(|| invalid("no descriptor in the message"))?;
    Ok((memfd, u64::from_ne_bytes(size)))
}
