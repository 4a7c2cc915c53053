//! The simulator: aliasing and lifetime.

use super::*;

#[test]
fn two_mappings_of_one_allocation_alias() {
    let (_memory, ctx, g) = open_device0();
    let h = create(2 * g, &fd_prop(0)).expect("create");
    let (a, b) = (reserve(2 * g), reserve(2 * g));
    ok(map(a, 2 * g, 0, h));
    ok(map(b, 2 * g, 0, h));
    for va in [a, b] {
        set_rw(va, 2 * g, ctx.dev);
    }

    // A copy into one mapping reads back through the other and through the host pointer.
    let data = pattern_cycle(3 * MIB, 7);
    ok(htod(a + 1000, &data));
    assert_eq!(read(b + 1000, data.len()), data);
    // SAFETY: `[a, a + 2g)` is mapped read-write until the unmap below.
    let host_a = unsafe { std::slice::from_raw_parts(a as *const u8, 2 * g) };
    assert_eq!(&host_a[1000..1000 + data.len()], &data[..]);

    // A host write through `b` is seen through `a`.
    // SAFETY: `[b, b + 2g)` is mapped read-write; no Rust reference points into it.
    unsafe { (b as *mut u8).add(g + 5).write_volatile(0xAB) };
    assert_eq!(read(a + (g + 5) as u64, 1), [0xAB]);

    for va in [a, b] {
        ok(unmap(va, 2 * g));
        ok(address_free(va, 2 * g));
    }
    ok(release(h));
}

/// One granule `g` of device 0 with the fd handle type, mapped (no access yet) in a
/// reservation of its own: `(handle, address)`.
fn mapped_granule(g: usize) -> (CUmemGenericAllocationHandle, CUdeviceptr) {
    let h = create(g, &fd_prop(0)).expect("create");
    let va = reserve(g);
    ok(map(va, g, 0, h));
    (h, va)
}

#[test]
fn release_while_mapped_keeps_the_memory_until_unmap() {
    let (_memory, ctx, g) = open_device0();
    let (h, va) = mapped_granule(g);
    set_rw(va, g, ctx.dev);
    let data = pattern_cycle(g, 42);
    ok(htod(va, &data));

    ok(release(h));
    // The handle is gone, the memory is not.
    assert_eq!(release(h), answers::UNKNOWN_HANDLE);
    assert_eq!(map(va, g, 0, h), answers::UNKNOWN_HANDLE);
    assert_eq!(read(va, g), data);

    // The mapping still yields a (new reference to the) handle.
    // The address is mapped.
    let again = ok_out(bare::mem_retain_allocation_handle(api(), va + 7));
    assert_eq!(again, h);
    ok(release(again));

    ok(unmap(va, g));
    assert_eq!(dtoh(&mut [0u8; 4], va), answers::COPY_UNMAPPED);
    assert_eq!(release(h), answers::UNKNOWN_HANDLE);
    ok(address_free(va, g));
}

#[test]
fn read_only_access_allows_reads_and_refuses_writes() {
    let (_memory, ctx, g) = open_device0();
    let (h, va) = mapped_granule(g);
    // Mapped but no access yet: copies fail without faulting.
    assert_eq!(htod(va, &[1, 2, 3]), answers::COPY_NO_ACCESS);
    set_rw(va, g, ctx.dev);
    ok(htod(va, &[1, 2, 3]));
    ok(set_access(
        va,
        g,
        ctx.dev,
        CUmemAccess_flags::CU_MEM_ACCESS_FLAGS_PROT_READ,
    ));
    assert_eq!(read(va, 3), [1, 2, 3]);
    // SAFETY: the page is mapped with read access.
    assert_eq!(unsafe { (va as *const u8).add(1).read_volatile() }, 2);
    assert_eq!(htod(va, &[9]), answers::COPY_NO_ACCESS);
    assert_eq!(read(va, 1), [1]);
    ok(unmap(va, g));
    ok(release(h));
    ok(address_free(va, g));
}
