//! A hostile peer: hand-made messages the consumer must refuse (saying why, mapping nothing
//! more), and hand-made valid ones it must map.

use super::*;

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
