//! Unit tests of host-located allocations, on a private `Sim` (not the global one).

use cuda_vmm_sys::{
    CUmemAccessDesc, CUmemAccess_flags as F, CUmemAllocationHandleType as H, CUmemAllocationProp,
    CUmemAllocationType, CUmemLocation, CUmemLocationType as L, CUresult,
};

use crate::model::answers;
use crate::model::config::SimConfig;
use crate::model::state::Sim;

const G: u64 = 64 << 10;

fn sim() -> Sim {
    Sim::new(
        SimConfig::new()
            .devices(2)
            .granularity(G)
            .memory_per_device(4 * G),
    )
}

fn at(type_: L, id: i32) -> CUmemLocation {
    CUmemLocation { type_, id }
}

fn prop(location: CUmemLocation, handle_types: H) -> CUmemAllocationProp {
    CUmemAllocationProp {
        type_: CUmemAllocationType::CU_MEM_ALLOCATION_TYPE_PINNED,
        requestedHandleTypes: handle_types,
        location,
        ..Default::default()
    }
}

fn desc(location: CUmemLocation, flags: F) -> CUmemAccessDesc {
    CUmemAccessDesc { location, flags }
}

const NONE: H = H::CU_MEM_HANDLE_TYPE_NONE;
const DEV0: CUmemLocation = CUmemLocation {
    type_: L::CU_MEM_LOCATION_TYPE_DEVICE,
    id: 0,
};

#[test]
fn host_locations_are_created_or_refused_as_on_the_driver() {
    let mut sim = sim();
    let numa = prop(at(L::CU_MEM_LOCATION_TYPE_HOST_NUMA, 0), NONE);
    let host = prop(at(L::CU_MEM_LOCATION_TYPE_HOST, 7), NONE);
    let a = sim.create(G, &numa, 0).unwrap();
    let b = sim.create(G, &host, 0).unwrap();
    let current = prop(at(L::CU_MEM_LOCATION_TYPE_HOST_NUMA_CURRENT, 0), NONE);
    assert_eq!(
        sim.create(G, &current, 0),
        Err(answers::PROP_HOST_NUMA_CURRENT)
    );
    assert_eq!(
        answers::PROP_HOST_NUMA_CURRENT,
        CUresult::CUDA_ERROR_INVALID_VALUE
    );
    let fd = H::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
    let host_fd = prop(at(L::CU_MEM_LOCATION_TYPE_HOST, 0), fd);
    assert_eq!(
        sim.create(G, &host_fd, 0),
        Err(answers::PROP_HOST_HANDLE_TYPES)
    );
    let bad_node = prop(at(L::CU_MEM_LOCATION_TYPE_HOST_NUMA, 1), NONE);
    assert_eq!(
        sim.create(G, &bad_node, 0),
        Err(answers::PROP_BAD_HOST_NUMA_ID)
    );
    let numa_fd = sim
        .create(G, &prop(at(L::CU_MEM_LOCATION_TYPE_HOST_NUMA, 0), fd), 0)
        .unwrap();
    // The properties name HOST_NUMA node 0 for both: HOST memory (created with id 7)
    // reports itself as HOST_NUMA 0, as on an H200.
    let p = sim.properties(a).unwrap();
    assert_eq!(
        (p.location.type_, p.location.id),
        (L::CU_MEM_LOCATION_TYPE_HOST_NUMA, 0)
    );
    let p = sim.properties(b).unwrap();
    assert_eq!(
        (p.location.type_, p.location.id),
        (L::CU_MEM_LOCATION_TYPE_HOST_NUMA, 0)
    );
    assert_eq!(answers::PROPERTIES_HOST_REPORTED_NUMA_ID, 0);
    for h in [a, b, numa_fd] {
        sim.release(h).unwrap();
    }
}

#[test]
fn host_memory_counts_against_no_device() {
    let mut sim = sim();
    // More host memory than a device has: no device runs out.
    let numa = prop(at(L::CU_MEM_LOCATION_TYPE_HOST_NUMA, 0), NONE);
    let h = sim.create(8 * G, &numa, 0).unwrap();
    assert_eq!((sim.free_bytes(0), sim.free_bytes(1)), (4 * G, 4 * G));
    sim.release(h).unwrap();
    assert_eq!((sim.free_bytes(0), sim.free_bytes(1)), (4 * G, 4 * G));
}

