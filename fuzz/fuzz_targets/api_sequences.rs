//! Random API sequences on the simulator (asynchrony on), each step maybe under an injected
//! driver fault, checked against the host models of `cuda_vmm_tests::ops`: a growable buffer,
//! a sparse array, one pool shared by several structures, or the safe layer. Any panic, or
//! any divergence from the model (a wrong result, lost bytes, a leaked allocation, mapping or
//! reservation), is a finding.

#![no_main]

use cuda_vmm_alloc::HoleBehavior;
use cuda_vmm_tests::ops::buffer::{self, BufOp, BufferSetup, Size};
use cuda_vmm_tests::ops::safe::{self, SafeOp};
use cuda_vmm_tests::ops::shared_pool::{self, PoolOp};
use cuda_vmm_tests::ops::sparse::{self, SparseOp, SparseSetup};
use cuda_vmm_tests::ops::{FaultPick, Step};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

/// Longest sequence taken from one input.
const MAX_STEPS: usize = 48;

fn fault(u: &mut Unstructured<'_>) -> Result<Option<FaultPick>> {
    Ok(if u.ratio(1, 3)? {
        Some(FaultPick {
            symbol: u.arbitrary()?,
            nth: u.arbitrary()?,
        })
    } else {
        None
    })
}

fn steps<O>(
    u: &mut Unstructured<'_>,
    op: impl Fn(&mut Unstructured<'_>) -> Result<O>,
) -> Result<Vec<Step<O>>> {
    let mut out = Vec::new();
    while !u.is_empty() && out.len() < MAX_STEPS {
        let op = op(u)?;
        out.push(Step {
            op,
            fault: fault(u)?,
        });
    }
    Ok(out)
}

fn size(u: &mut Unstructured<'_>) -> Result<Size> {
    Ok(Size {
        eighths: u.int_in_range(0..=40)?,
        extra: u.int_in_range(0..=300)?,
    })
}

fn buf_op(u: &mut Unstructured<'_>) -> Result<BufOp> {
    Ok(match u.int_in_range(0..=9u8)? {
        0 => BufOp::Push(u.arbitrary()?),
        1 => BufOp::Extend {
            len: size(u)?,
            seed: u.arbitrary()?,
        },
        2 => BufOp::ExtendAsync {
            len: size(u)?,
            seed: u.arbitrary()?,
        },
        3 => BufOp::Resize {
            len: size(u)?,
            value: u.arbitrary()?,
        },
        4 => BufOp::Reserve(size(u)?),
        5 => BufOp::Truncate(size(u)?),
        6 => BufOp::Clear,
        7 => BufOp::ShrinkToFit,
        8 => BufOp::Write {
            at: u.arbitrary()?,
            len: size(u)?,
            seed: u.arbitrary()?,
        },
        _ => BufOp::Read {
            at: u.arbitrary()?,
            len: size(u)?,
        },
    })
}

fn sparse_op(u: &mut Unstructured<'_>) -> Result<SparseOp> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => SparseOp::Commit(u.arbitrary()?, u.arbitrary()?),
        1 => SparseOp::Decommit(u.arbitrary()?, u.arbitrary()?),
        2 => SparseOp::Write {
            at: u.arbitrary()?,
            len: u.arbitrary()?,
            seed: u.arbitrary()?,
        },
        _ => SparseOp::Read(u.arbitrary()?, u.arbitrary()?),
    })
}

fn safe_op(u: &mut Unstructured<'_>) -> Result<SafeOp> {
    Ok(match u.int_in_range(0..=6u8)? {
        0 => SafeOp::Create {
            slot: u.arbitrary()?,
            granules: u.arbitrary()?,
        },
        1 => SafeOp::Drop(u.arbitrary()?),
        2 => SafeOp::Map {
            slot: u.arbitrary()?,
            at: u.arbitrary()?,
        },
        3 => SafeOp::Unmap(u.arbitrary()?),
        4 => SafeOp::SetAccess {
            at: u.arbitrary()?,
            granules: u.arbitrary()?,
            write: u.arbitrary()?,
        },
        5 => SafeOp::Write {
            at: u.arbitrary()?,
            jitter: u.int_in_range(0..=4096)?,
            len: u.int_in_range(0..=40)?,
            seed: u.arbitrary()?,
        },
        _ => SafeOp::Read {
            at: u.arbitrary()?,
            jitter: u.int_in_range(0..=4096)?,
            len: u.int_in_range(0..=40)?,
        },
    })
}

fn pool_op(u: &mut Unstructured<'_>) -> Result<PoolOp> {
    Ok(match u.int_in_range(0..=4u8)? {
        0 => PoolOp::Buffer(u.arbitrary()?, buf_op(u)?),
        1 => PoolOp::Sparse(u.arbitrary()?, sparse_op(u)?),
        2 => PoolOp::Prefill(u.arbitrary()?),
        3 => PoolOp::Trim,
        _ => PoolOp::AcquireRecycle,
    })
}

fn run(data: &[u8]) -> Result<std::result::Result<(), String>> {
    let mut u = Unstructured::new(data);
    let outcome = match u.int_in_range(0..=3u8)? {
        0 => {
            let setup = BufferSetup {
                pooled: u.arbitrary()?,
                proportional: u.arbitrary()?,
            };
            buffer::run(setup, &steps(&mut u, buf_op)?)
        }
        1 => {
            let setup = SparseSetup {
                holes: if u.arbitrary()? {
                    HoleBehavior::Zeros
                } else {
                    HoleBehavior::Error
                },
                pooled: u.arbitrary()?,
            };
            sparse::run(setup, &steps(&mut u, sparse_op)?)
        }
        2 => shared_pool::run(&steps(&mut u, pool_op)?),
        _ => safe::run(&steps(&mut u, safe_op)?),
    };
    Ok(outcome.map(|_| ()))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(Err(finding)) = run(data) {
        panic!("{finding}");
    }
});
