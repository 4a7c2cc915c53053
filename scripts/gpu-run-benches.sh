#!/usr/bin/env bash
# Runs on the GPU machine (no Rust there), from the repository root, after
# scripts/gpu-bundle.sh copied it to .gpu/run-benches.sh:
#   .gpu/run-benches.sh PART NAME[:SECONDS] [NAME[:SECONDS]...]
# runs the bench binaries .gpu/bench-NAME (or .gpu/NAME) (e.g. growth:330 teardown prefetch) with one
# CUDA_VMM_BENCH_SESSION, logs to $OUT/PART.log and packs criterion's estimates and the side
# files into $OUT/criterion-PART.tgz for `cargo xtask bench-report --criterion DIR` here.
set -u
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}
export CUDA_VMM_BENCH_SESSION=${CUDA_VMM_BENCH_SESSION:-gpu-run}
out=${OUT:-.gpu/out}
mkdir -p "$out"
part=$1
shift
log=$out/$part.log
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$log"
for spec in "$@"; do
    name=${spec%%:*}
    secs=${spec#*:}
    [ "$secs" = "$spec" ] && secs=300
    start=$SECONDS
    echo "=== $name (limit ${secs}s) $(date -u +%T)" | tee -a "$log"
    exe=.gpu/bench-$name
    [ -x "$exe" ] || exe=.gpu/$name
    timeout "$secs" "$exe" --bench >>"$log" 2>&1
    echo "=== $name rc=$? $((SECONDS - start)) s" | tee -a "$log"
done
(cd target && find criterion -name estimates.json -path '*/new/*' -o -name benchmark.json \
    -path '*/new/*' -o -name 'cuda-vmm-*.json' | tar czf "$out/criterion-$part.tgz" -T -)
