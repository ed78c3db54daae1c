#!/usr/bin/env bash
# CI without a GPU: compiles the preprocessing kernels with NVRTC from NVIDIA's pip wheel, through
# the same code the GPU path runs (`dinoedge gpu kernels`). NVRTC needs no GPU and no driver.
# Usage: scripts/ci_nvrtc.sh [ARCH...]   (default: sm_87 sm_90)
set -euo pipefail
cd "$(dirname "$0")/.."

# The wheel for CUDA 12, matching the cuda-12060 build (cudarc opens libnvrtc.so.12).
NVRTC_WHEEL="nvidia-cuda-nvrtc-cu12==12.9.86"
target="${CARGO_TARGET_DIR:-target}"
venv="$target/nvrtc-venv"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check "$NVRTC_WHEEL"
lib="$("$venv/bin/python" -c 'import os, nvidia.cuda_nvrtc as m; print(os.path.join(list(m.__path__)[0], "lib"))')"
if [ ! -e "$lib/libnvrtc.so.12" ]; then
    echo "no libnvrtc.so.12 in $lib" >&2
    exit 1
fi

cargo build -p dinoedge --features cuda-12060

archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(sm_87 sm_90)
args=()
for a in "${archs[@]}"; do args+=(--arch "$a"); done
LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$target/debug/dinoedge" gpu kernels "${args[@]}"
