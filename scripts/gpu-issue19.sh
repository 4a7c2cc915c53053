#!/usr/bin/env bash
# Issues 19 and 23 on the GPU (on the device machine, after scripts/gpu-bundle.sh; carry .gpu):
# the suite, the queue and hook tests with their output, the examples, the page-cost raw loop,
# the peers (PyTorch), and the release and ordering benches.
#   scripts/gpu-issue19.sh [tests] [examples] [peers] [benches]   (default: all)
set -u
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}
out=${OUT:-.gpu/out}
mkdir -p "$out"
parts=${*:-tests examples peers benches}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
has() { case " $parts " in *" $1 "*) return 0 ;; esac; return 1; }
if has tests; then
    timeout 240 .gpu/suite --test-threads 4 > "$out/suite.log" 2>&1
    echo "suite rc=$?"
    grep -E "backend:|^test result|FAILED|panicked" "$out/suite.log" | head -12
    timeout 120 .gpu/suite release_queue hooks budget --nocapture --test-threads 1 \
        > "$out/queue.log" 2>&1
    echo "queue/hooks/budget rc=$?"
    grep -E "^test |decommit|drop|threads|queue|^test result" "$out/queue.log" | head -40
fi
if has examples; then
    timeout 200 .gpu/example-kv_cache > "$out/kv_cache.log" 2>&1
    echo "kv_cache rc=$?"
    cat "$out/kv_cache.log"
    timeout 60 .gpu/example-shared_buffer > "$out/shared_buffer.log" 2>&1
    echo "shared_buffer rc=$?"
    tail -4 "$out/shared_buffer.log"
fi
if has peers; then
    gcc -O2 scripts/experiments/page_costs.c -I/usr/local/cuda/include -lcuda -o /tmp/pc \
        && /tmp/pc > "$out/page_costs.txt" 2>&1
    cat "$out/page_costs.txt"
    nvcc -O2 -o /tmp/sp scripts/experiments/slab_pages.cu -lcuda && /tmp/sp > "$out/slab_pages.txt" 2>&1
    cat "$out/slab_pages.txt"
    for mode in expandable native async; do
        timeout 120 python3 scripts/peers/torch_release.py $mode 2>&1 | tee "$out/torch_$mode.txt"
    done
fi
if has benches; then
    .gpu/run-benches.sh release release:200 ordering:120
    grep -E "^release|^ordering|time:|release worker" "$out/release.log"
fi
