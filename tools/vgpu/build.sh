#!/usr/bin/env bash
# Builds vgpu and puts it where the dynamic loader finds it as the NVIDIA driver:
# target/vgpu/libcuda.so (+ libcuda.so.1). Prints that directory on its last line, so
#   LD_LIBRARY_PATH="$(tools/vgpu/build.sh)" cargo test --release --features cuda
# runs every CUDA test on the virtual GPU.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
cargo build --release -p vgpu >&2
mkdir -p target/vgpu
cp -f target/release/libcuda.so target/vgpu/libcuda.so
ln -sf libcuda.so target/vgpu/libcuda.so.1
echo "$root/target/vgpu"
