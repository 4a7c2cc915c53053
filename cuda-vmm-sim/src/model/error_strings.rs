//! Static C strings for `cuGetErrorName` / `cuGetErrorString`.

use std::ffi::{c_char, CString};
use std::sync::OnceLock;

use cuda_vmm_sys::{CUresult, RESULT_CODES};

struct Entry {
    code: u32,
    name: CString,
    description: CString,
}

fn table() -> &'static [Entry] {
    static TABLE: OnceLock<Vec<Entry>> = OnceLock::new();
    TABLE.get_or_init(|| {
        RESULT_CODES
            .iter()
            .filter_map(|(code, name, description)| {
                Some(Entry {
                    code: *code,
                    name: CString::new(*name).ok()?,
                    description: CString::new(*description).ok()?,
                })
            })
            .collect()
    })
}

/// The NUL-terminated name of `code` (valid for the program's lifetime).
pub(crate) fn name(code: CUresult) -> Option<*const c_char> {
    table()
        .iter()
        .find(|e| e.code == code.0)
        .map(|e| e.name.as_ptr())
}

/// The NUL-terminated description of `code` (valid for the program's lifetime).
pub(crate) fn description(code: CUresult) -> Option<*const c_char> {
    table()
        .iter()
        .find(|e| e.code == code.0)
        .map(|e| e.description.as_ptr())
}
