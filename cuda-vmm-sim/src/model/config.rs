//! Simulator configuration: defaults, environment variables, and the builder.

use core::fmt;

/// Environment variable: number of simulated devices (default 1).
pub const ENV_DEVICES: &str = "CUDA_VMM_SIM_DEVICES";
/// Environment variable: memory per device in bytes, with an optional K/M/G/T suffix.
pub const ENV_MEMORY: &str = "CUDA_VMM_SIM_MEMORY";
/// Environment variable: allocation granularity in bytes (optional K/M/G/T suffix).
pub const ENV_GRANULARITY: &str = "CUDA_VMM_SIM_GRANULARITY";
/// Environment variable: the version `cuDriverGetVersion` reports (e.g. 13000).
pub const ENV_DRIVER_VERSION: &str = "CUDA_VMM_SIM_DRIVER_VERSION";
/// Environment variable: `1` (default) models device asynchrony (work queued
/// on streams, completed at synchronisation points); `0` completes all work
/// inside the call that issues it.
pub const ENV_ASYNC: &str = "CUDA_VMM_SIM_ASYNC";

/// Environment variable: the query progress rule's `n` (default
/// [`DEFAULT_QUERY_PROGRESS`]; `0` turns it off): see [`SimConfig::query_progress`].
pub const ENV_QUERY_PROGRESS: &str = "CUDA_VMM_SIM_QUERY_PROGRESS";

/// The default of [`SimConfig::query_progress`]: a polling loop finishes after
/// this many `NOT_READY` answers for the same point.
pub const DEFAULT_QUERY_PROGRESS: u32 = 64;

/// Most devices the simulator models (access masks are 64-bit).
pub const MAX_DEVICES: u32 = 64;

