//! Unit tests of the stream-ordered pools on a private `Sim`.

use cuda_vmm_sys::{
    CUmemAllocationHandleType as H, CUmemAllocationType, CUmemLocation, CUmemLocationType,
    CUmemPoolProps, CUmemPool_attribute as A, CUmemoryPool, CUstream,
};

use crate::model::answers;
use crate::model::pools::Value;
use crate::model::state::Sim;

use crate::model::work_tests::G;

/// The work tests' simulator and a stream of device 0.
fn sim(asynchronous: bool) -> (Sim, CUstream) {
    let mut sim = crate::model::work_tests::sim(asynchronous);
    let stream = sim.stream_create(0, 1).unwrap();
    (sim, stream)
}

fn wide(sim: &mut Sim, pool: CUmemoryPool, attr: A) -> u64 {
    match sim.pool_get_attribute(pool, attr).unwrap() {
        Value::Wide(v) => v,
        Value::Int(v) => panic!("{attr:?} answered an int {v}"),
    }
}

/// (reserved, used) of `pool`.
fn usage(sim: &mut Sim, pool: CUmemoryPool) -> (u64, u64) {
    (
        wide(sim, pool, A::CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT),
        wide(sim, pool, A::CU_MEMPOOL_ATTR_USED_MEM_CURRENT),
    )
}

fn props(device: i32) -> CUmemPoolProps {
    CUmemPoolProps {
        allocType: CUmemAllocationType::CU_MEM_ALLOCATION_TYPE_PINNED,
        location: CUmemLocation {
            type_: CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
            id: device,
        },
        ..Default::default()
    }
}

#[test]
fn freed_memory_stays_reserved_until_a_synchronisation() {
    let (mut sim, s) = sim(true);
    let pool = sim.default_pool(0).unwrap();
    assert_eq!(sim.current_pool(0).unwrap(), pool);
    let free = sim.free_bytes(0);
    let p = sim.pool_alloc(100, None, s).unwrap();
    assert_eq!(usage(&mut sim, pool), (G, 100));
    assert_eq!(sim.free_bytes(0), free - G);
    assert!(sim.resolve(p, 100, 0, true).is_ok());
    sim.pool_free(p, s).unwrap();
    assert_eq!(usage(&mut sim, pool), (G, 0));
    assert_eq!(
        sim.resolve(p, 1, 0, false).err(),
        Some(answers::COPY_UNMAPPED)
    );
    assert_eq!(sim.work.pending.len(), 1, "the free is queued");
    sim.stream_synchronize(s).unwrap();
    assert_eq!(usage(&mut sim, pool), (0, 0));
    assert_eq!(sim.free_bytes(0), free);
    assert_eq!(
        wide(&mut sim, pool, A::CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH),
        G
    );
    assert_eq!(wide(&mut sim, pool, A::CU_MEMPOOL_ATTR_USED_MEM_HIGH), 100);
}

#[test]
fn the_same_stream_reuses_a_pending_free_another_stream_does_not() {
    let (mut sim, s) = sim(true);
    let other = sim.stream_create(0, 1).unwrap();
    let pool = sim.default_pool(0).unwrap();
    let a = sim.pool_alloc(G, None, s).unwrap();
    sim.pool_free(a, s).unwrap();
    let b = sim.pool_alloc(G, None, other).unwrap();
    assert_ne!(a, b);
    let c = sim.pool_alloc(G, None, s).unwrap();
    assert_eq!(a, c);
    assert_eq!(usage(&mut sim, pool), (2 * G, 2 * G));
    sim.pool_free(b, other).unwrap();
    sim.pool_free(c, s).unwrap();
    // Synchronising one stream releases only what was freed on it.
    sim.stream_synchronize(other).unwrap();
    assert_eq!(usage(&mut sim, pool), (G, 0));
    sim.stream_synchronize(s).unwrap();
    assert_eq!(usage(&mut sim, pool), (0, 0));
}

#[test]
fn the_threshold_keeps_memory_and_trimming_releases_it() {
    let (mut sim, s) = sim(false);
    let pool = sim.default_pool(0).unwrap();
    let t = A::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD;
    sim.pool_set_attribute(pool, t, Value::Wide(u64::MAX))
        .unwrap();
    assert_eq!(wide(&mut sim, pool, t), u64::MAX);
    let a = sim.pool_alloc(3 * G, None, s).unwrap();
    let b = sim.pool_alloc(G, None, s).unwrap();
    sim.pool_free(a, s).unwrap();
    sim.pool_free(b, s).unwrap();
    sim.stream_synchronize(s).unwrap();
    assert_eq!(usage(&mut sim, pool), (4 * G, 0));
    // Reuse takes the smallest free block that fits.
    let c = sim.pool_alloc(G / 2, None, s).unwrap();
    assert_eq!(c, b);
    sim.pool_free_now(c).unwrap();
    sim.pool_trim(pool, 2 * G).unwrap();
    assert!(usage(&mut sim, pool).0 <= 2 * G);
    sim.pool_trim(pool, 0).unwrap();
    assert_eq!(usage(&mut sim, pool), (0, 0));
    assert_eq!(sim.free_bytes(0), 64 * G);
}

