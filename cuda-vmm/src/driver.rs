//! The driver handle: which backend, its version, device enumeration.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cuda_vmm_sys::Driver;
use parking_lot::Mutex;

use crate::device::{Device, DeviceShared};
use crate::error::{Error, Result};
use crate::hooks::HookRegistry;
use crate::raw::{self, Api};
use crate::release::ReleaseQueue;
use crate::version::DriverVersion;

/// Environment variable selecting the backend of [`Cuda::new`]: `sim` or `cuda`.
pub const BACKEND_ENV: &str = "CUDA_VMM_BACKEND";

/// Which implementation of the driver API a [`Cuda`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// NVIDIA's driver library (`libcuda`).
    RealDriver,
    /// The in-process CPU simulator (`cuda-vmm-sim`).
    Simulator,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::RealDriver => "real driver",
            Backend::Simulator => "simulator",
        })
    }
}

/// Sentinel for "device count not queried yet".
const UNKNOWN_COUNT: usize = usize::MAX;

struct CudaInner {
    driver: &'static Driver,
    /// The driver's table, reporting `version` for missing entry points.
    api: Api,
    backend: Backend,
    /// Why [`Cuda::new`] fell back to the simulator, when it did.
    fallback: Option<String>,
    version: Option<DriverVersion>,
    device_count: AtomicUsize,
    /// Devices opened so far, each with its primary context retained once.
    devices: Mutex<Vec<Option<Arc<DeviceShared>>>>,
    /// Ends of life waiting for device work (see [`crate::release`]).
    release: Arc<ReleaseQueue>,
    /// Registration hooks (see [`crate::hooks`]).
    hooks: HookRegistry,
}

/// An initialised driver: the entry point to devices and memory.
///
/// Cheap to clone (an `Arc` inside); `Send + Sync`.
#[derive(Clone)]
pub struct Cuda {
    inner: Arc<CudaInner>,
}

impl fmt::Debug for Cuda {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cuda")
            .field("backend", &self.inner.backend)
            .field("fallback", &self.inner.fallback)
            .field("version", &self.inner.version)
            .field("origin", &self.inner.driver.origin())
            .finish()
    }
}

impl Cuda {
    /// Picks a backend: `CUDA_VMM_BACKEND=sim|cuda` if set; otherwise the real
    /// driver when it loads and reports at least one device, else the simulator
    /// (with feature `sim`), else the real driver's error ([`Error::DriverNotFound`]
    /// when it did not load).
    ///
    /// Falling back to the simulator is not silent: it logs a `tracing` warning naming
    /// the reason, and [`backend`](Cuda::backend) and
    /// [`fallback_reason`](Cuda::fallback_reason) tell afterwards. A program that must not
    /// run on the simulator (a serving engine on a machine whose GPU is broken) checks
    /// `backend()`, calls [`Cuda::real`] instead, or sets `CUDA_VMM_BACKEND=cuda`.
    ///
    /// ```
    /// use cuda_vmm::{Backend, Cuda};
    ///
    /// match Cuda::new() {
    ///     Ok(cuda) => {
    ///         if let Some(reason) = cuda.fallback_reason() {
    ///             assert_eq!(cuda.backend(), Backend::Simulator);
    ///             eprintln!("running on the simulator: {reason}");
    ///         }
    ///     }
    ///     // Without feature `sim` and without a driver: no backend at all.
    ///     Err(e) => eprintln!("no CUDA backend: {e}"),
    /// }
    /// ```
    pub fn new() -> Result<Cuda> {
        match std::env::var(BACKEND_ENV).as_deref() {
            Ok("sim") | Ok("simulator") => Self::simulator_or_unavailable(),
            Ok("cuda") | Ok("real") => Self::real(),
            Ok("") | Err(std::env::VarError::NotPresent) => match Self::real() {
                Ok(cuda) => match cuda.device_count() {
                    Ok(n) if n > 0 => Ok(cuda),
                    Ok(_) => Self::fallback(Ok(cuda), "the real driver reports no devices".into()),
                    Err(e) => Self::fallback(
                        Ok(cuda),
                        format!("the real driver cannot count its devices: {e}"),
                    ),
                },
                Err(e) => {
                    let reason = format!("the real driver did not load: {e}");
                    Self::fallback(Err(e), reason)
                }
            },
            Ok(other) => Err(Error::BackendUnavailable {
                message: format!("{BACKEND_ENV}={other:?} is neither \"sim\" nor \"cuda\""),
            }),
            Err(e) => Err(Error::BackendUnavailable {
                message: format!("{BACKEND_ENV} is not valid unicode: {e}"),
            }),
        }
    }

