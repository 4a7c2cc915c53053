//! Class 1: caller host memory is never touched after a call returns. Every copy
//! between the host and the device goes through the device's staging buffers; faults
//! are injected at every driver call a copy makes, for sizes around the 4 MiB chunk.

use cuda_vmm::staging::{QUARANTINE_BYTES, STAGE_BYTES};
use cuda_vmm::{Error, Stream, UnmapWait};
use cuda_vmm_alloc::{GrowableBuffer, SparseArray, SparseConfig};
use cuda_vmm_sim::inject_fault;
use cuda_vmm_sys::CUresult;

use super::{
    calls_made, is_injected, is_injected_alloc, mapped, pattern_blocks, queries_not_ready,
    simulator_or_skip, TestResult, MIB,
};

/// The sizes the sweeps copy: empty, one byte, and around one and two chunks.
const SIZES: &[usize] = &[0, 1, STAGE_BYTES - 1, STAGE_BYTES, STAGE_BYTES + 1, 9 * MIB];

const SENTINEL: u8 = 0xA5;

/// Asserts every byte of `seen` is the byte of `old` or of `new` at its index.
fn old_or_new(seen: &[u8], old: &[u8], new: &[u8], what: &str) {
    if let Some(i) = (0..seen.len()).find(|&i| seen[i] != old[i] && seen[i] != new[i]) {
        panic!(
            "{what}: byte {i} is {:#x}, neither the old {:#x} nor the new {:#x}",
            seen[i], old[i], new[i]
        );
    }
}

/// Class 1: a failed `Reservation::read` (a fault at any of its driver calls, while the
/// device still runs the copies) must not write the caller's buffer after it returned:
/// the test overwrites the buffer with a sentinel after the error, lets the device
/// finish everything, and checks the sentinel is intact. A successful read is exact.
#[test]
fn a_failed_read_never_writes_the_callers_buffer_later() -> TestResult {
    if !simulator_or_skip("the fault sweep")? {
        return Ok(());
    }
    let _memory = crate::memory_shared();
    let device = crate::cuda()?.device(0)?;
    let (r, _m) = mapped(&device, 9 * MIB)?;
    let data = pattern_blocks(9 * MIB, 7, 37, 13);
    r.write(0, &data)?;
    for &len in SIZES {
        let mut out = vec![0u8; len];
        let calls = calls_made(|| r.read(0, &mut out).unwrap());
        assert!(out[..] == data[..len], "{len} bytes: the read differs");
        if len == 0 {
            assert!(
                calls.is_empty(),
                "an empty read called the driver: {calls:?}"
            );
        }
        for (symbol, nth) in calls {
            let mut out = vec![0u8; len];
            let result = {
                let _running = queries_not_ready(64);
                let _f = inject_fault(symbol, nth, CUresult::CUDA_ERROR_UNKNOWN);
                r.read(0, &mut out)
            };
            match result {
                Ok(()) => assert!(out[..] == data[..len], "{len} {symbol} #{nth}: differs"),
                Err(e) => {
                    assert!(is_injected(&e, symbol), "{len} {symbol} #{nth}: {e:?}");
                    out.fill(SENTINEL);
                    device.synchronize()?;
                    let mut probe = [0u8; 1];
                    r.read(0, &mut probe)?; // staging sweeps its set-aside buffers
                    assert!(
                        out.iter().all(|&b| b == SENTINEL),
                        "{len} bytes, {symbol} #{nth}: the buffer changed after the error"
                    );
                }
            }
        }
    }
    Ok(())
}

/// Class 1: a failed `Reservation::write` leaves each destination byte old or new (the
/// staged chunks may land one by one), never anything else, and never reads the
/// source after the return: the source is overwritten with a sentinel after the error.
#[test]
fn a_failed_write_lands_old_or_new_bytes_only() -> TestResult {
    if !simulator_or_skip("the fault sweep")? {
        return Ok(());
    }
    let _memory = crate::memory_shared();
    let device = crate::cuda()?.device(0)?;
    let (r, _m) = mapped(&device, 9 * MIB)?;
    let old = pattern_blocks(9 * MIB, 11, 37, 13);
    for &len in SIZES {
        let new = pattern_blocks(len, 12, 37, 13);
        r.write(0, &old)?;
        let calls = calls_made(|| r.write(0, &new).unwrap());
        let mut seen = vec![0u8; len];
        r.read(0, &mut seen)?;
        assert!(seen == new, "{len} bytes: the write differs");
        for (symbol, nth) in calls {
            r.write(0, &old)?;
            let mut src = new.clone();
            let result = {
                let _running = queries_not_ready(64);
                let _f = inject_fault(symbol, nth, CUresult::CUDA_ERROR_UNKNOWN);
                r.write(0, &src)
            };
            if let Err(e) = &result {
                assert!(is_injected(e, symbol), "{len} {symbol} #{nth}: {e:?}");
            }
            src.fill(SENTINEL);
            device.synchronize()?;
            r.read(0, &mut seen)?;
            match result {
                Ok(()) => assert!(seen == new, "{len} {symbol} #{nth}: differs"),
                Err(_) => old_or_new(&seen, &old, &new, &format!("{len} {symbol} #{nth}")),
            }
        }
    }
    Ok(())
}

