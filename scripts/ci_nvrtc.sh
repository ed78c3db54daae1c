#!/usr/bin/env bash
# CI without a GPU: compiles the preprocessing kernels with NVRTC from NVIDIA's pip wheel, through
# the same code the GPU path runs (`dinoedge gpu kernels`). NVRTC needs no GPU and no driver.
# Usage: scripts/ci_nvrtc.sh [ARCH...]   (default: sm_87 sm_90)
# CUDA_FEATURE=cuda-13000 checks the CUDA 13 build with CUDA 13's NVRTC instead of CUDA 12's.
set -euo pipefail
cd "$(dirname "$0")/.."

feature="${CUDA_FEATURE:-cuda-12060}"
# Pinned wheels; cudarc opens libnvrtc.so.<major> of the CUDA the feature names.
# ptxas (from the nvcc wheel) then assembles the PTX for each sm_ architecture, as the driver
# would at load time.
case "$feature" in
    cuda-12060)
        wheels=("nvidia-cuda-nvrtc-cu12==12.9.86" "nvidia-cuda-nvcc-cu12==12.9.86")
        module="nvidia.cuda_nvrtc" so="libnvrtc.so.12" ptxas_module="nvidia.cuda_nvcc" ;;
    cuda-13000)
        wheels=("nvidia-cuda-nvrtc==13.5.37" "nvidia-cuda-nvcc==13.5.37")
        module="nvidia.cu13" so="libnvrtc.so.13" ptxas_module="nvidia.cu13" ;;
    *) echo "CUDA_FEATURE must be cuda-12060 or cuda-13000, not $feature" >&2; exit 2 ;;
esac
target="${CARGO_TARGET_DIR:-target}"
venv="$target/nvrtc-venv-$feature"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check "${wheels[@]}"
folder() { "$venv/bin/python" -c "import os, $1 as m; print(os.path.join(list(m.__path__)[0], '$2'))"; }
lib="$(folder "$module" lib)"
ptxas="$(folder "$ptxas_module" bin)/ptxas"
if [ ! -e "$lib/$so" ]; then
    echo "no $so in $lib" >&2
    exit 1
fi

cargo build -p dinoedge --features "$feature"

archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(sm_87 sm_90)
args=()
for a in "${archs[@]}"; do args+=(--arch "$a"); done
ptx_dir="$target/nvrtc-ptx-$feature"
rm -rf "$ptx_dir" && mkdir -p "$ptx_dir"
LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    "$target/debug/dinoedge" gpu kernels "${args[@]}" --ptx-dir "$ptx_dir"
for a in "${archs[@]}"; do
    case "$a" in
        sm_*)
            log="$ptx_dir/ptxas_$a.log"
            if ! "$ptxas" -arch="$a" -v "$ptx_dir/preprocess_$a.ptx" -o "$ptx_dir/preprocess_$a.cubin" >"$log" 2>&1; then
                cat "$log" >&2
                exit 1
            fi
            echo "$a: ptxas assembled $(stat -c %s "$ptx_dir/preprocess_$a.cubin") bytes of SASS;" \
                "$(grep -h spill "$log" | sort -u | tr -s ' ' | paste -sd ';')" ;;
    esac
done
