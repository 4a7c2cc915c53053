//! Element types that may be copied byte-for-byte between host and device.

/// Plain data that can live in device memory and be copied to and from the host as raw bytes.
///
/// # Safety
///
/// Implement this only for types that
/// - are `Copy` and own no pointers, references or handles (the bytes mean the same on the
///   device and the host),
/// - have no padding bytes (every byte of a value is initialised, so it can be copied out), and
/// - are valid for every bit pattern (bytes read back from the device, or zero-filled memory,
///   always form a valid value).
///
/// Integer and floating-point primitives and arrays of `DevicePod` types qualify; `bool`,
/// `char`, references and most structs with mixed field sizes do not.
pub unsafe trait DevicePod: Copy + 'static {}

// SAFETY: `u8` is a primitive number: no padding, no pointers, every bit pattern valid.
unsafe impl DevicePod for u8 {}
// SAFETY: `u16` is a primitive number: no padding, no pointers, every bit pattern valid.
unsafe impl DevicePod for u16 {}
// SAFETY: `u32` is a primitive number: no padding, no pointers, every bit pattern valid.
unsafe impl DevicePod for u32 {}
// SAFETY: `u64` is a primitive number: no padding, no pointers, every bit pattern valid.
unsafe impl DevicePod for u64 {}
// SAFETY: `u128` is a primitive number: no padding, no pointers, every bit pattern valid.
unsafe impl DevicePod for u128 {}
// SAFETY: `usize` is a primitive number: no padding, no pointers, every bit pattern valid.
unsafe impl DevicePod for usize {}
// SAFETY: `i8` is a primitive number: no padding, no pointers, every bit pattern valid.
unsafe impl DevicePod for i8 {}
// SAFETY: `i16` is a primitive number: no padding, no pointers, every bit pattern valid.
unsafe impl DevicePod for i16 {}
// SAFETY: `i32` is a primitive number: no padding, no pointers, every bit pattern valid.
unsafe impl DevicePod for i32 {}
// SAFETY: `i64` is a primitive number: no padding, no pointers, every bit pattern valid.
unsafe impl DevicePod for i64 {}
// SAFETY: `i128` is a primitive number: no padding, no pointers, every bit pattern valid.
unsafe impl DevicePod for i128 {}
// SAFETY: `isize` is a primitive number: no padding, no pointers, every bit pattern valid.
unsafe impl DevicePod for isize {}
// SAFETY: `f32` is a primitive number: no padding, no pointers, every bit pattern valid.
unsafe impl DevicePod for f32 {}
// SAFETY: `f64` is a primitive number: no padding, no pointers, every bit pattern valid.
unsafe impl DevicePod for f64 {}

// SAFETY: an array has no padding between elements (its size is `N * size_of::<T>()`), and it
// is valid for every bit pattern when its element type is, which `T: DevicePod` guarantees.
unsafe impl<T: DevicePod, const N: usize> DevicePod for [T; N] {}

/// Views a slice of device-safe values as its bytes.
pub(crate) fn as_bytes<T: DevicePod>(values: &[T]) -> &[u8] {
    // SAFETY: `DevicePod` types have no padding, so all `size_of_val(values)` bytes behind the
    // pointer are initialised; the byte slice borrows `values` and so cannot outlive it.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), size_of_val(values)) }
}

/// Views a mutable slice of device-safe values as its bytes, for filling from the device.
pub(crate) fn as_bytes_mut<T: DevicePod>(values: &mut [T]) -> &mut [u8] {
    let len = size_of_val(values);
    // SAFETY: the bytes are initialised (no padding), the borrow is exclusive for the returned
    // lifetime, and any bytes written through it form valid `T`s (`DevicePod` is valid for
    // every bit pattern).
    unsafe { std::slice::from_raw_parts_mut(values.as_mut_ptr().cast::<u8>(), len) }
}

/// A value with every byte zero.
pub(crate) fn zeroed<T: DevicePod>() -> T {
    // SAFETY: `DevicePod` types are valid for every bit pattern, all-zero included.
    unsafe { std::mem::zeroed() }
}

/// The byte every byte of `value` equals, if there is one (so `value` can be set with memset).
pub(crate) fn uniform_byte<T: DevicePod>(value: &T) -> Option<u8> {
    let bytes = as_bytes(std::slice::from_ref(value));
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
