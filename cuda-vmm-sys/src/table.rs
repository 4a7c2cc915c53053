//! The function table: one slot per driver entry point, resolved symbol by symbol.
//!
//! The entry points come from the one list in `entry_points.rs`
//! ([`for_each_entry_point!`](crate::for_each_entry_point)).

use core::ffi::{c_void, CStr};
use core::ptr::NonNull;

/// Defines [`SYMBOLS`] and [`DriverTable`] from the entry-point list.
macro_rules! define_table {
    ($($symbol:ident: $pfn:ident),* $(,)?) => {
        /// Exact symbol names (as a C program compiled against `cuda.h` links them) of
        /// every entry point in [`DriverTable`], in field order.
        pub const SYMBOLS: &[&str] = &[$(stringify!($symbol)),*];

        /// Function pointers of the driver entry points that cuda-vmm uses.
        ///
        /// Each field is named after the exact exported symbol, including the `_v2`
        /// suffix where `cuda.h` maps the plain name to a versioned one
        /// (`cuMemGetInfo` → `cuMemGetInfo_v2`). A `None` field means the driver does
        /// not export that symbol: only that entry point is unavailable.
        #[allow(non_snake_case)]
        #[derive(Clone, Copy, Debug)]
        pub struct DriverTable {
            $(
                #[doc = concat!("`", stringify!($symbol), "` (`", stringify!($pfn), "`).")]
                pub $symbol: crate::bindings::$pfn,
            )*
        }

        impl DriverTable {
            /// `(symbol, resolved?)` for every entry point, in [`SYMBOLS`] order.
            pub fn availability(&self) -> [(&'static str, bool); SYMBOLS.len()] {
                [$((stringify!($symbol), self.$symbol.is_some())),*]
            }
        }
    };
}

crate::for_each_entry_point!(define_table);

/// Converts one looked-up address into the typed, nullable function pointer.
///
/// # Safety
/// `F` must be an `Option` of an `extern "C"` function pointer whose signature
/// matches the symbol that `addr` was resolved from.
unsafe fn cast<F: Copy>(addr: Option<NonNull<c_void>>) -> F {
    const { assert!(core::mem::size_of::<F>() == core::mem::size_of::<*mut c_void>()) };
    let raw: *mut c_void = addr.map_or(core::ptr::null_mut(), NonNull::as_ptr);
    // SAFETY: `F` is pointer-sized (checked above) and, per this function's
    // contract, an `Option<extern "C" fn>` whose null niche is `None`, so any
    // address (or null) is a valid bit pattern for it.
    unsafe { core::mem::transmute_copy::<*mut c_void, F>(&raw) }
}

/// Looks one symbol up and casts it; see [`cast`].
///
/// # Safety
/// As for [`cast`]: `F` must be the header's function-pointer type for `name`.
unsafe fn resolve<F: Copy>(
    lookup: &mut dyn FnMut(&CStr) -> Option<NonNull<c_void>>,
    name: &CStr,
) -> F {
    // SAFETY: forwarded from this function's contract.
    unsafe { cast(lookup(name)) }
}

/// `name` (a symbol with its terminating NUL appended) as a C string; the empty
/// string if it is malformed, which no identifier is (the tests check that
/// [`DriverTable::from_lookup`] asks for exactly [`SYMBOLS`]).
const fn symbol_name(name: &'static str) -> &'static CStr {
    match CStr::from_bytes_with_nul(name.as_bytes()) {
        Ok(c) => c,
        Err(_) => c"",
    }
}

impl DriverTable {
    /// Builds the table by asking `lookup` for each symbol in [`SYMBOLS`].
    ///
    /// `lookup` returns the address of the named symbol, or `None` when it is
    /// absent; an absent symbol leaves only that slot empty.
    ///
    /// # Safety
    /// Every address `lookup` returns must be a function with the C signature
    /// that `cuda.h` declares for that symbol name, and must stay valid for as
    /// long as the table is used.
    pub unsafe fn from_lookup(lookup: &mut dyn FnMut(&CStr) -> Option<NonNull<c_void>>) -> Self {
        // `Self { symbol: resolve(lookup, c"symbol"), ... }` for every entry point.
        macro_rules! resolve_all {
            ($($symbol:ident: $pfn:ident),* $(,)?) => {
                Self {
                    $($symbol: resolve(
                        lookup,
                        const { symbol_name(concat!(stringify!($symbol), "\0")) },
                    ),)*
                }
            };
        }
        // SAFETY: each field's type is the header's PFN typedef for the symbol it is
        // named after (the list pairs them), `resolve` looks up exactly that name, and
        // the caller vouches for the addresses.
        unsafe { crate::for_each_entry_point!(resolve_all) }
    }

    /// A table with every slot empty.
    pub fn empty() -> Self {
        // SAFETY: `None` for every slot is valid for any `F`.
        unsafe { Self::from_lookup(&mut |_| None) }
    }

    /// The symbols this table could not resolve.
    pub fn missing(&self) -> impl Iterator<Item = &'static str> {
        self.availability()
            .into_iter()
            .filter(|(_, present)| !present)
            .map(|(name, _)| name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_lookup_asks_for_every_symbol_in_order() {
        let mut asked = Vec::new();
        // SAFETY: the lookup returns no address.
        let table = unsafe {
            DriverTable::from_lookup(&mut |name| {
                asked.push(name.to_str().map(str::to_owned).unwrap_or_default());
                None
            })
        };
        assert_eq!(asked, SYMBOLS);
        let names: Vec<&str> = table.availability().iter().map(|(n, _)| *n).collect();
        assert_eq!(names, SYMBOLS);
        assert_eq!(table.missing().count(), SYMBOLS.len());
    }
}
