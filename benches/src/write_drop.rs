//! The write + drop loop of the ordering and release benches: a buffer created, 2 MiB
//! written from the host, dropped; and its raw floor.

use cuda_vmm::{Device, UnmapWait};
use cuda_vmm_alloc::GrowableBuffer;

use crate::{Raw, MIB};

/// The reserved size of each buffer.
const RESERVED: usize = 64 * MIB;

/// One iteration through the library under `policy`.
pub fn write_drop(device: &Device, data: &[u8], policy: UnmapWait) {
    let mut buf = GrowableBuffer::<u8>::with_max_capacity(device, RESERVED).expect("buffer");
    // SAFETY: the only device work on the buffer is the library's synchronous copy,
    // complete before `extend_from_slice` returns.
    unsafe { buf.set_unmap_wait(policy) };
    buf.extend_from_slice(data).expect("write");
    drop(buf);
}

/// What the library commits for `data` (the raw floor maps as much).
pub fn write_drop_committed(device: &Device, data: &[u8]) -> usize {
    let mut buf = GrowableBuffer::<u8>::with_max_capacity(device, RESERVED).expect("buffer");
    buf.extend_from_slice(data).expect("write");
    buf.committed_bytes()
}

/// One iteration of the raw floor: the same driver calls through the raw table, with the
/// buffer's committed size, the copy made safe the raw way (`cuCtxSynchronize` before the
/// unmap). The device's context must be current.
pub fn raw_write_drop(raw: &Raw, committed: usize, data: &[u8]) {
    let range = raw.range_in(RESERVED, committed);
    range.map();
    range.set_access();
    raw.write_synced(range.ptr(), data);
    drop(range);
}