/// How the simulated driver looks: devices, memory, granularity, version.
///
/// Build one with [`SimConfig::new`] (defaults) or [`SimConfig::from_env`], adjust
/// it, and hand it to [`configure`](crate::configure) before the first `cuInit`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimConfig {
    devices: u32,
    memory: u64,
    granularity: u64,
    driver_version: i32,
    device_name: Option<String>,
    asynchronous: bool,
    query_progress: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl SimConfig {
    /// The defaults: 1 device, 80 GiB per device, 2 MiB granularity, driver
    /// version 13000, asynchronous work.
    pub fn new() -> Self {
        Self {
            devices: 1,
            memory: 80 << 30,
            granularity: 2 << 20,
            driver_version: 13000,
            device_name: None,
            asynchronous: true,
            query_progress: DEFAULT_QUERY_PROGRESS,
        }
    }

    /// The defaults, overridden by the `CUDA_VMM_SIM_*` environment variables.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut config = Self::new();
        if let Some(v) = env(ENV_DEVICES) {
            let n = parse_size(&v).ok_or_else(|| ConfigError::parse(ENV_DEVICES, &v))?;
            config.devices = u32::try_from(n).map_err(|_| ConfigError::parse(ENV_DEVICES, &v))?;
        }
        if let Some(v) = env(ENV_MEMORY) {
            config.memory = parse_size(&v).ok_or_else(|| ConfigError::parse(ENV_MEMORY, &v))?;
        }
        if let Some(v) = env(ENV_GRANULARITY) {
            config.granularity =
                parse_size(&v).ok_or_else(|| ConfigError::parse(ENV_GRANULARITY, &v))?;
        }
        if let Some(v) = env(ENV_DRIVER_VERSION) {
            config.driver_version = v
                .trim()
                .parse()
                .map_err(|_| ConfigError::parse(ENV_DRIVER_VERSION, &v))?;
        }
        if let Some(v) = env(ENV_ASYNC) {
            config.asynchronous = match v.trim() {
                "1" => true,
                "0" => false,
                _ => return Err(ConfigError::parse(ENV_ASYNC, &v)),
            };
        }
        if let Some(v) = env(ENV_QUERY_PROGRESS) {
            config.query_progress = v
                .trim()
                .parse()
                .map_err(|_| ConfigError::parse(ENV_QUERY_PROGRESS, &v))?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Whether work is asynchronous (default `true`): queued on streams and
    /// completed at synchronisation points, as on a GPU. `false` completes all
    /// work inside the call that issues it.
    pub fn asynchronous(mut self, on: bool) -> Self {
        self.asynchronous = on;
        self
    }

    /// Whether work is asynchronous (see [`SimConfig::asynchronous`]).
    pub fn is_asynchronous(&self) -> bool {
        self.asynchronous
    }

    /// The query progress rule: `cuStreamQuery` and `cuEventQuery` have no side
    /// effects (they answer `CUDA_ERROR_NOT_READY` while the work is pending), but
    /// the `n`-th such answer for the same point (a stream's last queued work, or
    /// an event's recorded position) lets the device progress: that query completes
    /// the work (unless a [hold](crate::hold_stream) is in the way: then never) and
    /// answers its outcome. So a program that only polls still finishes, and
    /// deterministically. `0` turns the rule off (queries never complete anything;
    /// [`advance`](crate::advance) and synchronisation do). Default
    /// [`DEFAULT_QUERY_PROGRESS`].
    pub fn query_progress(mut self, n: u32) -> Self {
        self.query_progress = n;
        self
    }

    /// The query progress rule's `n` (see [`SimConfig::query_progress`]).
    pub fn query_progress_every(&self) -> u32 {
        self.query_progress
    }

    /// Sets the number of devices (0 makes `cuInit` fail with `CUDA_ERROR_NO_DEVICE`).
    pub fn devices(mut self, count: u32) -> Self {
        self.devices = count;
        self
    }

    /// Sets the memory of each device in bytes (virtual: pages cost host memory only once written).
    pub fn memory_per_device(mut self, bytes: u64) -> Self {
        self.memory = bytes;
        self
    }

    /// Sets the allocation granularity (minimum and recommended): a power of two, at least the host page size.
    pub fn granularity(mut self, bytes: u64) -> Self {
        self.granularity = bytes;
        self
    }

    /// Sets the version `cuDriverGetVersion` reports (1000 × major + 10 × minor).
    pub fn driver_version(mut self, version: i32) -> Self {
        self.driver_version = version;
        self
    }

    /// Sets the name every device reports (default `cuda-vmm-sim device N`).
    pub fn device_name(mut self, name: impl Into<String>) -> Self {
        self.device_name = Some(name.into());
        self
    }

    /// Number of devices.
    pub fn device_count(&self) -> u32 {
        self.devices
    }

    /// Memory per device in bytes.
    pub fn memory(&self) -> u64 {
        self.memory
    }

    /// Allocation granularity in bytes.
    pub fn allocation_granularity(&self) -> u64 {
        self.granularity
    }

    /// Reported driver version.
    pub fn version(&self) -> i32 {
        self.driver_version
    }

    /// The name device `ordinal` reports.
    pub fn name_of(&self, ordinal: u32) -> String {
        match &self.device_name {
            Some(name) => name.clone(),
            None => format!("cuda-vmm-sim device {ordinal}"),
        }
    }

    /// Checks the values; [`configure`](crate::configure) and `cuInit` call this.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.devices > MAX_DEVICES {
            return Err(ConfigError::invalid(
                "devices",
                self.devices.to_string(),
                format!("at most {MAX_DEVICES} devices are simulated"),
            ));
        }
        let page = crate::os::page_size();
        if !self.granularity.is_power_of_two() || self.granularity < page {
            return Err(ConfigError::invalid(
                "granularity",
                self.granularity.to_string(),
                format!("must be a power of two of at least the host page size {page}"),
            ));
        }
        if self.memory % self.granularity != 0 {
            return Err(ConfigError::invalid(
                "memory per device",
                self.memory.to_string(),
                format!("must be a multiple of the granularity {}", self.granularity),
            ));
        }
        if self.driver_version <= 0 {
            return Err(ConfigError::invalid(
                "driver version",
                self.driver_version.to_string(),
                "must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// Why a configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// `cuInit` already ran: the configuration is fixed for the process.
    AlreadyInitialized,
    /// A value is out of range or does not parse.
    Invalid {
        /// Which setting (or environment variable).
        what: String,
        /// The value given.
        value: String,
        /// What a valid value looks like.
        reason: String,
    },
}

impl ConfigError {
    fn invalid(what: &str, value: String, reason: String) -> Self {
        Self::Invalid {
            what: what.into(),
            value,
            reason,
        }
    }

    fn parse(var: &str, value: &str) -> Self {
        Self::invalid(
            var,
            value.into(),
            "expected a non-negative integer, optionally with a K/M/G/T suffix".into(),
        )
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyInitialized => write!(
                f,
                "the simulator is already initialised (cuInit ran); configure it before the first cuInit"
            ),
            Self::Invalid {
                what,
                value,
                reason,
            } => write!(f, "invalid {what} `{value}`: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Parses `123`, `4K`, `2M`, `80G`, `1T` (binary multiples; `KiB`/`KB` spellings too).
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (number, suffix) = t.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let suffix = suffix.trim().to_ascii_uppercase();
    let suffix = suffix
        .strip_suffix("IB")
        .or_else(|| suffix.strip_suffix('B'))
        .unwrap_or(&suffix);
    let shift = match suffix {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return None,
    };
    number.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("80g"), Some(80 << 30));
        assert_eq!(parse_size("1TiB"), Some(1 << 40));
        assert_eq!(parse_size(" 3 KB "), Some(3 << 10));
        assert_eq!(parse_size("12X"), None);
        assert_eq!(parse_size("G"), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("99999999999T"), None);
    }

    #[test]
    fn validation_names_the_bad_value() {
        let err = SimConfig::new().granularity(3000).validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid granularity `3000`: must be a power of two of at least the host page size 4096"
        );
        let err = SimConfig::new()
            .memory_per_device((1 << 30) + 4096)
            .validate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid memory per device `1073745920`: must be a multiple of the granularity 2097152"
        );
        assert!(SimConfig::new().devices(65).validate().is_err());
        assert_eq!(SimConfig::new().validate(), Ok(()));
    }

    #[test]
    fn names_default_per_ordinal() {
        assert_eq!(SimConfig::new().name_of(3), "cuda-vmm-sim device 3");
        assert_eq!(SimConfig::new().device_name("X").name_of(3), "X");
    }
}
