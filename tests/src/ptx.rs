//! A test kernel in PTX, loaded with `cuModuleLoadData` and launched with `cuLaunchKernel`
//! through the raw table (real driver only: the simulator cannot run kernels).

use std::ffi::{c_void, CString};
use std::mem::MaybeUninit;

use cuda_vmm::{Device, Stream};
use cuda_vmm_sys::{entry, CUfunction, CUmodule, CUresult};

/// `slow_fill(u32* p, u64 n, u32 value, u64 spin_ns)`: every thread first spins on the
/// global timer for `spin_ns`, then the grid writes `value` to `p[0..n)` (grid-stride loop).
/// So the kernel is still running, for a known time, when the host does the next thing.
const SLOW_FILL: &str = r#"
.version 7.0
.target sm_70
.address_size 64

.visible .entry slow_fill(
    .param .u64 p_ptr,
    .param .u64 p_n,
    .param .u32 p_value,
    .param .u64 p_spin
)
{
    .reg .pred %p<3>;
    .reg .b32 %r<6>;
    .reg .b64 %rd<12>;

    ld.param.u64 %rd1, [p_ptr];
    ld.param.u64 %rd2, [p_n];
    ld.param.u32 %r1, [p_value];
    ld.param.u64 %rd3, [p_spin];
    cvta.to.global.u64 %rd1, %rd1;
    mov.u64 %rd4, %globaltimer;
    add.u64 %rd5, %rd4, %rd3;
SPIN:
    mov.u64 %rd6, %globaltimer;
    setp.lt.u64 %p1, %rd6, %rd5;
    @%p1 bra SPIN;

    mov.u32 %r2, %ctaid.x;
    mov.u32 %r3, %ntid.x;
    mov.u32 %r4, %tid.x;
    mov.u32 %r5, %nctaid.x;
    mul.wide.u32 %rd7, %r2, %r3;
    cvt.u64.u32 %rd8, %r4;
    add.u64 %rd7, %rd7, %rd8;
    mul.wide.u32 %rd9, %r5, %r3;
LOOP:
    setp.ge.u64 %p2, %rd7, %rd2;
    @%p2 bra DONE;
    shl.b64 %rd10, %rd7, 2;
    add.u64 %rd11, %rd1, %rd10;
    st.global.u32 [%rd11], %r1;
    add.u64 %rd7, %rd7, %rd9;
    bra LOOP;
DONE:
    ret;
}
"#;

/// The loaded `slow_fill` kernel (the module is never unloaded: tests are short-lived).
pub struct SlowFill {
    device: Device,
    function: CUfunction,
}

// SAFETY: a CUfunction is an opaque driver handle usable from any thread.
unsafe impl Send for SlowFill {}
// SAFETY: as above; launching only passes the handle to the driver.
unsafe impl Sync for SlowFill {}

fn check(call: &str, rc: CUresult) -> Result<(), String> {
    if rc == CUresult::CUDA_SUCCESS {
        Ok(())
    } else {
        Err(format!("{call} failed: {}", rc.0))
    }
}

impl SlowFill {
    /// Loads the kernel on `device` (binding its context on this thread).
    pub fn load(device: &Device) -> Result<SlowFill, String> {
        let table = device.cuda().sys().table();
        let load = entry!(table, cuModuleLoadData).map_err(|e| e.to_string())?;
        let get = entry!(table, cuModuleGetFunction).map_err(|e| e.to_string())?;
        device.make_current().map_err(|e| e.to_string())?;
        let image = CString::new(SLOW_FILL).map_err(|e| e.to_string())?;
        let mut module = MaybeUninit::<CUmodule>::uninit();
        // SAFETY: `image` is a NUL-terminated PTX string; `module` a valid out-pointer.
        check("cuModuleLoadData", unsafe {
            load(module.as_mut_ptr(), image.as_ptr().cast())
        })?;
        // SAFETY: written on success.
        let module = unsafe { module.assume_init() };
        let mut function = MaybeUninit::<CUfunction>::uninit();
        // SAFETY: `module` is live; the name is NUL-terminated.
        check("cuModuleGetFunction", unsafe {
            get(function.as_mut_ptr(), module, c"slow_fill".as_ptr())
        })?;
        Ok(SlowFill {
            device: device.clone(),
            // SAFETY: written on success.
            function: unsafe { function.assume_init() },
        })
    }

    /// Launches `slow_fill(ptr, n, value, spin_ns)` on `stream`.
    ///
    /// # Safety
    /// `[ptr, ptr + 4 n)` must be mapped read-write for the device when the kernel writes it.
    pub unsafe fn launch(
        &self,
        stream: &Stream,
        ptr: u64,
        n: u64,
        value: u32,
        spin_ns: u64,
    ) -> Result<(), String> {
        let table = self.device.cuda().sys().table();
        let launch = entry!(table, cuLaunchKernel).map_err(|e| e.to_string())?;
        self.device.make_current().map_err(|e| e.to_string())?;
        let (mut ptr, mut n, mut value, mut spin) = (ptr, n, value, spin_ns);
        let mut params: [*mut c_void; 4] = [
            (&raw mut ptr).cast(),
            (&raw mut n).cast(),
            (&raw mut value).cast(),
            (&raw mut spin).cast(),
        ];
        // SAFETY: `params` points at four live values of the kernel's parameter types; the
        // function and stream are live; the caller vouches for the memory.
        check("cuLaunchKernel", unsafe {
            launch(
                self.function,
                264,
                1,
                1,
                256,
                1,
                1,
                0,
                stream.raw(),
                params.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        })
    }
}
