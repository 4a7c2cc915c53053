//! The operating-system layer: memfds, address-space reservations, protections, file I/O.
//!
//! Every system call the simulator makes is here, each wrapped to return
//! `io::Result`. Functions that change the process's address space are `unsafe`:
//! their callers must own the range (it lies in a reservation the simulator made).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

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
    fn bits(self) -> libc::c_int {
        match self {
            Prot::None => libc::PROT_NONE,
            Prot::Read => libc::PROT_READ,
            Prot::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
        }
    }
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn len(size: u64) -> io::Result<usize> {
    usize::try_from(size).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn off(offset: u64) -> io::Result<libc::off_t> {
    libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// A new memfd of `size` bytes (pages are allocated only when written).
pub(crate) fn memfd(size: u64) -> io::Result<OwnedFd> {
    // SAFETY: the name is a valid NUL-terminated string; the call has no other inputs.
    let fd = unsafe { libc::memfd_create(MEMFD_NAME.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by no one else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ftruncate on an fd we own; no memory is passed.
    check(unsafe { libc::ftruncate(fd.as_raw_fd(), off(size)?) })?;
    Ok(fd)
}

/// Size of an open regular file, or an error when `fd` is not one.
pub(crate) fn regular_file_size(fd: RawFd) -> io::Result<u64> {
    let mut st = core::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a `struct stat` to the pointer, which has room for one;
    // an invalid fd makes it fail with EBADF without touching memory.
    check(unsafe { libc::fstat(fd, st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded, so it initialised the structure.
    let st = unsafe { st.assume_init() };
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    u64::try_from(st.st_size).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Whether `fd` is a memfd this simulator created (in any process).
pub(crate) fn is_simulator_memfd(fd: RawFd) -> bool {
    match std::fs::read_link(format!("/proc/self/fd/{fd}")) {
        Ok(target) => target
            .to_string_lossy()
            .starts_with(&format!("/memfd:{}", MEMFD_NAME.to_string_lossy())),
        // Without /proc, trust fstat's checks.
        Err(_) => true,
    }
}

/// `(device, inode)` identity of an open file.
pub(crate) fn file_identity(fd: RawFd) -> Option<(u64, u64)> {
    let mut st = core::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: as in `regular_file_size`.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: fstat succeeded.
    let st = unsafe { st.assume_init() };
    Some((st.st_dev, st.st_ino))
}

/// Reserves `size` bytes of inaccessible address space aligned to `align`,
/// at `hint` when that range is free.
pub(crate) fn reserve(hint: u64, size: u64, align: u64) -> io::Result<u64> {
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    let n = len(size)?;
    if hint != 0 && hint % align == 0 {
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping; it
        // fails (or, on old kernels, picks another address) instead.
        let p = unsafe {
            libc::mmap(
                hint as *mut libc::c_void,
                n,
                libc::PROT_NONE,
                flags | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        if p != libc::MAP_FAILED {
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
        libc::mmap(
            core::ptr::null_mut(),
            len(padded)?,
            libc::PROT_NONE,
            flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
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
        libc::mmap(
            addr as *mut libc::c_void,
            len(size)?,
            libc::PROT_NONE,
            libc::MAP_PRIVATE
                | libc::MAP_ANONYMOUS
                | libc::MAP_NORESERVE
                | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
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
        libc::mmap(
            core::ptr::null_mut(),
            len(size)?,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(p as u64)
}

/// Returns a range to the operating system.
///
/// # Safety
/// The range must be owned by the simulator and referenced by nothing else.
pub(crate) unsafe fn release(addr: u64, size: u64) -> io::Result<()> {
    // SAFETY: the caller owns the range.
    check(unsafe { libc::munmap(addr as *mut libc::c_void, len(size)?) })
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
    let p = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            len(size)?,
            prot.bits(),
            libc::MAP_SHARED | libc::MAP_FIXED,
            fd.as_raw_fd(),
            off(offset)?,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Puts inaccessible reserved pages back over `[addr, addr + size)`.
///
/// # Safety
/// As for [`map_shared`].
pub(crate) unsafe fn unmap_to_reserved(addr: u64, size: u64) -> io::Result<()> {
    // SAFETY: the caller owns the range; the fresh anonymous PROT_NONE mapping
    // replaces the file mapping atomically, so the range stays reserved.
    let p = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            len(size)?,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Changes the protection of `[addr, addr + size)`.
///
/// # Safety
/// As for [`map_shared`].
pub(crate) unsafe fn protect(addr: u64, size: u64, prot: Prot) -> io::Result<()> {
    // SAFETY: the caller owns the range.
    check(unsafe { libc::mprotect(addr as *mut libc::c_void, len(size)?, prot.bits()) })
}

/// Reads `len` bytes of `fd` at `offset` into `dst`.
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
    let mut done = 0u64;
    while done < len {
        let chunk = self::len(len - done)?.min(1 << 30);
        // SAFETY: the caller vouches for `dst..dst+len`; the kernel checks the pages.
        let n = unsafe {
            libc::pread(
                fd.as_raw_fd(),
                dst.wrapping_add(done as usize).cast(),
                chunk,
                off(offset + done)?,
            )
        };
        match n {
            -1 => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            0 => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            n => done += n as u64,
        }
    }
    Ok(())
}

/// Writes `len` bytes from `src` to `fd` at `offset`.
///
/// # Safety
/// `src` must be valid for `len` byte reads or unmapped (EFAULT).
pub(crate) unsafe fn write_at(
    fd: BorrowedFd<'_>,
    src: *const u8,
    len: u64,
    offset: u64,
) -> io::Result<()> {
    let mut done = 0u64;
    while done < len {
        let chunk = self::len(len - done)?.min(1 << 30);
        // SAFETY: the caller vouches for `src..src+len`; the kernel checks the pages.
        let n = unsafe {
            libc::pwrite(
                fd.as_raw_fd(),
                src.wrapping_add(done as usize).cast(),
                chunk,
                off(offset + done)?,
            )
        };
        match n {
            -1 => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            0 => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            n => done += n as u64,
        }
    }
    Ok(())
}

/// Zeroes `len` bytes of `fd` at `offset` by freeing their pages (both
/// multiples of the page size); reads then return zeros.
pub(crate) fn punch_hole(fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    // SAFETY: fallocate on an fd the caller holds; no memory is passed.
    check(unsafe {
        libc::fallocate(
            fd.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            off(offset)?,
            off(len)?,
        )
    })
}

/// Raises the soft limit on open files to the hard limit (each live
/// allocation holds one memfd open). Failure is harmless and ignored.
pub(crate) fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` to a valid pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit reads one `rlimit` from a valid pointer.
        let _ = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    }
}

/// The host's page size.
pub(crate) fn page_size() -> u64 {
    // SAFETY: sysconf has no memory arguments.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(n).unwrap_or(4096)
}
