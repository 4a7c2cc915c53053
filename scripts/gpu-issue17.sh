#!/usr/bin/env bash
# Issue 17's GPU run (on the device machine, after scripts/gpu-bundle.sh; carry .gpu):
# the staging experiment, the suite twice in a row, and the copies bench.
set -u
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}
out=${OUT:-.gpu/out}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
gcc -O2 scripts/experiments/staging_chunks.c -I/usr/local/cuda/include -lcuda -o /tmp/sc \
    && /tmp/sc > "$out/staging_chunks.txt" 2>&1
.gpu/suite safe::backend_version_and_devices --nocapture 2>&1 | grep -i backend | head -3
for i in 1 2; do
    timeout 240 .gpu/suite --test-threads 4 > "$out/suite$i.log" 2>&1
    echo "suite run $i rc=$?"
    grep -E "^test result|FAILED|panicked" "$out/suite$i.log" | head -8
done
CUDA_VMM_BENCH_SESSION=copies timeout 200 .gpu/bench-copies --bench > "$out/copies.log" 2>&1
grep -E "^copies|time:" "$out/copies.log"
cat "$out/staging_chunks.txt"