/// Class 1: after `write_async` returns (with success or an injected fault at any of
/// its driver calls), rewriting the source must not change what lands: the staged
/// copies read only library memory. Success lands exactly the bytes given.
#[test]
fn rewriting_the_source_after_write_async_changes_nothing_that_lands() -> TestResult {
    if !simulator_or_skip("the fault sweep")? {
        return Ok(());
    }
    let _memory = crate::memory_shared();
    let device = crate::cuda()?.device(0)?;
    let stream = Stream::new(&device)?;
    let (r, _m) = mapped(&device, 9 * MIB)?;
    let old = pattern_blocks(9 * MIB, 21, 37, 13);
    for &len in SIZES {
        let new = pattern_blocks(len, 22, 37, 13);
        r.write(0, &old)?;
        let calls = calls_made(|| r.write_async(&stream, 0, &new).unwrap());
        stream.synchronize()?;
        for (symbol, nth) in std::iter::once(("none", 0)).chain(calls) {
            r.write(0, &old)?;
            let mut src = new.clone();
            let result = {
                let _running = queries_not_ready(64);
                let _f = (nth > 0).then(|| inject_fault(symbol, nth, CUresult::CUDA_ERROR_UNKNOWN));
                r.write_async(&stream, 0, &src)
            };
            if let Err(e) = &result {
                assert!(is_injected(e, symbol), "{len} {symbol} #{nth}: {e:?}");
            }
            src.fill(SENTINEL);
            stream.synchronize()?;
            device.synchronize()?;
            let mut seen = vec![0u8; len];
            r.read(0, &mut seen)?;
            match result {
                Ok(()) => assert!(seen == new, "{len} {symbol} #{nth}: differs"),
                Err(_) => old_or_new(&seen, &old, &new, &format!("{len} {symbol} #{nth}")),
            }
        }
    }
    Ok(())
}

/// Class 1: the growable buffer's host copies (`to_vec`, `read`, `write`,
/// `extend_from_slice`, `extend_from_slice_async`) under a fault at the wait: the
/// error is the injected one, and the caller's buffers stay the caller's (a failed
/// `read` never writes them later, a failed extend leaves `len` unchanged).
#[test]
fn growable_buffer_copies_fail_cleanly_at_the_wait() -> TestResult {
    if !simulator_or_skip("injecting a failed wait")? {
        return Ok(());
    }
    let _memory = crate::memory_shared();
    let device = crate::cuda()?.device(0)?;
    let stream = Stream::new(&device)?;
    let mut b = GrowableBuffer::<u8>::with_max_capacity(&device, 32 * MIB)?;
    let data = pattern_blocks(9 * MIB, 31, 37, 13);
    b.extend_from_slice(&data)?;
    let fail_wait = |n| inject_fault("cuEventSynchronize", n, CUresult::CUDA_ERROR_UNKNOWN);
    {
        let _running = queries_not_ready(64);
        let _f = fail_wait(1);
        let e = b.to_vec().expect_err("the injected wait failure");
        assert!(is_injected_alloc(&e, "cuEventSynchronize"), "{e:?}");
    }
    let mut out = vec![0u8; STAGE_BYTES + 1];
    {
        let _running = queries_not_ready(64);
        let _f = fail_wait(2);
        let e = b
            .read(MIB..MIB + STAGE_BYTES + 1, &mut out)
            .expect_err("the injected wait failure");
        assert!(is_injected_alloc(&e, "cuEventSynchronize"), "{e:?}");
    }
    out.fill(SENTINEL);
    device.synchronize()?;
    assert!(b.to_vec()? == data);
    assert!(
        out.iter().all(|&x| x == SENTINEL),
        "read wrote after its error"
    );
    let more = pattern_blocks(STAGE_BYTES + 1, 32, 37, 13);
    {
        let _running = queries_not_ready(64);
        let _f = inject_fault("cuStreamSynchronize", 1, CUresult::CUDA_ERROR_UNKNOWN);
        let e = b
            .extend_from_slice(&more)
            .expect_err("the injected wait failure");
        assert!(is_injected_alloc(&e, "cuStreamSynchronize"), "{e:?}");
    }
    assert_eq!(b.len(), data.len(), "a failed extend changed the length");
    {
        let _f = inject_fault("cuMemcpyHtoDAsync_v2", 1, CUresult::CUDA_ERROR_UNKNOWN);
        let e = b
            .extend_from_slice_async(&stream, &more)
            .expect_err("the injected copy failure");
        assert!(is_injected_alloc(&e, "cuMemcpyHtoDAsync_v2"), "{e:?}");
    }
    assert_eq!(
        b.len(),
        data.len(),
        "a failed async extend changed the length"
    );
    device.synchronize()?;
    assert!(b.to_vec()? == data, "the contents changed");
    b.extend_from_slice_async(&stream, &more)?;
    assert!(b.to_vec()?[data.len()..] == more[..]);
    Ok(())
}

