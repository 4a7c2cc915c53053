//! `Mapping::unmap_deferred` used directly: refusals change nothing, an empty batch runs its
//! `then` at once, a failing `then` on the worker is reported (not kept), an ending range is
//! refused as unmapped at once, and the queue's handles keep a reservation and allocation
//! in use until the entry completes.

use std::sync::mpsc;

use cuda_vmm::{
    AccessFlags, Allocation, AllocationProps, Device, Error, Mapping, Reservation, ReserveOptions,
    Stream,
};
use cuda_vmm_tests::helpers::{gran, TestResult};

use super::{flush_cleanly, free, own_process, queued, queued_device, simulated, FLUSH};

fn reserve_and_map(device: &Device, g: usize) -> cuda_vmm::Result<(Reservation, Mapping)> {
    let r = Reservation::new(device, 2 * g, ReserveOptions::default())?;
    let a = Allocation::new(device, g, &AllocationProps::device(device))?;
    let m = r.map(0, &a, 0, g)?;
    Ok((r, m))
}

#[test]
fn mappings_of_two_reservations_are_refused_and_nothing_is_queued() -> TestResult {
    let _memory = crate::memory_shared();
    let (cuda, device, g) = queued_device()?;
    let (r1, m1) = reserve_and_map(&device, g)?;
    let (r2, m2) = reserve_and_map(&device, g)?;
    let Err((e, back)) = Mapping::unmap_deferred(vec![m1, m2], None) else {
        panic!("mappings of two reservations were accepted");
    };
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
    assert_eq!(back.len(), 2);
    assert!(r1.is_mapped(0, g) && r2.is_mapped(0, g));
    assert_eq!(cuda.release_stats().queued, 0);
    drop(back);
    assert!(!r1.is_mapped(0, g) && !r2.is_mapped(0, g));
    Ok(())
}

#[test]
fn an_empty_batch_runs_its_then_at_once_and_returns_its_error() -> TestResult {
    let _memory = crate::memory_shared();
    let cuda = queued()?;
    let here = std::thread::current().id();
    let then: cuda_vmm::release::ReleaseThen = Box::new(move |allocations| {
        assert!(allocations.is_empty());
        assert_eq!(std::thread::current().id(), here);
        Err(Error::InvalidArgument {
            message: "then of nothing".into(),
        })
    });
    let Err((e, back)) = Mapping::unmap_deferred(Vec::new(), Some(then)) else {
        panic!("the then's error was lost");
    };
    assert_eq!(
        e,
        Error::InvalidArgument {
            message: "then of nothing".into()
        }
    );
    assert!(back.is_empty());
    assert_eq!(cuda.release_stats().queued, 0);
    Ok(())
}

#[test]
fn a_failing_then_on_the_worker_is_reported_once_and_not_kept() -> TestResult {
    let _memory = crate::memory_shared();
    let (cuda, device, g) = queued_device()?;
    let (r, m) = reserve_and_map(&device, g)?;
    let (tx, rx) = mpsc::channel();
    let then: cuda_vmm::release::ReleaseThen = Box::new(move |allocations| {
        let name = std::thread::current().name().map(str::to_owned);
        tx.send((allocations.len(), name)).expect("send");
        drop(allocations);
        Err(Error::InvalidArgument {
            message: "then failed".into(),
        })
    });
    Mapping::unmap_deferred(vec![m], Some(then)).map_err(|(e, _)| e)?;
    // Refused as unmapped from the call on, whether or not the worker got to it.
    assert!(!r.is_mapped(0, g));
    assert_eq!(
        r.set_access(0, g, &[(&device, AccessFlags::ReadWrite)]),
        Err(Error::NotMapped { offset: 0, size: g })
    );
    assert!(cuda.flush_releases(FLUSH)?);
    let (count, name) = rx.recv().expect("then ran");
    assert_eq!(count, 1);
    assert_eq!(name.as_deref(), Some(cuda.release_worker_name()));
    let errors = cuda.take_release_errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(!errors[0].kept && !errors[0].from_wait);
    assert_eq!((errors[0].address, errors[0].size), (r.ptr(), g));
    assert_eq!(
        errors[0].error,
        Error::InvalidArgument {
            message: "then failed".into()
        }
    );
    let stats = cuda.release_stats();
    assert_eq!(
        (stats.completed, stats.errors, stats.pending_entries),
        (1, 1, 0)
    );
    Ok(())
}

own_process!(
    a_queued_entry_keeps_its_reservation_and_allocation_in_use_until_it_completes,
    handles_in_use_child,
    {
        let (cuda, device) = simulated();
        let g = gran(&device).expect("granularity");
        let stream = Stream::new(&device).expect("stream");
        let r = Reservation::new(&device, 2 * g, ReserveOptions::default()).expect("reserve");
        let a = Allocation::new(&device, g, &AllocationProps::device(&device)).expect("alloc");
        let m = r.map(0, &a, 0, g).expect("map");
        let hold = cuda_vmm_sim::hold_stream(stream.raw());
        r.record_use(&stream).expect("record");
        Mapping::unmap_deferred(vec![m], None)
            .map_err(|(e, _)| e)
            .expect("queue");
        assert_eq!(r.mapping_count(), 1);
        let before = free(&device);
        // The entry holds a clone of each (and its mapping one more of the reservation):
        // besides `r`, the entry and its mapping use the range.
        assert_eq!(
            r.clone().free(),
            Err(Error::InUse {
                what: "reservation",
                users: 3
            })
        );
        assert_eq!(
            a.clone().release(),
            Err(Error::InUse {
                what: "allocation",
                users: 2
            })
        );
        drop(hold);
        flush_cleanly(&cuda);
        assert_eq!(r.mapping_count(), 0);
        assert_eq!(r.free(), Ok(()));
        assert_eq!(a.release(), Ok(()));
        assert_eq!(free(&device), before + g);
    }
);
