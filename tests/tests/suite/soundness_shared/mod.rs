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

/// Defect 1: after a shrink below the published size, `publish` returned Ok and reset the
/// published size, although the docs say it refuses. It must refuse, say why, and change
/// nothing: no byte written, published size and generation as before, the consumer's
/// bytes intact.
#[test]
fn publish_after_a_shrink_below_the_published_size_is_refused_and_changes_nothing() -> TestResult {
    let _memory = crate::memory_shared();
    let (d, g) = setup()?;
    let mut b = buffer(&d, g)?;
    let (mut producer, mut consumer, probe) = share(&d, &b)?;
    let first = values(0..2 * g / 4 + 10, 1); // three chunks
    b.extend_from_slice(&first)?;
    assert_eq!(producer.publish(&b)?, 3);
    assert!(consumer.receive()?);
    b.truncate(10);
    b.shrink_to_fit()?;
    assert_eq!(b.committed_bytes(), g);
    let err = producer
        .publish(&b)
        .err()
        .ok_or("publish after a shrink below the published size returned Ok")?;
    eprintln!("refused: {err}");
    assert!(err.to_string().contains("was released"), "{err}");
    assert_eq!(producer.published_bytes(), 3 * g);
    assert_eq!(producer.generation(), 1);
    assert_eq!(pending(&probe)?, 0, "a refused publish wrote bytes");
    assert!(consumer.to_vec()? == first, "the consumer's bytes changed");
    // Still refused: the consumer maps memory the producer gave back.
    assert!(producer.publish(&b).is_err());
    assert_eq!(producer.published_bytes(), 3 * g);
    Ok(())
}

/// Defect 2: a shrink that released a published chunk, then regrowth before the next
/// `publish`, left the consumer mapping the old, released chunk while the producer wrote
/// new memory at the same offset: the two saw different bytes. The publish must be
/// refused (the protocol cannot take a chunk back), saying why.
#[test]
fn regrowth_over_a_released_published_chunk_is_refused() -> TestResult {
    let _memory = crate::memory_shared();
    let (d, g) = setup()?;
    let mut b = buffer(&d, g)?;
    let (mut producer, mut consumer, probe) = share(&d, &b)?;
    let first = values(0..g / 4 + 10, 2); // two chunks
    b.extend_from_slice(&first)?;
    assert_eq!(producer.publish(&b)?, 2);
    assert!(consumer.receive()?);
    b.truncate(10);
    b.shrink_to_fit()?;
    b.extend_from_slice(&values(10..3 * g / 4, 3))?; // regrown over the released chunk
    assert_eq!(b.committed_bytes(), 3 * g);
    let err = producer
        .publish(&b)
        .err()
        .ok_or("a buffer regrown over a released published chunk was published")?;
    eprintln!("refused: {err}");
    assert!(err.to_string().contains("offset"), "{err}");
    assert!(err.to_string().contains("was released"), "{err}");
    assert_eq!(
        (producer.published_bytes(), producer.generation()),
        (2 * g, 1)
    );
    assert_eq!(pending(&probe)?, 0, "a refused publish wrote bytes");
    assert_eq!(consumer.committed_bytes(), 2 * g);
    // Chunk 0 is still shared (the producer rewrote its elements 10..); the released chunk
    // 1 is the consumer's own now, kept alive by its import, with the published bytes.
    let seen = consumer.to_vec()?;
    assert!(
        seen[g / 4..] == first[g / 4..],
        "the released chunk's bytes changed"
    );
    Ok(())
}

/// Defect 2 (the partial fix's gap): ANY generation change was refused, even a shrink that
/// released only chunks never published. Releasing and regrowing unpublished chunks must
/// not stop publishing, and the consumer then sees exactly the producer's bytes.
#[test]
fn releasing_and_regrowing_unpublished_chunks_keeps_publishing() -> TestResult {
    let _memory = crate::memory_shared();
    let (d, g) = setup()?;
    let mut b = buffer(&d, g)?;
    let (mut producer, mut consumer, _probe) = share(&d, &b)?;
    b.extend_from_slice(&values(0..100, 4))?; // one chunk, published
    assert_eq!(producer.publish(&b)?, 1);
    assert!(consumer.receive()?);
    b.extend_from_slice(&values(100..2 * g / 4 + 10, 5))?; // two more, not published
    let generation = b.generation();
    b.truncate(100);
    b.shrink_to_fit()?;
    assert_eq!(b.committed_bytes(), g);
    assert_ne!(b.generation(), generation, "the shrink released chunks");
    b.extend_from_slice(&values(100..g / 4 + 50, 6))?;
    assert_eq!(producer.publish(&b)?, 1);
    assert!(consumer.receive()?);
    assert_eq!(
        (producer.published_bytes(), producer.generation()),
        (2 * g, 2)
    );
    assert_eq!(consumer.committed_bytes(), 2 * g);
    assert_eq!(
        consumer.to_vec()?,
        b.to_vec()?,
        "producer and consumer differ"
    );
    Ok(())
}