#[test]
fn host_numa_memory_takes_device_and_host_access() {
    let mut sim = sim();
    let va = sim.reserve(2 * G, 0, 0, 0).unwrap();
    let numa = sim
        .create(G, &prop(at(L::CU_MEM_LOCATION_TYPE_HOST_NUMA, 0), NONE), 0)
        .unwrap();
    let dev = sim.create(G, &prop(DEV0, NONE), 0).unwrap();
    sim.map(va, G, 0, numa, 0).unwrap();
    sim.map(va + G, G, 0, dev, 0).unwrap();
    let rw = F::CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    let host_numa = at(L::CU_MEM_LOCATION_TYPE_HOST_NUMA, 5);
    sim.set_access(va, G, &[desc(DEV0, rw), desc(host_numa, rw)])
        .unwrap();
    assert_eq!(sim.get_access(&DEV0, va).unwrap().0, rw);
    assert_eq!(sim.get_access(&host_numa, va).unwrap().0, rw);
    // A HOST location reports the same host access.
    let host = at(L::CU_MEM_LOCATION_TYPE_HOST, 0);
    assert_eq!(sim.get_access(&host, va).unwrap().0, rw);
    // Host access over device memory is refused, whichever descriptor asks, and nothing
    // is applied.
    for host_desc in [host_numa, host] {
        assert_eq!(
            sim.set_access(va, 2 * G, &[desc(DEV0, rw), desc(host_desc, rw)]),
            Err(answers::ACCESS_HOST_ON_DEVICE_MEMORY)
        );
        assert_eq!(
            sim.get_access(&DEV0, va + G).unwrap().0,
            F::CU_MEM_ACCESS_FLAGS_PROT_NONE
        );
    }
    assert_eq!(
        answers::ACCESS_HOST_ON_DEVICE_MEMORY,
        CUresult::CUDA_ERROR_NOT_SUPPORTED
    );
    // Revoking the host's access keeps the device's.
    sim.set_access(va, G, &[desc(host_numa, F::CU_MEM_ACCESS_FLAGS_PROT_NONE)])
        .unwrap();
    assert_eq!(
        sim.get_access(&host_numa, va).unwrap().0,
        F::CU_MEM_ACCESS_FLAGS_PROT_NONE
    );
    assert_eq!(sim.get_access(&DEV0, va).unwrap().0, rw);
    sim.unmap(va, 2 * G).unwrap();
    sim.release(numa).unwrap();
    sim.release(dev).unwrap();
}

#[test]
fn host_and_host_numa_descriptors_grant_host_access_to_either_host_memory() {
    let mut sim = sim();
    let rw = F::CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    let none = F::CU_MEM_ACCESS_FLAGS_PROT_NONE;
    let host = at(L::CU_MEM_LOCATION_TYPE_HOST, 0);
    let host_numa = at(L::CU_MEM_LOCATION_TYPE_HOST_NUMA, 0);
    for memory in [host, host_numa] {
        for (grant, other) in [(host, host_numa), (host_numa, host)] {
            let va = sim.reserve(G, 0, 0, 0).unwrap();
            let h = sim.create(G, &prop(memory, NONE), 0).unwrap();
            sim.map(va, G, 0, h, 0).unwrap();
            assert_eq!(sim.get_access(&grant, va).unwrap().0, none);
            sim.set_access(va, G, &[desc(grant, rw)]).unwrap();
            // One host: both locations report the grant, the device has none.
            assert_eq!(sim.get_access(&grant, va).unwrap().0, rw);
            assert_eq!(sim.get_access(&other, va).unwrap().0, rw);
            assert_eq!(sim.get_access(&DEV0, va).unwrap().0, none);
            sim.unmap(va, G).unwrap();
            sim.release(h).unwrap();
            sim.address_free(va, G).unwrap();
        }
    }
}
