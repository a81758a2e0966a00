#!/usr/bin/env bash
# Installs a pinned CUDA 13.0 compiler (nvcc, ptxas, NVVM, CRT and CCCL headers, runtime
# headers) from PyPI into a local directory. PTX ISA 9.0 from CUDA 13.0 loads on driver >= 580.
# Usage: tools/install-nvcc.sh [DIR]   (default: .cache/cuda-13.0 in the repository)
# The last line printed is the nvcc path.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:-$here/.cache/cuda-13.0}"
nvcc="$dir/nvidia/cu13/bin/nvcc"
if [ ! -x "$nvcc" ]; then
    mkdir -p "$dir"
    python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$dir" \
        nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 \
        nvidia-cuda-cccl==13.0.85 nvidia-cuda-runtime==13.0.96 >&2
fi
if [ ! -x "$nvcc" ]; then
    nvcc="$(find "$dir" -type f -name nvcc -perm -u+x | head -n 1)"
fi
[ -x "$nvcc" ] || { echo "install-nvcc.sh: nvcc not found under $dir after install" >&2; exit 1; }
"$nvcc" --version >&2
echo "$nvcc"
