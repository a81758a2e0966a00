#!/usr/bin/env bash
# Compiles every kernels/*.cu to PTX exactly as build.rs does, assembles it with `ptxas -v`
# for sm_80 and sm_90a (an *_sm90a.cu file only for sm_90a), and prints registers, stack,
# spills and shared memory per kernel. Exits non-zero if any kernel spills, or if ptxas
# serialized a kernel's wgmma instructions (warning C7515).
# Usage: tools/check-ptxas.sh          (nvcc from $NVCC, PATH, or .cache via install-nvcc.sh)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

nvcc="${NVCC:-}"
if [ -z "$nvcc" ]; then nvcc="$(command -v nvcc || true)"; fi
if [ -z "$nvcc" ] && [ -x "$root/.cache/cuda-13.0/nvidia/cu13/bin/nvcc" ]; then
    nvcc="$root/.cache/cuda-13.0/nvidia/cu13/bin/nvcc"
fi
[ -n "$nvcc" ] || { echo "check-ptxas: no nvcc; run tools/install-nvcc.sh" >&2; exit 2; }
ptxas="$(dirname "$nvcc")/ptxas"
[ -x "$ptxas" ] || ptxas="$(command -v ptxas)"
"$nvcc" --version | tail -n 1

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Dynamic shared memory the launchers request (src/cuda/*.rs) for entry $1 of module $2;
# ptxas only sees static.
dyn_smem() {
    case "$1" in
        gemm_* | conv3x3_*)
            # 3 stages (4 in gemm_sm90a and gemm_ws_sm90a) of a [BM][64] (2 BM for the M
            # pairs, _m2) and a [BN][64] fp16 tile (GemmTile::smem_bytes), plus
            # gemm_ws_sm90a's 2 x 4 mbarriers; the entry point ends in _BMxBN (then _cp in
            # gemm_sm90a, _m2 in gemm_ws_sm90a).
            local e="${1%_cp}" stages=3 bars=0 pair=1
            case "$e" in *_m2) e="${e%_m2}"; pair=2 ;; esac
            local t="${e##*_}"
            if [ "$2" = gemm_sm90a ]; then stages=4; fi
            if [ "$2" = gemm_ws_sm90a ]; then stages=4; bars=64; fi
            echo $(( stages * (pair * ${t%x*} + ${t#*x}) * 64 * 2 + bars )) ;;
        attn_relpos_s14_d*_f16)
            # attention.rs `win14_smem_bytes`: K, V (224 rows) and 2 tables (32 rows) of
            # hd + 8 halves, the k/v bias row, 7 warps x 16 x 40 fp32.
            local hd
            hd="$(sed -E 's/.*_d([0-9]+)_f16/\1/' <<<"$1")"
            echo $(( 2 * 256 * (hd + 8) * 2 + 4 * hd + 7 * 16 * 40 * 4 )) ;;
        attn_relpos_s64_d64_f16)
            # attention.rs `s64_smem_bytes`: 2 K/V stages and Q (128 rows) of 72 halves,
            # [64][72] + [128][4] fp32.
            echo $(( (4 * 64 + 128) * 72 * 2 + 64 * 72 * 4 + 128 * 4 * 4 )) ;;
        attn_relpos_*_d*_f16 | attn_plain_d*_f16)
            # 2 stages of K and V tiles (Q borrows stage 1), rel tables [64][S rounded up to 4
            # mod 8] fp32 (attention.rs `rel_ld`): rel_h and rel_w, at S = 64 rel_h alone; the
            # run-time-S `any` variants shown at S = 63 (two tables).
            local hd s rel tables
            hd="$(sed -E 's/.*_d([0-9]+)_f16/\1/' <<<"$1")"
            s="$(sed -nE 's/attn_relpos_s([0-9]+)_.*/\1/p; s/attn_relpos_any_.*/63/p' <<<"$1")"
            s="${s:-0}"
            tables=$(( s == 64 ? 1 : 2 ))
            rel=$(( s > 0 ? (((s + 3) & ~7) + 4) * tables * 64 * 4 : 0 ))
            echo $(( 4 * 64 * (hd + 8) * 2 + rel )) ;;
        *) echo 0 ;;
    esac
}

status=0
printf '%-34s %-7s %5s %6s %7s %7s %8s %8s\n' kernel arch regs stack spill-st spill-ld smem-st smem-dyn
for src in "$root"/kernels/*.cu; do
    stem="$(basename "$src" .cu)"
    # An *_sm90a.cu build is listed as arch "sm_90a*": its entries share the portable names.
    mark=""
    if [[ "$stem" == *_sm90a ]]; then virt="-arch=sm_90a"; archs="sm_90a"; mark="*"; else virt="-arch=compute_80"; archs="sm_80 sm_90a"; fi
    "$nvcc" -ptx "$virt" -std=c++17 -O3 -I "$root/kernels" "$src" -o "$work/$stem.ptx"
    for arch in $archs; do
        "$ptxas" -v -arch="$arch" "$work/$stem.ptx" -o "$work/$stem.$arch.cubin" 2> "$work/$stem.$arch.log"
        while IFS=$'\t' read -r name regs stack sst sld smem; do
            printf '%-34s %-7s %5s %6s %7s %7s %8s %8s\n' "$name" "$arch$mark" "$regs" "$stack" "$sst" "$sld" "$smem" "$(dyn_smem "$name" "$stem")"
            if [ "$sst" != 0 ] || [ "$sld" != 0 ]; then status=1; fi
            # ptxas's C7515: it made this kernel's wgmmas wait for each other.
            if grep -q "serialized.*function '$name'" "$work/$stem.$arch.log"; then
                echo "  $name ($arch): wgmma.mma_async serialized by ptxas (C7515)"; status=1
            fi
        done < <(awk '
            /Compiling entry function/ { if (name != "") print name "\t" regs "\t" stack "\t" sst "\t" sld "\t" smem;
                                         match($0, /'\''[^'\'']+'\''/); name = substr($0, RSTART + 1, RLENGTH - 2);
                                         regs = stack = sst = sld = smem = 0 }
            /bytes stack frame/ { stack = $1; sst = $5; sld = $9 }
            /Used [0-9]+ registers/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^registers/) regs = $i;
                                                                if ($(i+1) == "bytes" && $(i+2) ~ /^smem/) smem = $i } }
            END { if (name != "") print name "\t" regs "\t" stack "\t" sst "\t" sld "\t" smem }' "$work/$stem.$arch.log" | sort)
    done
done
if [ "$status" != 0 ]; then echo "check-ptxas: FAIL: spills or serialized wgmma found" >&2; else echo "check-ptxas: no spills, no serialized wgmma"; fi
exit "$status"
