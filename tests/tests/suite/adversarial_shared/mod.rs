//! Adversarial review of the shared-buffer protocol (`SharedBufferProducer` /
//! `SharedBufferConsumer`), beyond `soundness_shared`: shrink, truncate and regrowth in
//! every order between publishes, failed shrinks, address reuse seen from the consumer,
//! faults at every chunk index on both sides, hostile peers, and updates of more than
//! `MAX_CHUNKS_PER_UPDATE` chunks. Each test names what it guards.
//!
//! Descriptor counts are taken in a child process of this binary (`fd_child`), where no
//! other test opens descriptors meanwhile.

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::Command;

use cuda_vmm::Backend;
use cuda_vmm_alloc::{
    BufferConfig, GrowableBuffer, GrowthPolicy, SharedBufferConsumer, SharedBufferProducer,
    MAX_CHUNKS_PER_UPDATE,
};
use cuda_vmm_sys::CUresult;
use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};

use crate::cuda;
use crate::soundness_shared::{
    buffer, chunk_fds, exportable, header, hostile_peer, pending, record, send_raw, setup, share,
    skip_without_simulator, valid_first, values, TestResult, PEER_ID,
};

const ROLE_ENV: &str = "CUDA_VMM_ADVERSARIAL_SHARED_ROLE";

/// `result`'s error, whose message must be exactly `says`.
fn refused<T: std::fmt::Debug, E: std::fmt::Display>(
    result: Result<T, E>,
    says: &str,
) -> TestResult {
    match result {
        Ok(v) => Err(format!("accepted ({v:?}), expected the error {says:?}").into()),
        Err(e) => {
            eprintln!("refused: {e}");
            assert_eq!(e.to_string(), says);
            Ok(())
        }
    }
}

/// A hand-made hello of protocol `version` for `u32` elements, 8 chunks of `g` bytes.
fn hello(version: u32, g: usize) -> Vec<u8> {
    let words = [version.to_le_bytes(), 4u32.to_le_bytes()].concat();
    let sizes = [(8 * g as u64).to_le_bytes(), PEER_ID.to_le_bytes()].concat();
    [&b"CUVMMBUF"[..], &words, &sizes].concat()
}

/// Publishes, receives, and checks the consumer holds exactly the producer's elements.
fn publish_and_agree(
    producer: &mut SharedBufferProducer,
    consumer: &mut SharedBufferConsumer<u32>,
    b: &GrowableBuffer<u32>,
    new_chunks: usize,
) -> TestResult {
    assert_eq!(producer.publish(b)?, new_chunks);
    assert!(consumer.receive()?);
    assert_eq!(consumer.generation(), producer.generation());
    assert_eq!(consumer.committed_bytes(), producer.published_bytes());
    assert_eq!(consumer.committed_bytes(), b.committed_bytes());
    assert!(
        consumer.to_vec()? == b.to_vec()?,
        "producer and consumer differ"
    );
    Ok(())
}

/// A buffer of `u32` growing by `chunk` bytes, up to `chunks` of them.
fn buffer_of(
    d: &cuda_vmm::Device,
    chunk: usize,
    chunks: usize,
) -> cuda_vmm_alloc::Result<GrowableBuffer<u32>> {
    GrowableBuffer::new(
        d,
        BufferConfig {
            max_capacity: Some(chunks * chunk / 4),
            policy: GrowthPolicy::fixed(chunk),
            props: Some(exportable(d)),
            ..BufferConfig::default()
        },
    )
}

