//! Sharing across processes: allocations sent over a Unix socket (`send_allocations` /
//! `receive_allocations`), a `GrowableBuffer` shared with a consumer process, and the
//! access ranges the driver refuses.
//!
//! Two-process tests spawn this test binary as a peer (the `#[ignore]`d `peer_child`, told
//! its role and the socket's path by environment variables). Leak checks count
//! `/proc/self/fd` in a child process of their own (`survivor_child`), where no other test
//! opens descriptors meanwhile. Every process prints the backend it runs on.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cuda_vmm::{
    receive_allocations, receive_exported, send_allocations, send_exported, AccessFlags,
    Allocation, AllocationProps, Cuda, Device, Error, ExportedAllocation, HandleTypes, Mapping,
    Reservation, ReserveOptions, Stream,
};
use cuda_vmm_alloc::{
    BufferConfig, GrowableBuffer, GrowthPolicy, SharedBufferConsumer, SharedBufferProducer,
};
use cuda_vmm_tests::helpers::{
    child_command, min_granularity, pattern_blocks, run_child, TestResult,
};
use cuda_vmm_tests::test_name;

const ROLE_ENV: &str = "CUDA_VMM_SHARING_ROLE";
const SOCKET_ENV: &str = "CUDA_VMM_SHARING_SOCKET";
const TIMEOUT: Duration = Duration::from_secs(120);

fn device() -> cuda_vmm::Result<Device> {
    let cuda = Cuda::new()?;
    eprintln!(
        "sharing suite backend (pid {}): {}",
        std::process::id(),
        cuda.describe()
    );
    cuda.device(0)
}

fn exportable(d: &Device) -> AllocationProps {
    AllocationProps::device(d).handle_types(HandleTypes::POSIX_FD)
}

/// Element `i` of the shared buffer's contents.
fn element(i: usize) -> u32 {
    (i as u32).wrapping_mul(2_654_435_761)
}

/// Maps `allocations` back to back in a new reservation, read-write for `d`.
fn map_all(
    d: &Device,
    allocations: &[Allocation],
) -> cuda_vmm::Result<(Reservation, Vec<Mapping>)> {
    let total = allocations.iter().map(Allocation::size).sum();
    let r = Reservation::new(d, total, ReserveOptions::default())?;
    let mut mappings = Vec::new();
    let mut offset = 0;
    for a in allocations {
        mappings.push(r.map(offset, a, 0, a.size())?);
        offset += a.size();
    }
    r.set_access(0, total, &[(d, AccessFlags::ReadWrite)])?;
    Ok((r, mappings))
}

fn gran(d: &Device) -> cuda_vmm::Result<usize> {
    min_granularity(d, &exportable(d))
}

fn open_fds() -> std::io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/fd")?.count())
}

// ---- processes and sockets -------------------------------------------------------------------

/// A listening socket in a fresh temporary directory, removed on drop.
struct Rendezvous {
    dir: PathBuf,
    listener: UnixListener,
}

