#!/usr/bin/env bash
# FP16 and INT8 files from `dinoedge model quantize`, measured against FP32 on real images from
# ../shared/data (never committed), beside ONNX Runtime's own static INT8 quantisation of the
# same FP32 export on the same calibration frames. Random-weight models (plain, and with planted
# outlier channels): every figure is labelled "random weights". Not run in CI.
#
#   scripts/quantize_eval.sh [ARCH] [THREADS]      (VARIANTS="plain outliers" by default)
#
# Calibration: 64 frames (plus 16 held out) interleaved from HC18 fetal-head ultrasound and
# EndoTect colonoscopy. Evaluation on images calibration never saw: BUSI breast ultrasound
# (classification, 3 classes) and the remaining EndoTect frames with their polyp masks
# (segmentation), run by ONNX Runtime (tract emulates FP16 too slowly on x86 for 180 images;
# `model quantize` itself reports tract's cosines on the held-out calibration frames). Speed:
# each file by tract (`bench-model --onnx`) and by ONNX Runtime.
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:-vits16}
threads=${2:-2}
data=../shared/data
work=target/quantize-eval
size=224x224
mkdir -p "$work"
[ -d "$data" ] || { echo "needs $data (real images; see its SOURCES.md)" >&2; exit 2; }

venv=target/ort-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet onnxruntime==1.32.0 onnx numpy scikit-learn pillow
py="$venv/bin/python"
cargo build --release --quiet -p dinoedge
bin=target/release/dinoedge

# Frame lists: calibration (HC18 and EndoTect interleaved), classification (BUSI), segmentation
# (EndoTect frames after those used for calibration).
"$py" - "$data" "$work" <<'PY'
import os, sys, glob
data, work = sys.argv[1:3]
hc = sorted(p for p in glob.glob(f"{data}/hc18/training_set/*_HC.png"))
endo = sorted(glob.glob(f"{data}/endotect/images/*.jpg"))
calib = f"{work}/calib"
os.makedirs(calib, exist_ok=True)
for f in os.listdir(calib):
    os.remove(os.path.join(calib, f))
frames = [x for pair in zip(hc[:40], endo[:40]) for x in pair]
for i, src in enumerate(frames):
    os.symlink(os.path.abspath(src), f"{calib}/calib_{i:03d}{os.path.splitext(src)[1]}")
busi = []
for label, cls in enumerate(["benign", "malignant", "normal"]):
    files = sorted(f for f in glob.glob(f"{data}/busi/{cls}/*.png") if "_mask" not in f)
    busi += [(f, label) for f in files[:40]]
with open(f"{work}/cls.txt", "w") as fh:
    fh.writelines(f"{f}\t{l}\n" for f, l in busi)
with open(f"{work}/seg.txt", "w") as fh:
    fh.writelines(f"{f}\n" for f in endo[40:100])
PY

