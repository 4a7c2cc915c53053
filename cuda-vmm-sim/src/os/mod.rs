//! The operating-system layer: memfds, address-space reservations, protections, file I/O.
//!
//! Every system call the simulator makes is here (sharing's socket and
//! descriptor passing in [`shareable`]), each wrapped to return `io::Result`. They go through `rustix`, so descriptors, flags and errors are
//! typed; raw `libc` remains only where rustix cannot express the call (each
//! such place says why). Functions that change the process's address space are
//! `unsafe`: their callers must own the range (it lies in a reservation the
//! simulator made).

use std::ffi::{c_void, CStr};
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

use rustix::fs::{FallocateFlags, FileType, MemfdFlags};
use rustix::mm::{MapFlags, MprotectFlags, ProtFlags};
use rustix::process::{Resource, Rlimit};

pub(crate) mod shareable;

/// Name given to every memfd, so imports can recognise the simulator's own.
pub(crate) const MEMFD_NAME: &CStr = c"cuda-vmm-sim";

/// Page protection for a union of access rights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Prot {
    None,
    Read,
    ReadWrite,
}

impl Prot {
    fn map_flags(self) -> ProtFlags {
        match self {
            Prot::None => ProtFlags::empty(),
            Prot::Read => ProtFlags::READ,
            Prot::ReadWrite => ProtFlags::READ | ProtFlags::WRITE,
        }
    }

    fn protect_flags(self) -> MprotectFlags {
        match self {
            Prot::None => MprotectFlags::empty(),
            Prot::Read => MprotectFlags::READ,
            Prot::ReadWrite => MprotectFlags::READ | MprotectFlags::WRITE,
        }
    }
}

/// Flags of every inaccessible reserved range.
const RESERVED: MapFlags = MapFlags::PRIVATE.union(MapFlags::NORESERVE);

fn len(size: u64) -> io::Result<usize> {
    usize::try_from(size).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// A file offset or length, which the kernel takes as a signed `off_t`.
fn off(offset: u64) -> io::Result<u64> {
    if i64::try_from(offset).is_ok() {
        Ok(offset)
    } else {
        Err(io::Error::from(io::ErrorKind::InvalidInput))
    }
}

fn addr_ptr(addr: u64) -> *mut c_void {
    addr as *mut c_void
}

/// Whether `e` is EFAULT: the kernel met an unmapped page in a buffer it was given.
pub(crate) fn is_bad_address(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::FAULT.raw_os_error())
}

/// A new memfd of `size` bytes (pages are allocated only when written).
pub(crate) fn memfd(size: u64) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(MEMFD_NAME, MemfdFlags::CLOEXEC)?;
    rustix::fs::ftruncate(&fd, off(size)?)?;
    Ok(fd)
}

/// Size of an open regular file, or an error when `fd` is not one.
pub(crate) fn regular_file_size(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let st = rustix::fs::fstat(fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    u64::try_from(st.st_size).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Whether `fd` is a memfd this simulator created (in any process).
pub(crate) fn is_simulator_memfd(fd: BorrowedFd<'_>) -> bool {
    use std::os::fd::AsRawFd;
    match std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())) {
        Ok(target) => target
            .to_string_lossy()
            .starts_with(&format!("/memfd:{}", MEMFD_NAME.to_string_lossy())),
        // Without /proc, trust fstat's checks.
        Err(_) => true,
    }
}

/// `(device, inode)` identity of an open file.
pub(crate) fn file_identity(fd: BorrowedFd<'_>) -> Option<(u64, u64)> {
    let st = rustix::fs::fstat(fd).ok()?;
    Some((st.st_dev, st.st_ino))
}

/// Whether the raw descriptor `fd`, which came from outside (an application's
/// import call), is open in this process.
///
/// Raw `libc` because rustix takes descriptors only as `BorrowedFd`, which may
/// not be made for a descriptor that is not known to be open: this probe is
/// what makes borrowing it sound.
pub(crate) fn is_open_fd(fd: RawFd) -> bool {
    let mut st = core::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes one `struct stat` to the pointer, which has room for
    // one; an fd that is not open makes it fail with EBADF without touching memory.
    (unsafe { libc::fstat(fd, st.as_mut_ptr()) }) == 0
}

