//! The safe layer: reservations.

use super::*;

#[test]
fn reservation_basics() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let r = Reservation::new(&d, 4 * g, ReserveOptions::default())?;
    assert_eq!(r.size(), 4 * g);
    assert_eq!(r.granularity(), g);
    assert_ne!(r.ptr(), 0);
    assert_eq!(r.ptr() % g as u64, 0);
    assert!(!r.hint_honoured());
    assert!(!r.is_mapped(0, g));
    r.free()?;
    Ok(())
}

#[test]
fn reservation_size_validation() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    assert_eq!(
        fails(Reservation::new(&d, 0, ReserveOptions::default())),
        Error::InvalidArgument {
            message: "reservation size 0: the size must be nonzero".into()
        }
    );
    assert_eq!(
        fails(Reservation::new(&d, g + 4096, ReserveOptions::default())),
        Error::NotAligned {
            what: "reservation size",
            value: (g + 4096) as u64,
            granularity: g
        }
    );
    Ok(())
}

#[test]
fn reservation_alignment() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let bad = ReserveOptions {
        alignment: 3 * g,
        ..Default::default()
    };
    assert_eq!(
        fails(Reservation::new(&d, g, bad)),
        Error::InvalidArgument {
            message: format!("alignment {} is not a power of two", 3 * g)
        }
    );
    let big = 8 * g;
    let r = Reservation::new(
        &d,
        g,
        ReserveOptions {
            alignment: big,
            ..Default::default()
        },
    )?;
    assert_eq!(r.ptr() % big as u64, 0);
    // A smaller power of two means "the granularity".
    let r2 = Reservation::new(
        &d,
        g,
        ReserveOptions {
            alignment: 4096,
            ..Default::default()
        },
    )?;
    assert_eq!(r2.ptr() % g as u64, 0);
    Ok(())
}

#[test]
fn reservation_hint_honoured() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    // Find a free hole, release it, and ask for its start (the real driver
    // honours that: conformance `reserve_hint_free_is_honoured`). Other test
    // threads may grab the hole in between, so try a few holes.
    for _ in 0..8 {
        let hole = Reservation::new(&d, 4 * g, ReserveOptions::default())?;
        let want = hole.ptr();
        hole.free()?;
        let opts = ReserveOptions {
            hint: Some(want),
            strict_hint: true,
            ..Default::default()
        };
        match Reservation::new(&d, 4 * g, opts) {
            Ok(r) => {
                assert!(r.hint_honoured());
                assert_eq!(r.ptr(), want);
                return Ok(());
            }
            Err(Error::HintNotHonoured { requested, .. }) => assert_eq!(requested, want),
            Err(e) => return Err(e.into()),
        }
    }
    panic!("a freed hole's start was never honoured as a hint in 8 tries")
}

#[test]
fn reservation_hint_not_honoured() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let taken = Reservation::new(&d, 4 * g, ReserveOptions::default())?;
    let lax = Reservation::new(
        &d,
        4 * g,
        ReserveOptions {
            hint: Some(taken.ptr()),
            ..Default::default()
        },
    )?;
    assert!(!lax.hint_honoured());
    assert_ne!(lax.ptr(), taken.ptr());
    match fails(Reservation::new(
        &d,
        4 * g,
        ReserveOptions {
            hint: Some(taken.ptr()),
            strict_hint: true,
            ..Default::default()
        },
    )) {
        Error::HintNotHonoured { requested, got } => {
            assert_eq!(requested, taken.ptr());
            assert_ne!(got, taken.ptr());
        }
        other => panic!("expected HintNotHonoured, got {other:?}"),
    }
    Ok(())
}

#[test]
fn reservation_hint_validation() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let hint = 0x7000_0000_0000u64 + 4096;
    assert_eq!(
        fails(Reservation::new(
            &d,
            g,
            ReserveOptions {
                hint: Some(hint),
                ..Default::default()
            }
        )),
        Error::NotAligned {
            what: "address hint",
            value: hint,
            granularity: g
        }
    );
    assert_eq!(
        fails(Reservation::new(
            &d,
            g,
            ReserveOptions {
                strict_hint: true,
                ..Default::default()
            }
        )),
        Error::InvalidArgument {
            message: "strict_hint is set but no address hint is given".into()
        }
    );
    assert_eq!(
        fails(Reservation::new(
            &d,
            g,
            ReserveOptions {
                hint: Some(0),
                ..Default::default()
            }
        )),
        Error::InvalidArgument {
            message: "address hint 0 is not an address; use None".into()
        }
    );
    Ok(())
}
