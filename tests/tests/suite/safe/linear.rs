//! The safe layer: linear memory.

use super::*;

#[test]
fn linear_allocation_round_trip() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let a = LinearAllocation::new(&d, 1 << 20)?;
    let b = LinearAllocation::new(&d, 1 << 20)?;
    assert_eq!(a.size(), 1 << 20);
    assert_ne!(a.ptr(), 0);
    let data = pattern(4096, 1);
    a.write(0, &data)?;
    b.copy_from(&a, 4096)?;
    let mut out = vec![0u8; 4096];
    b.read(0, &mut out)?;
    assert_eq!(out, data);
    // The raw copy agrees.
    // SAFETY: both ranges are live cuMemAlloc memory of this device.
    unsafe { cuda_vmm::copy_dtod(&d, b.ptr() + 4096, a.ptr(), 4096) }?;
    b.read(4096, &mut out)?;
    assert_eq!(out, data);
    a.free()?;
    b.free()?;
    Ok(())
}

#[test]
fn linear_allocation_validation() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    assert_eq!(
        fails(LinearAllocation::new(&d, 0)),
        Error::InvalidArgument {
            message: "allocation size 0: the size must be nonzero".into()
        }
    );
    let a = LinearAllocation::new(&d, 4096)?;
    let b = LinearAllocation::new(&d, 8192)?;
    assert_eq!(
        fails(a.write(4000, &[0u8; 100])),
        Error::OutOfBounds {
            what: "copy range in linear allocation",
            offset: 4000,
            size: 100,
            limit: 4096
        }
    );
    assert_eq!(
        fails(a.copy_from(&b, 8192)),
        Error::OutOfBounds {
            what: "copy destination",
            offset: 0,
            size: 8192,
            limit: 4096
        }
    );
    Ok(())
}

/// Two GPUs: one mapping, access for both set in one call, and device 1 reading device 0's
/// memory through its own context. Needs two devices (e.g. an H200 pair); with one it says so.
#[test]
fn two_devices_share_one_mapping() -> TestResult {
    let _memory = crate::memory_shared();
    let cuda = cuda()?;
    let devices = cuda.devices()?;
    if devices.len() < 2 {
        eprintln!(
            "skipped: two_devices_share_one_mapping needs 2 devices, {} present",
            devices.len()
        );
        return Ok(());
    }
    let (d0, d1) = (&devices[0], &devices[1]);
    let g = gran(d0)?;
    let a = Allocation::new(d0, g, &AllocationProps::device(d0))?;
    let r = Reservation::new(d0, g, ReserveOptions::default())?;
    let _m = r.map(0, &a, 0, g)?;
    r.set_access(
        0,
        g,
        &[(d0, AccessFlags::ReadWrite), (d1, AccessFlags::ReadWrite)],
    )?;
    assert_eq!(r.access(0, d0)?, AccessFlags::ReadWrite);
    assert_eq!(r.access(0, d1)?, AccessFlags::ReadWrite);
    let data: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    r.write(0, &data)?;
    // Device 1 copies out of device 0's memory into its own.
    let dst = LinearAllocation::new(d1, g)?;
    // SAFETY: both ranges are live, mapped and accessible to device 1, and 4096 bytes long.
    unsafe { cuda_vmm::copy_dtod(d1, dst.ptr(), r.ptr(), data.len())? };
    let mut back = vec![0u8; data.len()];
    dst.read(0, &mut back)?;
    assert_eq!(back, data);
    Ok(())
}
