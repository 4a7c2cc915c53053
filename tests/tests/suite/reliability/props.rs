//! Property-based tests: random operation sequences, each step maybe under an injected
//! driver fault, against host models (`cuda_vmm_tests::ops`): the growable buffer, the
//! sparse array (both hole modes, with and without a pool), one pool shared by several
//! structures, and the safe layer's reservations, mappings and access.
//!
//! CI runs [`CI_CASES`] sequences per property. The full run (4 properties, 10,000 sequences):
//!
//! ```sh
//! PROPTEST_CASES=2500 cargo test --release -p cuda-vmm-tests -- reliability::props --nocapture
//! ```
//!
//! Failing cases are shrunk; their seeds are kept in `props.regressions` beside this file
//! and replayed first on every run (every property replays every seed).

use std::cell::RefCell;
use std::fmt::Debug;

use cuda_vmm_alloc::HoleBehavior;
use cuda_vmm_tests::ops::buffer::{self, BufOp, BufferSetup, Size};
use cuda_vmm_tests::ops::safe::{self, SafeOp};
use cuda_vmm_tests::ops::shared_pool::{self, PoolOp};
use cuda_vmm_tests::ops::sparse::{self, SparseOp, SparseSetup};
use cuda_vmm_tests::ops::{FaultPick, Step, Tally};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};

/// Sequences per property when `PROPTEST_CASES` is not set.
const CI_CASES: u32 = 24;

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CI_CASES);
    Config {
        cases,
        max_shrink_iters: 2048,
        source_file: Some(file!()),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..Config::default()
    }
}

/// Runs `check` on `cases` inputs of `strategy`, printing what was done.
fn property<S: Strategy>(name: &str, strategy: S, check: impl Fn(S::Value) -> Result<Tally, String>)
where
    S::Value: Debug,
{
    let _memory = crate::memory_shared();
    let mut runner = TestRunner::new(config());
    let total = RefCell::new(Tally::default());
    let result = runner.run(&strategy, |input| {
        let tally = check(input).map_err(TestCaseError::fail)?;
        total.borrow_mut().add(&tally);
        Ok(())
    });
    eprintln!("property {name}: {}", total.borrow());
    if let Err(e) = result {
        panic!("property {name}: {e}");
    }
}

pub(crate) fn fault() -> impl Strategy<Value = Option<FaultPick>> {
    proptest::option::weighted(
        0.3,
        (0u8..16, 0u8..8).prop_map(|(symbol, nth)| FaultPick { symbol, nth }),
    )
}

pub(crate) fn steps<O: Debug + Clone>(
    op: impl Strategy<Value = O>,
    max: usize,
) -> impl Strategy<Value = Vec<Step<O>>> {
    proptest::collection::vec(
        (op, fault()).prop_map(|(op, fault)| Step { op, fault }),
        1..max,
    )
}

fn size() -> impl Strategy<Value = Size> {
    prop_oneof![
        1 => (0u16..3, 0u16..40).prop_map(|(eighths, extra)| Size { eighths, extra }),
        1 => (0u16..40, 0u16..300).prop_map(|(eighths, extra)| Size { eighths, extra }),
    ]
}

pub(crate) fn buf_op() -> impl Strategy<Value = BufOp> {
    prop_oneof![
        1 => any::<u32>().prop_map(BufOp::Push),
        3 => (size(), any::<u8>()).prop_map(|(len, seed)| BufOp::Extend { len, seed }),
        1 => (size(), any::<u8>()).prop_map(|(len, seed)| BufOp::ExtendAsync { len, seed }),
        2 => (size(), prop_oneof![Just(0u32), Just(0x0707_0707), any::<u32>()])
            .prop_map(|(len, value)| BufOp::Resize { len, value }),
        1 => size().prop_map(BufOp::Reserve),
        1 => size().prop_map(BufOp::Truncate),
        1 => Just(BufOp::Clear),
        2 => Just(BufOp::ShrinkToFit),
        2 => (any::<u16>(), size(), any::<u8>()).prop_map(|(at, len, seed)| BufOp::Write { at, len, seed }),
        1 => (any::<u16>(), size()).prop_map(|(at, len)| BufOp::Read { at, len }),
    ]
}

fn position() -> impl Strategy<Value = u16> {
    prop_oneof![6 => 0u16..=60000, 1 => any::<u16>()]
}