/// Guards: truncation, regrowth within committed memory, a shrink that releases only
/// unpublished chunks followed by regrowth at the same offsets, and a no-op shrink, in
/// that order between publishes, each keep producer and consumer bytes equal; the first
/// shrink that releases a published chunk is refused with the reason, changes nothing,
/// and stays refused after regrowth.
#[test]
fn every_shrink_truncate_and_regrowth_order_keeps_both_sides_equal() -> TestResult {
    let _memory = crate::memory_shared();
    let (d, g) = setup()?;
    let mut b = buffer(&d, g)?;
    let (mut producer, mut consumer, probe) = share(&d, &b)?;
    b.extend_from_slice(&values(0..g / 4 + 10, 1))?; // two chunks
    publish_and_agree(&mut producer, &mut consumer, &b, 2)?;
    b.truncate(10); // shorter, nothing released
    publish_and_agree(&mut producer, &mut consumer, &b, 0)?;
    assert_eq!(consumer.len(), 10);
    b.extend_from_slice(&values(10..g / 4 + 20, 2))?; // regrown inside committed memory
    publish_and_agree(&mut producer, &mut consumer, &b, 0)?;
    b.extend_from_slice(&values(g / 4 + 20..3 * g / 4 + 5, 3))?; // two more, unpublished
    b.truncate(g / 4 + 20);
    b.shrink_to_fit()?; // releases exactly the unpublished ones
    assert_eq!(b.committed_bytes(), 2 * g);
    publish_and_agree(&mut producer, &mut consumer, &b, 0)?;
    b.extend_from_slice(&values(g / 4 + 20..g / 2 + 1, 4))?; // the same offset 2g again
    let other = buffer(&d, g)?;
    let before = (producer.published_bytes(), producer.generation());
    refused(
        producer.publish(&other),
        &format!(
            "invalid configuration: shared buffer: publishing buffer #{} ({:#x}), but this \
             producer shares buffer #{}: a different buffer, even at the same address, is no \
             continuation",
            other.id(),
            other.ptr(),
            b.id()
        ),
    )?;
    assert_eq!((producer.published_bytes(), producer.generation()), before);
    assert_eq!(pending(&probe)?, 0, "a refused publish wrote bytes");
    publish_and_agree(&mut producer, &mut consumer, &b, 1)?;
    b.extend_from_slice(&values(g / 2 + 1..3 * g / 4, 5))?; // chunk 2 full
    b.shrink_to_fit()?; // at a chunk boundary: nothing to release
    publish_and_agree(&mut producer, &mut consumer, &b, 0)?;
    let seen = consumer.to_vec()?;
    let before = (producer.published_bytes(), producer.generation());
    assert_eq!(before, (3 * g, 6));
    b.truncate(g / 4);
    b.shrink_to_fit()?; // releases published chunks 1 and 2
    let why = format!(
        "invalid configuration: shared buffer: the published chunk at offset {g} ({g} bytes) \
         was released since it was published ({} bytes published, {g} committed now): the \
         consumer still maps it, and a shared buffer only grows past what it published",
        3 * g,
    );
    refused(producer.publish(&b), &why)?;
    assert_eq!((producer.published_bytes(), producer.generation()), before);
    assert_eq!(pending(&probe)?, 0, "a refused publish wrote bytes");
    b.extend_from_slice(&values(g / 4..g / 2 + 1, 6))?; // regrown over the released chunks
    let why = why.replace(
        &format!("{g} committed now"),
        &format!("{} committed now", 3 * g),
    );
    refused(producer.publish(&b), &why)?;
    assert_eq!((producer.published_bytes(), producer.generation()), before);
    assert!(consumer.to_vec()? == seen, "the consumer's bytes changed");
    Ok(())
}

/// Guards: a shrink that fails (fault injected) keeps its chunks with their identity, so
/// the producer may go on publishing them: a refused unmap of published whole chunks, and
/// a straddling published chunk whose replacement cannot be mapped (the old chunk is mapped
/// back). A straddling published chunk that IS replaced is refused as released.
#[test]
fn a_failed_shrink_keeps_published_chunks_publishable() -> TestResult {
    if skip_without_simulator()? {
        return Ok(());
    }
    let _memory = crate::memory_shared();
    let (d, g) = setup()?;
    // Whole chunks: the unmap of the last (published) one is refused.
    let mut b = buffer(&d, g)?;
    let (mut producer, mut consumer, _probe) = share(&d, &b)?;
    b.extend_from_slice(&values(0..g / 2 + 10, 6))?; // three chunks
    publish_and_agree(&mut producer, &mut consumer, &b, 3)?;
    b.truncate(10);
    {
        let _f = cuda_vmm_sim::inject_fault("cuMemUnmap", 1, CUresult::CUDA_ERROR_UNKNOWN);
        assert!(
            b.shrink_to_fit().is_err(),
            "the injected unmap fault was ignored"
        );
    }
    assert_eq!(
        b.committed_bytes(),
        3 * g,
        "the refused unmap kept the chunks"
    );
    b.extend_from_slice(&values(10..g / 2, 7))?;
    publish_and_agree(&mut producer, &mut consumer, &b, 0)?;
    // A straddling chunk of 2g, published, cut at g: the replacement's map fails (the 2nd
    // cuMemMap: the 1st maps it as scratch), the old chunk goes back in place.
    let mut b = buffer_of(&d, 2 * g, 4)?;
    let (mut producer, mut consumer, probe) = share(&d, &b)?;
    b.extend_from_slice(&values(0..g / 4 + 10, 8))?; // one chunk of 2g
    assert_eq!(b.committed_bytes(), 2 * g);
    publish_and_agree(&mut producer, &mut consumer, &b, 1)?;
    b.truncate(100);
    {
        let _f = cuda_vmm_sim::inject_fault("cuMemMap", 2, CUresult::CUDA_ERROR_OUT_OF_MEMORY);
        assert!(
            b.shrink_to_fit().is_err(),
            "the injected map fault was ignored"
        );
    }
    assert_eq!(
        b.committed_bytes(),
        2 * g,
        "chunk 0 was not mapped back whole"
    );
    b.extend_from_slice(&values(100..300, 9))?;
    publish_and_agree(&mut producer, &mut consumer, &b, 0)?;
    // The same shrink, succeeding: chunk 0 is replaced, which the consumer still maps.
    b.shrink_to_fit()?;
    assert_eq!(b.committed_bytes(), g);
    let before = (producer.published_bytes(), producer.generation());
    refused(
        producer.publish(&b),
        &format!(
            "invalid configuration: shared buffer: the published chunk at offset 0 ({} bytes) \
             was released since it was published ({} bytes published, {g} committed now): the \
             consumer still maps it, and a shared buffer only grows past what it published",
            2 * g,
            2 * g
        ),
    )?;
    assert_eq!((producer.published_bytes(), producer.generation()), before);
    assert_eq!(pending(&probe)?, 0);
    Ok(())
}

