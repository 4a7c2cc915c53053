//! Bad input: every public constructor and method of `cuda-vmm` and `cuda-vmm-alloc` that
//! takes a size, offset, range, index or configuration value, given zero, misaligned,
//! overflowing (`usize::MAX`, offset + length wrapping) and out-of-range values. Each gets
//! its exact error (no panic), and what was stored before is intact afterwards.

use cuda_vmm::{
    AccessFlags, Allocation, AllocationProps, Error, LinearAllocation, Reservation, ReserveOptions,
    Stream,
};
use cuda_vmm_alloc::{
    BufferConfig, ChunkPool, Error as AllocError, GrowableBuffer, GrowthPolicy, PoolConfig,
    SparseArray, SparseConfig,
};

use super::{device, gran, pattern_hashed, TestResult};

/// `usize::MAX` rounded down to a multiple of `g`: aligned, but overflowing anything.
fn huge(g: usize) -> usize {
    usize::MAX - (g - 1)
}

macro_rules! refused {
    ($call:expr, $pat:pat) => {{
        let r = $call;
        assert!(
            matches!(r, Err($pat)),
            "{}: {:?}, expected {}",
            stringify!($call),
            r,
            stringify!($pat)
        );
    }};
}

#[test]
fn reservation_constructor_refuses_bad_sizes_and_hints() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let opts = ReserveOptions::default();
    refused!(Reservation::new(&d, 0, opts), Error::InvalidArgument { .. });
    refused!(
        Reservation::new(&d, g + 1, opts),
        Error::NotAligned {
            what: "reservation size",
            ..
        }
    );
    refused!(
        Reservation::new(&d, usize::MAX, opts),
        Error::NotAligned { .. }
    );
    // Aligned but larger than any address space: the driver refuses it.
    refused!(
        Reservation::new(&d, huge(g), opts),
        Error::Driver {
            call: "cuMemAddressReserve",
            ..
        }
    );
    let bad = |alignment, hint, strict_hint| ReserveOptions {
        alignment,
        hint,
        strict_hint,
    };
    refused!(
        Reservation::new(&d, g, bad(3, None, false)),
        Error::InvalidArgument { .. }
    );
    refused!(
        Reservation::new(&d, g, bad(usize::MAX, None, false)),
        Error::InvalidArgument { .. }
    );
    refused!(
        Reservation::new(&d, g, bad(0, Some(0), false)),
        Error::InvalidArgument { .. }
    );
    refused!(
        Reservation::new(&d, g, bad(0, Some(g as u64 + 1), false)),
        Error::NotAligned {
            what: "address hint",
            ..
        }
    );
    refused!(
        Reservation::new(&d, 2 * g, bad(0, Some(huge(g) as u64), false)),
        Error::InvalidArgument { .. }
    );
    refused!(
        Reservation::new(&d, g, bad(0, None, true)),
        Error::InvalidArgument { .. }
    );
    Ok(())
}

#[test]
fn allocation_constructors_refuse_bad_sizes() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let props = AllocationProps::device(&d);
    refused!(
        Allocation::new(&d, 0, &props),
        Error::InvalidArgument { .. }
    );
    refused!(Allocation::new(&d, g + 1, &props), Error::NotAligned { .. });
    refused!(
        Allocation::new(&d, usize::MAX, &props),
        Error::NotAligned { .. }
    );
    refused!(
        Allocation::new(&d, huge(g), &props),
        Error::Driver {
            call: "cuMemCreate",
            ..
        }
    );
    refused!(LinearAllocation::new(&d, 0), Error::InvalidArgument { .. });
    refused!(
        LinearAllocation::new(&d, usize::MAX),
        Error::Driver {
            call: "cuMemAlloc_v2",
            ..
        }
    );
    refused!(
        cuda_vmm::Cuda::simulator()?.device(usize::MAX),
        Error::InvalidArgument { .. }
    );
    Ok(())
}

/// A reservation of four granules with `data` in its first mapped granule, read-write.
struct Fixture {
    range: Reservation,
    chunk: Allocation,
    _mapping: cuda_vmm::Mapping,
    data: Vec<u8>,
}

