#!/usr/bin/env bash
# Builds the release test and bench binaries and copies them, stripped, into .gpu/
# (git-ignored) so they can be carried to a GPU machine that has no Rust toolchain.
#   scripts/gpu-bundle.sh   # then pass carry [".gpu"]; on the GPU machine: .gpu/run-tests.sh,
#                           # .gpu/run-benches.sh PART growth teardown ... (see scripts/gpu-run-*.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
out=.gpu
rm -rf "$out" && mkdir -p "$out"
collect() {
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        kinds = m["target"]["kind"]
        print(m["target"]["name"], ",".join(kinds), m["executable"])
'
}
{
    cargo test --workspace --release --all-features --no-run --message-format=json 2>/dev/null
    cargo bench -p cuda-vmm-benches --no-run --message-format=json 2>/dev/null
} | collect | sort -u | while read -r name kind exe; do
    dest="$out/${kind}-${name}"
    cp "$exe" "$dest" && strip "$dest"
done
cargo build --release -p cuda-vmm-alloc --example tour 2>/dev/null
cp target/release/examples/tour "$out/tour" && strip "$out/tour"
cp target/release/deps/libcuda_vmm_sim.so "$out/" 2>/dev/null || true
# The suite under its plain name, and the scripts that run things there.
if [ -f "$out/test-suite" ]; then mv "$out/test-suite" "$out/suite"; fi
cp scripts/gpu-run-tests.sh "$out/run-tests.sh"
cp scripts/gpu-run-benches.sh "$out/run-benches.sh"
du -sh "$out"; ls "$out"
