//! What views and kernels over a structure need besides cudarc: element addresses
//! ([`SparseArray::ptr_at`]) and the checks behind the views (feature `cudarc`, in
//! `interop`), kept here so that they build, and are tested, without cudarc.

use std::ops::Range;

use cuda_vmm::AccessFlags;

use crate::error::{check_range, Result};
use crate::memory::sealed::Sealed;
use crate::pod::DevicePod;
use crate::sparse::{HoleBehavior, SparseArray};

impl<T: DevicePod> SparseArray<T> {
    /// The device address of element `index` (`ptr() + index * size_of::<T>()`), for a
    /// kernel that addresses elements itself (one launch over every sequence of a paged
    /// cache). Bounds-checked ([`Error::OutOfRange`](crate::Error::OutOfRange) past the
    /// end); the element may lie in a hole, which a kernel must not write (nor read, unless
    /// holes are [`HoleBehavior::Zeros`]): see [`is_committed`](SparseArray::is_committed).
    pub fn ptr_at(&self, index: usize) -> Result<u64> {
        check_range("ptr_at", &(index..index.saturating_add(1)), self.len())?;
        Ok(self.ptr() + (index * size_of::<T>()) as u64)
    }

    /// The byte offset of elements `range`, refused past the end (as a view's range).
    #[cfg_attr(not(feature = "cudarc"), allow(dead_code))]
    pub(crate) fn view_offset(&self, range: &Range<usize>) -> Result<usize> {
        self.check_awake("view")?;
        check_range("cudarc view", range, self.len())?;
        Ok(range.start * size_of::<T>())
    }

    /// The byte offset of elements `range` if a kernel may read all of them: in bounds,
    /// every tile committed unless holes read as zeros, and mapped readable for the
    /// array's device. Refuses with the first hole ([`Error::NotCommitted`](crate::Error))
    /// or the reservation's [`cuda_vmm::Error::NotMapped`] (a zero block a failed decommit
    /// left out).
    #[cfg_attr(not(feature = "cudarc"), allow(dead_code))]
    pub(crate) fn check_readable(&self, range: &Range<usize>) -> Result<usize> {
        self.check_awake("view")?;
        let offset = self.view_offset(range)?;
        if range.is_empty() {
            return Ok(offset);
        }
        if self.hole_behavior() != HoleBehavior::Zeros {
            self.check_committed(range.clone())?;
        }
        let bytes = range.len() * size_of::<T>();
        self.reservation()
            .check_mapped_access(offset, bytes, AccessFlags::Read)?;
        Ok(offset)
    }
}

#[cfg(test)]
mod tests {
    use cuda_vmm::Cuda;

    use crate::error::Error;
    use crate::sparse::{HoleBehavior, SparseArray, SparseConfig};

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn array(
        holes: HoleBehavior,
    ) -> std::result::Result<SparseArray<u32>, Box<dyn std::error::Error>> {
        let cuda = Cuda::simulator()?;
        let d = cuda.device(0)?;
        let config = SparseConfig {
            holes,
            ..SparseConfig::default()
        };
        Ok(SparseArray::new(&d, 4 * (2 << 20) / 4, config)?)
    }

    #[test]
    fn readable_ranges_need_committed_tiles_unless_holes_read_zeros() -> TestResult {
        for holes in [HoleBehavior::Error, HoleBehavior::Zeros] {
            let mut a = array(holes)?;
            let per = a.tile_bytes() / 4;
            a.commit(per..2 * per)?;
            assert_eq!(a.check_readable(&(per..2 * per))?, per * 4);
            assert_eq!(a.check_readable(&(3..3))?, 12);
            let whole = a.check_readable(&(0..a.len()));
            match holes {
                HoleBehavior::Error => {
                    assert_eq!(whole, Err(Error::NotCommitted { index: 0, tile: 0 }))
                }
                HoleBehavior::Zeros => assert_eq!(whole, Ok(0)),
            }
            let len = a.len();
            assert_eq!(
                a.check_readable(&(per..len + 1)),
                Err(Error::OutOfRange {
                    what: "cudarc view",
                    start: per,
                    end: len + 1,
                    len
                })
            );
            assert_eq!(a.view_offset(&(0..len))?, 0);
        }
        Ok(())
    }
}
