//! Issue 23's views, on every backend without cudarc: the checks behind
//! `record_cudarc_use` (a cudarc stream's context must be a primary context), element
//! addresses of a sparse array, `GrowableBuffer::set_len` after a device-side append, and
//! what a read-only view needs of a shared buffer's consumer mapping. The cudarc views
//! themselves and their kernels are in `interop` (feature `cudarc`, GPU only).

use std::os::unix::net::UnixStream;

use cuda_vmm::{AccessFlags, AllocationProps, Error as VmmError, HandleTypes};
use cuda_vmm_alloc::{
    BufferConfig, Error, GrowableBuffer, GrowthPolicy, SharedBufferConsumer, SharedBufferProducer,
    SparseArray, SparseConfig,
};
use cuda_vmm_tests::helpers::TestResult;

use crate::cuda;

#[test]
fn primary_context_device_refuses_any_other_context() -> TestResult {
    let _memory = crate::memory_shared();
    let cuda = cuda()?;
    let d = cuda.device(0)?;
    let same = cuda.primary_context_device(0, d.raw_context())?;
    assert_eq!(same.raw_context(), d.raw_context());
    assert_eq!(same.ordinal(), 0);

    // Another context (here a made-up handle) is refused, naming both.
    let other = (d.raw_context() as usize ^ 0x10) as cuda_vmm::sys::CUcontext;
    let e = cuda.primary_context_device(0, other).unwrap_err();
    assert_eq!(
        e,
        VmmError::InvalidArgument {
            message: format!(
                "context {other:p} is not device 0's primary context ({:p}): only work in \
                 the primary context (cudarc's CudaContext::new(0), the runtime API) can be \
                 ordered with this crate's",
                d.raw_context()
            )
        }
    );
    // A device's context under another ordinal is refused too.
    if cuda.device_count()? > 1 {
        let d1 = cuda.device(1)?;
        assert!(cuda.primary_context_device(1, d.raw_context()).is_err());
        assert!(cuda.primary_context_device(1, d1.raw_context()).is_ok());
    }
    // An ordinal past the devices is the driver's count check.
    let count = cuda.device_count()?;
    assert_eq!(
        cuda.primary_context_device(count, d.raw_context())
            .unwrap_err(),
        VmmError::InvalidArgument {
            message: format!(
                "device ordinal {count} is out of range: the driver reports {count} device(s)"
            )
        }
    );
    Ok(())
}

#[test]
fn ptr_at_is_element_arithmetic_bounds_checked_holes_included() -> TestResult {
    let _memory = crate::memory_shared();
    let d = cuda()?.device(0)?;
    let g = d.min_granularity(&AllocationProps::device(&d))?;
    let per = g / 8;
    let mut a = SparseArray::<u64>::new(&d, 4 * per, SparseConfig::default())?;
    a.commit(per..2 * per)?;
    assert_eq!(a.ptr_at(0)?, a.ptr());
    assert_eq!(a.ptr_at(per)?, a.ptr() + g as u64);
    assert_eq!(a.ptr_at(per + 3)?, a.ptr() + g as u64 + 24);
    // The last element, in a hole: an address all the same.
    assert!(!a.is_committed(4 * per - 1));
    assert_eq!(a.ptr_at(4 * per - 1)?, a.ptr() + (4 * g - 8) as u64);
    for index in [4 * per, usize::MAX] {
        assert_eq!(
            a.ptr_at(index),
            Err(Error::OutOfRange {
                what: "ptr_at",
                start: index,
                end: index.saturating_add(1),
                len: 4 * per
            })
        );
    }
    Ok(())
}

#[test]
fn set_len_takes_elements_written_past_the_end_up_to_committed_capacity() -> TestResult {
    let _memory = crate::memory_shared();
    let d = cuda()?.device(0)?;
    let mut buf = GrowableBuffer::<u32>::with_max_capacity(&d, 1 << 20)?;
    buf.extend_from_slice(&[1, 2, 3])?;
    buf.reserve(100)?;
    let cap = buf.capacity();
    assert!(cap >= 103);

    // A device-side append: 100 elements copied in past the end, as a kernel would write.
    let mut src = GrowableBuffer::<u32>::with_max_capacity(&d, 1 << 20)?;
    let appended: Vec<u32> = (0..100).map(|i| 1000 + i).collect();
    src.extend_from_slice(&appended)?;
    // SAFETY: both ranges are mapped read-write on `d` (`src`'s 100 elements, and 100 of
    // `buf`'s committed elements past its length) and stay mapped for the call.
    unsafe { cuda_vmm::copy_dtod(&d, buf.ptr() + 12, src.ptr(), 400)? };

    // Past the committed capacity: refused, length unchanged.
    // SAFETY: refused before the length changes (nothing is taken as written).
    let refused = unsafe { buf.set_len(cap + 1) };
    assert_eq!(
        refused,
        Err(Error::OutOfRange {
            what: "set_len (committed capacity)",
            start: 0,
            end: cap + 1,
            len: cap
        })
    );
    assert_eq!(buf.len(), 3);

    // SAFETY: elements 3..103 were written by the copy above, which completed.
    unsafe { buf.set_len(103)? };
    assert_eq!(buf.len(), 103);
    let host = buf.to_vec()?;
    assert_eq!(&host[..3], &[1, 2, 3]);
    assert_eq!(&host[3..], &appended[..]);

    // Shorter is a truncate.
    // SAFETY: no element is added.
    unsafe { buf.set_len(2)? };
    assert_eq!(buf.to_vec()?, vec![1, 2]);
    Ok(())
}

#[test]
fn a_shared_buffer_consumer_maps_read_only_which_a_read_view_needs() -> TestResult {
    let _memory = crate::memory_shared();
    let d = cuda()?.device(0)?;
    let g = d.min_granularity(&AllocationProps::device(&d))?;
    let mut b = GrowableBuffer::<u32>::new(
        &d,
        BufferConfig {
            max_capacity: Some(8 * g / 4),
            policy: GrowthPolicy::fixed(g),
            props: Some(AllocationProps::device(&d).handle_types(HandleTypes::POSIX_FD)),
            ..BufferConfig::default()
        },
    )?;
    let values: Vec<u32> = (0..1000).collect();
    b.extend_from_slice(&values)?;
    let (tx, rx) = UnixStream::pair()?;
    let mut producer = SharedBufferProducer::new(&b, tx)?;
    let mut consumer = SharedBufferConsumer::<u32>::connect(&d, rx)?;
    producer.publish(&b)?;
    assert!(consumer.receive()?);
    let bytes = consumer.len() * 4;
    let r = consumer.reservation();
    // What `cudarc_read_view` checks passes; what `cudarc_view` (read-write) checks fails.
    r.check_mapped_access(0, bytes, AccessFlags::Read)?;
    assert_eq!(
        r.check_mapped_access(0, bytes, AccessFlags::ReadWrite),
        Err(VmmError::AccessDenied {
            offset: 0,
            size: bytes,
            required: AccessFlags::ReadWrite,
            device: 0
        })
    );
    // Past the mapped chunks: not mapped.
    let mapped = consumer.committed_bytes();
    assert_eq!(
        r.check_mapped_access(mapped, 4, AccessFlags::Read),
        Err(VmmError::NotMapped {
            offset: mapped,
            size: 4
        })
    );
    assert_eq!(consumer.to_vec()?, values);
    Ok(())
}