/// Class 1: failed waits (events and streams alike, as in a lost context) set staging
/// buffers aside; repeated failures must reach
/// `Error::StagingExhausted` with at most `QUARANTINE_BYTES` set aside (the bound was
/// overshot: with every buffer suspended, `take` found none in flight and allocated a
/// buffer it did not count, so a 17th failure set aside 68 MiB), and once the copies
/// complete, nothing is reported set aside (it was until the next copy happened to
/// look) and copies work again.
#[test]
fn failed_waits_reach_staging_exhausted_within_the_bound_and_recover() -> TestResult {
    if !simulator_or_skip("injecting failed waits")? {
        return Ok(());
    }
    // Exclusive: the staging of device 0 is shared by every test.
    let _memory = crate::memory_exclusive();
    let device = crate::cuda()?.device(0)?;
    let (r, _m) = mapped(&device, MIB)?;
    r.write(0, &[3u8; 64])?;
    device.synchronize()?;
    let mut out = [0u8; 1];
    r.read(0, &mut out)?; // sweeps buffers other tests left set aside
    assert_eq!(device.quarantined_staging_bytes(), 0);
    // Every wait fails, as in a lost context: the events' and the streams'.
    let running = queries_not_ready(2_000);
    let streams_fail: Vec<_> = (1..=2_000)
        .map(|n| inject_fault("cuStreamSynchronize", n, CUresult::CUDA_ERROR_UNKNOWN))
        .collect();
    let mut failures = 0;
    let exhausted = loop {
        assert!(
            failures <= QUARANTINE_BYTES / STAGE_BYTES + 2,
            "never exhausted"
        );
        let result = {
            let _f = inject_fault("cuEventSynchronize", 1, CUresult::CUDA_ERROR_UNKNOWN);
            r.read(0, &mut out)
        };
        let set_aside = device.quarantined_staging_bytes();
        assert!(
            set_aside <= QUARANTINE_BYTES,
            "{set_aside} bytes set aside after {failures} failed waits"
        );
        match result {
            Err(Error::StagingExhausted { quarantined }) => break quarantined,
            Err(e) => assert!(is_injected(&e, "cuEventSynchronize"), "{e:?}"),
            Ok(()) => panic!("the injected wait failure did not fail the read"),
        }
        failures += 1;
    };
    assert_eq!(exhausted, QUARANTINE_BYTES);
    assert_eq!(failures, QUARANTINE_BYTES / STAGE_BYTES);
    assert!(matches!(
        r.write(0, &[1]),
        Err(Error::StagingExhausted { .. })
    ));
    drop(running);
    drop(streams_fail);
    device.synchronize()?;
    // The copies completed: nothing is set aside any more, before any further copy.
    assert_eq!(device.quarantined_staging_bytes(), 0);
    r.read(0, &mut out)?;
    assert_eq!(out, [3]);
    assert_eq!(device.quarantined_staging_bytes(), 0);
    Ok(())
}

