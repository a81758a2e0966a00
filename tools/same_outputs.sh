#!/usr/bin/env bash
# Check that a refactor changed no behaviour: run the same fixed list of CLI commands with
# two samrt binaries and compare every output file, stdout and exit code byte for byte.
#
#   tools/same_outputs.sh OLD_BIN NEW_BIN [--cuda]
#
# Results go to $SAME_OUTPUTS_DIR (kept) or a fresh mktemp -d: DIR/old and DIR/new, each with
#   cache/  SAMRT_CACHE_DIR of that side (the .pth -> fp16 safetensors conversion, compared too)
#   out/    what the commands wrote;  log/NAME.stdout, NAME.rc (compared), NAME.stderr (not)
# --cuda also runs the image encoder on "CUDA" through vgpu's libcuda.so
# (LD_LIBRARY_PATH=${VGPU_LIB:-$PWD/target/vgpu}); slow, so only two such commands.
# Prints one line per compared file and a summary; exits 1 on any difference or missing file.
set -euo pipefail

[[ $# -ge 2 && $# -le 3 ]] || { echo "usage: $0 OLD_BIN NEW_BIN [--cuda]" >&2; exit 2; }
OLD_BIN=$(realpath "$1"); NEW_BIN=$(realpath "$2"); CUDA=0
if [[ $# -eq 3 ]]; then
  [[ $3 == --cuda ]] || { echo "$0: unknown option $3" >&2; exit 2; }
  CUDA=1
fi
DIR=${SAME_OUTPUTS_DIR:-$(mktemp -d)}
mkdir -p "$DIR"; DIR=$(realpath "$DIR")
cd "$(dirname "$0")/.."                      # repository root (default VGPU_LIB is under it)
FIX=$PWD/tests/fixtures; IMG=$FIX/images; MODEL=$FIX/sam_tiny.pth
VGPU_LIB=$(realpath -m "${VGPU_LIB:-$PWD/target/vgpu}")
if [[ $CUDA == 1 && ! -e $VGPU_LIB/libcuda.so ]]; then
  echo "$0: no libcuda.so in $VGPU_LIB (set VGPU_LIB)" >&2; exit 2
fi
rm -rf "$DIR/old" "$DIR/new" "$DIR/unexpected.txt"

# run_list BIN SIDE: every command of the list, with BIN, under $DIR/SIDE.
run_list() {
  local bin=$1 run=$DIR/$2
  mkdir -p "$run/cache" "$run/out" "$run/log"
  export SAMRT_CACHE_DIR=$run/cache         # fresh cache per side: nothing shared
  local esc; esc=$(printf '%s' "$run" | sed 's/[][\.*^$|/]/\\&/g')
  # c NAME WANT_RC ARGS...: run one command; stdout with $run replaced by @RUN@
  c() {
    local name=$1 want=$2; shift 2
    local rc=0
    "$bin" "$@" >"$run/log/$name.raw" 2>"$run/log/$name.stderr" || rc=$?
    sed "s|$esc|@RUN@|g" "$run/log/$name.raw" >"$run/log/$name.stdout"
    rm "$run/log/$name.raw"; echo "$rc" >"$run/log/$name.rc"
    # a command failing on both sides (e.g. no CUDA) must not pass as "same": fail the check
    [[ $rc == "$want" ]] || echo "$run: $name exited $rc, expected $want" >>"$DIR/unexpected.txt"
  }
  local O=$run/out S=(segment --model "$MODEL" --device cpu)
  # 1. one point, multimask, 600x400 RGB
  c seg_point 0 "${S[@]}" --image "$IMG/coffee.png" --point 300,200 --out "$O/seg_point"
  # 2. box + background point, single mask, 250x333 RGBA
  c seg_box_rgba 0 "${S[@]}" --image "$IMG/rocket_rgba.png" --box 40,60,200,300 \
    --point 120,150,0 --single-mask --out "$O/seg_box_rgba"
  # 3. mask-input round trip: best mask of (1) by its iou_predictions.npy, plus a point
  c seg_mask_input 0 "${S[@]}" --image "$IMG/coffee.png" --point 310,210 \
    --mask-input "$O/seg_point/low_res_logits.npy" --out "$O/seg_mask_input"
  # 4. three prompts from a JSON file (mask_input path relative to the file), 1200x310 image
  cat >"$run/prompts.json" <<'EOF'
[{"points": [[600, 150], [100, 50]], "labels": [1, 0]},
 {"box": [300, 40, 900, 280], "multimask": false},
 {"points": [[450, 120]], "mask_input": "out/seg_point/low_res_logits.npy:2", "multimask": false}]
EOF
  c seg_prompts 0 "${S[@]}" --image "$IMG/coffee_wide.png" --prompts "$run/prompts.json" \
    --out "$O/seg_prompts"
  # 5. embed (512x512 grayscale) to .safetensors and .npy (+ .json), decode from each
  for ext in safetensors npy; do
    c "embed_$ext" 0 embed --model "$MODEL" --device cpu --image "$IMG/camera.png" \
      --out "$O/embed/camera.$ext"
    c "seg_from_$ext" 0 segment --model "$MODEL" --embedding "$O/embed/camera.$ext" \
      --point 256,200 --point 50,60,0 --out "$O/seg_from_$ext"
  done
  # 6. automatic masks, small settings; thresholds as in tools/make_amg_fixtures.py so that
  #    random-weight masks survive. samrt_auto_params.json holds the model's absolute path
  #    (the same fixture for both sides), no output path and no time stamp: compared as is.
  local A=(auto --model "$MODEL" --device cpu --stability-score-offset 0.05)
  c auto_binary 0 "${A[@]}" --image "$IMG/chelsea.png" --points-per-side 8 \
    --box-nms-thresh 1.0 --pred-iou-thresh 0.05 --stability-score-thresh 0.73 \
    --out "$O/auto_binary"
  c auto_uncompressed 0 "${A[@]}" --image "$IMG/chelsea.png" --points-per-side 4 \
    --pred-iou-thresh 0 --stability-score-thresh 0 --output-mode uncompressed_rle \
    --out "$O/auto_uncompressed"
  c auto_crops_coco 0 "${A[@]}" --image "$IMG/coffee.png" --points-per-side 6 \
    --points-per-batch 16 --box-nms-thresh 1.0 --crop-nms-thresh 1.0 --crop-n-layers 1 \
    --pred-iou-thresh 0.036 --stability-score-thresh 0.72 --min-mask-region-area 300 \
    --output-mode coco_rle --out "$O/auto_crops_coco"
  # 7. info
  c info 0 info "$MODEL"
  # 8. bad input: exit 1 and no outputs
  c seg_bad_label 1 "${S[@]}" --image "$IMG/coffee.png" --point 1,2,5 --out "$O/seg_bad_label"
  if [[ $CUDA == 1 ]]; then
    c info_cuda_plan 0 info --device cuda --batch 2 "$MODEL"   # plan only, instant
    export LD_LIBRARY_PATH=$VGPU_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    c cuda_seg_point 0 segment --model "$MODEL" --device cuda --image "$IMG/coffee.png" \
      --point 300,200 --out "$O/cuda_seg_point"
    c cuda_embed 0 embed --model "$MODEL" --device cuda --image "$IMG/coffee.png" \
      --out "$O/cuda_embed/coffee.npy"
  fi
}

for side in old new; do
  [[ $side == old ]] && bin=$OLD_BIN || bin=$NEW_BIN
  start=$SECONDS; echo "== $side: $bin"
  ( run_list "$bin" "$side" )
  echo "== $side took $((SECONDS - start)) s"
done

# Compare the union of both sides' files (stderr logs excluded).
same=0; diff=0
while IFS= read -r f; do
  if [[ ! -f $DIR/old/$f ]]; then echo "DIFFERENT $f (missing in old)"; diff=$((diff + 1))
  elif [[ ! -f $DIR/new/$f ]]; then echo "DIFFERENT $f (missing in new)"; diff=$((diff + 1))
  elif cmp -s "$DIR/old/$f" "$DIR/new/$f"; then echo "same      $f"; same=$((same + 1))
  else echo "DIFFERENT $f"; diff=$((diff + 1)); fi
done < <( (cd "$DIR/old" && find . -type f; cd "$DIR/new" && find . -type f) \
          | sed 's|^\./||' | grep -v '\.stderr$' | sort -u)
echo "summary: $same same, $diff different ($DIR)"
if [[ -e $DIR/unexpected.txt ]]; then
  echo "UNEXPECTED exit codes (see log/*.stderr):"; cat "$DIR/unexpected.txt"; exit 1
fi
[[ $same -gt 0 && $diff -eq 0 ]]
