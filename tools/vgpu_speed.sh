#!/usr/bin/env bash
# vgpu's speed in warp instructions per second on one GEMM launch (issue 18, part 4):
# tests/cuda_ops/speed.rs (`gemm_bias_gelu_f16`, 4097 x 3080 x 768) run on two vgpu builds
# in turn, twice each, with the same test binary, inputs and thread count. The instruction
# count is VGPU_PROFILE's (the same for both builds when they run the same kernel).
# Usage: tools/vgpu_speed.sh OLD_LIB_DIR [NEW_LIB_DIR]   (NEW: this tree's tools/vgpu/build.sh)
# VGPU_THREADS (default 1: one core, so a busy machine disturbs the numbers least).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
old="$1"
new="${2:-$(tools/vgpu/build.sh)}"
bin="$(cargo test --release --features cuda --test cuda_ops --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "cuda_ops":
        print(m["executable"])')"
run() {
    VGPU_THREADS="${VGPU_THREADS:-1}" VGPU_PROFILE=1 SAMRT_TEST_SEED=7 SAMRT_REQUIRE_GPU=1 \
        LD_LIBRARY_PATH="$1" "$bin" speed::vgpu_gemm_speed --ignored --exact --nocapture 2>&1
}
for round in 1 2; do
    for which in old new; do
        dir="$old"; [ "$which" = new ] && dir="$new"
        run "$dir" | python3 -c '
import re, sys
text = sys.stdin.read()
prof = [l for l in text.splitlines() if l.startswith("vgpu profile: gemm_bias_gelu_f16")]
ms = float(re.search(r"median_ms=([0-9.]+)", text).group(1))
instr = sum(int(n) for n in re.findall(r"=(\d+)", prof[-1].split("|")[1]))
print(f"{sys.argv[1]:>3}: {instr} warp instructions, median {ms:.0f} ms, "
      f"{instr / ms / 1e3:.2f} M warp instructions/s")' "$which"
    done
done
