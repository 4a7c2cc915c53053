"""PyTorch's realloc-doubling growth to 16 GiB by 2 MiB appends, the peer of
`growth/growable_cached/16GiB`: `torch.empty` of twice the capacity + `copy_` of the live
bytes, through PyTorch's caching allocator. Prints the median of the timed passes warm
(the cache holds the previous pass's blocks) and after `torch.cuda.empty_cache()`, with
the peak reserved memory. Run once per allocator setting, e.g.
`PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True python3 torch_growth.py`.
"""

import json
import os
import statistics
import time

import torch

SIZE = 16 << 30
STEP = 2 << 20
PASSES = int(os.environ.get("PASSES", "7"))


def grow():
    torch.cuda.synchronize()
    start = time.perf_counter()
    buf, cap, n = None, 0, 0
    first = None
    while n < SIZE:
        need = n + STEP
        if need > cap:
            grown = max(2 * cap, need)
            nxt = torch.empty(grown, dtype=torch.uint8, device="cuda")
            if buf is not None:
                nxt[:n].copy_(buf[:n])
            buf, cap = nxt, grown
            first = first or buf.data_ptr()
        n = need
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    moved = buf.data_ptr() != first
    del buf
    return elapsed, moved


def main():
    conf = os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "default")
    grow()  # untimed: fills the cache
    warm = []
    for _ in range(PASSES):
        warm.append(grow()[0])
    torch.cuda.reset_peak_memory_stats()
    cold = []
    for _ in range(PASSES):
        torch.cuda.empty_cache()
        elapsed, moved = grow()
        cold.append(elapsed)
    print(json.dumps({
        "peer": "torch_realloc_doubling",
        "torch": torch.__version__,
        "alloc_conf": conf,
        "size_bytes": SIZE,
        "warm_median_ms": statistics.median(warm) * 1e3,
        "after_empty_cache_median_ms": statistics.median(cold) * 1e3,
        "peak_reserved_over_size": torch.cuda.max_memory_reserved() / SIZE,
        "pointer_moved": moved,
    }))


if __name__ == "__main__":
    main()