# Preprocessed pixels (dinoedge's own preprocessing), labels and patch masks.
mapfile -t cls_files < <(cut -f1 "$work/cls.txt")
mapfile -t seg_files < <(cat "$work/seg.txt")
mapfile -t calib_files < <(ls "$work"/calib/* | sort)
"$bin" preprocess --size "$size" --input "${cls_files[@]}" -o "$work/cls_px.npy" >/dev/null
"$bin" preprocess --size "$size" --input "${seg_files[@]}" -o "$work/seg_px.npy" >/dev/null
"$bin" preprocess --size "$size" --input "${calib_files[@]}" -o "$work/calib_px.npy" >/dev/null
"$py" - "$work" "$data" "$size" <<'PY'
import os, sys
import numpy as np
from PIL import Image
work, data, size = sys.argv[1:4]
h, w = (int(v) // 16 for v in size.split("x"))
labels = [int(l.split("\t")[1]) for l in open(f"{work}/cls.txt")]
np.save(f"{work}/cls_y.npy", np.array(labels))
masks = []
for f in open(f"{work}/seg.txt").read().split():
    m = Image.open(f"{data}/endotect/masks/{os.path.splitext(os.path.basename(f))[0]}.png").convert("L")
    masks.append((np.asarray(m.resize((w, h), Image.BOX)) > 127).reshape(-1))
np.save(f"{work}/seg_m.npy", np.stack(masks))
PY

for variant in ${VARIANTS:-plain outliers}; do
    dir="$work/$arch-$variant"
    extra=()
    [ "$variant" = outliers ] && extra=(--outlier-channels 4)
    [ -f "$dir/model.safetensors" ] || "$bin" model init --arch "$arch" --seed 0 "${extra[@]}" -o "$dir" >/dev/null
    "$bin" model export --model "$dir" --size "$size" -o "$dir/fp32.onnx" >/dev/null
    echo "== $arch $variant: model quantize (random weights)"
    "$bin" model quantize --model "$dir" --size "$size" --precision fp16 --calib "$work/calib" \
        --threads "$threads" --report "$dir/fp16" -o "$dir/fp16.onnx"
    "$bin" model quantize --model "$dir" --size "$size" --precision int8 --calib "$work/calib" \
        --threads "$threads" --report "$dir/int8" -o "$dir/int8.onnx"
    # A stricter target, to see what the sweep keeps and what that buys.
    "$bin" model quantize --model "$dir" --size "$size" --precision int8 --calib "$work/calib" \
        --threads "$threads" --target-cosine 0.9995 --report "$dir/int8_strict" \
        -o "$dir/int8_strict.onnx"
    # ONNX Runtime's static quantisation of the same FP32 export, on the same calibration frames
    # (every fifth held out, as dinoedge does): QDQ, per-channel symmetric weights, symmetric
    # activations, min-max calibration, MatMul and Conv only (what dinoedge quantises).
    "$py" - "$dir" "$work/calib_px.npy" <<'PY'
import sys
import numpy as np
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_static)
d, px = sys.argv[1:3]
pixels = np.load(px)
calib = [pixels[i:i + 1] for i in range(len(pixels)) if i % 5 != 4][:64]
class Reader(CalibrationDataReader):
    def __init__(self):
        self.it = iter(calib)
    def get_next(self):
        x = next(self.it, None)
        return None if x is None else {"pixel_values": x}
quantize_static(f"{d}/fp32.onnx", f"{d}/ort_int8.onnx", Reader(), quant_format=QuantFormat.QDQ,
                per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=["MatMul", "Conv"],
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
PY
    echo "== $arch $variant: accuracy against fp32 on held-out real images (random weights)"
    "$py" scripts/quantize_eval.py --threads "$threads" \
        --cls-pixels "$work/cls_px.npy" --cls-labels "$work/cls_y.npy" \
        --seg-pixels "$work/seg_px.npy" --seg-masks "$work/seg_m.npy" \
        --fp32 "$dir/fp32.onnx" --candidate "fp16=$dir/fp16.onnx" \
        --candidate "int8=$dir/int8.onnx" --candidate "int8_strict=$dir/int8_strict.onnx" \
        --candidate "ort_int8=$dir/ort_int8.onnx" \
        | tee "$dir/eval.jsonl"
    echo "== $arch $variant: speed, batch 1, $threads thread(s) (random weights)"
    median() { "$py" -c 'import json,sys; print("%.1f ms" % json.load(sys.stdin)["median_ms"])'; }
    for f in fp32 int8 int8_strict ort_int8; do
        # A runtime that cannot load a file says so instead of ending the run.
        t=$("$bin" bench-model --onnx "$dir/$f.onnx" --size "$size" --threads "$threads" --runs 10 --json 2>/dev/null | median || echo "cannot load")
        o=$("$py" scripts/ort_bench.py "$dir/$f.onnx" --size "$size" --threads "$threads" --runs 10 | median)
        printf '%-9s tract %14s   onnxruntime %10s\n' "$f" "$t" "$o"
    done
done
