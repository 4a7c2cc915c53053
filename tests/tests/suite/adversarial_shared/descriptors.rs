//! Descriptor counts of the shared-buffer protocol, taken in a child process of this binary
//! (`fd_child`), where no other test opens descriptors meanwhile.

use super::*;

fn open_fds() -> std::io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/fd")?.count())
}

/// Runs `fd_child` with `role` in a child process and checks it passed.
fn in_child(role: &str) -> TestResult {
    let out = Command::new(std::env::current_exe()?)
        .args([
            "adversarial_shared::descriptors::fd_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE_ENV, role)
        .output()?;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{role}:\n{text}");
    assert!(
        out.status.success() && text.contains("test result: ok. 1 passed"),
        "{role} failed"
    );
    Ok(())
}

/// Guards failed exports at every chunk index: nothing is written, no descriptor leaks
/// (the ones exported before the failure are closed), the published state is as before,
/// and the next publish delivers every chunk.
#[test]
fn export_faults_at_every_index_leak_nothing() -> TestResult {
    if skip_without_simulator()? {
        return Ok(());
    }
    in_child("export_faults")
}

/// Guards failed imports, maps and access grants on the consumer at every chunk index:
/// the update maps nothing (mapping count and committed bytes as before), no descriptor
/// leaks, and the consumer then fails clearly. Defect: every later call said "an earlier
/// update was refused: the stream is out of step", false after a local failure of an
/// update read whole; it must name the first error.
#[test]
fn consumer_faults_at_every_index_map_nothing_and_leak_nothing() -> TestResult {
    if skip_without_simulator()? {
        return Ok(());
    }
    in_child("consumer_faults")
}

/// Guards descriptors a hostile peer attaches where none belong (to a hello, to an update
/// without chunks, beyond an update's records, to an update cut short): each is refused
/// and every descriptor received is closed.
#[test]
fn stray_descriptors_from_a_hostile_peer_are_closed() -> TestResult {
    in_child("stray_fds")
}

#[test]
#[ignore = "run by the adversarial_shared tests in a child process"]
fn fd_child() -> TestResult {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return Ok(());
    };
    let (d, g) = setup()?;
    {
        // Warm up: contexts and the driver's own descriptors exist before counting.
        let mut b = buffer(&d, g)?;
        let (mut producer, mut consumer, _probe) = share(&d, &b)?;
        b.extend_from_slice(&values(0..10, 0))?;
        publish_and_agree(&mut producer, &mut consumer, &b, 1)?;
    }
    let fault = |symbol: &str, nth: u64| {
        let guard = cuda_vmm_sim::inject_fault(symbol, nth, CUresult::CUDA_ERROR_OUT_OF_MEMORY);
        assert!(guard.is_armed());
        guard
    };
    let before = open_fds()?;
    match role.as_str() {
        "export_faults" => {
            for nth in 1..=3 {
                let mut b = buffer(&d, g)?;
                let (mut producer, mut consumer, probe) = share(&d, &b)?;
                b.extend_from_slice(&values(0..g / 2 + 10, 13))?; // three chunks
                let open = open_fds()?;
                {
                    let _f = fault("cuMemExportToShareableHandle", nth);
                    refused(producer.publish(&b), &oom("cuMemExportToShareableHandle"))?;
                }
                assert_eq!(open_fds()?, open, "export {nth} failed: descriptors leaked");
                assert_eq!(pending(&probe)?, 0);
                assert_eq!((producer.published_bytes(), producer.generation()), (0, 0));
                publish_and_agree(&mut producer, &mut consumer, &b, 3)?;
            }
        }
        "consumer_faults" => {
            for (symbol, n) in [
                ("cuMemImportFromShareableHandle", 3),
                ("cuMemMap", 3),
                ("cuMemSetAccess", 1),
            ] {
                for nth in 1..=n {
                    let mut b = buffer(&d, g)?;
                    let (mut producer, mut consumer, _probe) = share(&d, &b)?;
                    b.extend_from_slice(&values(0..100, 14))?;
                    publish_and_agree(&mut producer, &mut consumer, &b, 1)?;
                    b.extend_from_slice(&values(100..3 * g / 4 + 10, 15))?; // three more
                    let open = open_fds()?;
                    assert_eq!(producer.publish(&b)?, 3);
                    {
                        let _f = fault(symbol, nth);
                        refused(consumer.receive(), &oom(symbol))?;
                    }
                    assert_eq!(
                        open_fds()?,
                        open,
                        "{symbol} {nth} failed: descriptors leaked"
                    );
                    assert_eq!(consumer.reservation().mapping_count(), 1, "{symbol} {nth}");
                    assert_eq!((consumer.committed_bytes(), consumer.generation()), (g, 1));
                    refused(
                        consumer.receive(),
                        &format!(
                            "shared buffer: an earlier update failed \
                             ({}): this consumer no longer follows the producer",
                            oom(symbol)
                        ),
                    )?;
                    assert!(consumer.to_vec()? == values(0..100, 14));
                }
            }
        }
        "stray_fds" => stray_fds(&d, g)?,
        "descriptor_limit" => descriptor_limit(&d, g)?,
        other => return Err(format!("unknown role {other}").into()),
    }
    let after = open_fds()?;
    eprintln!("{role}: open fds before {before}, after {after}");
    assert_eq!(before, after, "{role}: descriptors leaked");
    Ok(())
}

fn stray_fds(d: &cuda_vmm::Device, g: usize) -> TestResult {
    let gu = g as u64;
    // A hello with a descriptor.
    let open = open_fds()?;
    let (tx, rx) = UnixStream::pair()?;
    send_raw(&tx, &hello(2, g), &chunk_fds(d, g, 1)?)?;
    refused(
        SharedBufferConsumer::<u32>::connect(d, rx).map(|c| c.generation()),
        "shared buffer protocol: the hello came with descriptors",
    )?;
    drop(tx);
    assert_eq!(open_fds()?, open, "a hello's descriptor leaked");
    let cases: [(Vec<u8>, usize, String); 3] = [
        (
            header(PEER_ID, 2, 0, gu, 0),
            2,
            "shared buffer protocol: the update announces 0 chunks but carried \
             2 descriptors"
                .into(),
        ),
        (
            [header(PEER_ID, 2, 0, 2 * gu, 1), record(gu, gu)].concat(),
            4,
            "shared buffer protocol: the update announces 1 chunks but carried \
             4 descriptors"
                .into(),
        ),
        (
            [header(PEER_ID, 2, 0, 3 * gu, 2), record(gu, gu)].concat(),
            2,
            "shared buffer protocol: the producer closed the stream after 40 \
             of the 80 bytes of the chunk records"
                .into(),
        ),
    ];
    for (bytes, fds, says) in &cases {
        let open = open_fds()?;
        {
            let (mut consumer, peer) = hostile_peer(d, g)?;
            valid_first(&peer, d, g)?;
            assert!(consumer.receive()?);
            let mapped = open_fds()?;
            send_raw(&peer, bytes, &chunk_fds(d, g, *fds)?)?;
            drop(peer);
            refused(consumer.receive(), says)?;
            assert_eq!(consumer.reservation().mapping_count(), 1);
            assert_eq!(open_fds()?, mapped - 1, "{says}: descriptors leaked");
        }
        assert_eq!(open_fds()?, open, "{says}: descriptors leaked");
    }
    // More descriptors than one control message may bring: the kernel closes those that
    // do not fit (MSG_CTRUNC), the consumer those that do.
    let (mut consumer, peer) = hostile_peer(d, g)?;
    let one = chunk_fds(d, g, 1)?.remove(0);
    let many: Vec<OwnedFd> = (0..MAX_CHUNKS_PER_UPDATE + 1)
        .map(|_| one.try_clone())
        .collect::<std::io::Result<_>>()?;
    {
        let borrowed: Vec<BorrowedFd<'_>> = many.iter().map(|f| f.as_fd()).collect();
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(253))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        assert!(control.push(SendAncillaryMessage::ScmRights(&borrowed)));
        let bytes = header(PEER_ID, 1, 0, 0, 0);
        sendmsg(
            &peer,
            &[IoSlice::new(&bytes)],
            &mut control,
            SendFlags::NOSIGNAL,
        )?;
    }
    drop((many, one));
    let open = open_fds()?;
    refused(
        consumer.receive(),
        "shared buffer protocol: the update header came with more descriptors \
         than an update may carry (250)",
    )?;
    assert_eq!(
        open_fds()?,
        open,
        "descriptors past the control message leaked"
    );
    assert_eq!(consumer.reservation().mapping_count(), 0);
    Ok(())
}

