#!/usr/bin/env bash
# Runs on the GPU machine, from the repository root, after scripts/gpu-bundle.sh copied it to
# .gpu/run-tests.sh: the whole suite on the real driver (arguments go to the test binary,
# e.g. `multi_gpu --nocapture`).
set -u
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
exec .gpu/suite "$@"
