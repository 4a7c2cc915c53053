//! The caching allocator under real kernels (the H200; skipped on the simulator, which runs
//! no device code): blocks reused in stream order on four streams while kernels write them,
//! and a block used by a kernel on another stream reused only after that kernel.

use cuda_vmm::Stream;
use cuda_vmm_alloc::{CachingAllocator, CachingConfig};
use cuda_vmm_tests::helpers::{raw_read, TestResult};
use cuda_vmm_tests::ptx::SlowFill;

use crate::{cuda, device};

fn kernel(d: &cuda_vmm::Device) -> Result<Option<SlowFill>, Box<dyn std::error::Error>> {
    if crate::on_simulator()? {
        eprintln!("skipped: kernels need the real driver");
        return Ok(None);
    }
    Ok(Some(SlowFill::load(d)?))
}

fn words(ptr: u64, n: usize) -> Result<Vec<u32>, Box<dyn std::error::Error>> {
    let bytes = raw_read(&cuda()?, ptr, n * 4)?;
    Ok(bytes
        .chunks_exact(4)
        .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        .collect())
}

#[test]
fn gpu_kernels_on_four_streams_reuse_blocks_in_stream_order() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let Some(k) = kernel(&d)? else { return Ok(()) };
    let a = CachingAllocator::with_config(&d, CachingConfig::default())?;
    let streams: Vec<Stream> = (0..4).map(|_| Stream::new(&d)).collect::<Result<_, _>>()?;
    let mut last = Vec::new();
    for round in 0..40u32 {
        for (s, stream) in streams.iter().enumerate() {
            let n = (1 + (round as usize + s) % 8) << 18; // 1-8 MiB of u32
            let first = a.alloc(n * 4, stream)?;
            let ptr = first.ptr();
            // SAFETY: the block is mapped read-write and lives until the stream passed the
            // kernel: it is dropped right after the launch, and the next user of its memory
            // is work queued later on the same stream.
            unsafe { k.launch(stream, ptr, n as u64, 0xDEAD, 20_000)? };
            drop(first);
            let second = a.alloc(n * 4, stream)?;
            assert_eq!(second.ptr(), ptr, "same-stream reuse");
            let value = round * 4 + s as u32;
            // SAFETY: as above.
            unsafe { k.launch(stream, second.ptr(), n as u64, value, 0)? };
            if round == 39 {
                last.push((second, n, value));
            }
        }
    }
    for s in &streams {
        s.synchronize()?;
    }
    for (block, n, value) in &last {
        let got = words(block.ptr(), *n)?;
        assert!(
            got.iter().all(|w| w == value),
            "stream-ordered reuse lost a write"
        );
    }
    let stats = a.stats();
    assert_eq!(stats.allocs, 320);
    assert!(stats.cache_hits >= 160, "{stats:?}");
    Ok(())
}

#[test]
fn gpu_a_block_used_on_another_stream_is_reused_only_after_the_kernel() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let Some(k) = kernel(&d)? else { return Ok(()) };
    let a = CachingAllocator::with_config(&d, CachingConfig::default())?;
    let (s0, s1) = (Stream::new(&d)?, Stream::new(&d)?);
    let n = 1usize << 20;
    let mut x = a.alloc(n * 4, &s0)?;
    let x_ptr = x.ptr();
    // SAFETY: x is mapped read-write; its memory is not reused before s1 passed the kernel
    // (what this test checks).
    unsafe { k.launch(&s1, x_ptr, n as u64, 7, 400_000_000)? };
    x.record_use(&s1)?;
    drop(x);
    let y = a.alloc(n * 4, &s0)?;
    assert!(
        !s1.is_idle()?,
        "the kernel ended too soon for the test to mean anything"
    );
    assert_ne!(
        y.ptr(),
        x_ptr,
        "reused while the kernel on the other stream ran"
    );
    // SAFETY: y is mapped read-write and lives until s0 is synchronised below.
    unsafe { k.launch(&s0, y.ptr(), n as u64, 9, 0)? };
    s0.synchronize()?;
    s1.synchronize()?;
    assert!(words(x_ptr, n)?.iter().all(|&w| w == 7));
    assert!(words(y.ptr(), n)?.iter().all(|&w| w == 9));
    let z = a.alloc(n * 4, &s0)?;
    assert_eq!(z.ptr(), x_ptr, "reused once the kernel was done");
    Ok(())
}