/// Guards a record larger than the allocation behind its descriptor (the descriptor
/// carries no size, so the consumer cannot check it before mapping): the map fails and the
/// consumer maps nothing.
#[test]
fn a_record_larger_than_its_allocation_maps_nothing() -> TestResult {
    let _memory = crate::memory_shared();
    let (d, g) = setup()?;
    let gu = g as u64;
    let (mut consumer, peer) = hostile_peer(&d, g)?;
    let bytes = [header(PEER_ID, 1, 0, 4 * gu, 1), record(0, 4 * gu)].concat();
    send_raw(&peer, &bytes, &chunk_fds(&d, g, 1)?)?;
    let err = consumer
        .receive()
        .err()
        .ok_or("an oversized record was mapped")?;
    eprintln!("refused: {err}");
    match &err {
        cuda_vmm_alloc::Error::Vmm(cuda_vmm::Error::Driver { call, error }) => {
            assert_eq!(*call, "cuMemMap");
            if cuda()?.backend() == Backend::Simulator {
                assert_eq!(error.code() as i64, 801, "CUDA_ERROR_NOT_SUPPORTED");
            }
        }
        other => return Err(format!("not a cuMemMap error: {other:?}").into()),
    }
    assert_eq!(consumer.reservation().mapping_count(), 0);
    assert_eq!((consumer.committed_bytes(), consumer.len()), (0, 0));
    Ok(())
}