/// Defect 3: a different buffer that got the same address was accepted as a continuation
/// of the first. Identity rests on `GrowableBuffer::id`, never on the address: buffer B,
/// created after A was dropped (likely at A's address), is refused by A's producer, saying
/// it is another buffer, whether or not A had chunks published.
#[test]
fn a_different_buffer_at_the_same_address_is_refused() -> TestResult {
    let _memory = crate::memory_shared();
    let (d, g) = setup()?;
    for published_chunks in [false, true] {
        let mut a = buffer(&d, g)?;
        if published_chunks {
            a.extend_from_slice(&values(0..100, 7))?;
        }
        let (mut producer, mut consumer, probe) = share(&d, &a)?;
        producer.publish(&a)?;
        assert!(consumer.receive()?);
        let (a_ptr, a_id) = (a.ptr(), a.id());
        drop(a);
        let mut b = buffer(&d, g)?;
        b.extend_from_slice(&values(0..g / 4 + 10, 8))?;
        eprintln!(
            "A #{a_id} at {a_ptr:#x}, B #{} at {:#x} (same address: {})",
            b.id(),
            b.ptr(),
            a_ptr == b.ptr()
        );
        assert_ne!(a_id, b.id());
        let before = (producer.published_bytes(), producer.generation());
        let err = producer
            .publish(&b)
            .err()
            .ok_or("another buffer was published as a continuation")?;
        eprintln!("refused: {err}");
        assert!(
            err.to_string().contains("this producer shares buffer"),
            "{err}"
        );
        assert_eq!((producer.published_bytes(), producer.generation()), before);
        assert_eq!(pending(&probe)?, 0, "a refused publish wrote bytes");
    }
    Ok(())
}

/// Defect 4: a failed export after the update header was written left half an update on
/// the socket, and the next update was garbage to the consumer. With the export of the 2nd
/// chunk failing, publish must fail with nothing written and the published state as
/// before; the next publish then delivers every chunk and the consumer sees the bytes.
#[test]
fn a_failed_export_writes_nothing_and_the_next_publish_delivers() -> TestResult {
    if skip_without_simulator()? {
        return Ok(());
    }
    let _memory = crate::memory_shared();
    let (d, g) = setup()?;
    let mut b = buffer(&d, g)?;
    let (mut producer, mut consumer, probe) = share(&d, &b)?;
    let data = values(0..2 * g / 4 + 10, 9); // three chunks
    b.extend_from_slice(&data)?;
    {
        let guard = cuda_vmm_sim::inject_fault(
            "cuMemExportToShareableHandle",
            2,
            CUresult::CUDA_ERROR_OUT_OF_MEMORY,
        );
        assert!(guard.is_armed());
        let err = producer
            .publish(&b)
            .err()
            .ok_or("publish with a failing export returned Ok")?;
        eprintln!("failed: {err}");
    }
    assert_eq!(pending(&probe)?, 0, "a failed publish wrote bytes");
    assert_eq!((producer.published_bytes(), producer.generation()), (0, 0));
    assert_eq!(producer.publish(&b)?, 3);
    assert!(consumer.receive()?);
    assert_eq!(consumer.generation(), 1);
    assert!(consumer.to_vec()? == data, "the consumer sees other bytes");
    assert_eq!(pending(&probe)?, 0, "more than one update was written");
    Ok(())
}