#[test]
fn attributes_refuse_what_the_driver_refuses() {
    let (mut sim, _) = sim(true);
    let pool = sim.default_pool(0).unwrap();
    let r = A::CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC;
    assert_eq!(sim.pool_get_attribute(pool, r), Ok(Value::Int(1)));
    sim.pool_set_attribute(pool, r, Value::Int(5)).unwrap();
    assert_eq!(sim.pool_get_attribute(pool, r), Ok(Value::Int(1)));
    sim.pool_set_attribute(pool, r, Value::Int(0)).unwrap();
    assert_eq!(sim.pool_get_attribute(pool, r), Ok(Value::Int(0)));
    let refused = [
        (A::CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT, 0),
        (A::CU_MEMPOOL_ATTR_USED_MEM_CURRENT, 0),
        (A::CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH, 5),
    ];
    for (attr, v) in refused {
        let got = sim.pool_set_attribute(pool, attr, Value::Wide(v));
        assert_eq!(got, Err(answers::POOL_READ_ONLY_ATTRIBUTE), "{attr:?}");
    }
    assert_eq!(
        sim.pool_get_attribute(pool, A(99)),
        Err(answers::POOL_BAD_ATTRIBUTE)
    );
    let bogus = core::ptr::null_mut();
    assert_eq!(sim.pool_trim(bogus, 0), Err(answers::POOL_BAD_HANDLE));
}

#[test]
fn created_pools_and_their_errors() {
    let (mut sim, s) = sim(true);
    let default = sim.default_pool(0).unwrap();
    assert_eq!(
        sim.pool_destroy(default),
        Err(answers::POOL_DESTROY_DEFAULT)
    );
    assert_eq!(sim.default_pool(7), Err(answers::DEFAULT_POOL_BAD_DEVICE));
    assert_eq!(sim.current_pool(7), Err(answers::MEM_POOL_BAD_DEVICE));
    let mut bad = props(0);
    bad.allocType = CUmemAllocationType::CU_MEM_ALLOCATION_TYPE_INVALID;
    assert_eq!(sim.pool_create(&bad), Err(answers::POOL_PROPS_BAD_TYPE));
    let mut bad = props(0);
    bad.location.type_ = CUmemLocationType::CU_MEM_LOCATION_TYPE_HOST;
    assert_eq!(sim.pool_create(&bad), Err(answers::POOL_PROPS_BAD_LOCATION));
    assert_eq!(
        sim.pool_create(&props(2)),
        Err(answers::POOL_PROPS_BAD_LOCATION)
    );
    let mut bad = props(0);
    bad.handleTypes = H(0x80);
    assert_eq!(sim.pool_create(&bad), Err(answers::POOL_PROPS_UNSUPPORTED));

    let mut limited = props(0);
    limited.maxSize = 2 * G as usize;
    let pool = sim.pool_create(&limited).unwrap();
    let other = sim.pool_create(&props(1)).unwrap();
    assert_eq!(
        sim.set_current_pool(0, other),
        Err(answers::SET_MEM_POOL_OTHER_DEVICE)
    );
    sim.set_current_pool(0, pool).unwrap();
    let a = sim.pool_alloc(G, None, s).unwrap();
    assert_eq!(usage(&mut sim, pool), (G, G));
    assert_eq!(usage(&mut sim, default), (0, 0));
    let b = sim.pool_alloc(G, Some(pool), s).unwrap();
    assert_eq!(
        sim.pool_alloc(1, Some(pool), s),
        Err(answers::POOL_OUT_OF_MEMORY)
    );
    // Destroyed with memory in use: the device goes back to its default pool,
    // and the memory is released when it is freed.
    sim.pool_destroy(pool).unwrap();
    assert_eq!(sim.current_pool(0).unwrap(), default);
    assert_eq!(sim.pool_trim(pool, 0), Err(answers::POOL_BAD_HANDLE));
    assert_eq!(sim.free_bytes(0), 62 * G);
    sim.pool_free(a, s).unwrap();
    sim.pool_free(b, s).unwrap();
    sim.stream_synchronize(s).unwrap();
    assert_eq!(sim.free_bytes(0), 64 * G);
    sim.pool_destroy(other).unwrap();
}

#[test]
fn sizes_and_pointers_the_driver_answers_specially() {
    let (mut sim, s) = sim(true);
    assert_eq!(sim.pool_alloc(0, None, s), Ok(0));
    assert_eq!(sim.pool_free(0, s), Ok(()));
    assert_eq!(sim.pool_free(0x1234, s), Err(answers::FREE_ASYNC_UNKNOWN));
    assert_eq!(
        sim.pool_alloc(65 * G, None, s),
        Err(answers::POOL_OUT_OF_MEMORY)
    );
    let p = sim.pool_alloc(G, None, s).unwrap();
    assert_eq!(sim.pool_free(p + 8, s), Err(answers::FREE_ASYNC_UNKNOWN));
    sim.pool_free(p, s).unwrap();
    assert_eq!(sim.pool_free(p, s), Err(answers::FREE_ASYNC_UNKNOWN));
    let classic = sim.alloc(0, G).unwrap();
    assert_eq!(
        sim.pool_free(classic, s),
        Err(answers::FREE_ASYNC_NOT_POOLED)
    );
    sim.free(classic).unwrap();
    // `cuMemFree_v2` of pool memory hands it back to the pool.
    let q = sim.pool_alloc(G, None, s).unwrap();
    sim.free(q).unwrap();
    let pool = sim.default_pool(0).unwrap();
    assert_eq!(usage(&mut sim, pool).1, 0);
    sim.stream_synchronize(s).unwrap();
    assert_eq!(usage(&mut sim, pool), (0, 0));
}
