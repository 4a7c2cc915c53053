//! The safe layer: sharing.

use super::*;

#[test]
fn posix_fd_export_import_round_trip() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    if !d.capabilities()?.posix_fd_handles {
        return Ok(());
    }
    let g = gran(&d)?;
    let props = AllocationProps::device(&d).handle_types(HandleTypes::POSIX_FD);
    let a = Allocation::new(&d, g, &props)?;
    let r = Reservation::new(&d, g, ReserveOptions::default())?;
    let m = r.map(0, &a, 0, g)?;
    m.set_access(&rw(&d))?;
    let data = pattern(2048, 9);
    r.write(0, &data)?;

    let fd = a.export_posix_fd()?;
    let imported = Allocation::import_posix_fd(&d, fd.as_fd(), g, &props)?;
    assert_eq!(imported.size(), g);
    // The driver reports no handle types for an imported handle (conformance
    // `properties_of_imported_handle`).
    assert_eq!(imported.props().requested_handle_types(), HandleTypes::NONE);
    // We still own `fd`: importing did not take it.
    drop(fd);
    let r2 = Reservation::new(&d, g, ReserveOptions::default())?;
    let m2 = r2.map(0, &imported, 0, g)?;
    m2.set_access(&rw(&d))?;
    let mut out = vec![0u8; data.len()];
    r2.read(0, &mut out)?;
    assert_eq!(out, data);
    Ok(())
}

#[test]
fn posix_fd_validation() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let plain = Allocation::new(&d, g, &AllocationProps::device(&d))?;
    assert_eq!(
        fails(plain.export_posix_fd()),
        Error::InvalidArgument {
            message: format!(
                "allocation {:#x} was created without HandleTypes::POSIX_FD (handle types NONE)",
                plain.raw_handle()
            )
        }
    );
    if d.capabilities()?.posix_fd_handles {
        let props = AllocationProps::device(&d).handle_types(HandleTypes::POSIX_FD);
        let a = Allocation::new(&d, g, &props)?;
        let fd = a.export_posix_fd()?;
        assert_eq!(
            fails(Allocation::import_posix_fd(&d, fd.as_fd(), 0, &props)),
            Error::InvalidArgument {
                message: "imported size 0: the size must be nonzero".into()
            }
        );
    }
    Ok(())
}

#[test]
fn fabric_handles_need_device_support() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let plain = Allocation::new(&d, g, &AllocationProps::device(&d))?;
    let handle = cuda_vmm::FabricHandle::from_bytes([7; 64]);
    assert_eq!(handle.as_bytes(), &[7; 64]);
    let attribute = d.attribute(
        cuda_vmm_sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_FABRIC_SUPPORTED,
    )?;
    eprintln!("device 0: CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_FABRIC_SUPPORTED = {attribute}");
    assert_eq!(d.capabilities()?.fabric_handles, attribute != 0);
    if d.capabilities()?.fabric_handles {
        assert_eq!(
            fails(plain.export_fabric()),
            Error::InvalidArgument {
                message: format!(
                    "allocation {:#x} was created without HandleTypes::FABRIC (handle types NONE)",
                    plain.raw_handle()
                )
            }
        );
    } else {
        let unsupported = Error::Unsupported {
            feature: "fabric handles",
            device: 0,
        };
        assert_eq!(fails(plain.export_fabric()), unsupported);
        assert_eq!(
            fails(Allocation::import_fabric(&d, &handle, g)),
            unsupported
        );
    }
    Ok(())
}