/// Reserves `size` bytes of inaccessible address space aligned to `align`,
/// at `hint` when that range is free.
pub(crate) fn reserve(hint: u64, size: u64, align: u64) -> io::Result<u64> {
    let n = len(size)?;
    if hint != 0 && hint % align == 0 {
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping; it
        // fails (or, on old kernels, picks another address) instead.
        let p = unsafe {
            rustix::mm::mmap_anonymous(
                addr_ptr(hint),
                n,
                ProtFlags::empty(),
                RESERVED | MapFlags::FIXED_NOREPLACE,
            )
        };
        if let Ok(p) = p {
            if p as u64 == hint {
                return Ok(hint);
            }
            // SAFETY: `p` is the mapping just made, owned by nobody else.
            unsafe { release(p as u64, size) }?;
        }
    }
    let padded = size
        .checked_add(align)
        .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
    // SAFETY: a fresh anonymous mapping at an address the kernel picks.
    let p = unsafe {
        rustix::mm::mmap_anonymous(
            core::ptr::null_mut(),
            len(padded)?,
            ProtFlags::empty(),
            RESERVED,
        )
    }?;
    let start = p as u64;
    let aligned = start.next_multiple_of(align);
    let head = aligned - start;
    let tail = padded - head - size;
    // SAFETY: head and tail are the unused ends of the mapping just made.
    unsafe {
        if head > 0 {
            release(start, head)?;
        }
        if tail > 0 {
            release(aligned + size, tail)?;
        }
    }
    Ok(aligned)
}

/// Claims `[addr, addr + size)` as inaccessible address space, only if no
/// mapping of the process uses any of it.
pub(crate) fn claim(addr: u64, size: u64) -> io::Result<()> {
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
    let p = unsafe {
        rustix::mm::mmap_anonymous(
            addr_ptr(addr),
            len(size)?,
            ProtFlags::empty(),
            RESERVED | MapFlags::FIXED_NOREPLACE,
        )
    }?;
    if p as u64 != addr {
        // A kernel without MAP_FIXED_NOREPLACE placed it elsewhere.
        // SAFETY: `p` is the mapping just made.
        unsafe { release(p as u64, size) }?;
        return Err(io::Error::from(io::ErrorKind::AddrInUse));
    }
    Ok(())
}

/// A fresh private, read-write anonymous mapping of `size` bytes (pinned host memory).
pub(crate) fn anonymous(size: u64) -> io::Result<u64> {
    // SAFETY: a fresh anonymous mapping at an address the kernel picks.
    let p = unsafe {
        rustix::mm::mmap_anonymous(
            core::ptr::null_mut(),
            len(size)?,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE,
        )
    }?;
    Ok(p as u64)
}

/// Returns a range to the operating system.
///
/// # Safety
/// The range must be owned by the simulator and referenced by nothing else.
pub(crate) unsafe fn release(addr: u64, size: u64) -> io::Result<()> {
    // SAFETY: the caller owns the range.
    Ok(unsafe { rustix::mm::munmap(addr_ptr(addr), len(size)?) }?)
}

/// Maps `size` bytes of `fd` from `offset` at `addr`, replacing what is there.
///
/// # Safety
/// `[addr, addr + size)` must be owned by the simulator (inside a reservation)
/// and hold no memory that Rust code references.
pub(crate) unsafe fn map_shared(
    addr: u64,
    size: u64,
    fd: BorrowedFd<'_>,
    offset: u64,
    prot: Prot,
) -> io::Result<()> {
    // SAFETY: the caller owns the range; MAP_FIXED replaces the reservation's
    // inaccessible pages there with the file's pages.
    unsafe {
        rustix::mm::mmap(
            addr_ptr(addr),
            len(size)?,
            prot.map_flags(),
            MapFlags::SHARED | MapFlags::FIXED,
            fd,
            off(offset)?,
        )
    }?;
    Ok(())
}

