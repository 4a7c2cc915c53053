//! Element types that may be copied byte-for-byte between host and device: `bytemuck::Pod`.

/// Plain data that can live in device memory and be copied to and from the host as raw
/// bytes: every [`bytemuck::Pod`] type (primitives, arrays of them, and your
/// `#[derive(bytemuck::Pod, bytemuck::Zeroable)]` structs; derived through this crate's
/// re-export they also need `#[bytemuck(crate = "cuda_vmm_alloc::bytemuck")]`, see the
/// [crate docs](crate)).
///
/// This is a bound alias with a blanket implementation, not a trait to implement: Pod's
/// guarantees (no padding, no pointers, valid for every bit pattern) are exactly what a
/// byte-for-byte device copy needs. cudarc's `DeviceRepr` + `ValidAsZeroBits` are its
/// equivalent there; a type that is `Pod` satisfies both in spirit, and `CudarcView`
/// (feature `cudarc`) takes any element type, as cudarc's slices do.
pub trait DevicePod: bytemuck::Pod {}

impl<T: bytemuck::Pod> DevicePod for T {}

/// Views a slice of device-safe values as its bytes.
pub(crate) fn as_bytes<T: DevicePod>(values: &[T]) -> &[u8] {
    bytemuck::cast_slice(values)
}

/// Views a mutable slice of device-safe values as its bytes, for filling from the device.
pub(crate) fn as_bytes_mut<T: DevicePod>(values: &mut [T]) -> &mut [u8] {
    bytemuck::cast_slice_mut(values)
}

/// A value with every byte zero.
pub(crate) fn zeroed<T: DevicePod>() -> T {
    T::zeroed()
}

/// The byte every byte of `value` equals, if there is one (so `value` can be set with memset).
pub(crate) fn uniform_byte<T: DevicePod>(value: &T) -> Option<u8> {
    let bytes = bytemuck::bytes_of(value);
    let first = *bytes.first()?;
    bytes.iter().all(|&b| b == first).then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip() {
        let values = [1u32, 0x0403_0201];
        assert_eq!(as_bytes(&values), &[1, 0, 0, 0, 1, 2, 3, 4]);
        let mut out = [0u16; 2];
        as_bytes_mut(&mut out).copy_from_slice(&[1, 0, 2, 1]);
        assert_eq!(out, [1, 0x0102]);
    }

    #[test]
    fn uniform_bytes() {
        assert_eq!(uniform_byte(&0u64), Some(0));
        assert_eq!(uniform_byte(&-1i32), Some(0xff));
        assert_eq!(uniform_byte(&[7u8; 3]), Some(7));
        assert_eq!(uniform_byte(&1u32), None);
        assert_eq!(uniform_byte(&1.0f32), None);
        assert_eq!(uniform_byte(&[0u8; 0]), None);
    }
}
