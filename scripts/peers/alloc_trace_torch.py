"""The serving allocation trace (tests/src/alloc_trace.rs) replayed through PyTorch's caching
allocator: the peer figure of the caching allocator's benchmark.

    python3 scripts/peers/alloc_trace_torch.py target/criterion/alloc-trace-1.txt [replays]
    PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True python3 scripts/peers/alloc_trace_torch.py ...

A free after a use on another stream calls `record_stream` on that stream first. Prints, per
replay, microseconds per operation, the Python loop alone (the same loop with no allocation),
and the peak reserved bytes over the trace's peak requested bytes.
"""
import os
import sys
import time

import torch


def load(path):
    ops = []
    with open(path) as f:
        for line in f:
            p = line.split()
            if p[0] == "a":
                ops.append((True, int(p[1]), int(p[2]), int(p[3])))
            else:
                ops.append((False, int(p[1]), 0, -1 if p[2] == "-" else int(p[2])))
    return ops


def main():
    ops = load(sys.argv[1])
    replays = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    streams_n = 1 + max(op[3] for op in ops)
    live = peak = 0
    sizes = {}
    for is_alloc, i, size, _ in ops:
        if is_alloc:
            sizes[i] = size
            live += size
            peak = max(peak, live)
        else:
            live -= sizes[i]
    streams = [torch.cuda.Stream() for _ in range(streams_n)]
    conf = os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "default")
    for r in range(replays):
        torch.cuda.reset_peak_memory_stats()
        live_t = {}
        current = None
        t0 = time.perf_counter()
        for is_alloc, i, size, s in ops:
            if is_alloc:
                if s != current:
                    torch.cuda.set_stream(streams[s])
                    current = s
                live_t[i] = torch.empty(size, dtype=torch.uint8, device="cuda")
            else:
                t = live_t.pop(i)
                if s >= 0:
                    t.record_stream(streams[s])
                del t
        elapsed = time.perf_counter() - t0
        torch.cuda.synchronize()
        high = torch.cuda.max_memory_reserved()
        # The loop alone: the same dictionary work with no allocation.
        t0 = time.perf_counter()
        d = {}
        for is_alloc, i, size, s in ops:
            if is_alloc:
                if s != current:
                    current = s
                d[i] = size
            else:
                d.pop(i)
        loop = time.perf_counter() - t0
        print(
            f"torch {torch.__version__} ({conf}) replay {r} ({'cold' if r == 0 else 'warm'}): "
            f"{elapsed * 1e6 / len(ops):.3f} us/op (loop alone {loop * 1e6 / len(ops):.3f}), "
            f"peak reserved {high} / peak requested {peak} = {high / peak:.4f}"
        )


if __name__ == "__main__":
    main()
