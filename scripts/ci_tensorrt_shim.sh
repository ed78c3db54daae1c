#!/usr/bin/env bash
# CI without TensorRT: compiles the TensorRT shim (host/tensorrt/shim/shim.cpp), every warning an
# error, against TensorRT 11.4's public headers as the crates.io crate trtx-sys ships them, with
# its stub cuda_runtime_api.h; then once more against CUDA's real cuda_runtime_api.h from NVIDIA's
# pip wheels, for the code only a real build compiles. Nothing is linked or run: that needs
# TensorRT's libraries and a GPU. The headers stay under the target directory, never in the tree.
set -euo pipefail
cd "$(dirname "$0")/.."

version="0.9.1+rtx1.7"
url="https://static.crates.io/crates/trtx-sys/trtx-sys-0.9.1%2Brtx1.7.crate"
sha256="5480ee056292951daa1bc74532162d6cb75190f091e45d7d97c0c356916ae171"
cuda_wheels=("nvidia-cuda-runtime-cu12==12.9.79" "nvidia-cuda-nvcc-cu12==12.9.86")

target="${CARGO_TARGET_DIR:-target}"
dir="$target/ci-trtx"
crate="$dir/trtx-sys-$version.crate"
headers="$dir/trtx-sys-$version/TensorRT-Headers"
mkdir -p "$dir"

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
apt_install() {
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "$@"
}

if ! echo "$sha256  $crate" | sha256sum -c --status 2>/dev/null; then
    command -v curl >/dev/null 2>&1 || apt_install curl ca-certificates
    curl -fsSL --retry 3 --connect-timeout 20 --max-time 120 -o "$crate.part" "$url"
    if ! echo "$sha256  $crate.part" | sha256sum -c --status; then
        echo "trtx-sys $version: sha256 $(sha256sum "$crate.part" | cut -d' ' -f1), expected $sha256" >&2
        exit 1
    fi
    mv "$crate.part" "$crate"
    rm -rf "$dir/trtx-sys-$version"
fi
if [ ! -f "$headers/TRT-Enterprise-11.4/NvInfer.h" ]; then
    tar -xzf "$crate" -C "$dir" "trtx-sys-$version/TensorRT-Headers/TRT-Enterprise-11.4" \
        "trtx-sys-$version/TensorRT-Headers/cuda_runtime_api.h"
fi

cxx="${CXX:-}"
if [ -z "$cxx" ]; then
    for candidate in c++ g++ clang++; do
        if command -v "$candidate" >/dev/null 2>&1; then cxx="$candidate"; break; fi
    done
fi
if [ -z "$cxx" ]; then
    apt_install g++
    cxx=g++
fi

trt="$headers/TRT-Enterprise-11.4"
# The same tokens the shim reports as `headers` in dtrt_versions.
trt_version="$(printf '#include <NvInferVersion.h>\nNV_TENSORRT_MAJOR NV_TENSORRT_MINOR NV_TENSORRT_PATCH\n' |
    "$cxx" -E -P -x c++ -isystem "$trt" - | tail -n 1 | tr -s ' ' '.')"
echo "TensorRT headers: $trt_version (trtx-sys $version, TRT-Enterprise-11.4); compiler: $("$cxx" --version | head -n 1)"

# TensorRT's headers are system headers here: their own deprecation warnings are not the shim's.
flags=(-std=c++17 -Wall -Wextra -Werror -isystem "$trt" -I host/tensorrt/shim -c host/tensorrt/shim/shim.cpp)
"$cxx" "${flags[@]}" -DDTRT_STUB_CUDA_HEADERS -isystem "$headers" -o "$dir/shim-stub-cuda.o"
echo "shim.cpp compiles against TensorRT $trt_version's headers and the stub cuda_runtime_api.h"

# CUDA's runtime header comes with the runtime wheel; the crt/ headers it includes with nvcc's.
wheels="$dir/cuda-wheels"
if [ ! -f "$wheels/nvidia/cuda_runtime/include/cuda_runtime_api.h" ] ||
    [ ! -f "$wheels/nvidia/cuda_nvcc/include/crt/host_defines.h" ]; then
    [ -x "$dir/venv/bin/pip" ] || python3 -m venv "$dir/venv"
    rm -rf "$wheels"
    "$dir/venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --target "$wheels" "${cuda_wheels[@]}"
fi
"$cxx" "${flags[@]}" -isystem "$wheels/nvidia/cuda_runtime/include" -isystem "$wheels/nvidia/cuda_nvcc/include" \
    -o "$dir/shim-cuda.o"
echo "shim.cpp compiles against TensorRT $trt_version's headers and CUDA's cuda_runtime_api.h (${cuda_wheels[0]})"
echo "not linked or run: that needs TensorRT's libraries and a GPU"
