#!/usr/bin/env bash
# The GPU checks, run in one call on the lent GPU machine (no Rust toolchain there: carry a
# stripped release binary built here). Each step has its own time limit and appends its result
# as soon as it ends, so a run cut short still returns what it measured. What comes back from
# $OUT: steps.jsonl (one line per step: name, exit code, seconds), log.txt (every step's output),
# env.txt, doctor.json, kernels.txt (NVRTC for the device), preprocess.jsonl (GPU preprocessing
# against the CPU path, with timings), parity.jsonl (features --engine cuda, fp32 and fp16, against
# --engine cpu),
# bench.jsonl (bench-model --json, both engines, batch 1 and 8), anchor.jsonl (PyTorch's
# DINOv3ViTModel on the same GPU, same random weights), pipeline.json (bench on the echo cine
# with --engine cuda).
#
# Here, once (about 25 minutes cold on two cores): bash scripts/gpu_prepare.sh
# Then the device tool: carry [".gpu"], command "bash scripts/gpu_check.sh", timeout_s 540 (the
# steps are ordered so that a run cut off at its limit keeps the most telling results).
set -u
OUT=${OUT:-target/gpu-check}
BIN=${DINOEDGE:-.gpu/dinoedge}
WORK=${WORK:-/tmp/dinoedge-gpu-check}
mkdir -p "$OUT" "$WORK"
: > "$OUT/steps.jsonl"

# step NAME LIMIT_S COMMAND...: runs it under `timeout`, output to log.txt, a line to steps.jsonl.
step() {
    local name=$1 limit=$2
    shift 2
    echo "== $name" | tee -a "$OUT/log.txt"
    local start end rc
    start=$(date +%s.%N)
    timeout "$limit" "$@" >> "$OUT/log.txt" 2>&1
    rc=$?
    end=$(date +%s.%N)
    awk -v n="$name" -v rc="$rc" -v s="$start" -v e="$end" \
        'BEGIN { printf "{\"step\":\"%s\",\"rc\":%d,\"seconds\":%.1f}\n", n, rc, e - s }' \
        >> "$OUT/steps.jsonl"
    return $rc
}

{
    uname -a
    ldd --version 2>&1 | head -1
    nvidia-smi 2>&1 | head -15
    python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__, "cuda", torch.version.cuda)' 2>&1
} > "$OUT/env.txt"

# CUDA's libraries live in PyTorch's wheels there: let doctor (and later the engines) find them.
NV_LIBS=$(python3 - <<'PY' 2>/dev/null
import glob, os
try:
    import nvidia
    roots = list(nvidia.__path__)
except Exception:
    roots = []
print(":".join(sorted({d for r in roots for d in glob.glob(os.path.join(r, "*", "lib"))})))
PY
)
export LD_LIBRARY_PATH="${NV_LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

IMAGES=.gpu/images
step binary-starts 20 "$BIN" version || { echo "the carried binary does not start here"; exit 1; }
step doctor 30 sh -c "\"$BIN\" doctor --json > \"$OUT/doctor.json\""
step kernels 60 sh -c "\"$BIN\" gpu kernels --arch sm_90 --arch sm_87 > \"$OUT/kernels.txt\" 2>&1"
if [ -d "$IMAGES" ]; then
    step preprocess 120 sh -c "\"$BIN\" gpu preprocess --input $IMAGES/* --size 224x224 --json \
        > \"$OUT/preprocess.jsonl\""
fi
for arch in vits16 vitb16; do
    step "init-$arch" 120 "$BIN" model init --arch "$arch" --seed 0 -o "$WORK/$arch"
done
threads=$(nproc)
# Most telling first: a run cut off at the limit still returns these.
# features on both engines from the same preprocessed real frames, compared in numpy.
for size in 224x224 448x448; do
    if [ -d "$IMAGES" ]; then
        step "pixels-$size" 60 "$BIN" preprocess --input $(ls $IMAGES/* | head -4) --size $size \
            -o "$WORK/pixels-$size.npy"
    fi
    for arch in vits16 vitb16; do
        for variant in cpu-fp32 cuda-fp32 cuda-fp16; do
            engine=${variant%-*} precision=${variant#*-}
            step "features-$variant-$arch-$size" 120 "$BIN" features --engine $engine \
                --precision $precision --model "$WORK/$arch" --input "$WORK/pixels-$size.npy" \
                --threads "$threads" --output "$WORK/features-$variant-$arch-$size.npy"
        done
        for variant in cuda-fp32 cuda-fp16; do
            step "parity-$variant-$arch-$size" 30 sh -c "python3 scripts/gpu_parity.py \
                \"$WORK/features-cpu-fp32-$arch-$size.npy\" \
                \"$WORK/features-$variant-$arch-$size.npy\" \
                --label $variant-$arch-$size >> \"$OUT/parity.jsonl\""
        done
    done
done
bench() { # NAME ENGINE PRECISION ARCH SIZE BATCH RUNS
    step "bench-$1" 90 sh -c "\"$BIN\" bench-model --engine $2 --precision $3 \
        --model \"$WORK/$4\" --size $5 --batch $6 --runs $7 --warmup 3 --threads $threads \
        --json >> \"$OUT/bench.jsonl\""
}
for arch in vits16 vitb16; do
    for size in 224x224 448x448; do
        bench "cuda-fp32-$arch-$size-b1" cuda fp32 $arch $size 1 30
    done
done
for arch in vits16 vitb16; do
    step "anchor-$arch" 150 sh -c "python3 scripts/gpu_anchor.py --model \"$WORK/$arch\" \
        >> \"$OUT/anchor.jsonl\""
done
for arch in vits16 vitb16; do
    for size in 224x224 448x448; do
        bench "cuda-fp32-$arch-$size-b8" cuda fp32 $arch $size 8 20
        bench "cpu-fp32-$arch-$size-b1" cpu fp32 $arch $size 1 10
    done
    bench "cuda-fp16-$arch-224x224-b1" cuda fp16 $arch 224x224 1 30
    bench "cuda-fp16-$arch-224x224-b8" cuda fp16 $arch 224x224 8 20
done
bench cpu-fp32-vits16-224x224-b8 cpu fp32 vits16 224x224 8 5
step pipeline-cuda 120 sh -c "\"$BIN\" bench --engine cuda --out \"$WORK/bench-cuda\" \
    && cp \"$WORK/bench-cuda/report.json\" \"$OUT/pipeline.json\""
echo "== done" | tee -a "$OUT/log.txt"
