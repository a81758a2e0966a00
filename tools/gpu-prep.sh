#!/usr/bin/env bash
# Run here (no GPU needed) before a session's GPU calls: builds the CUDA binaries and puts
# everything the device machine needs into gpu-carry/ (git-ignored), so one `run` call with
# carry ["gpu-carry"] and command `bash tools/gpu-run.sh` does the whole GPU check.
#   gpu-carry/bin/samrt            the CLI built with --features cuda
#   gpu-carry/bin/<test>-<hash>    the tests that need a GPU (tests/cuda_*), stripped
# The tracked tree (fixtures included) is about 44 MB of the 64 MiB a call may carry, so
# only what needs the GPU travels; the other tests run here.
#   gpu-carry/whl/                 the segment_anything wheel (the GPU image lacks it)
# The modelled side of gpu-run.sh's `samrt profile` comparison is not made here: it is the
# committed bench/results/*-profile-model-vit_b.json (a vit_b encode on vgpu takes about
# half an hour; docs/kernels.md, "The H100 model", has the command to remake it).
set -euo pipefail
cd "$(dirname "$0")/.."
NVCC="${NVCC:-$(bash tools/install-nvcc.sh | tail -n 1)}"
export NVCC
rm -rf gpu-carry && mkdir -p gpu-carry/bin gpu-carry/whl
# Test binaries find fixtures and the CLI through the build-time CARGO_MANIFEST_DIR.
pwd > gpu-carry/ROOT
cargo build --release --features cuda
cp target/release/samrt gpu-carry/bin/
cargo test --release --features cuda --no-run --message-format=json 2>/dev/null |
  python3 -c '
import json, shutil, sys
for line in sys.stdin:
    m = json.loads(line)
    t = m.get("target", {})
    if (m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]
            and t.get("name", "").startswith("cuda")):
        shutil.copy(m["executable"], "gpu-carry/bin/")
        print("test binary:", m["executable"])
'
strip gpu-carry/bin/* 2>/dev/null || true
python3 -m pip download -q --no-deps --only-binary=:all: -d gpu-carry/whl segment-anything==1.0
du -sh gpu-carry