/// Defect: `publish` exported EVERY new chunk before sending the first update, so a
/// producer holding more new chunks than free descriptors (the common soft limit is 1024)
/// failed every publish with the same export error, for good. It must hold at most one
/// update's descriptors at a time: under a limit leaving room for one update, 600 new
/// chunks go as three updates.
#[test]
fn publishing_more_chunks_than_free_descriptors_goes_update_by_update() -> TestResult {
    if skip_without_simulator()? {
        return Ok(());
    }
    in_child("descriptor_limit")
}

/// The `descriptor_limit` role: see
/// [`publishing_more_chunks_than_free_descriptors_goes_update_by_update`].
fn descriptor_limit(d: &cuda_vmm::Device, g: usize) -> TestResult {
    let chunks = 600;
    let mut b = buffer_of(d, g, chunks)?;
    let (mut producer, mut consumer, _probe) = share(d, &b)?;
    b.extend_from_slice(&values(0..1000, 16))?;
    b.reserve(chunks * g / 4 - 1000)?; // committed, untouched
    assert_eq!(b.chunk_allocations().count(), chunks);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit to the pointer it is given.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(got, 0);
    let lowered = libc::rlimit {
        rlim_cur: (open_fds()? + MAX_CHUNKS_PER_UPDATE + 32) as libc::rlim_t,
        ..limit
    };
    // SAFETY: setrlimit reads one rlimit; lowering the soft limit is always allowed.
    let set = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) };
    assert_eq!(set, 0);
    let sent = producer.publish(&b);
    // SAFETY: as above; the soft limit goes back to its old value, within the hard one.
    let set = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(set, 0);
    assert_eq!(sent?, chunks);
    assert_eq!(producer.generation(), 3);
    for _ in 0..3 {
        assert!(consumer.receive()?);
    }
    assert_eq!(consumer.committed_bytes(), chunks * g);
    assert!(consumer.to_vec()? == b.to_vec()?);
    Ok(())
}
