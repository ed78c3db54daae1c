#!/usr/bin/env bash
# tract against ONNX Runtime's CPU provider on the same ONNX files, same thread count, same
# machine, in one run. Not run in CI.
#
#   scripts/bench_vs_ort.sh [ARCH] [SIZE] [THREADS] [RUNS] [ROUNDS]
#   e.g. scripts/bench_vs_ort.sh vits16 224x224 2 20 3
#
# Two files are exported from one random-weight model folder: the portable graph (what TensorRT
# gets) and the graph tract runs by default (keys padded to 64, masked). Each runtime times each
# file ROUNDS times, alternating tract and ONNX Runtime so that a noisy neighbour hits both
# alike; the best median of each is compared. Needs cargo and python3 (the PyPI onnxruntime and
# numpy wheels are installed into target/ort-venv on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:-vits16}
size=${2:-224x224}
threads=${3:-2}
runs=${4:-20}
rounds=${5:-3}
work=target/bench-vs-ort
mkdir -p "$work"

venv=target/ort-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet onnxruntime==1.32.0 numpy
fi
cargo build --release --quiet -p dinoedge
bin=target/release/dinoedge
[ -f "$work/$arch/model.safetensors" ] || "$bin" model init --arch "$arch" --seed 0 -o "$work/$arch" >/dev/null

results=$work/results.jsonl
: > "$results"
for form in plain padded; do
    onnx="$work/${arch}_${size}_${form}.onnx"
    key_multiple=1
    [ "$form" = padded ] && key_multiple=64
    "$bin" model export --model "$work/$arch" --size "$size" --key-multiple "$key_multiple" -o "$onnx" >/dev/null
    for _ in $(seq "$rounds"); do
        "$bin" bench-model --onnx "$onnx" --size "$size" --threads "$threads" --runs "$runs" --json \
            | sed "s/^{/{\"file\":\"$form\",/" >> "$results"
        "$venv/bin/python" scripts/ort_bench.py "$onnx" --size "$size" --threads "$threads" --runs "$runs" \
            | sed "s/^{/{\"file\":\"$form\",/" >> "$results"
    done
done
"$venv/bin/python" - "$results" "$arch" "$size" "$threads" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
arch, size, threads = sys.argv[2:5]
best = {}
for r in rows:
    key = (r["file"], "tract" if r["runtime"] == "tract" else "ort")
    best[key] = min(best.get(key, float("inf")), r["median_ms"])
print(f"{arch} {size}, {threads} thread(s), batch 1, random weights; best median ms per frame over rounds")
print(f"{'file':8} {'tract':>8} {'ORT':>8} {'tract/ORT':>10}")
for form in ("plain", "padded"):
    t, o = best[(form, "tract")], best[(form, "ort")]
    print(f"{form:8} {t:8.1f} {o:8.1f} {t / o:10.2f}")
PY
