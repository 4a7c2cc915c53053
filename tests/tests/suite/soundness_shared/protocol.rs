//! The producer's side of the protocol: refusals that change nothing, identity beyond the
//! address, one message per update, and a failed send or export that loses nothing.

use super::*;

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
