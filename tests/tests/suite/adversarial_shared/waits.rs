//! Shared-buffer failures a caller branches on (issue 23): a dead peer is an I/O error, a
//! hostile one a protocol error, a misused producer a configuration error, and an earlier
//! failure a broken side; and `try_receive` / `receive_timeout`, which wait for an update
//! without blocking for good and change nothing when none came.

use std::io::ErrorKind;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use cuda_vmm_alloc::{Error, SharedBufferConsumer, SharedBufferProducer};

use crate::soundness_shared::{
    buffer, header, hostile_peer, send_raw, setup, share, values, TestResult, PEER_ID,
};

#[test]
fn try_receive_and_receive_timeout_wait_for_an_update_and_change_nothing_without_one() -> TestResult
{
    let _memory = crate::memory_shared();
    let (d, g) = setup()?;
    let mut b = buffer(&d, g)?;
    let (mut producer, mut consumer, probe) = share(&d, &b)?;
    // Nothing sent: both answer None at once or after the timeout, and read nothing.
    assert_eq!(consumer.try_receive()?, None);
    let start = Instant::now();
    assert_eq!(consumer.receive_timeout(Duration::from_millis(50))?, None);
    assert!(
        start.elapsed() >= Duration::from_millis(45),
        "{:?}",
        start.elapsed()
    );
    assert_eq!((consumer.generation(), consumer.committed_bytes()), (0, 0));
    // An update: mapped whole, its descriptors kept through the peeks.
    b.extend_from_slice(&values(0..100, 5))?;
    assert_eq!(producer.publish(&b)?, 1);
    assert_eq!(
        consumer.receive_timeout(Duration::from_secs(10))?,
        Some(true)
    );
    assert_eq!(consumer.to_vec()?, values(0..100, 5));
    assert_eq!(consumer.try_receive()?, None);
    b.extend_from_slice(&values(100..200, 5))?;
    producer.publish(&b)?;
    assert_eq!(consumer.try_receive()?, Some(true));
    assert_eq!((consumer.len(), consumer.generation()), (200, 2));
    // Reads block again without a timeout afterwards.
    assert_eq!(probe.read_timeout()?, None);
    // The producer gone: the end of the stream.
    drop(producer);
    assert_eq!(consumer.try_receive()?, Some(false));
    Ok(())
}

#[test]
fn shared_buffer_errors_say_whether_the_peer_the_socket_or_the_caller_failed() -> TestResult {
    let _memory = crate::memory_shared();
    let (d, g) = setup()?;
    // The consumer gone: publishing is an I/O error (a broken pipe), and changes nothing.
    let mut b = buffer(&d, g)?;
    let (mut producer, consumer, probe) = share(&d, &b)?;
    drop((consumer, probe));
    b.extend_from_slice(&values(0..10, 1))?;
    let err = producer.publish(&b).expect_err("the consumer is gone");
    assert!(
        matches!(&err, Error::SharedIo { message, .. } if message == "sending an update failed"),
        "{err:?}"
    );
    assert_eq!(err.shared_io_kind(), Some(ErrorKind::BrokenPipe), "{err}");
    assert!(std::error::Error::source(&err).is_some());
    assert_eq!((producer.generation(), producer.published_bytes()), (0, 0));
    // Another buffer: the caller's mistake, a configuration error.
    let other = buffer(&d, g)?;
    assert!(matches!(
        producer.publish(&other),
        Err(Error::InvalidConfig { message }) if message.starts_with("shared buffer: publishing buffer #")
    ));
    // A hostile peer: a protocol error; the consumer is then broken, and says why.
    let (mut consumer, peer) = hostile_peer(&d, g)?;
    send_raw(&peer, &header(PEER_ID + 1, 1, 0, 0, 0), &[])?;
    let err = consumer.try_receive().expect_err("another buffer's update");
    assert_eq!(
        err,
        Error::SharedProtocol {
            message: format!(
                "an update for buffer #{} on a stream sharing buffer #{PEER_ID}",
                PEER_ID + 1
            )
        }
    );
    assert_eq!(
        consumer.receive_timeout(Duration::from_millis(1)),
        Err(Error::SharedBroken {
            message: format!(
                "an earlier update failed ({err}): this consumer no longer follows the producer"
            )
        })
    );
    assert!(!err.is_out_of_memory() && err.shared_io_kind().is_none());
    // A stream closed before the hello: the peer broke the protocol.
    let (tx, rx) = UnixStream::pair()?;
    drop(tx);
    assert_eq!(
        SharedBufferConsumer::<u32>::connect(&d, rx).map(|c| c.generation()),
        Err(Error::SharedProtocol {
            message: "the producer closed the stream before the hello".into()
        })
    );
    // Elements of another size: the two sides disagree on `T`.
    let (tx, rx) = UnixStream::pair()?;
    let _producer = SharedBufferProducer::new(&b, tx)?;
    assert_eq!(
        SharedBufferConsumer::<u64>::connect(&d, rx).map(|c| c.generation()),
        Err(Error::InvalidConfig {
            message: "shared buffer: the producer's elements are 4 bytes, this consumer's 8 bytes"
                .into()
        })
    );
    Ok(())
}
