//! Unit tests of the asynchrony model on a private `Sim` (stream ids, no handles).

use cuda_vmm_sys::{
    CUmemAccessDesc, CUmemAccess_flags as F, CUmemAllocationHandleType as H, CUmemAllocationProp,
    CUmemAllocationType, CUmemLocation, CUmemLocationType, CUresult,
};

use crate::model::answers;
use crate::model::config::SimConfig;
use crate::model::state::Sim;
use crate::model::work::{legacy, Action, Kind, Stream};

const G: u64 = 64 << 10;

fn sim(asynchronous: bool) -> Sim {
    let mut sim = Sim::new(
        SimConfig::new()
            .devices(2)
            .granularity(G)
            .memory_per_device(64 * G)
            .asynchronous(asynchronous),
    );
    sim.retain_primary(0);
    sim
}

/// A read-write mapping of one granule on device 0.
fn mapped(sim: &mut Sim) -> u64 {
    let prop = CUmemAllocationProp {
        type_: CUmemAllocationType::CU_MEM_ALLOCATION_TYPE_PINNED,
        requestedHandleTypes: H(0),
        location: CUmemLocation {
            type_: CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
            id: 0,
        },
        ..Default::default()
    };
    let va = sim.reserve(G, 0, 0, 0).unwrap();
    let h = sim.create(G, &prop, 0).unwrap();
    sim.map(va, G, 0, h, 0).unwrap();
    let rw = CUmemAccessDesc {
        location: prop.location,
        flags: F::CU_MEM_ACCESS_FLAGS_PROT_READWRITE,
    };
    sim.set_access(va, G, &[rw]).unwrap();
    va
}

fn user_stream(sim: &mut Sim, kind: Kind) -> u64 {
    let id = sim.work.new_id();
    let stream = Stream {
        device: 0,
        kind,
        live: true,
        queue: Default::default(),
    };
    sim.work.streams.insert(id, stream);
    id
}

fn fill(sim: &mut Sim, stream: u64, va: u64, value: u8) {
    let dst = sim.resolve(va, 16, 0, true).unwrap();
    let action = Action::Fill {
        dst,
        pattern: vec![value],
    };
    sim.submit(stream, action, vec![(va, va + 16)], None)
        .unwrap();
}

fn first_byte(sim: &Sim, va: u64) -> u8 {
    let span = sim.resolve(va, 1, 0, false).unwrap();
    let mut b = [0u8];
    // SAFETY: `b` holds one writable byte.
    unsafe { span.read_into(b.as_mut_ptr()) }.unwrap();
    b[0]
}

#[test]
fn work_runs_only_at_synchronisation_points_in_stream_order() {
    let mut sim = sim(true);
    let va = mapped(&mut sim);
    let s = user_stream(&mut sim, Kind::NonBlocking);
    fill(&mut sim, s, va, 1);
    fill(&mut sim, s, va, 2);
    assert_eq!(sim.work.pending.len(), 2);
    assert_eq!(first_byte(&sim, va), 0);
    sim.sync_stream(s);
    assert_eq!(first_byte(&sim, va), 2);
    assert!(sim.work.pending.is_empty());
}

#[test]
fn the_legacy_stream_waits_for_blocking_streams_only() {
    let mut sim = sim(true);
    let (a, b) = (mapped(&mut sim), mapped(&mut sim));
    let blocking = user_stream(&mut sim, Kind::Blocking);
    let non_blocking = user_stream(&mut sim, Kind::NonBlocking);
    fill(&mut sim, blocking, a, 1);
    fill(&mut sim, non_blocking, b, 2);
    sim.drain(legacy(0));
    assert_eq!((first_byte(&sim, a), first_byte(&sim, b)), (1, 0));
    // A blocking stream's later work waits for earlier legacy work.
    fill(&mut sim, legacy(0), a, 3);
    fill(&mut sim, blocking, b, 4);
    sim.sync_stream(blocking);
    assert_eq!((first_byte(&sim, a), first_byte(&sim, b)), (3, 4));
}

#[test]
fn unmapping_busy_memory_poisons_only_that_context_until_it_is_destroyed() {
    let mut sim = sim(true);
    let (busy, idle) = (mapped(&mut sim), mapped(&mut sim));
    let s = user_stream(&mut sim, Kind::NonBlocking);
    fill(&mut sim, s, busy, 1);
    sim.unmap(idle, G).unwrap();
    assert_eq!(sim.healthy(0), Ok(()));
    sim.unmap(busy, G).unwrap();
    // A fill is device work: ILLEGAL_ADDRESS, as recorded on the H200.
    assert_eq!(sim.healthy(0), Err(answers::UNMAPPED_BY_DEVICE_WORK));
    assert_eq!(
        answers::UNMAPPED_BY_DEVICE_WORK,
        CUresult::CUDA_ERROR_ILLEGAL_ADDRESS
    );
    assert_eq!(sim.healthy(1), Ok(()));
    assert!(sim.work.pending.is_empty());
    sim.release_primary(0).unwrap();
    assert_eq!(sim.healthy(0), Ok(()));
    assert!(sim.work.streams.get(&s).is_none_or(|st| !st.live));
}

#[test]
fn without_asynchrony_work_completes_when_submitted() {
    let mut sim = sim(false);
    let va = mapped(&mut sim);
    let s = user_stream(&mut sim, Kind::NonBlocking);
    fill(&mut sim, s, va, 9);
    assert!(sim.work.pending.is_empty());
    assert_eq!(first_byte(&sim, va), 9);
    sim.unmap(va, G).unwrap();
    assert_eq!(sim.healthy(0), Ok(()));
}
