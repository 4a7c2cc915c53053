//! Small helpers the suite's modules share: the test result type, granularity, raw device
//! reads, deterministic test data, and re-running one test of this binary in a child process.
//!
//! Helpers that need the suite's own process-wide items (its `Cuda`, its device-memory lock)
//! live in the suite's `main.rs` instead.

use std::ops::Range;
use std::process::Command;

use cuda_vmm::sys::{entry, CUresult};
use cuda_vmm::{AllocationProps, Cuda, Device, GranularityKind};

/// What a fallible test returns.
pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Minimum granularity of allocations with `props` on `device`.
pub fn min_granularity(device: &Device, props: &AllocationProps) -> cuda_vmm::Result<usize> {
    device.granularity(props, GranularityKind::Minimum)
}

/// Minimum granularity of plain device memory.
pub fn gran(device: &Device) -> cuda_vmm::Result<usize> {
    min_granularity(device, &AllocationProps::device(device))
}

/// A pool of one-granule chunks on `device`, default limits.
pub fn granule_pool(device: &Device) -> cuda_vmm_alloc::Result<cuda_vmm_alloc::ChunkPool> {
    cuda_vmm_alloc::ChunkPool::new(
        device,
        cuda_vmm_alloc::PoolConfig {
            chunk_size: gran(device)?,
            ..cuda_vmm_alloc::PoolConfig::default()
        },
    )
}

/// Reads device memory at a raw address with `cuMemcpyDtoH`, as a kernel would see it.
///
/// Device 0 of `cuda` is made current first: the library leaves the caller's current context
/// alone, so raw calls bind their own.
pub fn raw_read(cuda: &Cuda, ptr: u64, len: usize) -> Result<Vec<u8>, String> {
    let f = entry!(cuda.sys().table(), cuMemcpyDtoH_v2).map_err(|e| e.to_string())?;
    cuda.device(0)
        .and_then(|d| d.make_current())
        .map_err(|e| e.to_string())?;
    let mut out = vec![0xA5u8; len];
    // SAFETY: `out` is writable for `len` bytes; the driver validates the device address.
    let r = unsafe { f(out.as_mut_ptr().cast(), ptr, len) };
    if r == CUresult::CUDA_SUCCESS {
        Ok(out)
    } else {
        Err(format!(
            "cuMemcpyDtoH of {ptr:#x} (+{len}) failed with {}",
            r.0
        ))
    }
}

// ---- deterministic test data ---------------------------------------------------------------
//
// Each formula is kept byte for byte as the tests that use it always had it: changing one
// would change what those tests write and compare.

/// Byte `i` is `i * 31 + seed` (mod 256).
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Byte `i` is `seed + i % 251`: a cycle of 251 bytes, which no power-of-two size divides.
pub fn pattern_cycle(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i % 251) as u8))
        .collect()
}

/// Byte `i` is `(i * mul + seed) ^ (i >> shift)` (mod 256): also differs between blocks of
/// `1 << shift` bytes.
pub fn pattern_blocks(len: usize, seed: u8, mul: u8, shift: u32) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(mul).wrapping_add(seed) ^ (i >> shift) as u8)
        .collect()
}

/// Byte `i` is the second byte of `i * 2654435761` (Knuth's multiplicative hash), xor `seed`.
pub fn pattern_hashed(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

/// Element `i` (for `i` in `range`) is `i * 2654435761 + seed`.
pub fn words_added(range: Range<usize>, seed: u32) -> Vec<u32> {
    range
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed))
        .collect()
}

/// Element `i` (for `i` in `range`) is `i * 2654435761 ^ seed`.
pub fn words_xored(range: Range<usize>, seed: u32) -> Vec<u32> {
    range
        .map(|i| (i as u32).wrapping_mul(2_654_435_761) ^ seed)
        .collect()
}

// ---- child processes -----------------------------------------------------------------------

/// The name the test harness gives test `name` of the module `module_path` (as
/// `module_path!()` writes it): the path without the crate's name.
pub fn test_name(module_path: &str, name: &str) -> String {
    match module_path.split_once("::") {
        Some((_, module)) => format!("{module}::{name}"),
        None => name.to_string(),
    }
}

/// The harness's name of the test function `$name` of the calling module, for filtering a
/// child process to it: `test_name!(oom_child)` in `sim::accounting` is
/// `"sim::accounting::oom_child"`. `$name` must name a function in scope, so a renamed or moved
/// test is a compile error rather than a filter that matches nothing.
#[macro_export]
macro_rules! test_name {
    ($name:ident) => {{
        let _ = $name;
        $crate::helpers::test_name(module_path!(), stringify!($name))
    }};
}

/// This test binary, run on exactly the one (ignored) test `test`, with its output not
/// captured and on one thread: what every child process of the suite runs.
pub fn child_command(test: &str) -> std::io::Result<Command> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args([
        test,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    Ok(cmd)
}

/// What a child process printed.
#[derive(Debug)]
pub struct ChildOutput {
    /// Its standard output: the harness's lines and the test's `println!`s.
    pub stdout: String,
    /// Its standard error: the test's `eprintln!`s.
    pub stderr: String,
}

/// Runs the test `test` of this binary in a child process ([`child_command`], then
/// `configure` adds its environment) and waits for it. An error unless the child exits
/// successfully having run exactly that test and passed it: a filter that matched nothing
/// is a failure, not a silent pass.
pub fn run_child(test: &str, configure: impl FnOnce(&mut Command)) -> Result<ChildOutput, String> {
    let mut cmd = child_command(test).map_err(|e| format!("child {test}: {e}"))?;
    configure(&mut cmd);
    let out = cmd
        .output()
        .map_err(|e| format!("spawning child {test}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(format!(
            "child {test} failed ({}):\n{stdout}\n{stderr}",
            out.status
        ));
    }
    if !stdout.contains(&format!("test {test} ..."))
        || !stdout.contains("test result: ok. 1 passed")
    {
        return Err(format!("child {test} did not run:\n{stdout}\n{stderr}"));
    }
    Ok(ChildOutput { stdout, stderr })
}