/// Class 1: eight threads copying at once through one device's staging (mixed sizes
/// around the chunk, sync and async writes, reads) each get their own bytes back.
#[test]
fn eight_threads_copying_through_the_staging_get_their_bytes() -> TestResult {
    let _memory = crate::memory_shared();
    let device = crate::cuda()?.device(0)?;
    let sizes = [
        1,
        STAGE_BYTES - 1,
        STAGE_BYTES,
        STAGE_BYTES + 1,
        9 * MIB,
        4096,
    ];
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8u8)
            .map(|t| {
                let device = device.clone();
                s.spawn(move || -> cuda_vmm::Result<()> {
                    let (r, _m) = mapped(&device, 9 * MIB)?;
                    let stream = Stream::new(&device)?;
                    for round in 0..3u8 {
                        let len = sizes[(t as usize + round as usize) % sizes.len()];
                        let data =
                            pattern_blocks(len, t.wrapping_mul(16).wrapping_add(round), 37, 13);
                        if (t + round) % 2 == 0 {
                            r.write(0, &data)?;
                        } else {
                            let mut src = data.clone();
                            r.write_async(&stream, 0, &src)?;
                            src.fill(SENTINEL);
                        }
                        let mut out = vec![0u8; len];
                        r.read(0, &mut out)?;
                        assert!(out == data, "thread {t} round {round}: {len} bytes differ");
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap()?;
        }
        cuda_vmm::Result::Ok(())
    })?;
    Ok(())
}

/// Class 1 and 2: a sparse array's host copies under faults: a failed `read` never
/// writes the caller's buffer after it returned, and a `write_async` failing on its
/// second chunk under `UnmapWait::RecordedUse` still orders the decommit (unmap) after
/// the chunk already queued (the simulator poisons the context otherwise).
#[test]
fn sparse_array_copies_under_faults() -> TestResult {
    if !simulator_or_skip("injecting faults")? {
        return Ok(());
    }
    let _memory = crate::memory_shared();
    let device = crate::cuda()?.device(0)?;
    let stream = Stream::new(&device)?;
    let mut a = SparseArray::<u8>::new(&device, 16 * MIB, SparseConfig::default())?;
    // SAFETY: only this crate's copies touch the memory.
    unsafe { a.set_unmap_wait(UnmapWait::RecordedUse) };
    a.commit(0..10 * MIB)?;
    let data = pattern_blocks(9 * MIB, 61, 37, 13);
    a.write(0, &data)?;
    let mut out = vec![0u8; 9 * MIB];
    for nth in 1..=3 {
        let _running = queries_not_ready(64);
        let _f = inject_fault("cuEventSynchronize", nth, CUresult::CUDA_ERROR_UNKNOWN);
        let e = a
            .read(0..9 * MIB, &mut out)
            .expect_err("the injected wait failure");
        assert!(is_injected_alloc(&e, "cuEventSynchronize"), "#{nth}: {e:?}");
        drop(_f);
        out.fill(SENTINEL);
        device.synchronize()?;
        assert!(
            out.iter().all(|&b| b == SENTINEL),
            "#{nth}: read wrote after its error"
        );
    }
    {
        let _running = queries_not_ready(64);
        let _f = inject_fault("cuMemcpyHtoDAsync_v2", 2, CUresult::CUDA_ERROR_UNKNOWN);
        let e = a
            .write_async(&stream, 0, &pattern_blocks(9 * MIB, 62, 37, 13))
            .expect_err("the injected second-chunk failure");
        assert!(is_injected_alloc(&e, "cuMemcpyHtoDAsync_v2"), "{e:?}");
    }
    a.decommit(0..16 * MIB)?;
    assert_eq!(a.committed_bytes(), 0);
    device.synchronize()?;
    drop(a);
    device.synchronize()?;
    Ok(())
}

/// Class 1: more async writes queued at once than the staging has buffers (24 chunks of
/// 4 MiB against 16 buffers) reuse buffers only after their copies ran
/// (back-pressure): every chunk lands with its own bytes, each source rewritten at once.
#[test]
fn async_writes_past_the_buffer_cap_land_their_own_bytes() -> TestResult {
    let _memory = crate::memory_shared();
    let device = crate::cuda()?.device(0)?;
    let stream = Stream::new(&device)?;
    let chunks = 24;
    let (r, _m) = mapped(&device, chunks * STAGE_BYTES)?;
    let mut expected = Vec::with_capacity(chunks * STAGE_BYTES);
    let sim = crate::cuda()?.backend() == cuda_vmm::Backend::Simulator;
    {
        // On the simulator, queries run nothing: every buffer stays in flight.
        let _busy = if sim {
            queries_not_ready(10_000)
        } else {
            Vec::new()
        };
        for i in 0..chunks {
            let mut src = pattern_blocks(STAGE_BYTES, i as u8, 37, 13);
            expected.extend_from_slice(&src);
            r.write_async(&stream, i * STAGE_BYTES, &src)?;
            src.fill(SENTINEL);
        }
    }
    let mut out = vec![0u8; chunks * STAGE_BYTES];
    r.read(0, &mut out)?;
    assert!(out == expected, "a chunk landed other bytes");
    Ok(())
}
