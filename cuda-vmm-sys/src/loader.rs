//! Loading a driver library at run time.

use core::ffi::{c_void, CStr};
use core::fmt;
use core::ptr::NonNull;
use std::ffi::OsString;
use std::sync::OnceLock;

use crate::table::DriverTable;

/// Environment variable naming a library that [`Driver::load`] loads instead of
/// the system driver.
///
/// Any library exporting the driver's C ABI works, e.g. the `cuda-vmm-sim`
/// cdylib (`libcuda_vmm_sim.so`). Setting it is a promise, by whoever controls
/// the process's environment, that the named library implements that ABI: the
/// same trust the dynamic loader already gives `LD_LIBRARY_PATH` and
/// `LD_PRELOAD`, which can substitute `libcuda.so.1` itself. Programs that must
/// not trust their environment should call [`Driver::load_system`].
pub const DRIVER_PATH_ENV: &str = "CUDA_VMM_DRIVER_PATH";

/// Library names tried, in order, when [`DRIVER_PATH_ENV`] is unset.
#[cfg(windows)]
pub const DEFAULT_LIBRARIES: &[&str] = &["nvcuda.dll"];
/// Library names tried, in order, when [`DRIVER_PATH_ENV`] is unset.
#[cfg(not(windows))]
pub const DEFAULT_LIBRARIES: &[&str] = &["libcuda.so.1", "libcuda.so"];

/// An entry point the loaded driver does not export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MissingSymbol(pub &'static str);

impl fmt::Display for MissingSymbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the driver does not export `{}`", self.0)
    }
}

impl std::error::Error for MissingSymbol {}

/// Why no driver library could be loaded: every path tried, with the loader's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError {
    /// `(path, message)` for each attempt, in order.
    pub attempts: Vec<(String, String)>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no CUDA driver library could be loaded")?;
        for (path, msg) in &self.attempts {
            write!(f, "; {path}: {msg}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}

/// A driver: its function table and, when loaded from a file, the open library.
pub struct Driver {
    table: DriverTable,
    origin: String,
    _library: Option<libloading::Library>,
}

impl fmt::Debug for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("origin", &self.origin)
            .field("missing", &self.table.missing().collect::<Vec<_>>())
            .finish()
    }
}

impl Driver {
    /// Loads the library named by [`DRIVER_PATH_ENV`], or else the system driver
    /// ([`Driver::load_system`]).
    ///
    /// Safe because it trusts what the process is configured to trust: the
    /// system's CUDA driver, and a library the environment names explicitly (see
    /// [`DRIVER_PATH_ENV`] for what setting it promises). Never panics; on
    /// failure every path tried is reported.
    pub fn load() -> Result<Self, LoadError> {
        match std::env::var_os(DRIVER_PATH_ENV) {
            // SAFETY: naming a library in DRIVER_PATH_ENV promises it implements
            // the driver ABI (the variable's documented contract).
            Some(path) if !path.is_empty() => unsafe { Self::load_from(&[path]) },
            _ => Self::load_system(),
        }
    }

    /// Loads the first of [`DEFAULT_LIBRARIES`] that opens: NVIDIA's driver, as
    /// the dynamic loader finds it. Ignores [`DRIVER_PATH_ENV`].
    ///
    /// Safe because the library found under the driver's own names is trusted to
    /// be the driver, as every CUDA program trusts it.
    pub fn load_system() -> Result<Self, LoadError> {
        let names: Vec<OsString> = DEFAULT_LIBRARIES.iter().map(OsString::from).collect();
        // SAFETY: the libraries are the system's CUDA driver under its own names,
        // which implements the driver ABI.
        unsafe { Self::load_from(&names) }
    }

    /// Loads the first of `paths` that opens.
    ///
    /// # Safety
    /// Whichever library opens must implement the CUDA driver's C ABI: every
    /// symbol of [`SYMBOLS`](crate::SYMBOLS) it exports must have the signature
    /// `cuda.h` declares for it and behave as the driver documents, and its
    /// initialisers must be sound to run. The function table is built on that
    /// promise, and the safe layers above call through it without further checks
    /// (as [`cuda-vmm`'s `Cuda::from_driver`] demands of its driver).
    ///
    /// [`cuda-vmm`'s `Cuda::from_driver`]: https://docs.rs/cuda-vmm
    pub unsafe fn load_from(paths: &[OsString]) -> Result<Self, LoadError> {
        let mut attempts = Vec::new();
        for path in paths {
            // SAFETY: opening a library runs its initialisers; the caller promised
            // they are sound to run (this function's contract).
            match unsafe { libloading::Library::new(path) } {
                Ok(lib) => {
                    let mut lookup = |name: &CStr| -> Option<NonNull<c_void>> {
                        // SAFETY: the symbol is only read as an address here;
                        // its type is fixed by the table's field for `name`.
                        let sym = unsafe { lib.get::<*mut c_void>(name.to_bytes_with_nul()) };
                        sym.ok().and_then(|s| NonNull::new(*s))
                    };
                    // SAFETY: the caller promised the library exports the driver's
                    // C ABI, so each symbol has the signature `cuda.h` gives it; the
                    // library is kept open in `_library` for as long as the table lives.
                    let table = unsafe { DriverTable::from_lookup(&mut lookup) };
                    return Ok(Self {
                        table,
                        origin: path.to_string_lossy().into_owned(),
                        _library: Some(lib),
                    });
                }
                Err(e) => attempts.push((path.to_string_lossy().into_owned(), e.to_string())),
            }
        }
        Err(LoadError { attempts })
    }

    /// Wraps a table of in-process function pointers (used by the simulator).
    ///
    /// # Safety
    /// Every non-`None` slot must point to a function with the signature
    /// `cuda.h` declares for that symbol, valid for the program's lifetime.
    pub unsafe fn from_table(table: DriverTable, origin: impl Into<String>) -> Self {
        Self {
            table,
            origin: origin.into(),
            _library: None,
        }
    }

    /// The function table.
    #[inline]
    pub fn table(&self) -> &DriverTable {
        &self.table
    }

    /// Where this driver came from: a library path, or the in-process origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The process-wide driver from [`Driver::load`] (so [`DRIVER_PATH_ENV`] is
    /// honoured, under its contract), loaded on first success.
    ///
    /// A failed load is not remembered: a later call tries again.
    pub fn global() -> Result<&'static Driver, LoadError> {
        static GLOBAL: OnceLock<Driver> = OnceLock::new();
        if let Some(d) = GLOBAL.get() {
            return Ok(d);
        }
        let loaded = Self::load()?;
        // A racing thread may have won; either way the stored one is returned.
        let _ = GLOBAL.set(loaded);
        GLOBAL.get().ok_or_else(|| LoadError {
            attempts: vec![("<global>".into(), "initialisation raced and failed".into())],
        })
    }
}

/// Fetches an entry point from a [`DriverTable`], or a [`MissingSymbol`] naming it.
///
/// `entry!(table, cuMemCreate)` is `table.cuMemCreate.ok_or(MissingSymbol("cuMemCreate"))`.
/// It only looks the pointer up; calling it stays `unsafe` at the call site.
#[macro_export]
macro_rules! entry {
    ($table:expr, $name:ident) => {
        $table
            .$name
            .ok_or($crate::MissingSymbol(::core::stringify!($name)))
    };
}
