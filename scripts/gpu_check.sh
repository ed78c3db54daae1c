#!/usr/bin/env bash
# The GPU checks, run in one call on the lent GPU machine (no Rust toolchain there: carry a
# stripped release binary built here). Each step has its own time limit and appends its result
# as soon as it ends, so a run cut short still returns what it measured. At most 8 files come
# back from $OUT: steps.jsonl (one line per step: name, exit code, seconds), log.txt (every
# step's output), env.txt, doctor.json, cpu.jsonl (bench-model --json), anchor.jsonl
# (PyTorch's DINOv3ViTModel on the same GPU, same random weights).
#
# Here, once:
#   cargo build --release -p dinoedge && mkdir -p .gpu && cp target/release/dinoedge .gpu/ \
#     && strip .gpu/dinoedge && (grep -qx '/.gpu/' .git/info/exclude || echo /.gpu/ >> .git/info/exclude)
# Then the device tool: run with carry [".gpu"], command "bash scripts/gpu_check.sh",
# timeout_s 540 (the steps below stay under 8 minutes).
#
# Steps still to come with the GPU path: --engine cuda against --engine cpu, GPU preprocessing
# against the CPU path, bench-model on the GPU engines.
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

step binary-starts 20 "$BIN" version || { echo "the carried binary does not start here"; exit 1; }
step doctor 30 sh -c "\"$BIN\" doctor --json > \"$OUT/doctor.json\""
for arch in vits16 vitb16; do
    step "init-$arch" 120 "$BIN" model init --arch "$arch" --seed 0 -o "$WORK/$arch"
done
threads=$(nproc)
for arch in vits16 vitb16; do
    for size in 224x224 448x448; do
        step "cpu-$arch-$size" 90 sh -c "\"$BIN\" bench-model --model \"$WORK/$arch\" --size $size \
            --threads $threads --runs 10 --warmup 2 --json >> \"$OUT/cpu.jsonl\""
    done
done
for arch in vits16 vitb16; do
    step "anchor-$arch" 150 sh -c "python3 scripts/gpu_anchor.py --model \"$WORK/$arch\" \
        >> \"$OUT/anchor.jsonl\""
done
echo "== done" | tee -a "$OUT/log.txt"