/// Puts inaccessible reserved pages back over `[addr, addr + size)`.
///
/// # Safety
/// As for [`map_shared`].
pub(crate) unsafe fn unmap_to_reserved(addr: u64, size: u64) -> io::Result<()> {
    // SAFETY: the caller owns the range; the fresh anonymous PROT_NONE mapping
    // replaces the file mapping atomically, so the range stays reserved.
    unsafe {
        rustix::mm::mmap_anonymous(
            addr_ptr(addr),
            len(size)?,
            ProtFlags::empty(),
            RESERVED | MapFlags::FIXED,
        )
    }?;
    Ok(())
}

/// Changes the protection of `[addr, addr + size)`.
///
/// # Safety
/// As for [`map_shared`].
pub(crate) unsafe fn protect(addr: u64, size: u64, prot: Prot) -> io::Result<()> {
    // SAFETY: the caller owns the range.
    Ok(unsafe { rustix::mm::mprotect(addr_ptr(addr), len(size)?, prot.protect_flags()) }?)
}

/// Reads `len` bytes of `fd` at `offset` into `dst`.
///
/// Raw `libc::pread`: rustix reads only into Rust slices, and `dst` may be
/// unmapped (an application's bad pointer, which must come back as EFAULT), so
/// no slice may be made over it.
///
/// # Safety
/// `dst` must be valid for `len` byte writes or unmapped (the kernel then
/// reports EFAULT); no Rust reference may point into it.
pub(crate) unsafe fn read_at(
    fd: BorrowedFd<'_>,
    dst: *mut u8,
    len: u64,
    offset: u64,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    transfer_at(
        len,
        offset,
        io::ErrorKind::UnexpectedEof,
        |done, chunk, at| {
            // SAFETY: the caller vouches for `dst..dst+len`; the kernel checks the pages.
            unsafe { libc::pread(fd.as_raw_fd(), dst.wrapping_add(done).cast(), chunk, at) }
        },
    )
}

/// Writes `len` bytes from `src` to `fd` at `offset`.
///
/// Raw `libc::pwrite`, for the reason given at [`read_at`].
///
/// # Safety
/// `src` must be valid for `len` byte reads or unmapped (EFAULT).
pub(crate) unsafe fn write_at(
    fd: BorrowedFd<'_>,
    src: *const u8,
    len: u64,
    offset: u64,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    transfer_at(len, offset, io::ErrorKind::WriteZero, |done, chunk, at| {
        // SAFETY: the caller vouches for `src..src+len`; the kernel checks the pages.
        unsafe { libc::pwrite(fd.as_raw_fd(), src.wrapping_add(done).cast(), chunk, at) }
    })
}

/// The loop of [`read_at`] and [`write_at`]: calls `call(done, chunk, at)` (a `pread` or
/// `pwrite` of `chunk` bytes at file offset `at`, `done` bytes into the caller's memory)
/// until `len` bytes are moved, retrying on EINTR; a call that moves nothing fails with
/// `zero`.
fn transfer_at(
    len: u64,
    offset: u64,
    zero: io::ErrorKind,
    mut call: impl FnMut(usize, usize, libc::off_t) -> isize,
) -> io::Result<()> {
    let mut done = 0u64;
    while done < len {
        let chunk = self::len(len - done)?.min(1 << 30);
        let at = libc::off_t::try_from(off(offset + done)?)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        match call(done as usize, chunk, at) {
            -1 => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            0 => return Err(io::Error::from(zero)),
            n => done += n as u64,
        }
    }
    Ok(())
}

/// Zeroes `len` bytes of `fd` at `offset` by freeing their pages (both
/// multiples of the page size); reads then return zeros.
pub(crate) fn punch_hole(fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    Ok(rustix::fs::fallocate(
        fd,
        FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
        off(offset)?,
        off(len)?,
    )?)
}

/// Raises the soft limit on open files to the hard limit (each live
/// allocation holds one memfd open). Failure is harmless and ignored.
pub(crate) fn raise_open_file_limit() {
    let limit = rustix::process::getrlimit(Resource::Nofile);
    // `None` is RLIM_INFINITY, above every finite limit.
    let current = limit.current.unwrap_or(u64::MAX);
    let maximum = limit.maximum.unwrap_or(u64::MAX);
    if current < maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        let _ = rustix::process::setrlimit(Resource::Nofile, raised);
    }
}

/// The host's page size.
pub(crate) fn page_size() -> u64 {
    u64::try_from(rustix::param::page_size()).unwrap_or(4096)
}
