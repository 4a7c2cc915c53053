//! Classic linear device memory (`cuMemAlloc` / `cuMemFree`), for comparison and benches.

use std::fmt;
use std::mem::MaybeUninit;

use cuda_vmm_sys::entry;

use crate::copy;
use crate::device::Device;
use crate::error::{check, Error, Result};
use crate::reservation::check_bounds;
use crate::trace::Hex;
use tracing::field::{display, Empty};

/// Device memory from `cuMemAlloc`, freed on drop. `Send + Sync`.
pub struct LinearAllocation {
    device: Device,
    ptr: u64,
    size: usize,
    freed: bool,
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
        let cuda = device.cuda();
        let f = cuda.entry(entry!(cuda.table(), cuMemAlloc_v2))?;
        let _bound = device.bind()?;
        let mut ptr = MaybeUninit::<u64>::uninit();
        let span = tracing::debug_span!("cuMemAlloc_v2", size, address = Empty).entered();
        // SAFETY: `ptr` is a valid out-pointer; the device's context is current.
        check("cuMemAlloc_v2", unsafe { f(ptr.as_mut_ptr(), size) })?;
        // SAFETY: written by the driver on success.
        let ptr = unsafe { ptr.assume_init() };
        span.record("address", display(Hex(ptr)));
        drop(span);
        Ok(Self {
            device: device.clone(),
            ptr,
            size,
            freed: false,
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
        copy::htod(&self.device, &[], self.ptr + offset as u64, data)
    }

    /// Copies from `offset` into `out`.
    pub fn read(&self, offset: usize, out: &mut [u8]) -> Result<()> {
        check_bounds(
            "copy range in linear allocation",
            offset,
            out.len(),
            self.size,
        )?;
        copy::dtoh(&self.device, &[], out, self.ptr + offset as u64)
    }

    /// Copies the first `len` bytes of `src` to the start of `self` (waits for completion).
    pub fn copy_from(&self, src: &LinearAllocation, len: usize) -> Result<()> {
        self.device
            .check_same_driver(&src.device, "the source allocation")?;
        check_bounds("copy source", 0, len, src.size)?;
        check_bounds("copy destination", 0, len, self.size)?;
        copy::dtod_sync(&self.device, &[], self.ptr, src.ptr, len)
    }

    /// Frees the memory now, returning the driver's error if any.
    pub fn free(mut self) -> Result<()> {
        self.free_now()
    }

    fn free_now(&mut self) -> Result<()> {
        if self.freed {
            return Ok(());
        }
        self.freed = true;
        let cuda = self.device.cuda();
        let f = cuda.entry(entry!(cuda.table(), cuMemFree_v2))?;
        // Device work may still use the memory: wait for the context first,
        // as `cudaFree` does.
        self.device.synchronize()?;
        let _bound = self.device.bind()?;
        let _span = tracing::debug_span!(
            "cuMemFree_v2",
            address = %Hex(self.ptr),
            size = self.size
        )
        .entered();
        // SAFETY: we allocated this pointer and free it exactly once.
        check("cuMemFree_v2", unsafe { f(self.ptr) })
    }
}

impl Drop for LinearAllocation {
    fn drop(&mut self) {
        if let Err(e) = self.free_now() {
            tracing::error!("freeing linear allocation {:#x}: {e}", self.ptr);
        }
    }
}