fn fixture(g: usize) -> Result<Fixture, Box<dyn std::error::Error>> {
    let d = device()?;
    let range = Reservation::new(&d, 4 * g, ReserveOptions::default())?;
    let chunk = Allocation::new(&d, g, &AllocationProps::device(&d))?;
    let mapping = range.map(0, &chunk, 0, g)?;
    range.set_access(0, g, &[(&d, AccessFlags::ReadWrite)])?;
    let data = pattern_hashed(g, 5);
    range.write(0, &data)?;
    Ok(Fixture {
        range,
        chunk,
        _mapping: mapping,
        data,
    })
}

impl Fixture {
    fn intact(&self) -> TestResult {
        assert_eq!(self.range.mapping_count(), 1, "a mapping was lost or added");
        let mut out = vec![0u8; self.data.len()];
        self.range.read(0, &mut out)?;
        assert!(out == self.data, "stored bytes changed");
        Ok(())
    }
}

#[test]
fn reservation_methods_refuse_bad_offsets_and_lengths() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let f = fixture(g)?;
    let r = &f.range;
    let other = Allocation::new(&d, g, &AllocationProps::device(&d))?;
    // map
    refused!(r.map(g, &other, 0, 0), Error::InvalidArgument { .. });
    refused!(
        r.map(g + 1, &other, 0, g),
        Error::NotAligned { what: "offset", .. }
    );
    refused!(
        r.map(g, &other, 0, g + 1),
        Error::NotAligned { what: "size", .. }
    );
    refused!(r.map(g, &other, 1, g), Error::NotAligned { .. });
    refused!(r.map(huge(g), &other, 0, g), Error::OutOfBounds { .. });
    refused!(r.map(g, &other, 0, huge(g)), Error::OutOfBounds { .. });
    refused!(r.map(4 * g, &other, 0, g), Error::OutOfBounds { .. });
    refused!(r.map(g, &other, g, g), Error::OutOfBounds { .. });
    refused!(r.map(0, &other, 0, g), Error::Overlap { .. });
    f.intact()?;
    // set_access
    let rw = [(&d, AccessFlags::ReadWrite)];
    refused!(r.set_access(0, 0, &rw), Error::InvalidArgument { .. });
    refused!(r.set_access(1, g, &rw), Error::NotAligned { .. });
    refused!(r.set_access(0, g - 1, &rw), Error::NotAligned { .. });
    refused!(r.set_access(huge(g), 2 * g, &rw), Error::OutOfBounds { .. });
    refused!(r.set_access(0, huge(g), &rw), Error::OutOfBounds { .. });
    refused!(r.set_access(g, g, &rw), Error::NotMapped { .. });
    refused!(r.set_access(0, 2 * g, &rw), Error::NotMapped { .. });
    f.intact()?;
    // queries
    refused!(r.access(usize::MAX, &d), Error::OutOfBounds { .. });
    refused!(r.access(4 * g, &d), Error::OutOfBounds { .. });
    refused!(r.access(g, &d), Error::NotMapped { .. });
    assert!(!r.is_mapped(usize::MAX, 2));
    assert!(!r.is_mapped(0, 0));
    assert!(!r.is_mapped(0, usize::MAX));
    // host copies
    let mut out = [0u8; 8];
    refused!(r.write(usize::MAX, b"x"), Error::OutOfBounds { .. });
    refused!(
        r.write(usize::MAX - 2, b"wrapping"),
        Error::OutOfBounds { .. }
    );
    refused!(r.write(4 * g, b"x"), Error::OutOfBounds { .. });
    refused!(r.write(g - 1, b"xy"), Error::NotMapped { .. });
    refused!(r.read(usize::MAX - 2, &mut out), Error::OutOfBounds { .. });
    refused!(r.read(g, &mut out), Error::NotMapped { .. });
    refused!(r.fill(usize::MAX, 1, 0), Error::OutOfBounds { .. });
    refused!(r.fill(1, usize::MAX, 0), Error::OutOfBounds { .. });
    refused!(r.fill(g - 4, 8, 0), Error::NotMapped { .. });
    refused!(r.copy_within(usize::MAX, 0, 1), Error::OutOfBounds { .. });
    refused!(r.copy_within(0, usize::MAX, 1), Error::OutOfBounds { .. });
    refused!(r.copy_within(0, 8, usize::MAX), Error::OutOfBounds { .. });
    refused!(r.copy_within(0, 8, 16), Error::InvalidArgument { .. });
    refused!(r.copy_within(0, g, 8), Error::NotMapped { .. });
    let stream = Stream::new(&d)?;
    refused!(
        r.write_async(&stream, usize::MAX - 2, b"wrapping"),
        Error::OutOfBounds { .. }
    );
    refused!(
        r.fill_async(&stream, 1, usize::MAX, 0),
        Error::OutOfBounds { .. }
    );
    refused!(
        r.copy_within_async(&stream, 0, usize::MAX, 1),
        Error::OutOfBounds { .. }
    );
    stream.synchronize()?;
    f.intact()?;
    // The chunk, mapped, cannot be recycled and stays usable.
    assert!(f.chunk.holders() >= 2);
    // linear allocations
    let lin = LinearAllocation::new(&d, 4096)?;
    lin.write(0, &[7; 16])?;
    refused!(lin.write(usize::MAX, b"x"), Error::OutOfBounds { .. });
    refused!(lin.write(4090, &[0; 16]), Error::OutOfBounds { .. });
    refused!(
        lin.read(usize::MAX - 2, &mut out),
        Error::OutOfBounds { .. }
    );
    let small = LinearAllocation::new(&d, 64)?;
    refused!(lin.copy_from(&small, 65), Error::OutOfBounds { .. });
    refused!(small.copy_from(&lin, usize::MAX), Error::OutOfBounds { .. });
    let mut back = [0u8; 16];
    lin.read(0, &mut back)?;
    assert_eq!(back, [7; 16]);
    Ok(())
}

