//! The simulator: threads.

use super::*;

#[test]
fn threads_reserve_create_map_and_copy_concurrently() {
    let _memory = crate::memory_shared();
    announce();
    let workers: Vec<_> = (0..6u8)
        .map(|id| {
            std::thread::spawn(move || {
                let ctx = Ctx::open(0);
                let g = granularity(0);
                for round in 0..25u8 {
                    let granules = 1 + usize::from((id + round) % 3);
                    let size = granules * g;
                    let va = reserve(size);
                    let h = create(size, &fd_prop(0)).expect("create");
                    ok(map(va, size, 0, h));
                    set_rw(va, size, ctx.dev);
                    let data = pattern_cycle(64 * 1024, id.wrapping_mul(31).wrapping_add(round));
                    let at = va + (size - data.len()) as u64;
                    ok(htod(at, &data));
                    assert_eq!(read(at, data.len()), data);
                    ok(unmap(va, size));
                    ok(release(h));
                    ok(address_free(va, size));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker thread");
    }
}
