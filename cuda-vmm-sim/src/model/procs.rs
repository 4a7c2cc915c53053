//! `cuGetProcAddress`: base names to this simulator's entry points.

use core::ffi::{c_int, c_void};

use cuda_vmm_sys::CUdriverProcAddressQueryResult as Q;

use crate::exports as x;

/// The first CUDA version with the signature of typedef `pfn`: the digits that
/// end its name (`PFN_cuMemGetInfo_v3020` → 3020).
const fn since(pfn: &str) -> c_int {
    let bytes = pfn.as_bytes();
    let mut start = bytes.len();
    while start > 0 && bytes[start - 1].is_ascii_digit() {
        start -= 1;
    }
    let mut version = 0;
    let mut i = start;
    while i < bytes.len() {
        version = version * 10 + (bytes[i] - b'0') as c_int;
        i += 1;
    }
    version
}

/// `(exported symbol, first CUDA version with this signature, address)` for every
/// entry point; the base name `cuGetProcAddress` asks for is the symbol without `_v2`.
fn entries() -> [(&'static str, c_int, *const ()); cuda_vmm_sys::SYMBOLS.len()] {
    macro_rules! proc_entries {
        ($($symbol:ident: $pfn:ident),* $(,)?) => {
            [$((
                stringify!($symbol),
                const { since(stringify!($pfn)) },
                x::$symbol as *const (),
            ),)*]
        };
    }
    cuda_vmm_sys::for_each_entry_point!(proc_entries)
}

/// The entry point for base name `name` as a program built for CUDA `version`
/// expects it, or why there is none.
pub(crate) fn lookup(name: &str, version: c_int) -> Result<*mut c_void, Q> {
    // cuGetProcAddress itself changed signature in 12.0.
    if name == "cuGetProcAddress" && (11030..12000).contains(&version) {
        return Ok(x::cuGetProcAddress as *const () as *mut c_void);
    }
    let (_, since, address) = entries()
        .into_iter()
        .find(|(symbol, _, _)| symbol.strip_suffix("_v2").unwrap_or(symbol) == name)
        .ok_or(Q::CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND)?;
    if version < since {
        return Err(Q::CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT);
    }
    Ok(address.cast_mut().cast())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_symbol_has_a_base_name_entry() {
        for exported in cuda_vmm_sys::SYMBOLS {
            let base = exported.strip_suffix("_v2").unwrap_or(exported);
            assert!(lookup(base, 13000).is_ok(), "{base} missing");
        }
    }

    #[test]
    fn versions_come_from_the_typedef_names() {
        assert_eq!(since("PFN_cuMemGetInfo_v3020"), 3020);
        assert_eq!(since("PFN_cuMemMapArrayAsync_v11010"), 11010);
        for (symbol, since, _) in entries() {
            assert!((2000..=13000).contains(&since), "{symbol}: {since}");
        }
        assert_eq!(
            lookup("cuGetProcAddress", 11999).unwrap(),
            x::cuGetProcAddress as *const () as *mut c_void
        );
        assert_eq!(
            lookup("cuGetProcAddress", 12000).unwrap(),
            x::cuGetProcAddress_v2 as *const () as *mut c_void
        );
        assert_eq!(
            lookup("cuMemMapArrayAsync", 11000).unwrap_err(),
            Q::CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT
        );
        assert!(lookup("cuMemMapArrayAsync", 11010).is_ok());
        assert_eq!(
            lookup("cuMemGetInfo_v2", 13000).unwrap_err(),
            Q::CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND
        );
    }

    #[test]
    fn versions_and_unknown_names() {
        assert_eq!(
            lookup("cuMemCreate", 10010).unwrap_err(),
            Q::CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT
        );
        assert_eq!(
            lookup("cuGraphLaunch", 13000).unwrap_err(),
            Q::CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND
        );
        assert_eq!(
            lookup("cuStreamDestroy", 3020).unwrap_err(),
            Q::CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT
        );
        assert_eq!(
            lookup("cuMemGetInfo", 13000).unwrap(),
            x::cuMemGetInfo_v2 as *const () as *mut c_void
        );
    }
}
