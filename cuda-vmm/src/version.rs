//! The driver version type (`cuDriverGetVersion`), shared by the driver handle and errors.

use std::fmt;

/// A driver version as `cuDriverGetVersion` reports it (`12090` is 12.9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DriverVersion {
    /// Major version, e.g. 13.
    pub major: u32,
    /// Minor version, e.g. 0.
    pub minor: u32,
}

impl DriverVersion {
    /// Decodes the driver's integer encoding (`1000 * major + 10 * minor`).
    pub fn from_raw(raw: i32) -> Self {
        let raw = raw.max(0) as u32;
        Self {
            major: raw / 1000,
            minor: (raw % 1000) / 10,
        }
    }
}

impl fmt::Display for DriverVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}
