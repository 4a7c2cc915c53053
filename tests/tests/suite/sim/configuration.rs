//! The simulator: configuration (own processes).

use super::*;

#[test]
fn configuration_by_builder() {
    let _memory = crate::memory_shared();
    announce();
    let out = run_own_process(&test_name!(builder_child), &[]);
    assert!(out.contains("builder: configured"), "{out}");
}

#[test]
#[ignore = "child process of configuration_by_builder"]
fn builder_child() {
    if !is_child(&test_name!(builder_child)) {
        return;
    }
    // Before cuInit: only the version and error strings work.
    let get_count = entry!(t(), cuDeviceGetCount).expect("count");
    let version = entry!(t(), cuDriverGetVersion).expect("version");
    let mut n = -1;
    // SAFETY: valid out-pointer.
    assert_eq!(unsafe { get_count(&mut n) }, answers::NOT_INITIALIZED);
    assert_eq!(cuda_vmm_sim::active_config(), None);

    let config = cuda_vmm_sim::SimConfig::new()
        .devices(3)
        .memory_per_device(1 << 30)
        .granularity(64 << 10)
        .driver_version(12080)
        .device_name("test gpu");
    assert_eq!(
        cuda_vmm_sim::configure(config.clone().granularity(3000))
            .expect_err("bad granularity")
            .to_string(),
        "invalid granularity `3000`: must be a power of two of at least the host page size 4096"
    );
    cuda_vmm_sim::configure(config.clone()).expect("configure before cuInit");
    let mut v = 0;
    // SAFETY: valid out-pointer.
    ok(unsafe { version(&mut v) });
    assert_eq!(v, 12080, "the version is known before cuInit");

    init();
    assert_eq!(
        cuda_vmm_sim::configure(config.clone()),
        Err(cuda_vmm_sim::ConfigError::AlreadyInitialized)
    );
    assert_eq!(cuda_vmm_sim::active_config(), Some(config));
    // SAFETY: valid out-pointer.
    ok(unsafe { get_count(&mut n) });
    assert_eq!(n, 3);
    let get_name = entry!(t(), cuDeviceGetName).expect("name");
    let mut buf = [0 as std::ffi::c_char; 64];
    // SAFETY: `buf` holds 64 bytes.
    ok(unsafe { get_name(buf.as_mut_ptr(), 64, 2) });
    // SAFETY: the simulator NUL-terminates within the buffer.
    assert_eq!(unsafe { CStr::from_ptr(buf.as_ptr()) }, c"test gpu");
    let total_mem = entry!(t(), cuDeviceTotalMem_v2).expect("total");
    let mut bytes = 0;
    // SAFETY: valid out-pointer.
    ok(unsafe { total_mem(&mut bytes, 2) });
    assert_eq!(bytes, 1 << 30);
    let get_dev = entry!(t(), cuDeviceGet).expect("device");
    let mut d = -1;
    // SAFETY: valid out-pointer.
    assert_eq!(unsafe { get_dev(&mut d, 3) }, answers::BAD_DEVICE);
    let _ctx = Ctx::open(2);
    assert_eq!(granularity(2), 64 << 10);
    println!("builder: configured");
}

#[test]
fn configuration_by_environment() {
    let _memory = crate::memory_shared();
    announce();
    let out = run_own_process(
        &test_name!(env_child),
        &[
            (cuda_vmm_sim::ENV_DEVICES, "2".into()),
            (cuda_vmm_sim::ENV_MEMORY, "3G".into()),
            (cuda_vmm_sim::ENV_GRANULARITY, "1M".into()),
            (cuda_vmm_sim::ENV_DRIVER_VERSION, "12090".into()),
        ],
    );
    assert!(out.contains("env: configured"), "{out}");
    run_own_process(
        &test_name!(bad_env_child),
        &[(cuda_vmm_sim::ENV_MEMORY, "lots".into())],
    );
    run_own_process(
        &test_name!(no_device_child),
        &[(cuda_vmm_sim::ENV_DEVICES, "0".into())],
    );
}

#[test]
#[ignore = "child process of configuration_by_environment"]
fn env_child() {
    if !is_child(&test_name!(env_child)) {
        return;
    }
    init();
    let config = cuda_vmm_sim::active_config().expect("initialised");
    assert_eq!(config.device_count(), 2);
    assert_eq!(config.memory(), 3 << 30);
    assert_eq!(config.allocation_granularity(), 1 << 20);
    assert_eq!(config.version(), 12090);
    let _ctx = Ctx::open(1);
    assert_eq!(granularity(1), 1 << 20);
    assert_eq!(mem_info(), (3 << 30, 3 << 30));
    println!("env: configured");
}

#[test]
#[ignore = "child process of configuration_by_environment"]
fn bad_env_child() {
    if !is_child(&test_name!(bad_env_child)) {
        return;
    }
    let f = entry!(t(), cuInit).expect("cuInit");
    // SAFETY: plain value.
    assert_eq!(unsafe { f(0) }, answers::INIT_BAD_CONFIG);
    assert_eq!(cuda_vmm_sim::active_config(), None);
}

#[test]
#[ignore = "child process of configuration_by_environment"]
fn no_device_child() {
    if !is_child(&test_name!(no_device_child)) {
        return;
    }
    let f = entry!(t(), cuInit).expect("cuInit");
    // SAFETY: plain value.
    assert_eq!(unsafe { f(0) }, answers::INIT_NO_DEVICE);
}