/// Defect 4 (the partial fix's gap): the header and the descriptors were two writes, so an
/// I/O error between them left half an update on the wire. An update is ONE message: its
/// first byte carries every descriptor of the update.
#[test]
fn an_update_is_one_message_with_every_descriptor_on_its_first_byte() -> TestResult {
    let _memory = crate::memory_shared();
    let (d, g) = setup()?;
    let mut b = buffer(&d, g)?;
    let (tx, rx) = UnixStream::pair()?;
    let mut producer = SharedBufferProducer::new(&b, tx)?;
    let mut hello = [0u8; 32];
    std::io::Read::read_exact(&mut &rx, &mut hello)?;
    b.extend_from_slice(&values(0..g / 4 + 10, 10))?; // two chunks
    assert_eq!(producer.publish(&b)?, 2);
    let mut first = [0u8; 1];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(8))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = recvmsg(
        &rx,
        &mut [IoSliceMut::new(&mut first)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    assert_eq!(got.bytes, 1);
    assert_eq!(first[0], b'C', "the update's magic comes first");
    assert_eq!(
        fds.len(),
        2,
        "the update's first byte carries its descriptors"
    );
    assert_eq!(
        pending(&rx)?,
        48 - 1 + 2 * 40,
        "header and records, nothing more"
    );
    Ok(())
}

/// Rollback: a send that fails (the consumer is gone) must leave the producer's published
/// state (published size, generation, and with them the wire position) exactly as before.
#[test]
fn a_failed_send_leaves_the_published_state_as_before() -> TestResult {
    let _memory = crate::memory_shared();
    let (d, g) = setup()?;
    let mut b = buffer(&d, g)?;
    let (mut producer, consumer, probe) = share(&d, &b)?;
    b.extend_from_slice(&values(0..100, 11))?;
    assert_eq!(producer.publish(&b)?, 1);
    drop((consumer, probe));
    b.extend_from_slice(&values(100..g / 4 + 10, 12))?;
    let err = producer
        .publish(&b)
        .err()
        .ok_or("publish to a closed socket returned Ok")?;
    eprintln!("failed: {err}");
    assert!(
        err.to_string().contains("sending an update failed"),
        "{err}"
    );
    assert_eq!((producer.published_bytes(), producer.generation()), (g, 1));
    Ok(())
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

/// Sends the hand-made `bytes` with `fds` chunk descriptors (after `valid_first` when
/// `after_first`), closes the peer, and checks the consumer refuses the update with an
/// error containing `says`, maps nothing more, and refuses every later call.
fn assert_refused(after_first: bool, bytes: &[u8], fds: usize, says: &str) -> TestResult {
    let _memory = crate::memory_shared();
    let (d, g) = setup()?;
    let (mut consumer, peer) = hostile_peer(&d, g)?;
    if after_first {
        valid_first(&peer, &d, g)?;
        assert!(consumer.receive()?, "the valid first update");
    }
    let before = (
        consumer.committed_bytes(),
        consumer.len(),
        consumer.generation(),
        consumer.reservation().mapping_count(),
    );
    send_raw(&peer, bytes, &chunk_fds(&d, g, fds)?)?;
    drop(peer);
    let err = consumer
        .receive()
        .err()
        .ok_or(format!("a hostile update ({says}) was accepted"))?;
    eprintln!("refused: {err}");
    assert!(err.to_string().contains(says), "expected {says:?}: {err}");
    let after = (
        consumer.committed_bytes(),
        consumer.len(),
        consumer.generation(),
        consumer.reservation().mapping_count(),
    );
    assert_eq!(after, before, "a refused update changed the consumer");
    assert!(
        consumer.receive().is_err(),
        "a consumer out of step went on"
    );
    Ok(())
}

/// Defect 5: a truncated header (the peer closes after 20 of its 48 bytes) is an error
/// saying so, not a hang, a panic, or a clean end.
#[test]
fn hostile_truncated_header_is_refused() -> TestResult {
    let bytes = header(PEER_ID, 1, 0, 0, 0);
    assert_refused(false, &bytes[..20], 0, "after 20 of the 48 bytes")
}

/// Defect 5: an absurd chunk count (`u32::MAX`) is refused before anything the size of the
/// count is allocated.
#[test]
fn hostile_absurd_chunk_count_is_refused_without_allocating_it() -> TestResult {
    let bytes = header(PEER_ID, 1, 0, u64::MAX, u32::MAX);
    assert_refused(false, &bytes, 0, "announces 4294967295 chunks")
}

/// Defect 5: absurd lengths (`u64::MAX` published and committed bytes) are refused.
#[test]
fn hostile_absurd_length_is_refused() -> TestResult {
    let bytes = header(PEER_ID, 1, u64::MAX, u64::MAX, 0);
    assert_refused(false, &bytes, 0, "does not fit")
}

/// Defect 5: a chunk whose size would wrap the address arithmetic (`u64::MAX`) is refused.
#[test]
fn hostile_absurd_chunk_size_is_refused() -> TestResult {
    let mut bytes = header(PEER_ID, 1, 0, 4096, 1);
    bytes.extend(record(0, u64::MAX));
    assert_refused(false, &bytes, 1, "passes the end")
}

/// Defect 5: a chunk at an offset past the reservation is refused.
#[test]
fn hostile_offset_past_the_reservation_is_refused() -> TestResult {
    let (_, g) = setup()?;
    let end = PEER_CHUNKS * g as u64;
    let mut bytes = header(PEER_ID, 1, 0, g as u64, 1);
    bytes.extend(record(end, g as u64));
    assert_refused(false, &bytes, 1, "passes the end")
}

/// Defect 5: overlapping chunks (two at offset 0) are refused, the first one unmapped too.
#[test]
fn hostile_overlapping_chunks_are_refused() -> TestResult {
    let (_, g) = setup()?;
    let mut bytes = header(PEER_ID, 1, 0, 2 * g as u64, 2);
    bytes.extend(record(0, g as u64));
    bytes.extend(record(0, g as u64));
    assert_refused(false, &bytes, 2, "overlaps")
}

/// Defect 5: a chunk overlapping one mapped by an earlier update is refused.
#[test]
fn hostile_chunk_over_an_earlier_update_is_refused() -> TestResult {
    let (_, g) = setup()?;
    let mut bytes = header(PEER_ID, 2, 0, 2 * g as u64, 1);
    bytes.extend(record(0, g as u64));
    assert_refused(true, &bytes, 1, "overlaps")
}

/// Defect 5: more chunk records than descriptors sent is refused (and the one descriptor
/// sent is closed, not imported).
#[test]
fn hostile_more_chunks_than_descriptors_is_refused() -> TestResult {
    let (_, g) = setup()?;
    let mut bytes = header(PEER_ID, 1, 0, 2 * g as u64, 2);
    bytes.extend(record(0, g as u64));
    bytes.extend(record(g as u64, g as u64));
    assert_refused(
        false,
        &bytes,
        1,
        "announces 2 chunks but carried 1 descriptors",
    )
}

/// Defect 5: a generation going backwards (a replayed first update) is refused.
#[test]
fn hostile_generation_going_backwards_is_refused() -> TestResult {
    let (_, g) = setup()?;
    let mut bytes = header(PEER_ID, 1, 64, 2 * g as u64, 1);
    bytes.extend(record(g as u64, g as u64));
    assert_refused(true, &bytes, 1, "goes backwards")
}

/// Defect 5: another buffer id mid-stream is refused.
#[test]
fn hostile_buffer_id_change_mid_stream_is_refused() -> TestResult {
    let (_, g) = setup()?;
    let mut bytes = header(PEER_ID + 1, 2, 64, 2 * g as u64, 1);
    bytes.extend(record(g as u64, g as u64));
    assert_refused(true, &bytes, 1, "an update for buffer #8")
}

/// Defect 5 (control): the hand-made messages above are well formed but for the field
/// each one breaks: the same valid first update, then a valid second one, are mapped.
#[test]
fn hand_made_valid_updates_are_mapped() -> TestResult {
    let _memory = crate::memory_shared();
    let (d, g) = setup()?;
    let (mut consumer, peer) = hostile_peer(&d, g)?;
    valid_first(&peer, &d, g)?;
    let mut bytes = header(PEER_ID, 2, 128, 2 * g as u64, 1);
    bytes.extend(record(g as u64, g as u64));
    send_raw(&peer, &bytes, &chunk_fds(&d, g, 1)?)?;
    drop(peer);
    assert!(consumer.receive()?);
    assert!(consumer.receive()?);
    assert!(!consumer.receive()?, "the peer closed between updates");
    assert_eq!((consumer.committed_bytes(), consumer.len()), (2 * g, 32));
    assert_eq!(consumer.reservation().mapping_count(), 2);
    Ok(())
}

/// One message carries at most `MAX_CHUNKS_PER_UPDATE` descriptors: a publish of more new
/// chunks goes as several updates, each whole and consistent (its length within its
/// chunks), and the consumer ends with the producer's bytes.
#[test]
fn more_chunks_than_one_update_carries_go_as_several_whole_updates() -> TestResult {
    let _memory = crate::memory_shared();
    let (d, g) = setup()?;
    let chunks = cuda_vmm_alloc::MAX_CHUNKS_PER_UPDATE + 2;
    let mut b: GrowableBuffer<u32> = GrowableBuffer::new(
        &d,
        BufferConfig {
            max_capacity: Some(chunks * g / 4),
            policy: GrowthPolicy::fixed(g),
            props: Some(exportable(&d)),
            ..BufferConfig::default()
        },
    )?;
    let (mut producer, mut consumer, probe) = share(&d, &b)?;
    b.resize(chunks * g / 4 - 3, 0x5a5a_5a5a)?;
    b.write(chunks * g / 4 - 13, &values(0..10, 13))?;
    assert_eq!(b.chunk_allocations().count(), chunks);
    assert_eq!(producer.publish(&b)?, chunks);
    assert_eq!(producer.generation(), 2);
    assert!(consumer.receive()?);
    let first = cuda_vmm_alloc::MAX_CHUNKS_PER_UPDATE * g;
    assert_eq!(
        (consumer.committed_bytes(), consumer.len()),
        (first, first / 4)
    );
    assert!(consumer.receive()?);
    assert_eq!(pending(&probe)?, 0);
    assert_eq!(consumer.committed_bytes(), chunks * g);
    assert!(
        consumer.to_vec()? == b.to_vec()?,
        "producer and consumer differ"
    );
    Ok(())
}