/// Guards address reuse seen from the consumer: after buffer A is dropped and buffer B is
/// created (likely at A's address) and written, A's consumer still reads A's bytes (its
/// imports keep A's memory); a producer of B started on A's stream is refused by A's
/// consumer (its hello is no update), which maps nothing of it.
#[test]
fn a_consumer_keeps_the_first_buffer_when_another_takes_its_address() -> TestResult {
    let _memory = crate::memory_shared();
    let (d, g) = setup()?;
    let mut a = buffer(&d, g)?;
    let (tx, rx) = UnixStream::pair()?;
    let mut producer = SharedBufferProducer::new(&a, tx.try_clone()?)?;
    let mut consumer = SharedBufferConsumer::<u32>::connect(&d, rx)?;
    let data = values(0..g / 4 + 10, 10);
    a.extend_from_slice(&data)?;
    publish_and_agree(&mut producer, &mut consumer, &a, 2)?;
    let a_ptr = a.ptr();
    drop((a, producer));
    let mut b = buffer(&d, g)?;
    b.extend_from_slice(&values(0..g / 4 + 10, 11))?;
    eprintln!("A at {a_ptr:#x}, B at {:#x}", b.ptr());
    assert!(consumer.to_vec()? == data, "A's consumer sees B's bytes");
    let mut b_producer = SharedBufferProducer::new(&b, tx)?;
    b_producer.publish(&b)?;
    refused(
        consumer.receive(),
        "shared buffer protocol: bad update magic [43, 55, 56, 4d, 4d, 42, 55, 46]",
    )?;
    assert_eq!(consumer.reservation().mapping_count(), 2);
    assert_eq!(
        (consumer.committed_bytes(), consumer.generation()),
        (2 * g, 1)
    );
    assert!(
        consumer.to_vec()? == data,
        "a refused hello changed the consumer"
    );
    Ok(())
}

/// Guards hostile updates the consumer must refuse before mapping anything, with the
/// reason: a zero-length chunk, a published length over the committed bytes, a chunk size
/// that is not a multiple of the granularity (refused at import), and a hello of another
/// protocol version.
#[test]
fn hostile_sizes_lengths_and_versions_are_refused() -> TestResult {
    let _memory = crate::memory_shared();
    let (d, g) = setup()?;
    let gu = g as u64;
    let cases: [(Vec<u8>, String); 3] = [
        (
            [header(PEER_ID, 1, 0, 0, 1), record(0, 0)].concat(),
            "shared buffer protocol: chunk 0 of the update: size 0".into(),
        ),
        (
            [header(PEER_ID, 1, gu + 4, gu, 1), record(0, gu)].concat(),
            format!(
                "shared buffer protocol: update of length {} bytes over {g} \
                 committed bytes does not fit a {}-byte reservation of 4-byte elements",
                g + 4,
                8 * g
            ),
        ),
        (
            [header(PEER_ID, 1, 0, gu + 4096, 1), record(0, gu + 4096)].concat(),
            format!(
                "imported size {} is not a multiple of the allocation granularity {g}",
                g + 4096
            ),
        ),
    ];
    for (bytes, says) in &cases {
        let (mut consumer, peer) = hostile_peer(&d, g)?;
        send_raw(&peer, bytes, &chunk_fds(&d, g, 1)?)?;
        refused(consumer.receive(), says)?;
        assert_eq!(consumer.reservation().mapping_count(), 0);
        assert_eq!((consumer.committed_bytes(), consumer.len()), (0, 0));
    }
    let (tx, rx) = UnixStream::pair()?;
    send_raw(&tx, &hello(3, g), &[])?;
    refused(
        SharedBufferConsumer::<u32>::connect(&d, rx).map(|c| c.generation()),
        "shared buffer protocol: producer speaks version 3, this consumer \
         version 2",
    )
}