impl Rendezvous {
    fn new() -> std::io::Result<Rendezvous> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cuda-vmm-sharing-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        let listener = UnixListener::bind(dir.join("socket"))?;
        listener.set_nonblocking(true)?;
        Ok(Rendezvous { dir, listener })
    }

    /// Spawns this binary as `test` with `role`, and accepts its connection.
    fn spawn(
        &self,
        test: &str,
        role: &str,
    ) -> Result<(Child, UnixStream), Box<dyn std::error::Error>> {
        let mut child = child_command(test)?
            .env(ROLE_ENV, role)
            .env(SOCKET_ENV, self.dir.join("socket"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let start = Instant::now();
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false)?;
                    stream.set_read_timeout(Some(TIMEOUT))?;
                    return Ok((child, stream));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if child.try_wait()?.is_some() || start.elapsed() > TIMEOUT {
                        let _ = child.kill();
                        return Err(format!("{role} never connected: {}", finish(child)?).into());
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Drop for Rendezvous {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits for a child; its output, or an error with it when it failed.
fn finish(child: Child) -> Result<String, Box<dyn std::error::Error>> {
    let out = child.wait_with_output()?;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() || !text.contains("test result: ok. 1 passed") {
        return Err(format!("child failed ({}):\n{text}", out.status).into());
    }
    Ok(text)
}

/// The role and connected stream of a child; `None` when run directly.
fn peer() -> Result<Option<(String, UnixStream)>, Box<dyn std::error::Error>> {
    let (Ok(role), Ok(path)) = (std::env::var(ROLE_ENV), std::env::var(SOCKET_ENV)) else {
        return Ok(None);
    };
    let stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    Ok(Some((role, stream)))
}

fn ack(mut s: &UnixStream) -> std::io::Result<()> {
    s.write_all(&[1])
}

fn wait_ack(mut s: &UnixStream) -> std::io::Result<()> {
    let mut b = [0u8; 1];
    s.read_exact(&mut b)
}

// ---- two processes: bytes cross both ways ----------------------------------------------------

#[test]
fn bytes_written_in_each_process_are_seen_in_the_other() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let rendezvous = Rendezvous::new()?;
    let (child, stream) = rendezvous.spawn(&test_name!(peer_child), "importer")?;
    // Export two allocations (g and 2g) holding pattern 1.
    let props = exportable(&d);
    let ours = vec![
        Allocation::new(&d, g, &props)?,
        Allocation::new(&d, 2 * g, &props)?,
    ];
    let (r, _mappings) = map_all(&d, &ours)?;
    r.write(0, &pattern_blocks(3 * g, 1, 31, 12))?;
    send_allocations(&stream, &ours.iter().collect::<Vec<_>>())?;
    // The peer checks pattern 1, writes pattern 2 at g - 4096, and sends back its own
    // allocation holding pattern 3.
    wait_ack(&stream)?;
    let mut back = vec![0u8; 2 * g];
    r.read(g - 4096, &mut back)?;
    assert!(
        back == pattern_blocks(2 * g, 2, 31, 12),
        "the peer's writes are not seen here"
    );
    let theirs = receive_allocations(&stream, &d)?;
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].size(), g);
    let (r2, _m2) = map_all(&d, &theirs)?;
    let mut out = vec![0u8; g];
    r2.read(0, &mut out)?;
    assert!(
        out == pattern_blocks(g, 3, 31, 12),
        "the peer's allocation does not hold its bytes"
    );
    ack(&stream)?;
    eprintln!("{}", finish(child)?);
    Ok(())
}

#[test]
#[ignore = "run by the sharing tests in a child process"]
fn peer_child() -> TestResult {
    let Some((role, stream)) = peer()? else {
        return Ok(());
    };
    let d = device()?;
    let g = gran(&d)?;
    match role.as_str() {
        "importer" => {
            let allocations = receive_allocations(&stream, &d)?;
            let sizes: Vec<usize> = allocations.iter().map(Allocation::size).collect();
            assert_eq!(sizes, [g, 2 * g]);
            let (r, _m) = map_all(&d, &allocations)?;
            let mut seen = vec![0u8; 3 * g];
            r.read(0, &mut seen)?;
            assert!(
                seen == pattern_blocks(3 * g, 1, 31, 12),
                "the exporter's bytes are not seen here"
            );
            // Across both allocations; synchronous: complete before the ack.
            r.write(g - 4096, &pattern_blocks(2 * g, 2, 31, 12))?;
            ack(&stream)?;
            let mine = Allocation::new(&d, g, &exportable(&d))?;
            let (r2, _m2) = map_all(&d, std::slice::from_ref(&mine))?;
            r2.write(0, &pattern_blocks(g, 3, 31, 12))?;
            send_allocations(&stream, &[&mine])?;
            wait_ack(&stream)?;
        }
        "exporter_exits_early" => {
            let ours: Vec<Allocation> = (0..3)
                .map(|_| Allocation::new(&d, g, &exportable(&d)))
                .collect::<cuda_vmm::Result<_>>()?;
            let (r, _m) = map_all(&d, &ours)?;
            r.write(0, &pattern_blocks(3 * g, 4, 31, 12))?;
            send_allocations(&stream, &ours.iter().collect::<Vec<_>>())?;
            // Exit at once: the descriptors are in flight, the memory must survive.
        }
        "exporter_truncates" => {
            // A header announcing 3 allocations, no descriptors, then exit.
            let mut header = b"CUVMMIPC".to_vec();
            for word in [1u32, 3, 1, 0] {
                header.extend_from_slice(&word.to_le_bytes());
            }
            (&stream).write_all(&header)?;
        }
        "importer_exits_early" => {}
        "buffer_consumer" => {
            let mut consumer = SharedBufferConsumer::<u32>::connect(&d, stream.try_clone()?)?;
            let mut updates = 0;
            while consumer.receive()? {
                updates += 1;
                let seen = consumer.to_vec()?;
                let expected: Vec<u32> = (0..seen.len()).map(element).collect();
                assert!(
                    seen == expected,
                    "update {updates}: the consumer sees other bytes"
                );
                eprintln!(
                    "consumer: update {updates}: {} elements over {} committed bytes",
                    consumer.len(),
                    consumer.committed_bytes()
                );
                ack(&stream)?;
            }
        }
        other => return Err(format!("unknown role {other}").into()),
    }
    Ok(())
}

// ---- a growable buffer shared with a consumer process ----------------------------------------

#[test]
fn shared_growable_buffer_grows_three_times_and_the_consumer_sees_every_byte() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let rendezvous = Rendezvous::new()?;
    let (child, stream) = rendezvous.spawn(&test_name!(peer_child), "buffer_consumer")?;
    let mut buffer: GrowableBuffer<u32> = GrowableBuffer::new(
        &d,
        BufferConfig {
            max_capacity: Some(16 * g / 4),
            policy: GrowthPolicy::fixed(g),
            props: Some(exportable(&d)),
            ..BufferConfig::default()
        },
    )?;
    let mut producer = SharedBufferProducer::new(&buffer, stream.try_clone()?)?;
    let per_round = g / 4 + 1000; // each round crosses into a new chunk
    let stream_for_async = Stream::new(&d)?;
    let mut growths = 0;
    for round in 0..4 {
        let start = buffer.len();
        let values: Vec<u32> = (start..start + per_round).map(element).collect();
        let chunks_before = buffer.chunk_allocations().count();
        if round == 2 {
            // Queued on a stream: publish waits for it before sending.
            buffer.extend_from_slice_async(&stream_for_async, &values)?;
        } else {
            buffer.extend_from_slice(&values)?;
        }
        if buffer.chunk_allocations().count() > chunks_before {
            growths += 1;
        }
        let sent = producer.publish(&buffer)?;
        assert_eq!(sent, buffer.chunk_allocations().count() - chunks_before);
        wait_ack(&stream)?;
    }
    assert!(growths >= 3, "the buffer grew {growths} times");
    assert_eq!(producer.published_bytes(), buffer.committed_bytes());
    drop(producer);
    drop(stream);
    eprintln!("{}", finish(child)?);
    Ok(())
}

