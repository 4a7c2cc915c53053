//! Leak check on the selected backend (the real GPU when there is one): the property tests'
//! workloads (growable buffers, sparse arrays in both hole modes, with and without a pool, a
//! pool shared by several structures, the safe layer's reservations, mappings and access),
//! without faults, leave the device's free memory (`cuMemGetInfo`) exactly where it was.
//!
//! One warm-up round first, so the driver's own lazy allocations (contexts, streams, event
//! pools) are made before the measured round. Exact on both backends: every other test that
//! allocates holds the suite's memory lock shared while this one holds it exclusively.

use cuda_vmm::Cuda;
use cuda_vmm_alloc::HoleBehavior;
use cuda_vmm_tests::ops::buffer::{self, BufferSetup};
use cuda_vmm_tests::ops::{on_backend, safe, shared_pool, sparse, Step};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use crate::reliability::props::{buf_op, safe_op, sparse_op, steps};

/// Sequences per workload and round.
const SEQUENCES: usize = 4;

fn sequences<O: std::fmt::Debug + Clone>(
    runner: &mut TestRunner,
    op: impl Strategy<Value = O>,
) -> Vec<Vec<Step<O>>> {
    let s = steps(op, 24);
    (0..SEQUENCES)
        .map(|_| {
            let mut steps = s.new_tree(runner).unwrap().current();
            for step in &mut steps {
                step.fault = None;
            }
            steps
        })
        .collect()
}

/// Runs every workload once; returns the sequences run.
fn round(seed: u8) -> usize {
    let mut s = [0u8; 32];
    s[0] = seed;
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &s),
    );
    let mut n = 0;
    for pooled in [false, true] {
        for proportional in [false, true] {
            for steps in sequences(&mut runner, buf_op()) {
                let setup = BufferSetup {
                    pooled,
                    proportional,
                };
                buffer::run(setup, &steps).unwrap_or_else(|e| panic!("{setup:?}: {e}"));
                n += 1;
            }
        }
        for holes in [HoleBehavior::Error, HoleBehavior::Zeros] {
            for steps in sequences(&mut runner, sparse_op()) {
                let setup = sparse::SparseSetup { holes, pooled };
                sparse::run(setup, &steps).unwrap_or_else(|e| panic!("{setup:?}: {e}"));
                n += 1;
            }
        }
    }
    let pool_op = proptest::prop_oneof![
        (0u8..2, buf_op()).prop_map(|(i, op)| shared_pool::PoolOp::Buffer(i, op)),
        (0u8..2, sparse_op()).prop_map(|(i, op)| shared_pool::PoolOp::Sparse(i, op)),
        proptest::prelude::any::<u8>().prop_map(shared_pool::PoolOp::Prefill),
        proptest::strategy::Just(shared_pool::PoolOp::Trim),
    ];
    for steps in sequences(&mut runner, pool_op) {
        shared_pool::run(&steps).unwrap_or_else(|e| panic!("shared pool: {e}"));
        n += 1;
    }
    for steps in sequences(&mut runner, safe_op()) {
        safe::run(&steps).unwrap_or_else(|e| panic!("safe layer: {e}"));
        n += 1;
    }
    n
}

#[test]
fn workloads_leave_free_memory_as_it_was() {
    let _memory = crate::memory_exclusive();
    let cuda = Cuda::new().unwrap();
    // Releases complete on the caller's thread: the counts are read right after drops.
    cuda.set_max_pending_release_bytes(0);
    let device = cuda.device(0).unwrap();
    on_backend(&cuda, || {
        round(1);
        device.synchronize().unwrap();
        let before = device.memory_info().unwrap();
        let n = round(2);
        device.synchronize().unwrap();
        let mut after = device.memory_info().unwrap();
        for _ in 0..200 {
            if after.free == before.free {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
            after = device.memory_info().unwrap();
        }
        eprintln!(
            "leak check ({}): {n} sequences, free memory before {} bytes, after {} bytes, lost {} bytes",
            cuda.describe(),
            before.free,
            after.free,
            before.free as i64 - after.free as i64
        );
        // Every other test that allocates holds the memory lock shared, so the device is
        // this test's alone: exact on both backends.
        assert_eq!(after.free, before.free, "device memory leaked");
    });
}