    /// What [`Cuda::new`] does when the real driver is unusable (`reason` says why): the
    /// simulator, with a warning and the reason kept for [`Cuda::fallback_reason`].
    #[cfg(feature = "sim")]
    #[allow(unsafe_code)]
    fn fallback(_real: Result<Cuda>, reason: String) -> Result<Cuda> {
        tracing::warn!(
            "cuda-vmm: using the CPU simulator, not a GPU: {reason} \
             (set {BACKEND_ENV}=cuda to refuse the fallback, or {BACKEND_ENV}=sim to choose it)"
        );
        // SAFETY: the simulator implements the driver API's documented semantics.
        unsafe { Self::init(cuda_vmm_sim::driver(), Backend::Simulator, Some(reason)) }
    }

    /// What [`Cuda::new`] does when the real driver is unusable: its answer, as it is.
    #[cfg(not(feature = "sim"))]
    fn fallback(real: Result<Cuda>, _reason: String) -> Result<Cuda> {
        real
    }

    #[cfg(feature = "sim")]
    fn simulator_or_unavailable() -> Result<Cuda> {
        Self::simulator()
    }

    #[cfg(not(feature = "sim"))]
    fn simulator_or_unavailable() -> Result<Cuda> {
        Err(Error::BackendUnavailable {
            message: "the simulator needs cuda-vmm's feature \"sim\"".to_owned(),
        })
    }

    /// The system driver ([`Driver::global`]: `libcuda`, or the library named by
    /// `CUDA_VMM_DRIVER_PATH`, which the environment vouches for), initialised
    /// with `cuInit(0)`.
    #[allow(unsafe_code)]
    pub fn real() -> Result<Cuda> {
        let driver = Driver::global().map_err(Error::DriverNotFound)?;
        // SAFETY: `Driver::global` loads the system driver, or the library the
        // environment names under `CUDA_VMM_DRIVER_PATH`'s contract: either
        // implements the CUDA driver API.
        unsafe { Self::from_driver(driver, Backend::RealDriver) }
    }

    /// The in-process CPU simulator.
    #[cfg(feature = "sim")]
    #[allow(unsafe_code)]
    pub fn simulator() -> Result<Cuda> {
        // SAFETY: the simulator implements the driver API's documented semantics.
        unsafe { Self::from_driver(cuda_vmm_sim::driver(), Backend::Simulator) }
    }

    /// Wraps any driver and initialises it with `cuInit(0)`.
    ///
    /// # Safety
    /// `driver` must implement the CUDA driver API's documented semantics: the
    /// safe wrappers rely on it to validate handles it returned itself and to
    /// write every out-parameter on success.
    #[allow(unsafe_code)]
    pub unsafe fn from_driver(driver: &'static Driver, backend: Backend) -> Result<Cuda> {
        // SAFETY: forwarded from this function's contract.
        unsafe { Self::init(driver, backend, None) }
    }

    /// [`Cuda::from_driver`], remembering why [`Cuda::new`] fell back, if it did.
    ///
    /// # Safety
    /// As for [`Cuda::from_driver`].
    #[allow(unsafe_code)]
    unsafe fn init(
        driver: &'static Driver,
        backend: Backend,
        fallback: Option<String>,
    ) -> Result<Cuda> {
        // SAFETY: the caller vouches that `driver` implements the driver API (this
        // function's contract).
        let api = unsafe { Api::new(driver.table(), None) };
        raw::init(api, 0)?;
        let version = raw::driver_get_version(api).ok();
        Ok(Cuda {
            inner: Arc::new(CudaInner {
                driver,
                api: api.with_version(version),
                backend,
                fallback,
                version,
                device_count: AtomicUsize::new(UNKNOWN_COUNT),
                devices: Mutex::new(Vec::new()),
                release: ReleaseQueue::new(),
                hooks: HookRegistry::default(),
            }),
        })
    }

    /// The registration hooks (see [`crate::hooks`]).
    pub(crate) fn hook_registry(&self) -> &HookRegistry {
        &self.inner.hooks
    }

    /// The release queue (see [`crate::release`]).
    pub(crate) fn release_queue(&self) -> &Arc<ReleaseQueue> {
        &self.inner.release
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// Why [`Cuda::new`] chose the simulator when no backend was asked for: the real
    /// driver did not load (with the loader's error), reported no devices, or could not
    /// count them. `None` for every `Cuda` that is not such a fallback (the real driver,
    /// or a simulator asked for by `CUDA_VMM_BACKEND=sim`, [`Cuda::simulator`] or
    /// [`Cuda::from_driver`]).
    pub fn fallback_reason(&self) -> Option<&str> {
        self.inner.fallback.as_deref()
    }

    /// The raw driver, an escape hatch to its function table.
    pub fn sys(&self) -> &'static Driver {
        self.inner.driver
    }

