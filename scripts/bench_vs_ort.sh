#!/usr/bin/env bash
# tract (dinoedge bench-model) against ONNX Runtime's CPU provider on the same ONNX file, same
# thread count, same machine, one after the other in one run. Not run in CI.
#
#   scripts/bench_vs_ort.sh [ARCH] [SIZE] [THREADS] [RUNS]      e.g. scripts/bench_vs_ort.sh vits16 224x224 2 30
#
# Needs: cargo, python3 with venv (the PyPI onnxruntime and numpy wheels are installed into
# target/ort-venv on first use). The model has random weights: timings do not depend on them.
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:-vits16}
size=${2:-224x224}
threads=${3:-2}
runs=${4:-30}
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
onnx="$work/${arch}_${size}.onnx"
"$bin" model export --model "$work/$arch" --size "$size" -o "$onnx" >/dev/null

tract_json=$("$bin" bench-model --model "$work/$arch" --size "$size" --threads "$threads" --runs "$runs" --json)
ort_json=$("$venv/bin/python" scripts/ort_bench.py "$onnx" --size "$size" --threads "$threads" --runs "$runs")
echo "tract: $tract_json"
echo "ort:   $ort_json"
"$venv/bin/python" - "$tract_json" "$ort_json" <<'PY'
import json, sys
t, o = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"{t['arch']} {t['size']}, {t['threads']} thread(s): tract {t['median_ms']:.1f} ms, "
      f"{o['runtime']} {o['median_ms']:.1f} ms per frame (median); "
      f"tract/ORT time ratio {t['median_ms'] / o['median_ms']:.2f} (random weights)")
PY
