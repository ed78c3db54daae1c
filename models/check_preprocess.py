#!/usr/bin/env python3
"""Measures `dinoedge preprocess` against transformers' DINOv3 image processor on real images.

Run by hand (not in CI), from the repository root, after `cargo build --release`:

    /tmp/refenv/bin/python models/check_preprocess.py IMAGE... [--size 224x224]

Both resize the RGB image to the model size with antialiased bilinear filtering and normalise
with the ImageNet mean and std. The difference is reported in pixel units (normalised values
times std, so 1/255 is one grey level): the mean absolute difference over all values and images,
and the largest single difference. The same comparison on small committed images runs in the
test suite: `host/tests/references.rs`, fixtures from `models/make_reference_fixtures.py`.
"""

import argparse
import pathlib
import subprocess
import tempfile

import numpy as np
from PIL import Image
from transformers import DINOv3ViTImageProcessor

ROOT = pathlib.Path(__file__).resolve().parent.parent
STD = np.array([0.229, 0.224, 0.225], dtype=np.float64).reshape(1, 3, 1, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("images", nargs="+")
    ap.add_argument("--size", default="224x224")
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    proc = DINOv3ViTImageProcessor(size={"height": h, "width": w})
    ref = proc([Image.open(p).convert("RGB") for p in args.images], return_tensors="np")["pixel_values"]
    out = pathlib.Path(tempfile.mkdtemp()) / "x.npy"
    subprocess.run([ROOT / "target/release/dinoedge", "preprocess", "--size", args.size, "-o", out, "--input", *args.images],
                   check=True, capture_output=True)
    got = np.load(out)
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64)) * STD
    print(f"{len(args.images)} image(s) at {args.size}: mean |diff| {diff.mean() * 255:.3f}/255, "
          f"max {diff.max() * 255:.2f}/255, per image mean "
          + ", ".join(f"{d * 255:.3f}" for d in diff.mean(axis=(1, 2, 3))))


if __name__ == "__main__":
    main()