    /// The driver's function table for [`raw`](crate::raw) calls; missing entry points
    /// report this driver's version.
    #[inline]
    pub fn api(&self) -> Api {
        self.inner.api
    }

    /// Whether `other` talks to the same driver (handles are only valid there).
    #[inline]
    pub(crate) fn same_driver(&self, other: &Cuda) -> bool {
        std::ptr::eq(self.inner.driver, other.inner.driver)
    }

    /// The driver's version (`cuDriverGetVersion`).
    pub fn driver_version(&self) -> Result<DriverVersion> {
        match self.inner.version {
            Some(v) => Ok(v),
            None => raw::driver_get_version(self.api().versionless()),
        }
    }

    /// The number of devices (`cuDeviceGetCount`), queried once and cached.
    pub fn device_count(&self) -> Result<usize> {
        let cached = self.inner.device_count.load(Ordering::Relaxed);
        if cached != UNKNOWN_COUNT {
            return Ok(cached);
        }
        let count = raw::device_get_count(self.api())?.max(0) as usize;
        self.inner.device_count.store(count, Ordering::Relaxed);
        Ok(count)
    }

    /// Device `ordinal`.
    ///
    /// The first call for an ordinal retains the device's primary context,
    /// which this `Cuda` keeps until it and everything made from it are gone
    /// (as the runtime API does); later calls cost no driver call. An ordinal
    /// `>= device_count()` is [`Error::InvalidArgument`].
    pub fn device(&self, ordinal: usize) -> Result<Device> {
        let count = self.device_count()?;
        if ordinal >= count {
            return Err(Error::invalid(format!(
                "device ordinal {ordinal} is out of range: the driver reports {count} device(s)"
            )));
        }
        // Held across the retain so two threads never retain one context twice.
        let mut devices = self.inner.devices.lock();
        if devices.len() < count {
            devices.resize(count, None);
        }
        if let Some(Some(shared)) = devices.get(ordinal) {
            return Ok(Device::from_shared(self.clone(), shared.clone()));
        }
        let shared = Device::open_shared(self, ordinal)?;
        if let Some(slot) = devices.get_mut(ordinal) {
            *slot = Some(shared.clone());
        }
        Ok(Device::from_shared(self.clone(), shared))
    }

    /// Every device.
    pub fn devices(&self) -> Result<Vec<Device>> {
        (0..self.device_count()?).map(|i| self.device(i)).collect()
    }

    /// One line naming the backend, driver version and devices, e.g.
    /// `"real driver 13.0, device 0: NVIDIA H100 80GB HBM3"`.
    pub fn describe(&self) -> String {
        let version = match self.driver_version() {
            Ok(v) => v.to_string(),
            Err(_) => "(version unknown)".to_owned(),
        };
        let mut out = format!("{} {version}", self.backend());
        match self.device_count() {
            Ok(0) => out.push_str(", no devices"),
            Ok(n) => {
                for i in 0..n {
                    let name = self
                        .device(i)
                        .and_then(|d| d.name())
                        .unwrap_or_else(|e| format!("<{e}>"));
                    out.push_str(&format!(", device {i}: {name}"));
                }
            }
            Err(e) => out.push_str(&format!(", devices unknown: {e}")),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_decode_and_print() {
        assert_eq!(
            DriverVersion::from_raw(12090),
            DriverVersion {
                major: 12,
                minor: 9
            }
        );
        assert_eq!(DriverVersion::from_raw(13000).to_string(), "13.0");
        assert_eq!(DriverVersion::from_raw(-1).to_string(), "0.0");
    }

    #[cfg(feature = "sim")]
    #[test]
    fn a_fallback_to_the_simulator_says_why() -> Result<()> {
        let unloadable = Err(Error::BackendUnavailable {
            message: "no libcuda".into(),
        });
        let cuda = Cuda::fallback(unloadable, "the real driver did not load: x".into())?;
        assert_eq!(cuda.backend(), Backend::Simulator);
        assert_eq!(
            cuda.fallback_reason(),
            Some("the real driver did not load: x")
        );
        assert!(format!("{cuda:?}").contains("the real driver did not load: x"));
        assert_eq!(Cuda::simulator()?.fallback_reason(), None);
        Ok(())
    }

    #[test]
    fn unknown_backend_names_are_refused() {
        // The only test in this crate that reads the variable.
        std::env::set_var(BACKEND_ENV, "bogus");
        let e = Cuda::new().err();
        std::env::remove_var(BACKEND_ENV);
        assert_eq!(
            e,
            Some(Error::BackendUnavailable {
                message: "CUDA_VMM_BACKEND=\"bogus\" is neither \"sim\" nor \"cuda\"".into()
            })
        );
    }
}