#[test]
fn pool_refuses_bad_configuration_and_chunks() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let cfg = |chunk_size| PoolConfig {
        chunk_size,
        ..PoolConfig::default()
    };
    refused!(
        ChunkPool::new(&d, cfg(g + 1)),
        AllocError::InvalidConfig { .. }
    );
    refused!(
        ChunkPool::new(&d, cfg(usize::MAX)),
        AllocError::InvalidConfig { .. }
    );
    // Aligned but too large: the pool is made, creating a chunk fails cleanly.
    let giant = ChunkPool::new(&d, cfg(huge(g)))?;
    refused!(
        giant.acquire(),
        AllocError::Vmm(Error::Driver {
            call: "cuMemCreate",
            ..
        })
    );
    // Prefilling is bounded by `max_bytes` (1 GiB): no chunk of this size fits.
    assert_eq!(giant.prefill(1)?, 0);
    assert_eq!(giant.stats().chunks_held, 0);
    // Zero limits: nothing is cached, everything returned is released.
    let none = ChunkPool::new(
        &d,
        PoolConfig {
            max_chunks: 0,
            max_bytes: 0,
            ..PoolConfig::default()
        },
    )?;
    assert_eq!(none.prefill(usize::MAX)?, 0);
    let c = none.acquire()?;
    assert!(!none.recycle(c)?);
    assert_eq!(none.stats().chunks_held, 0);
    // A pool with chunks in it keeps them through refused input.
    let pool = ChunkPool::new(
        &d,
        PoolConfig {
            max_chunks: 2,
            ..PoolConfig::default()
        },
    )?;
    assert_eq!(pool.prefill(usize::MAX)?, 2);
    let wrong = Allocation::new(&d, 2 * g, &AllocationProps::device(&d))?;
    let refused = pool
        .recycle(wrong)
        .expect_err("a chunk of another size was taken");
    assert!(matches!(refused.error(), AllocError::PoolMismatch { .. }));
    assert!(refused.allocation().is_some(), "the refused chunk was lost");
    assert_eq!(pool.stats().chunks_held, 2);
    Ok(())
}

