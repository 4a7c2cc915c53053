//! Identities of the exported entry points, for call counting and fault injection.

use crate::model::answers;
use cuda_vmm_sys::SYMBOLS;

/// Number of exported entry points: every name in [`SYMBOLS`] plus the
/// version-1 `cuGetProcAddress`.
pub(crate) const COUNT: usize = SYMBOLS.len() + 1;

/// Every exported symbol, [`SYMBOLS`] first.
pub(crate) const EXPORTS: [&str; COUNT] = {
    let mut names = [""; COUNT];
    let mut i = 0;
    while i < SYMBOLS.len() {
        names[i] = SYMBOLS[i];
        i += 1;
    }
    names[COUNT - 1] = "cuGetProcAddress";
    names
};

/// One exported entry point (an index into [`EXPORTS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sym(pub(crate) usize);

impl Sym {
    /// The exported symbol name.
    pub(crate) fn name(self) -> &'static str {
        EXPORTS[self.0]
    }

    /// Whether the call fails without a current context ([`answers::NEEDS_CONTEXT`]).
    pub(crate) fn needs_context(self) -> bool {
        NEEDS_CONTEXT[self.0]
    }

    /// Whether the call answers the current context's poison ([`answers::POISON_CHECKED`]).
    pub(crate) fn checks_poison(self) -> bool {
        POISON_CHECKED[self.0]
    }

    /// Whether the call works before `cuInit`.
    pub(crate) fn works_before_init(self) -> bool {
        matches!(
            self.name(),
            "cuInit"
                | "cuDriverGetVersion"
                | "cuGetErrorName"
                | "cuGetErrorString"
                | "cuGetProcAddress_v2"
                | "cuGetProcAddress"
        )
    }
}

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The entry point exported as `name`; a compile error when there is none.
pub(crate) const fn sym(name: &str) -> Sym {
    let mut i = 0;
    while i < COUNT {
        if same(EXPORTS[i], name) {
            return Sym(i);
        }
        i += 1;
    }
    panic!("not an exported symbol")
}

const NEEDS_CONTEXT: [bool; COUNT] = {
    let mut needs = [false; COUNT];
    let mut i = 0;
    while i < answers::NEEDS_CONTEXT.len() {
        needs[sym(answers::NEEDS_CONTEXT[i]).0] = true;
        i += 1;
    }
    needs
};

const POISON_CHECKED: [bool; COUNT] = {
    let mut checked = [false; COUNT];
    let mut i = 0;
    while i < answers::POISON_CHECKED.len() {
        checked[sym(answers::POISON_CHECKED[i]).0] = true;
        i += 1;
    }
    checked
};

/// The entry point called `name`: an exported name (`cuMemGetInfo_v2`) or the
/// plain name `cuda.h` maps to it (`cuMemGetInfo`).
pub(crate) fn lookup(name: &str) -> Option<Sym> {
    if let Some(i) = EXPORTS.iter().position(|e| *e == name) {
        return Some(Sym(i));
    }
    EXPORTS
        .iter()
        .position(|e| e.strip_suffix("_v2") == Some(name))
        .map(Sym)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_accepts_exported_and_plain_names() {
        assert_eq!(lookup("cuMemCreate").map(Sym::name), Some("cuMemCreate"));
        assert_eq!(
            lookup("cuMemGetInfo").map(Sym::name),
            Some("cuMemGetInfo_v2")
        );
        assert_eq!(
            lookup("cuMemGetInfo_v2").map(Sym::name),
            Some("cuMemGetInfo_v2")
        );
        assert_eq!(
            lookup("cuGetProcAddress").map(Sym::name),
            Some("cuGetProcAddress")
        );
        assert_eq!(
            lookup("cuLaunchKernel").map(Sym::name),
            Some("cuLaunchKernel")
        );
        assert_eq!(lookup("cuNoSuchEntryPoint"), None);
        assert!(sym("cuLaunchKernel").checks_poison());
        assert!(!sym("cuMemUnmap").checks_poison());
        assert!(sym("cuMemcpyHtoD_v2").needs_context());
        assert!(!sym("cuMemMap").needs_context());
        assert!(!sym("cuDeviceGet").needs_context());
        assert!(sym("cuDriverGetVersion").works_before_init());
    }
}