#[test]
fn a_shared_buffer_needs_exportable_chunks() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let (a, _b) = UnixStream::pair()?;
    let plain: GrowableBuffer<u32> = GrowableBuffer::with_max_capacity(&d, 1 << 20)?;
    let err = SharedBufferProducer::new(&plain, a)
        .err()
        .ok_or("a buffer without POSIX_FD was shared")?;
    assert!(
        err.to_string().contains("without HandleTypes::POSIX_FD"),
        "{err}"
    );
    Ok(())
}

// ---- nothing leaks when either side exits early, or on malformed messages --------------------

#[test]
fn early_exit_of_either_side_leaks_nothing() -> TestResult {
    let _memory = crate::memory_shared();
    for role in [
        "survive_exporter_exit",
        "survive_importer_exit",
        "malformed",
    ] {
        let out = run_child(&test_name!(survivor_child), |c| {
            c.env(ROLE_ENV, role);
        })
        .unwrap_or_else(|e| panic!("{role}:\n{e}"));
        let text = format!("{}\n{}", out.stdout, out.stderr);
        eprintln!(
            "{role}: {}",
            text.lines()
                .filter(|l| l.contains("fds"))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(())
}

#[test]
#[ignore = "run by early_exit_of_either_side_leaks_nothing in a child process"]
fn survivor_child() -> TestResult {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return Ok(());
    };
    let d = device()?;
    let g = gran(&d)?;
    // Warm up: contexts, streams and the driver's own descriptors exist before counting.
    drop(map_all(&d, &[Allocation::new(&d, g, &exportable(&d))?])?);
    let before = open_fds()?;
    match role.as_str() {
        "survive_exporter_exit" => {
            let rendezvous = Rendezvous::new()?;
            let (child, stream) =
                rendezvous.spawn(&test_name!(peer_child), "exporter_exits_early")?;
            finish(child)?; // gone before anything is received
            let allocations = receive_allocations(&stream, &d)?;
            let (r, mappings) = map_all(&d, &allocations)?;
            let mut seen = vec![0u8; 3 * g];
            r.read(0, &mut seen)?;
            assert!(
                seen == pattern_blocks(3 * g, 4, 31, 12),
                "memory of an exited exporter lost its bytes"
            );
            drop((mappings, r, allocations));
            let (child, stream2) =
                rendezvous.spawn(&test_name!(peer_child), "exporter_truncates")?;
            finish(child)?;
            let err = receive_allocations(&stream2, &d)
                .err()
                .ok_or("truncated message accepted")?;
            assert!(err.to_string().contains("closed the connection"), "{err}");
            drop((stream, stream2, rendezvous));
        }
        "survive_importer_exit" => {
            let rendezvous = Rendezvous::new()?;
            let (child, stream) =
                rendezvous.spawn(&test_name!(peer_child), "importer_exits_early")?;
            finish(child)?;
            let ours: Vec<Allocation> = (0..3)
                .map(|_| Allocation::new(&d, g, &exportable(&d)))
                .collect::<cuda_vmm::Result<_>>()?;
            // Sending to a peer that is gone fails (EPIPE) or is buffered; both leak nothing.
            let sent = send_allocations(&stream, &ours.iter().collect::<Vec<_>>());
            eprintln!("send to an exited importer: {sent:?}");
            drop((ours, stream, rendezvous));
        }
        "malformed" => malformed_messages(&d, g)?,
        other => return Err(format!("unknown role {other}").into()),
    }
    let after = open_fds()?;
    eprintln!("{role}: open fds before {before}, after {after}");
    assert_eq!(before, after, "{role}: descriptors leaked");
    Ok(())
}

/// Writes one (malformed) message to a socket.
type Sender<'a> = Box<dyn Fn(&UnixStream) -> TestResult + 'a>;

/// Malformed messages over a socket pair: each is refused with a clear error.
fn malformed_messages(d: &Device, g: usize) -> TestResult {
    let a = Allocation::new(d, g, &exportable(d))?;
    let cases: [(&str, Sender<'_>); 4] = [
        ("bad magic", Box::new(|s| Ok((&*s).write_all(&[0u8; 24])?))),
        (
            "missing descriptor",
            Box::new(move |s| {
                // A valid header and record for one allocation, sent without its descriptor.
                let mut bytes = b"CUVMMIPC".to_vec();
                for word in [1u32, 1, 1, 0] {
                    bytes.extend_from_slice(&word.to_le_bytes());
                }
                bytes.extend_from_slice(&(g as u64).to_le_bytes());
                for word in [1u32, 0, 1] {
                    bytes.extend_from_slice(&word.to_le_bytes());
                }
                bytes.extend_from_slice(&[0u8; 12]);
                Ok((&*s).write_all(&bytes)?)
            }),
        ),
        (
            "size",
            Box::new(|s| {
                let (fd, _, props) = ExportedAllocation::new(&a)?.into_parts();
                send_exported(s, &[ExportedAllocation::from_parts(fd, 0, props)])?;
                Ok(())
            }),
        ),
        (
            "handle types",
            Box::new(|s| {
                let (fd, size, _) = ExportedAllocation::new(&a)?.into_parts();
                send_exported(
                    s,
                    &[ExportedAllocation::from_parts(
                        fd,
                        size,
                        AllocationProps::device(d),
                    )],
                )?;
                Ok(())
            }),
        ),
    ];
    for (what, send) in &cases {
        let (tx, rx) = UnixStream::pair()?;
        send(&tx)?;
        drop(tx);
        let got = receive_exported(&rx);
        eprintln!("malformed ({what}): {got:?}");
        let err = got.err().ok_or(format!("{what}: accepted"))?;
        assert!(
            matches!(err, Error::Sharing { io: None, .. }),
            "{what}: a protocol error, not {err:?}"
        );
    }
    // A size that is not a multiple of the granularity is refused at import.
    let (fd, _, props) = ExportedAllocation::new(&a)?.into_parts();
    let odd = ExportedAllocation::from_parts(fd, g + 4096, props);
    match odd.import(d) {
        Err(Error::NotAligned { value, .. }) => assert_eq!(value, (g + 4096) as u64),
        other => return Err(format!("odd size imported: {other:?}").into()),
    }
    Ok(())
}

// ---- descriptors and the safe layer's access ranges ------------------------------------------

#[test]
fn exported_descriptors_report_no_size_and_import_with_theirs() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let a = Allocation::new(&d, 2 * g, &exportable(&d))?;
    let exported = ExportedAllocation::new(&a)?;
    let fd_size = std::fs::File::from(exported.fd().try_clone_to_owned()?)
        .metadata()?
        .len();
    // As the driver's (conformance `exported_fd_reports_no_size`): the size travels beside it.
    assert_eq!(fd_size, 0);
    assert_eq!(exported.size(), 2 * g);
    let (tx, rx) = UnixStream::pair()?;
    send_exported(&tx, &[exported])?;
    let imported = receive_allocations(&rx, &d)?;
    let (r, _m) = map_all(&d, &imported)?;
    let (r0, _m0) = map_all(&d, std::slice::from_ref(&a))?;
    r0.write(g, b"one allocation, two mappings")?;
    let mut out = [0u8; 28];
    r.read(g, &mut out)?;
    assert_eq!(&out, b"one allocation, two mappings");
    // Importing from a bare descriptor takes the size and properties by hand.
    let fd = a.export_posix_fd()?;
    let err = Allocation::import_posix_fd(&d, fd.as_fd(), 2 * g, &AllocationProps::device(&d))
        .err()
        .ok_or("imported with properties that cannot export")?;
    assert!(
        err.to_string().contains("without HandleTypes::POSIX_FD"),
        "{err}"
    );
    Ok(())
}

#[test]
fn access_ranges_that_cut_a_mapping_or_hold_a_hole_are_refused() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = d.min_granularity(&AllocationProps::device(&d))?;
    let props = AllocationProps::device(&d);
    let r = Reservation::new(&d, 5 * g, ReserveOptions::default())?;
    // [A:2][B:1][hole][C:1]
    let (a, b, c) = (
        Allocation::new(&d, 2 * g, &props)?,
        Allocation::new(&d, g, &props)?,
        Allocation::new(&d, g, &props)?,
    );
    let _m = [
        r.map(0, &a, 0, 2 * g)?,
        r.map(2 * g, &b, 0, g)?,
        r.map(4 * g, &c, 0, g)?,
    ];
    let rw = [(&d, AccessFlags::ReadWrite)];
    let cut = r.set_access(0, g, &rw).err().ok_or("head of A accepted")?;
    assert_eq!(
        cut.to_string(),
        format!(
            "invalid argument: access range [0, {g}) cuts the mapping [0, {}) at {g}: cuMemSetAccess \
             takes whole allocations, so the range must start and end at allocation boundaries \
             (here 0 or {})",
            2 * g,
            2 * g
        )
    );
    let cut = r
        .set_access(g, 2 * g, &rw)
        .err()
        .ok_or("tail of A and B accepted")?;
    assert!(
        cut.to_string()
            .contains(&format!("cuts the mapping [0, {}) at {g}", 2 * g)),
        "{cut}"
    );
    // The driver answers SUCCESS here and grants A and B only (`set_access_with_hole`).
    assert_eq!(
        r.set_access(0, 5 * g, &rw).err(),
        Some(Error::NotMapped {
            offset: 0,
            size: 5 * g
        })
    );
    r.set_access(0, 3 * g, &rw)?;
    r.set_access(4 * g, g, &rw)?;
    // Get access works anywhere inside a mapping (`get_access_inside_allocation`).
    assert_eq!(r.access(g + 17, &d)?, AccessFlags::ReadWrite);
    Ok(())
}