#[test]
fn growth_policy_refuses_unusable_numbers() {
    let _memory = crate::memory_shared();
    let bad = [
        GrowthPolicy {
            factor: f64::NAN,
            ..GrowthPolicy::default()
        },
        GrowthPolicy {
            factor: -1.0,
            ..GrowthPolicy::default()
        },
        GrowthPolicy {
            factor: f64::INFINITY,
            ..GrowthPolicy::default()
        },
        GrowthPolicy {
            max_chunk: 0,
            ..GrowthPolicy::default()
        },
        GrowthPolicy {
            min_chunk: usize::MAX,
            ..GrowthPolicy::default()
        },
    ];
    for p in &bad {
        assert!(
            matches!(p.validate(), Err(AllocError::BadPolicy { .. })),
            "{p:?} was accepted"
        );
    }
    // Sizing saturates instead of overflowing.
    let p = GrowthPolicy::default();
    assert_eq!(
        p.grow_to(0, usize::MAX, 1 << 21),
        usize::MAX / (1 << 21) * (1 << 21)
    );
    assert_eq!(p.grow_to(usize::MAX, usize::MAX, 0), usize::MAX);
    assert!(GrowthPolicy::fixed(usize::MAX).grow_to(1, usize::MAX, 3) >= 1);
}

#[test]
fn buffer_refuses_bad_sizes_and_ranges() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let config = |max_capacity, initial_capacity| BufferConfig {
        max_capacity,
        initial_capacity,
        ..BufferConfig::default()
    };
    refused!(
        GrowableBuffer::<u32>::new(&d, config(Some(usize::MAX), 0)),
        AllocError::InvalidConfig { .. }
    );
    refused!(
        GrowableBuffer::<u8>::new(&d, config(Some(huge(g)), 0)),
        AllocError::Vmm(Error::Driver {
            call: "cuMemAddressReserve",
            ..
        })
    );
    refused!(
        GrowableBuffer::<u8>::new(&d, config(Some(g), usize::MAX)),
        AllocError::CapacityExceeded { .. }
    );
    refused!(
        GrowableBuffer::<u8>::new(&d, config(Some(g), g + 1)),
        AllocError::CapacityExceeded { .. }
    );
    refused!(
        GrowableBuffer::<u8>::new(
            &d,
            BufferConfig {
                policy: GrowthPolicy {
                    factor: f64::NAN,
                    ..GrowthPolicy::default()
                },
                ..BufferConfig::default()
            }
        ),
        AllocError::BadPolicy { .. }
    );
    refused!(
        GrowableBuffer::<()>::new(&d, config(Some(1), 0)),
        AllocError::ZeroSizedElement { .. }
    );
    // A buffer with data keeps it through every refused call.
    let mut b = GrowableBuffer::<u16>::new(&d, config(Some(2 * g), 0))?;
    let data: Vec<u16> = (0..1000).collect();
    b.extend_from_slice(&data)?;
    let committed = b.committed_bytes();
    refused!(b.reserve(usize::MAX), AllocError::CapacityExceeded { .. });
    refused!(b.reserve(2 * g), AllocError::CapacityExceeded { .. });
    refused!(b.resize(usize::MAX, 1), AllocError::CapacityExceeded { .. });
    refused!(
        b.resize(usize::MAX / 2 + 1, 0),
        AllocError::CapacityExceeded { .. }
    );
    refused!(
        b.extend_from_slice(&vec![0; 2 * g]),
        AllocError::CapacityExceeded { .. }
    );
    let mut out = vec![0u16; 4];
    #[allow(clippy::reversed_empty_ranges)]
    {
        refused!(b.read(5..3, &mut []), AllocError::OutOfRange { .. });
    }
    refused!(
        b.read(0..usize::MAX, &mut out),
        AllocError::OutOfRange { .. }
    );
    refused!(b.read(998..1002, &mut out), AllocError::OutOfRange { .. });
    refused!(
        b.read(0..3, &mut out),
        AllocError::LengthMismatch {
            expected: 3,
            actual: 4
        }
    );
    refused!(b.write(usize::MAX, &[1]), AllocError::OutOfRange { .. });
    refused!(
        b.write(usize::MAX - 1, &[1, 2, 3]),
        AllocError::OutOfRange { .. }
    );
    refused!(b.write(999, &[1, 2]), AllocError::OutOfRange { .. });
    let stream = Stream::new(&d)?;
    refused!(
        b.write_async(&stream, usize::MAX, &[1]),
        AllocError::OutOfRange { .. }
    );
    b.truncate(usize::MAX);
    assert_eq!(b.len(), data.len());
    assert_eq!(b.committed_bytes(), committed);
    assert_eq!(b.to_vec()?, data);
    Ok(())
}