pub(crate) fn sparse_op() -> impl Strategy<Value = SparseOp> {
    prop_oneof![
        3 => (position(), position()).prop_map(|(a, b)| SparseOp::Commit(a.min(b), a.max(b))),
        2 => (position(), position()).prop_map(|(a, b)| SparseOp::Decommit(a.min(b), a.max(b))),
        1 => (position(), position()).prop_map(|(a, b)| SparseOp::Decommit(a, b)),
        2 => (position(), any::<u8>(), any::<u8>()).prop_map(|(at, len, seed)| SparseOp::Write { at, len, seed }),
        2 => (position(), position()).prop_map(|(a, b)| SparseOp::Read(a.min(b), a.max(b))),
    ]
}

pub(crate) fn safe_op() -> impl Strategy<Value = SafeOp> {
    prop_oneof![
        2 => (0u8..3, 0u8..2).prop_map(|(slot, granules)| SafeOp::Create { slot, granules }),
        1 => (0u8..3).prop_map(SafeOp::Drop),
        3 => (0u8..3, 0u8..7).prop_map(|(slot, at)| SafeOp::Map { slot, at }),
        2 => any::<u8>().prop_map(SafeOp::Unmap),
        3 => (0u8..6, 0u8..4, any::<bool>()).prop_map(|(at, granules, write)| SafeOp::SetAccess { at, granules, write }),
        2 => (0u8..6, 0u16..4096, 0u8..40, any::<u8>()).prop_map(|(at, jitter, len, seed)| SafeOp::Write { at, jitter, len, seed }),
        2 => (0u8..6, 0u16..4096, 0u8..40).prop_map(|(at, jitter, len)| SafeOp::Read { at, jitter, len }),
    ]
}

#[test]
fn growable_buffer_matches_its_model() {
    let _memory = crate::memory_shared();
    let setup = (any::<bool>(), any::<bool>()).prop_map(|(pooled, proportional)| BufferSetup {
        pooled,
        proportional,
    });
    property(
        "growable buffer",
        (setup, steps(buf_op(), 24)),
        |(setup, steps)| buffer::run(setup, &steps),
    );
}

#[test]
fn sparse_array_matches_its_model() {
    let _memory = crate::memory_shared();
    let setup = (any::<bool>(), any::<bool>()).prop_map(|(zeros, pooled)| SparseSetup {
        holes: if zeros {
            HoleBehavior::Zeros
        } else {
            HoleBehavior::Error
        },
        pooled,
    });
    property(
        "sparse array",
        (setup, steps(sparse_op(), 24)),
        |(setup, steps)| sparse::run(setup, &steps),
    );
}

#[test]
fn shared_pool_users_match_their_models() {
    let _memory = crate::memory_shared();
    let op = prop_oneof![
        3 => (0u8..2, buf_op()).prop_map(|(i, op)| PoolOp::Buffer(i, op)),
        3 => (0u8..2, sparse_op()).prop_map(|(i, op)| PoolOp::Sparse(i, op)),
        1 => any::<u8>().prop_map(PoolOp::Prefill),
        1 => Just(PoolOp::Trim),
        1 => Just(PoolOp::AcquireRecycle),
    ];
    property("shared pool", steps(op, 32), |steps| {
        shared_pool::run(&steps)
    });
}

#[test]
fn safe_layer_matches_its_model() {
    let _memory = crate::memory_shared();
    property("safe layer", steps(safe_op(), 32), |steps| {
        safe::run(&steps)
    });
}

/// Issue 17 class 10, the minimal input of a seed that failed on the H200: two
/// one-granule maps, then a two-granule map at 0 over both. The `Overlap` error must
/// name the lowest overlapping mapping (granule 0); `MappedRanges::overlapping` named the last
/// one starting before the end (granule 1).
#[test]
fn overlap_names_the_lowest_mapping() {
    let _memory = crate::memory_shared();
    let step = |op| Step { op, fault: None };
    let steps = [
        step(SafeOp::Create {
            slot: 0,
            granules: 0,
        }),
        step(SafeOp::Map { slot: 0, at: 0 }),
        step(SafeOp::Create {
            slot: 1,
            granules: 0,
        }),
        step(SafeOp::Map { slot: 1, at: 1 }),
        step(SafeOp::Create {
            slot: 2,
            granules: 1,
        }),
        step(SafeOp::Map { slot: 2, at: 0 }),
    ];
    safe::run(&steps).unwrap();
}