/// Guards a peer that sends two whole updates in one write: the first update's bytes
/// then carry both updates' descriptors, which is refused (not mapped, and not taken for
/// the second update's); two updates without chunks in one write are both received.
#[test]
fn two_updates_in_one_write() -> TestResult {
    let _memory = crate::memory_shared();
    let (d, g) = setup()?;
    let gu = g as u64;
    let (mut consumer, peer) = hostile_peer(&d, g)?;
    let both = [
        header(PEER_ID, 1, 0, gu, 1),
        record(0, gu),
        header(PEER_ID, 2, 0, 2 * gu, 1),
        record(gu, gu),
    ]
    .concat();
    send_raw(&peer, &both, &chunk_fds(&d, g, 2)?)?;
    refused(
        consumer.receive(),
        "shared buffer protocol: the update announces 1 chunks but carried 2 \
         descriptors",
    )?;
    assert_eq!(consumer.reservation().mapping_count(), 0);
    let (mut consumer, peer) = hostile_peer(&d, g)?;
    let empty = [header(PEER_ID, 1, 0, 0, 0), header(PEER_ID, 2, 0, 0, 0)].concat();
    send_raw(&peer, &empty, &[])?;
    drop(peer);
    assert!(consumer.receive()? && consumer.receive()?);
    assert!(!consumer.receive()?);
    assert_eq!(consumer.generation(), 2);
    Ok(())
}

/// Guards updates of more than `MAX_CHUNKS_PER_UPDATE` chunks: 2 * MAX + 1 new chunks go
/// as three whole updates (MAX, MAX, 1 chunks), each consistent when received, and the
/// consumer ends mapping every chunk with the producer's bytes. A failed export of an
/// update's chunk writes nothing of that update (the last chunk of the first: nothing at
/// all; the first chunk of the second: the first update went, and is published), and the
/// next publish sends the rest.
#[test]
fn more_than_two_updates_worth_of_chunks_go_whole() -> TestResult {
    let _memory = crate::memory_shared();
    let (d, g) = setup()?;
    let (max, chunks) = (MAX_CHUNKS_PER_UPDATE, 2 * MAX_CHUNKS_PER_UPDATE + 1);
    let mut b = buffer_of(&d, g, chunks)?;
    let (mut producer, mut consumer, probe) = share(&d, &b)?;
    b.extend_from_slice(&values(0..1000, 12))?;
    b.reserve(chunks * g / 4 - 1000)?; // committed, untouched
    assert_eq!(b.chunk_allocations().count(), chunks);
    let mut expected = vec![(1, max), (2, 2 * max), (3, chunks)];
    if cuda()?.backend() == Backend::Simulator {
        let export = "cuMemExportToShareableHandle";
        for (nth, published) in [(max as u64, 0), (max as u64 + 1, 1)] {
            let _f = cuda_vmm_sim::inject_fault(export, nth, CUresult::CUDA_ERROR_OUT_OF_MEMORY);
            refused(producer.publish(&b), &oom(export))?;
            assert_eq!(producer.generation(), published, "export {nth} failed");
            assert_eq!(producer.published_bytes(), published as usize * max * g);
            assert_eq!(
                pending(&probe)? as usize,
                published as usize * (48 + max * 40)
            );
        }
        assert_eq!(producer.publish(&b)?, max + 1);
    } else {
        assert_eq!(producer.publish(&b)?, chunks);
    }
    assert_eq!(producer.generation(), 3);
    for (generation, mapped) in expected.drain(..) {
        assert!(consumer.receive()?);
        assert_eq!(consumer.generation(), generation);
        assert_eq!(consumer.committed_bytes(), mapped * g);
        assert_eq!(consumer.reservation().mapping_count(), mapped);
        assert_eq!(consumer.len(), 1000);
    }
    assert_eq!(pending(&probe)?, 0);
    assert!(consumer.to_vec()? == b.to_vec()?);
    let mut tail = vec![0xffu8; 4096];
    consumer.reservation().read(chunks * g - 4096, &mut tail)?;
    assert!(
        tail.iter().all(|&x| x == 0),
        "the last chunk is not the producer's"
    );
    Ok(())
}

/// The message of `symbol` failing with the injected `CUDA_ERROR_OUT_OF_MEMORY`.
fn oom(symbol: &str) -> String {
    format!(
        "{symbol} failed: CUDA_ERROR_OUT_OF_MEMORY (2): The API call failed because it was \
         unable to allocate enough memory or other resources to perform the requested operation."
    )
}

mod descriptors;
mod waits;
