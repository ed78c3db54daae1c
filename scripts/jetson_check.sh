#!/usr/bin/env bash
# The TensorRT checks on a Jetson (JetPack 6.1+, TensorRT 10.3+), in one call: doctor; for
# ViT-S/16 and ViT-B/16 at 224 and 448, FP16 and INT8 TensorRT engines built from dinoedge's
# graphs, each gated against the CPU on real frames; bench-model on every engine that passed
# (and on the CUDA engine, for comparison); one JSON report.
#
#   scripts/jetson_check.sh FRAMES [OUT]
#
# FRAMES: real frames for the gates and the INT8 calibration (a recording, images, DICOM cines,
# or a folder of them). OUT (default target/jetson-check) receives every log, the engine cache
# and report.json. Models are random-weight ones made here unless MODELS names a folder holding
# vits16/ and vitb16/ model folders (e.g. converted from the Hugging Face releases); every figure
# says which. The binary is $DINOEDGE, else target/release/dinoedge, built here if missing with
# the CUDA feature JetPack 6 needs (the TensorRT shim is built with it where TensorRT's headers
# are). Each step writes its log as it ends; a failed step is recorded and the next one runs.
set -uo pipefail
cd "$(dirname "$0")/.."

frames=${1:?usage: scripts/jetson_check.sh FRAMES [OUT]}
out=${2:-target/jetson-check}
bin=${DINOEDGE:-target/release/dinoedge}
mkdir -p "$out/logs" "$out/graphs" "$out/bench"
export DINOEDGE_ENGINE_CACHE="$out/engines"

if [ ! -x "$bin" ]; then
    cargo build --release -p dinoedge --features "${CUDA_FEATURE:-cuda-12060}" || exit 1
fi

# step NAME CMD...: runs CMD with its output in logs/NAME.log (stderr in logs/NAME.err); notes
# pass or fail in steps.tsv.
step() {
    local name=$1
    shift
    local start=$SECONDS
    if "$@" >"$out/logs/$name.log" 2>"$out/logs/$name.err"; then
        printf '%s\tok\t%d\n' "$name" $((SECONDS - start)) >>"$out/steps.tsv"
    else
        printf '%s\tfailed (%d)\t%d\n' "$name" $? $((SECONDS - start)) >>"$out/steps.tsv"
    fi
    tail -n 3 "$out/logs/$name.log" "$out/logs/$name.err"
}

: >"$out/steps.tsv"
step doctor "$bin" doctor --json
cp "$out/logs/doctor.log" "$out/doctor.json"

for arch in vits16 vitb16; do
    model=${MODELS:+$MODELS/$arch}
    if [ -z "$model" ]; then
        model="$out/models/$arch"
        [ -f "$model/config.json" ] || step "init-$arch" "$bin" model init --arch "$arch" -o "$model"
    fi
    for side in 224 448; do
        size=${side}x${side}
        tag=$arch-$side
        step "export-fp16-$tag" "$bin" model export --model "$model" --size "$size" \
            --precision fp16 -o "$out/graphs/$tag-fp16.onnx"
        step "quantize-int8-$tag" "$bin" model quantize --model "$model" --size "$size" \
            --precision int8 --calib "$frames" --report "$out/graphs/$tag-int8" \
            -o "$out/graphs/$tag-int8.onnx"
        for precision in fp16 int8; do
            step "engine-$precision-$tag" "$bin" engine build --model "$model" --size "$size" \
                --precision "$precision" --graph "$out/graphs/$tag-$precision.onnx" \
                --frames "$frames"
            step "bench-tensorrt-$precision-$tag" "$bin" bench-model --model "$model" \
                --size "$size" --engine tensorrt --precision "$precision" --runs 100 --json
            cp "$out/logs/bench-tensorrt-$precision-$tag.log" "$out/bench/tensorrt-$precision-$tag.json"
        done
        step "bench-cuda-fp16-$tag" "$bin" bench-model --model "$model" --size "$size" \
            --engine cuda --precision fp16 --runs 50 --json
        cp "$out/logs/bench-cuda-fp16-$tag.log" "$out/bench/cuda-fp16-$tag.json"
    done
done
step engines "$bin" engine list --json
cp "$out/logs/engines.log" "$out/engines.json"

# One report: the steps, doctor, the engines with their gates, and each bench's last JSON line.
python3 - "$out" <<'EOF'
import json, os, sys
out = sys.argv[1]
def load(path):
    try:
        with open(path) as f:
            text = f.read().strip().splitlines()
        return json.loads("\n".join(text)) if text and text[0].startswith(("{", "[")) else None
    except (OSError, ValueError):
        return None
def last_json_line(path):
    try:
        with open(path) as f:
            lines = [l for l in f.read().splitlines() if l.startswith("{")]
        return json.loads(lines[-1]) if lines else None
    except (OSError, ValueError):
        return None
steps = []
with open(os.path.join(out, "steps.tsv")) as f:
    for line in f:
        name, status, seconds = line.rstrip("\n").split("\t")
        steps.append({"step": name, "status": status, "seconds": int(seconds)})
bench = {}
for name in sorted(os.listdir(os.path.join(out, "bench"))):
    bench[name[:-5]] = last_json_line(os.path.join(out, "bench", name))
report = {
    "steps": steps,
    "doctor": load(os.path.join(out, "doctor.json")),
    "engines": load(os.path.join(out, "engines.json")),
    "bench": bench,
}
with open(os.path.join(out, "report.json"), "w") as f:
    json.dump(report, f, indent=2)
print(f"{out}/report.json: {sum(s['status'] == 'ok' for s in steps)} of {len(steps)} steps ok")
EOF
