"""Peer figures for issue 19, measured beside cuda-vmm in the same lease.

python3 torch_release.py MODE   (MODE: expandable | native | async)

- cold pages: 8192 x 2 MiB tensors allocated into an empty cache (per page, the caller's time)
- warm pages: the same after freeing them into the cache
- write + drop of 2 MiB from the host, in a loop (what ordering/write_drop measures)
- free while a 50 ms kernel runs: `del` + `empty_cache()` (the memory really given back),
  the caller's time, and whether the kernel was still running when it returned
"""
import os
import sys
import time

mode = sys.argv[1] if len(sys.argv) > 1 else "expandable"
conf = {
    "expandable": "expandable_segments:True",
    "native": "expandable_segments:False",
    "async": "backend:cudaMallocAsync",
}[mode]
os.environ["PYTORCH_CUDA_ALLOC_CONF"] = conf
import torch  # noqa: E402

MIB = 1 << 20
dev = torch.device("cuda", 0)
torch.zeros(1, device=dev)
torch.cuda.synchronize()
print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}, PYTORCH_CUDA_ALLOC_CONF={conf}")

N = 8192
t = time.perf_counter()
pages = [torch.empty(2 * MIB, dtype=torch.uint8, device=dev) for _ in range(N)]
torch.cuda.synchronize()
cold = time.perf_counter() - t
del pages
t = time.perf_counter()
pages = [torch.empty(2 * MIB, dtype=torch.uint8, device=dev) for _ in range(N)]
torch.cuda.synchronize()
warm = time.perf_counter() - t
t = time.perf_counter()
del pages
torch.cuda.empty_cache()
torch.cuda.synchronize()
given_back = time.perf_counter() - t
print(f"cold pages: {N} x 2 MiB in {cold * 1e3:.1f} ms, {cold / N * 1e6:.2f} us/page")
print(f"warm pages (from the cache): {warm / N * 1e6:.2f} us/page")
print(f"del + empty_cache of {N} pages: {given_back * 1e3:.1f} ms, {given_back / N * 1e6:.2f} us/page")

host = torch.full((2 * MIB,), 0x5A, dtype=torch.uint8).pin_memory()
host_pageable = torch.full((2 * MIB,), 0x5A, dtype=torch.uint8)
for name, src in (("pageable", host_pageable), ("pinned", host)):
    times = []
    for _ in range(2000):
        t = time.perf_counter()
        x = torch.empty(2 * MIB, dtype=torch.uint8, device=dev)
        x.copy_(src)
        torch.cuda.synchronize()
        del x
        times.append(time.perf_counter() - t)
    times.sort()
    print(f"write + drop 2 MiB ({name} source, cached): median {times[len(times) // 2] * 1e6:.1f} us")

# Free while a kernel runs, the memory given back to the device.
cycles_per_ms = 1_980_000  # H200 SM clock about 1.98 GHz
times = []
running = []
for _ in range(10):
    a = torch.empty(4 * MIB, dtype=torch.uint8, device=dev)
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        torch.cuda._sleep(50 * cycles_per_ms)
        a.fill_(7)
    done = torch.cuda.Event()
    done.record(side)
    a.record_stream(side)
    t = time.perf_counter()
    del a
    torch.cuda.empty_cache()
    times.append(time.perf_counter() - t)
    running.append(not done.query())
    torch.cuda.synchronize()
times.sort()
print(
    f"del + empty_cache during a 50 ms kernel: median {times[len(times) // 2] * 1e6:.1f} us, "
    f"kernel still running on return in {sum(running)}/10"
)
