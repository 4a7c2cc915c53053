//! Growth under slow creates (`GrowthPolicy::churn_allocation`, opt-in): a buffer whose
//! create of a large step runs slower than 1.3 µs per MiB backs its next steps with 32 MiB
//! pieces.
//!
//! The simulator models the slow regime per thread (`cuda_vmm_sim::model_create_cost`); on
//! the real driver the regime depends on what the device did before, so these tests run on
//! the simulator only (the growth bench measures both regimes on the GPU).

use std::time::Duration;

use cuda_vmm_alloc::{BufferConfig, GrowableBuffer, GrowthPolicy};
use cuda_vmm_sim::model_create_cost;

use crate::device;
use cuda_vmm_tests::helpers::TestResult;

const MIB: usize = 1 << 20;

/// The default steps, switching to 32 MiB pieces after a slow create.
fn churning() -> GrowthPolicy {
    GrowthPolicy {
        churn_allocation: 32 * MIB,
        ..GrowthPolicy::default()
    }
}

fn buffer(policy: GrowthPolicy) -> cuda_vmm_alloc::Result<GrowableBuffer<u8>> {
    GrowableBuffer::new(
        &device()?,
        BufferConfig {
            max_capacity: Some(1024 * MIB),
            policy,
            ..BufferConfig::default()
        },
    )
}

/// Creates and slow creates after growing to 128 MiB, then to 256 MiB.
fn grow(b: &mut GrowableBuffer<u8>) -> cuda_vmm_alloc::Result<[(u64, u64); 2]> {
    b.reserve(128 * MIB)?;
    let first = (b.stats().creates, b.stats().slow_creates);
    b.reserve(256 * MIB)?;
    Ok([first, (b.stats().creates, b.stats().slow_creates)])
}

#[test]
fn slow_creates_switch_growth_to_churn_pieces() -> TestResult {
    let _memory = crate::memory_shared();
    if !crate::simulator_or_skip("the slow-create regime is modelled on the simulator only")? {
        return Ok(());
    }
    // Creates at 3 µs per MiB, as the H200 under churn: the 128 MiB step is slow, so the
    // next 128 MiB come as four 32 MiB pieces.
    let cost = model_create_cost(Duration::from_micros(3));
    let mut b = buffer(churning())?;
    assert_eq!(grow(&mut b)?, [(1, 1), (5, 1)]);
    assert_eq!(b.committed_bytes(), 256 * MIB);
    // Without the switch (the default), every step stays one allocation whatever creates
    // cost.
    assert_eq!(GrowthPolicy::default().churn_allocation, 0);
    let mut n = buffer(GrowthPolicy::default())?;
    assert_eq!(grow(&mut n)?, [(1, 0), (2, 0)]);
    drop(cost);
    // A second after the slow create, the next step is tried whole again. (Whether a fast
    // create is judged fast depends on the host's load, so only the layout is checked here;
    // the thresholds are checked with fixed durations in the crate's unit tests.)
    std::thread::sleep(Duration::from_millis(1_050));
    b.reserve(384 * MIB)?;
    assert_eq!(b.stats().creates, 6);
    assert_eq!(b.committed_bytes(), 384 * MIB);
    Ok(())
}

#[test]
fn small_and_pooled_steps_are_not_judged() -> TestResult {
    let _memory = crate::memory_shared();
    if !crate::simulator_or_skip("the slow-create regime is modelled on the simulator only")? {
        return Ok(());
    }
    let _cost = model_create_cost(Duration::from_micros(20));
    // Steps under 64 MiB say nothing about the rate: 16 MiB, then 32 MiB.
    let mut b = buffer(churning())?;
    b.reserve(16 * MIB)?;
    b.reserve(48 * MIB)?;
    assert_eq!((b.stats().creates, b.stats().slow_creates), (2, 0));
    // Neither do steps taken from a pool.
    let pool = cuda_vmm_alloc::ChunkPool::new(
        &device()?,
        cuda_vmm_alloc::PoolConfig {
            chunk_size: 64 * MIB,
            ..cuda_vmm_alloc::PoolConfig::default()
        },
    )?;
    let mut p = GrowableBuffer::<u8>::new(
        &device()?,
        BufferConfig {
            max_capacity: Some(512 * MIB),
            pool: Some(pool),
            policy: churning(),
            ..BufferConfig::default()
        },
    )?;
    p.reserve(256 * MIB)?;
    assert_eq!(p.stats().slow_creates, 0);
    Ok(())
}
