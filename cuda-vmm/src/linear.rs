//! Classic linear device memory (`cuMemAlloc` / `cuMemFree`), for comparison and benches.

use std::fmt;

use crate::copy_engine;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::raw::DeviceMemory;
use crate::validate::check_bounds;

/// Device memory from `cuMemAlloc`, freed on drop. `Send + Sync`.
pub struct LinearAllocation {
    device: Device,
    ptr: u64,
    size: usize,
    memory: DeviceMemory,
}

impl fmt::Debug for LinearAllocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinearAllocation")
            .field("ptr", &format_args!("{:#x}", self.ptr))
            .field("size", &self.size)
            .field("device", &self.device.ordinal())
            .finish()
    }
}

impl LinearAllocation {
    /// Allocates `size` (nonzero) bytes on `device`.
    pub fn new(device: &Device, size: usize) -> Result<Self> {
        if size == 0 {
            return Err(Error::invalid(
                "allocation size 0: the size must be nonzero",
            ));
        }
        crate::raw::require!(device.cuda().api(), cuMemAlloc_v2);
        let bound = device.bind()?;
        let memory = DeviceMemory::alloc(device.cuda().api(), &bound, size)?;
        Ok(Self {
            device: device.clone(),
            ptr: memory.ptr(),
            size,
            memory,
        })
    }

    /// Device address.
    #[inline]
    pub fn ptr(&self) -> u64 {
        self.ptr
    }

    /// Size in bytes.
    #[inline]
    pub fn size(&self) -> usize {
        self.size
    }

    /// The device it lives on.
    #[inline]
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Copies `data` to `offset`.
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<()> {
        check_bounds(
            "copy range in linear allocation",
            offset,
            data.len(),
            self.size,
        )?;
        let dst = self.memory.checked(offset, data.len())?;
        copy_engine::htod(&self.device, &[], dst, data)
    }

    /// Copies from `offset` into `out`.
    pub fn read(&self, offset: usize, out: &mut [u8]) -> Result<()> {
        check_bounds(
            "copy range in linear allocation",
            offset,
            out.len(),
            self.size,
        )?;
        let src = self.memory.checked(offset, out.len())?;
        copy_engine::dtoh(&self.device, &[], out, src)
    }

    /// Copies the first `len` bytes of `src` to the start of `self` (waits for completion).
    pub fn copy_from(&self, src: &LinearAllocation, len: usize) -> Result<()> {
        self.device
            .check_same_driver(&src.device, "the source allocation")?;
        check_bounds("copy source", 0, len, src.size)?;
        check_bounds("copy destination", 0, len, self.size)?;
        let (dst, src) = (self.memory.checked(0, len)?, src.memory.checked(0, len)?);
        copy_engine::dtod_sync(&self.device, &[], dst, src)
    }

    /// Frees the memory now, after waiting for the context's work (as `cudaFree`).
    ///
    /// On failure the error says whether a retry can help:
    /// - the wait (or binding the context) failed: nothing was freed and the
    ///   allocation comes back in [`LinearFreeError::allocation`], to retry or
    ///   drop (dropping tries once more). After a sticky error (the context is
    ///   lost) every retry fails too.
    /// - `cuMemFree` itself failed: it may report an earlier launch's error
    ///   without saying whether the memory was freed, so the pointer is never
    ///   freed again (a second free could hit a new allocation at the same
    ///   address) and no allocation comes back.
    pub fn free(mut self) -> std::result::Result<(), LinearFreeError> {
        match self.free_now() {
            Ok(()) => Ok(()),
            Err(error) if self.memory.is_freed() => Err(LinearFreeError {
                error,
                allocation: None,
            }),
            Err(error) => Err(LinearFreeError {
                error,
                allocation: Some(self),
            }),
        }
    }

    fn free_now(&mut self) -> Result<()> {
        if self.memory.is_freed() {
            return Ok(());
        }
        let api = self.device.cuda().api();
        crate::raw::require!(api, cuMemFree_v2);
        // Device work may still use the memory: wait for the context first,
        // as `cudaFree` does.
        let idle = self.device.synchronize_idle()?;
        let bound = self.device.bind()?;
        // From here on the pointer is never freed again, whatever the driver says.
        self.memory.free(api, &bound, &idle)
    }
}

/// A failed [`LinearAllocation::free`]: the error, and the allocation when a retry is
/// possible (nothing was freed).
#[derive(Debug)]
pub struct LinearFreeError {
    /// What failed.
    pub error: Error,
    /// The allocation, still live, when the failure came before `cuMemFree`.
    pub allocation: Option<LinearAllocation>,
}

impl fmt::Display for LinearFreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for LinearFreeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl From<LinearFreeError> for Error {
    fn from(e: LinearFreeError) -> Error {
        e.error
    }
}

impl Drop for LinearAllocation {
    fn drop(&mut self) {
        if let Err(e) = self.free_now() {
            tracing::error!("freeing linear allocation {:#x}: {e}", self.ptr);
        }
    }
}
