#!/usr/bin/env bash
# Runs on the GPU machine (see tools/gpu-prep.sh): device facts, every test binary (the
# CUDA kernel tests compare with the CPU references there), compute-sanitizer on the kernel
# tests, samrt bench, samrt profile measured vs modelled, and the PyTorch baselines. Logs
# and JSON land in $OUT.
set -uo pipefail
OUT="${OUT:-/tmp/gpu-out}"; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
# A CUDA test that cannot find the GPU fails here instead of skipping.
export SAMRT_REQUIRE_GPU=1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/nvidia-smi.csv"
# The test binaries look for tests/fixtures and target/release/samrt under the directory
# they were built in: point that path at this copy of the tree.
root="$(cat gpu-carry/ROOT)"
if [ "$root" != "$PWD" ] && [ ! -e "$root" ]; then
  mkdir -p "$(dirname "$root")" && ln -s "$PWD" "$root"
fi
mkdir -p target/release && cp gpu-carry/bin/samrt target/release/samrt
status=0
for t in gpu-carry/bin/*-*; do
  [ -x "$t" ] || continue
  name="$(basename "$t")"
  echo "== $name"
  extra=""
  # The full-size vit_b encoder parity test is #[ignore]d on vgpu (hours); here it is seconds.
  case "$name" in cuda_encoder-*) extra="--include-ignored" ;; esac
  "$t" --nocapture $extra > "$OUT/test-$name.log" 2>&1 || { echo "FAILED: $name"; status=1; }
  tail -n 3 "$OUT/test-$name.log"
done
# On Hopper the pass above ran the *_sm90a (wgmma) kernels; the portable mma.sync build's op
# rows run here too (SAMRT_CUDA_ARCH=sm_80: the GEMMs, the conv and the encoder attention).
if nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | grep -q '^9\.0'; then
  for kt in gpu-carry/bin/cuda_ops-*; do
    [ -x "$kt" ] || continue
    SAMRT_CUDA_ARCH=sm_80 "$kt" --nocapture gemm conv3x3 attn_relpos \
      > "$OUT/test-sm80-$(basename "$kt").log" 2>&1 || { echo "FAILED: sm_80 rows"; status=1; }
    tail -n 3 "$OUT/test-sm80-$(basename "$kt").log"
  done
fi
# compute-sanitizer on the kernel test binary, every op's table rows and launch checks
# (memcheck and racecheck).
if command -v compute-sanitizer >/dev/null; then
  for kt in gpu-carry/bin/cuda_ops-*; do
    [ -x "$kt" ] || continue
    kn="$(basename "$kt")"
    for tool in memcheck racecheck; do
      compute-sanitizer --tool "$tool" --error-exitcode 9 "$kt" > "$OUT/sanitizer-$tool-$kn.log" 2>&1 \
        || { echo "compute-sanitizer $tool $kn: FAILED"; status=1; }
      tail -n 2 "$OUT/sanitizer-$tool-$kn.log"
    done
  done
fi
# samrt bench on the GPU: the image encoder (CUDA events around graph replays, each kernel,
# planned peak device memory) for vit_b/l/h at batch 1 and 8, and the decoder (one point end
# to end to the 1500x2250 original; 64 single-point prompts, and 1,024 for vit_b), merged
# into one results file.
for m in vit_b vit_l vit_h; do
  for b in 1 8; do
    gpu-carry/bin/samrt bench --device cuda --model "$m" --batch "$b" --iters 20 --prompts 64 \
      --json > "$OUT/samrt-bench-$m-b$b.json" 2> "$OUT/samrt-bench-$m-b$b.log" \
      || { echo "samrt bench $m batch $b: FAILED"; status=1; }
  done
done
gpu-carry/bin/samrt bench --device cuda --model vit_b --iters 20 --prompts 1024 --json \
  > "$OUT/samrt-bench-vit_b-p1024.json" 2> "$OUT/samrt-bench-vit_b-p1024.log" \
  || { echo "samrt bench vit_b 1024 prompts: FAILED"; status=1; }
python3 - "$OUT" <<'PY' || status=1
import glob, json, os, re, sys
out = sys.argv[1]
runs = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(out, "samrt-bench-*.json")))
        if os.path.getsize(f) > 0]
if runs:
    merged = dict(runs[0]); merged["results"] = [r for run in runs for r in run["results"]]
    merged["command"] = "; ".join(run["command"] for run in runs)
    gpu = re.sub(r"[^a-z0-9]+", "-", merged["device"].lower().replace("gpu: ", "")).strip("-")
    path = os.path.join(out, f"{merged['date']}-{gpu}.json")
    json.dump(merged, open(path, "w"), indent=1)
    print("results:", path)
PY
# samrt profile on the GPU: every encoder kernel's time (CUDA events around each node,
# median of 10) next to the H100 model's time for the same kernels, which vgpu produced
# here ahead of time (bench/results/*-profile-model-vit_b.json, the command is in
# docs/kernels.md, "The H100 model"); tools/profile_compare.py joins them per kernel into
# <date>-<gpu>-profile-vs-model.json for bench/results: the model's calibration.
gpu-carry/bin/samrt profile --device cuda --model vit_b --component encoder --json \
  > "$OUT/samrt-profile-vit_b.json" 2> "$OUT/samrt-profile-vit_b.log" \
  || { echo "samrt profile vit_b: FAILED"; status=1; }
# The portable build's kernels too (on Hopper the run above timed the wgmma ones), against
# bench/results/*-profile-model-vit_b-sm80.json, and its encoder through samrt bench.
SAMRT_CUDA_ARCH=sm_80 gpu-carry/bin/samrt profile --device cuda --model vit_b --component encoder \
  --json > "$OUT/samrt-profile-vit_b-sm80.json" 2> "$OUT/samrt-profile-vit_b-sm80.log" \
  || { echo "samrt profile vit_b sm_80: FAILED"; status=1; }
SAMRT_CUDA_ARCH=sm_80 gpu-carry/bin/samrt bench --device cuda --model vit_b --batch 1 --iters 20 \
  --prompts 64 --json > "$OUT/bench-sm80-vit_b-b1.json" 2> "$OUT/bench-sm80-vit_b-b1.log" \
  || { echo "samrt bench vit_b sm_80: FAILED"; status=1; }
# The decoder's kernels, measured: one point (bucket 1) and the 64 bucket that 1,024
# prompts replay 16 times.
for n in 1 64; do
  gpu-carry/bin/samrt profile --device cuda --model vit_b --component decoder --prompts "$n" \
    --json > "$OUT/samrt-profile-decoder-vit_b-p$n.json" 2> "$OUT/samrt-profile-decoder-p$n.log" \
    || { echo "samrt profile decoder $n prompts: FAILED"; status=1; }
done
# The GPU's name as a file-name part ("NVIDIA H100 80GB HBM3" -> nvidia-h100-80gb-hbm3).
gpu="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1 | tr '[:upper:]' '[:lower:]' \
  | tr -cs 'a-z0-9' '-' | sed 's/^-//; s/-$//')"
modelled="$(ls bench/results/*-profile-model-vit_b.json 2>/dev/null | sort | tail -n 1)"
if [ -s "$OUT/samrt-profile-vit_b.json" ] && [ -n "$modelled" ]; then
  python3 tools/profile_compare.py "$OUT/samrt-profile-vit_b.json" "$modelled" \
    > "$OUT/$(date -u +%F)-$gpu-profile-vs-model.json" || status=1
  python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["total"]; print("profile vit_b: measured", t["measured_us"], "us, modelled", t["modelled_us"], "us")' \
    "$OUT/$(date -u +%F)-$gpu-profile-vs-model.json" || status=1
fi
modelled80="$(ls bench/results/*-profile-model-vit_b-sm80.json 2>/dev/null | sort | tail -n 1)"
if [ -s "$OUT/samrt-profile-vit_b-sm80.json" ] && [ -n "$modelled80" ]; then
  python3 tools/profile_compare.py "$OUT/samrt-profile-vit_b-sm80.json" "$modelled80" \
    > "$OUT/$(date -u +%F)-$gpu-profile-vs-model-sm80.json" || status=1
fi
if [ "${SKIP_TORCH:-0}" != 1 ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site gpu-carry/whl/*.whl && export PYTHONPATH=/tmp/site
  python3 tools/bench_torch.py --device cuda --model-type "${MODEL:-vit_b}" \
    --prompts "${PROMPTS:-1024}" --out "$OUT/torch-baselines.json" 2>&1 | tee "$OUT/bench_torch.log" \
    || status=1
  # The 64-prompt decoder batch as samrt bench times it (merged into the same file).
  python3 tools/bench_torch.py --device cuda --model-type "${MODEL:-vit_b}" \
    --components decoder_batch --prompts 64 --out "$OUT/torch-baselines.json" 2>&1 \
    | tee -a "$OUT/bench_torch.log" || status=1
fi
exit "$status"
