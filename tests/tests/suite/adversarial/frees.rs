//! Class 8: `LinearAllocation::free` hands the allocation back after a failed wait and
//! never retries a failed `cuMemFree`.

use cuda_vmm::{Error, LinearAllocation};
use cuda_vmm_sim::inject_fault;
use cuda_vmm_sys::CUresult;

use super::{pattern_blocks, simulator_or_skip, TestResult, MIB};

/// Class 8: a wait that fails twice in a row hands the allocation back twice, intact
/// (its bytes still readable), and the allocation dropped afterwards is freed: free
/// memory returns to where it started, with no `cuMemFree` called for a failed wait.
#[test]
fn linear_free_failing_twice_hands_back_an_intact_allocation() -> TestResult {
    if !simulator_or_skip("injecting failed waits")? {
        return Ok(());
    }
    let _memory = crate::memory_exclusive();
    let device = crate::cuda()?.device(0)?;
    let before = device.memory_info()?.free;
    let linear = LinearAllocation::new(&device, MIB)?;
    let data = pattern_blocks(MIB, 71, 37, 13);
    linear.write(0, &data)?;
    let frees_before = cuda_vmm_sim::call_count("cuMemFree_v2");
    let mut linear = Some(linear);
    for round in 0..2 {
        let l = linear.take().expect("handed back");
        let _f = inject_fault("cuCtxSynchronize", 1, CUresult::CUDA_ERROR_UNKNOWN);
        let failed = l.free().expect_err("the injected wait failure");
        assert!(
            matches!(
                failed.error,
                Error::Driver {
                    call: "cuCtxSynchronize",
                    ..
                }
            ),
            "round {round}: {:?}",
            failed.error
        );
        linear = failed.allocation;
        assert!(linear.is_some(), "round {round}: nothing was freed");
    }
    assert_eq!(
        cuda_vmm_sim::call_count("cuMemFree_v2"),
        frees_before,
        "a failed wait went on to cuMemFree"
    );
    let linear = linear.expect("handed back");
    let mut out = vec![0u8; MIB];
    linear.read(0, &mut out)?;
    assert!(out == data, "the handed-back allocation lost its bytes");
    drop(linear);
    assert_eq!(cuda_vmm_sim::call_count("cuMemFree_v2"), frees_before + 1);
    assert_eq!(device.memory_info()?.free, before);
    Ok(())
}

/// Class 8: after a failed `cuMemFree`, dropping whatever the error holds never calls
/// `cuMemFree` again for that pointer.
#[test]
fn a_failed_cumemfree_is_called_once() -> TestResult {
    if !simulator_or_skip("injecting a failed free")? {
        return Ok(());
    }
    let _memory = crate::memory_shared();
    let device = crate::cuda()?.device(0)?;
    let linear = LinearAllocation::new(&device, MIB)?;
    let frees_before = cuda_vmm_sim::call_count("cuMemFree_v2");
    let failed = {
        let _f = inject_fault("cuMemFree_v2", 1, CUresult::CUDA_ERROR_UNKNOWN);
        linear.free().expect_err("the injected free failure")
    };
    assert!(failed.allocation.is_none());
    drop(failed);
    assert_eq!(cuda_vmm_sim::call_count("cuMemFree_v2"), frees_before + 1);
    Ok(())
}
