//! The simulator: the unmap-while-copying race, deterministic.
//!
//! A pageable `cuMemcpyHtoD` returns before its DMA lands; unmapping right after poisons the
//! context. On a GPU that happens now and then; on the simulator it happens every time.
//! `cargo run -p cuda-vmm-sim --example deterministic_race`

use cuda_vmm_sys::*;

fn check(what: &str, rc: CUresult) {
    assert_eq!(rc, CUresult::CUDA_SUCCESS, "{what}");
}

fn main() -> Result<(), MissingSymbol> {
    let t = cuda_vmm_sim::driver().table();
    // SAFETY: every pointer passed below is a valid local, and every range was returned by
    // the simulator for this purpose.
    unsafe {
        check("cuInit", entry!(t, cuInit)?(0));
        let mut ctx = core::ptr::null_mut();
        check("retain", entry!(t, cuDevicePrimaryCtxRetain)?(&mut ctx, 0));
        check("set current", entry!(t, cuCtxSetCurrent)?(ctx));
        let prop = CUmemAllocationProp {
            type_: CUmemAllocationType::CU_MEM_ALLOCATION_TYPE_PINNED,
            location: CUmemLocation {
                type_: CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
                id: 0,
            },
            ..Default::default()
        };
        let size = 2 << 20;
        let (mut va, mut h) = (0, 0);
        check(
            "reserve",
            entry!(t, cuMemAddressReserve)?(&mut va, size, 0, 0, 0),
        );
        check("create", entry!(t, cuMemCreate)?(&mut h, size, &prop, 0));
        check("map", entry!(t, cuMemMap)?(va, size, 0, h, 0));
        let access = CUmemAccessDesc {
            location: prop.location,
            flags: CUmemAccess_flags::CU_MEM_ACCESS_FLAGS_PROT_READWRITE,
        };
        check("access", entry!(t, cuMemSetAccess)?(va, size, &access, 1));
        let data = vec![7u8; size];
        check(
            "copy",
            entry!(t, cuMemcpyHtoD_v2)?(va, data.as_ptr().cast(), size),
        );
        println!(
            "pending device work after the copy returned: {}",
            cuda_vmm_sim::pending_work()
        );
        check("unmap", entry!(t, cuMemUnmap)?(va, size)); // the race: the copy has not landed
        let rc = entry!(t, cuCtxSynchronize)?();
        println!(
            "cuCtxSynchronize after unmapping: {}",
            result_name(rc).unwrap_or("?")
        );
        assert_eq!(rc, CUresult::CUDA_ERROR_LAUNCH_FAILED);
    }
    Ok(())
}