#[test]
fn sparse_array_refuses_bad_sizes_and_ranges() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let tiles = |tile_bytes| SparseConfig {
        tile_bytes,
        ..SparseConfig::default()
    };
    refused!(
        SparseArray::<u8>::new(&d, 0, tiles(0)),
        AllocError::InvalidConfig { .. }
    );
    refused!(
        SparseArray::<u32>::new(&d, usize::MAX, tiles(0)),
        AllocError::InvalidConfig { .. }
    );
    refused!(
        SparseArray::<u8>::new(&d, usize::MAX, tiles(0)),
        AllocError::InvalidConfig { .. }
    );
    refused!(
        SparseArray::<u8>::new(&d, g, tiles(g + 1)),
        AllocError::BadTileSize { .. }
    );
    refused!(
        SparseArray::<u8>::new(&d, g, tiles(usize::MAX)),
        AllocError::BadTileSize { .. }
    );
    refused!(
        SparseArray::<u8>::new(&d, g, tiles(huge(g))),
        AllocError::Vmm(Error::Driver {
            call: "cuMemAddressReserve",
            ..
        })
    );
    let pool = ChunkPool::new(&d, PoolConfig::default())?;
    refused!(
        SparseArray::<u8>::new(
            &d,
            g,
            SparseConfig {
                tile_bytes: 2 * g,
                pool: Some(pool),
                ..SparseConfig::default()
            }
        ),
        AllocError::PoolMismatch { .. }
    );
    // An array with data keeps it through every refused call.
    let mut a = SparseArray::<u8>::new(&d, 4 * g, tiles(0))?;
    a.commit(0..1)?;
    let data = pattern_hashed(100, 3);
    a.write(10, &data)?;
    assert_eq!(a.tile_elements(usize::MAX), a.len()..a.len());
    assert_eq!(a.tile_elements(4), a.len()..a.len());
    assert!(!a.is_committed(usize::MAX));
    #[allow(clippy::reversed_empty_ranges)]
    {
        refused!(a.commit(5..3), AllocError::OutOfRange { .. });
        refused!(a.decommit(5..3), AllocError::OutOfRange { .. });
    }
    refused!(a.commit(0..usize::MAX), AllocError::OutOfRange { .. });
    refused!(
        a.commit(usize::MAX..usize::MAX),
        AllocError::OutOfRange { .. }
    );
    refused!(a.decommit(0..usize::MAX), AllocError::OutOfRange { .. });
    refused!(a.decommit(4 * g..4 * g + 1), AllocError::OutOfRange { .. });
    let mut out = vec![0u8; 4];
    refused!(
        a.read(0..usize::MAX, &mut out),
        AllocError::OutOfRange { .. }
    );
    refused!(
        a.read(0..3, &mut out),
        AllocError::LengthMismatch {
            expected: 3,
            actual: 4
        }
    );
    refused!(
        a.read(g..g + 4, &mut out),
        AllocError::NotCommitted { tile: 1, .. }
    );
    refused!(a.write(usize::MAX, &[1]), AllocError::OutOfRange { .. });
    refused!(
        a.write(usize::MAX - 1, &[1, 2, 3]),
        AllocError::OutOfRange { .. }
    );
    refused!(
        a.write(g - 1, &[1, 2]),
        AllocError::NotCommitted { tile: 1, .. }
    );
    assert_eq!(a.committed_bytes(), g);
    let mut back = vec![0u8; 100];
    a.read(10..110, &mut back)?;
    assert_eq!(back, data);
    Ok(())
}
