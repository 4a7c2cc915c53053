//! Issue 17: the shared-buffer protocol (`SharedBufferProducer` / `SharedBufferConsumer`).
//! Refusals say why and change nothing, the consumer never maps memory the producer
//! released, identity never rests on the address, every update is one message, and the
//! consumer survives hostile peers. Each test names the defect it guards.
//!
//! Producer and consumer run in this one process, over a `UnixStream` pair.

use std::io::{IoSlice, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use cuda_vmm::{Allocation, AllocationProps, Backend, Device, GranularityKind, HandleTypes};
use cuda_vmm_alloc::{
    BufferConfig, GrowableBuffer, GrowthPolicy, SharedBufferConsumer, SharedBufferProducer,
};
use cuda_vmm_sys::CUresult;
use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use crate::cuda;
pub(crate) use cuda_vmm_tests::helpers::TestResult;

mod hostile;
mod protocol;

pub(crate) fn exportable(d: &Device) -> AllocationProps {
    AllocationProps::device(d).handle_types(HandleTypes::POSIX_FD)
}

/// The device and its granularity for exportable memory.
pub(crate) fn setup() -> Result<(Device, usize), Box<dyn std::error::Error>> {
    let d = cuda()?.device(0)?;
    let g = d.granularity(&exportable(&d), GranularityKind::Minimum)?;
    Ok((d, g))
}

/// A shareable buffer of `u32` with chunks of `g` bytes, up to 8 of them.
pub(crate) fn buffer(d: &Device, g: usize) -> cuda_vmm_alloc::Result<GrowableBuffer<u32>> {
    GrowableBuffer::new(
        d,
        BufferConfig {
            max_capacity: Some(8 * g / 4),
            policy: GrowthPolicy::fixed(g),
            props: Some(exportable(d)),
            ..BufferConfig::default()
        },
    )
}

/// Elements `range` of contents `seed`.
pub(crate) fn values(range: std::ops::Range<usize>, seed: u32) -> Vec<u32> {
    range
        .map(|i| (i as u32).wrapping_mul(2_654_435_761) ^ seed)
        .collect()
}

/// A producer and a consumer of `b` over a fresh socket pair.
pub(crate) fn share(
    d: &Device,
    b: &GrowableBuffer<u32>,
) -> Result<(SharedBufferProducer, SharedBufferConsumer<u32>, UnixStream), Box<dyn std::error::Error>>
{
    let (tx, rx) = UnixStream::pair()?;
    let producer = SharedBufferProducer::new(b, tx)?;
    let probe = rx.try_clone()?;
    let consumer = SharedBufferConsumer::connect(d, rx)?;
    Ok((producer, consumer, probe))
}

/// Bytes waiting unread on the consumer's socket.
pub(crate) fn pending(s: &UnixStream) -> std::io::Result<u64> {
    Ok(rustix::io::ioctl_fionread(s)?)
}

pub(crate) fn skip_without_simulator() -> Result<bool, Box<dyn std::error::Error>> {
    if cuda()?.backend() != Backend::Simulator {
        eprintln!("skipped: needs the simulator's fault injection");
        return Ok(true);
    }
    Ok(false)
}

// ---- a hostile peer: hand-made messages -----------------------------------------------------

/// The hand-made peer's buffer id.
pub(crate) const PEER_ID: u64 = 7;
/// Chunks of the hand-made peer's reservation.
pub(crate) const PEER_CHUNKS: u64 = 8;

/// A hand-made update header.
pub(crate) fn header(id: u64, generation: u64, len: u64, committed: u64, count: u32) -> Vec<u8> {
    let mut bytes = b"CUVMMUPD".to_vec();
    for word in [id, generation, len, committed] {
        bytes.extend_from_slice(&word.to_le_bytes());
    }
    bytes.extend_from_slice(&count.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes
}

/// A hand-made chunk record: device 0, POSIX_FD, no compression, RDMA or usage flags.
pub(crate) fn record(offset: u64, size: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&offset.to_le_bytes());
    bytes.extend_from_slice(&size.to_le_bytes());
    for word in [1u32, 0, 1] {
        bytes.extend_from_slice(&word.to_le_bytes());
    }
    bytes.extend_from_slice(&[0u8; 12]);
    bytes
}

/// Sends `bytes` with `fds` in one `sendmsg`.
pub(crate) fn send_raw(s: &UnixStream, bytes: &[u8], fds: &[OwnedFd]) -> TestResult {
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(8))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    assert!(borrowed.is_empty() || control.push(SendAncillaryMessage::ScmRights(&borrowed)));
    let sent = sendmsg(s, &[IoSlice::new(bytes)], &mut control, SendFlags::NOSIGNAL)?;
    assert_eq!(sent, bytes.len());
    Ok(())
}

/// `n` descriptors of real exportable chunks of `g` bytes: importable, so only the
/// consumer's checks stand between them and a mapping.
pub(crate) fn chunk_fds(
    d: &Device,
    g: usize,
    n: usize,
) -> Result<Vec<OwnedFd>, Box<dyn std::error::Error>> {
    (0..n)
        .map(|_| Ok(Allocation::new(d, g, &exportable(d))?.export_posix_fd()?))
        .collect()
}

/// A consumer connected to a hand-made hello (buffer [`PEER_ID`], `PEER_CHUNKS * g` bytes),
/// and the peer's end.
pub(crate) fn hostile_peer(
    d: &Device,
    g: usize,
) -> Result<(SharedBufferConsumer<u32>, UnixStream), Box<dyn std::error::Error>> {
    let (tx, rx) = UnixStream::pair()?;
    let mut hello = b"CUVMMBUF".to_vec();
    hello.extend_from_slice(&2u32.to_le_bytes());
    hello.extend_from_slice(&4u32.to_le_bytes());
    hello.extend_from_slice(&(PEER_CHUNKS * g as u64).to_le_bytes());
    hello.extend_from_slice(&PEER_ID.to_le_bytes());
    (&tx).write_all(&hello)?;
    Ok((SharedBufferConsumer::connect(d, rx)?, tx))
}

/// A valid first update: one chunk of `g` bytes at offset 0, 16 elements published.
pub(crate) fn valid_first(peer: &UnixStream, d: &Device, g: usize) -> TestResult {
    let mut bytes = header(PEER_ID, 1, 64, g as u64, 1);
    bytes.extend(record(0, g as u64));
    send_raw(peer, &bytes, &chunk_fds(d, g, 1)?)
}
