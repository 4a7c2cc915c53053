//! Unit tests of the asynchrony model on a private `Sim` (stream ids, no handles).

use cuda_vmm_sys::{
    CUmemAccessDesc, CUmemAccess_flags as F, CUmemAllocationHandleType as H, CUmemAllocationProp,
    CUmemAllocationType, CUmemLocation, CUmemLocationType, CUresult, CUstreamCaptureStatus,
};

use crate::model::answers;
use crate::model::config::SimConfig;
use crate::model::state::Sim;
use crate::model::work::{legacy, Action, Blocked, Kind, Stream};

pub(super) const G: u64 = 64 << 10;

/// A two-device simulator of 64 KiB granules with device 0's primary context retained.
pub(super) fn sim(asynchronous: bool) -> Sim {
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
    sim.sync_stream(s).unwrap();
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
    sim.drain(legacy(0)).unwrap();
    assert_eq!((first_byte(&sim, a), first_byte(&sim, b)), (1, 0));
    // A blocking stream's later work waits for earlier legacy work.
    fill(&mut sim, legacy(0), a, 3);
    fill(&mut sim, blocking, b, 4);
    sim.sync_stream(blocking).unwrap();
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

#[test]
fn a_hold_freezes_its_stream_and_the_work_ordered_after_it() {
    let mut sim = sim(true);
    let (a, b) = (mapped(&mut sim), mapped(&mut sim));
    let held = user_stream(&mut sim, Kind::Blocking);
    let free = user_stream(&mut sim, Kind::NonBlocking);
    fill(&mut sim, held, a, 1);
    let id = sim.hold(held);
    fill(&mut sim, free, b, 2);
    assert_eq!(sim.sync_stream(held), Err(Blocked));
    // The legacy stream is ordered after the blocking stream's kernel.
    assert_eq!(sim.drain(legacy(0)), Err(Blocked));
    assert_eq!(sim.sync_device(0), Err(Blocked));
    assert_eq!(first_byte(&sim, a), 0);
    // Device progress skips held work only (sync_device may have run `free`'s).
    sim.advance();
    assert_eq!((first_byte(&sim, a), first_byte(&sim, b)), (0, 2));
    assert_eq!(sim.work.pending.len(), 1);
    sim.unhold(id);
    sim.sync_device(0).unwrap();
    assert_eq!(first_byte(&sim, a), 1);
}

#[test]
fn work_recorded_before_a_hold_is_not_held() {
    let mut sim = sim(true);
    let va = mapped(&mut sim);
    let s = user_stream(&mut sim, Kind::NonBlocking);
    fill(&mut sim, s, va, 1);
    let before = sim.work.next_seq();
    sim.sync_stream(s).unwrap();
    let id = sim.hold(s);
    let after = sim.work.next_seq();
    // Nothing queued since: an event at `after` still follows the held kernel.
    assert!(!sim.blocks(s, before));
    assert!(sim.blocks(s, after));
    assert_eq!(sim.query_point(0, s, before), Ok(()));
    assert_eq!(sim.query_point(0, s, after), Err(answers::NOT_READY));
    sim.unhold(id);
    assert!(!sim.blocks(s, after));
    assert_eq!(sim.query_point(0, s, after), Ok(()));
}

#[test]
fn queries_change_nothing_until_the_nth_answer_for_a_point() {
    let mut sim = Sim::new(
        SimConfig::new()
            .devices(1)
            .granularity(G)
            .memory_per_device(64 * G)
            .query_progress(3),
    );
    sim.retain_primary(0);
    let va = mapped(&mut sim);
    let s = user_stream(&mut sim, Kind::NonBlocking);
    fill(&mut sim, s, va, 5);
    let upto = sim.work.next_seq();
    let id = sim.hold(s);
    for _ in 0..10 {
        assert_eq!(sim.query_point(0, s, upto), Err(answers::NOT_READY));
    }
    assert!(sim.work.queries.is_empty(), "held points are not counted");
    sim.unhold(id);
    for _ in 0..2 {
        assert_eq!(sim.query_point(0, s, upto), Err(answers::NOT_READY));
    }
    assert_eq!(sim.work.pending.len(), 1);
    assert_eq!(first_byte(&sim, va), 0);
    assert_eq!(sim.query_point(0, s, upto), Ok(()));
    assert!(sim.work.pending.is_empty());
    assert_eq!(first_byte(&sim, va), 5);
}

#[test]
fn a_query_never_completes_work_with_the_progress_rule_off() {
    let mut sim = Sim::new(
        SimConfig::new()
            .devices(1)
            .granularity(G)
            .memory_per_device(64 * G)
            .query_progress(0),
    );
    sim.retain_primary(0);
    let va = mapped(&mut sim);
    let s = user_stream(&mut sim, Kind::NonBlocking);
    fill(&mut sim, s, va, 5);
    let upto = sim.work.next_seq();
    for _ in 0..1000 {
        assert_eq!(sim.query_point(0, s, upto), Err(answers::NOT_READY));
    }
    assert_eq!(sim.work.pending.len(), 1);
    sim.advance();
    assert_eq!(sim.query_point(0, s, upto), Ok(()));
}

#[test]
fn unmapping_held_work_poisons_and_discards_it() {
    let mut sim = sim(true);
    let va = mapped(&mut sim);
    let s = user_stream(&mut sim, Kind::NonBlocking);
    fill(&mut sim, s, va, 1);
    let _id = sim.hold(s);
    sim.unmap(va, G).unwrap();
    assert_eq!(sim.healthy(0), Err(answers::UNMAPPED_BY_DEVICE_WORK));
    assert!(sim.work.pending.is_empty());
}

#[test]
fn holds_are_inert_without_asynchrony() {
    let mut sim = sim(false);
    let va = mapped(&mut sim);
    let s = user_stream(&mut sim, Kind::NonBlocking);
    let _id = sim.hold(s);
    fill(&mut sim, s, va, 4);
    assert_eq!(first_byte(&sim, va), 4);
    assert_eq!(sim.sync_stream(s), Ok(()));
}

#[test]
fn capture_marks_nest_and_end_with_their_stream() {
    let none = Ok(CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE);
    let active = Ok(CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_ACTIVE);
    let mut sim = sim(true);
    let h = sim.stream_create(0, 1).unwrap();
    let other = sim.stream_create(0, 0).unwrap();
    assert_eq!(sim.stream_is_capturing(h), none);
    let (id, _) = sim.stream_of(h).unwrap();
    let outer = sim.mark_capturing(id);
    let inner = sim.mark_capturing(id);
    assert_eq!(sim.stream_is_capturing(h), active);
    assert_eq!(sim.stream_is_capturing(other), none);
    sim.unmark_capturing(inner);
    assert_eq!(sim.stream_is_capturing(h), active);
    sim.unmark_capturing(outer);
    assert_eq!(sim.stream_is_capturing(h), none);
    sim.unmark_capturing(outer);
    assert!(sim.work.captures.is_empty());
    sim.mark_capturing(id);
    sim.stream_destroy(h).unwrap();
    assert_eq!(
        sim.stream_is_capturing(h),
        Err(answers::BAD_STREAM_OR_EVENT)
    );
}
