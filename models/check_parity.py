#!/usr/bin/env python3
"""Checks `dinoedge features` against transformers' DINOv3ViTModel on full-size models.

Run by hand (not in CI), from the repository root, after `cargo build --release`:

    /tmp/refenv/bin/python models/check_parity.py --arch vits16 --sizes 224x224 448x448

For each architecture it writes a random-weight model folder with `dinoedge model init`, loads
that folder with transformers' `from_pretrained` (so the Hugging Face layout is checked too),
runs both on the same normalised input and prints max |diff| and relative L2 per size. Pass
--model DIR to check an existing folder (e.g. real pretrained weights) instead.
"""

import argparse
import pathlib
import subprocess
import tempfile

import numpy as np
import torch
from transformers import DINOv3ViTModel

ROOT = pathlib.Path(__file__).resolve().parent.parent
DINOEDGE = ROOT / "target" / "release" / "dinoedge"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="vits16")
    ap.add_argument("--model", type=pathlib.Path)
    ap.add_argument("--sizes", nargs="+", default=["224x224", "448x448"])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="dinoedge-parity-"))
    model_dir = args.model
    if model_dir is None:
        model_dir = tmp / args.arch
        subprocess.run([DINOEDGE, "model", "init", "--arch", args.arch, "--seed", "7", "-o", model_dir], check=True)
    model = DINOv3ViTModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(3)
    for size in args.sizes:
        h, w = (int(v) for v in size.split("x"))
        x = torch.randn((1, 3, h, w), generator=gen)
        np.save(tmp / "x.npy", x.numpy())
        with torch.no_grad():
            ref = model(pixel_values=x).last_hidden_state.numpy()
        subprocess.run(
            [DINOEDGE, "features", "--model", model_dir, "--input", tmp / "x.npy", "--output", tmp / "y.npy",
             "--threads", str(args.threads)],
            check=True, capture_output=True,
        )
        got = np.load(tmp / "y.npy")
        assert got.shape == ref.shape, (got.shape, ref.shape)
        maxabs = float(np.abs(got - ref).max())
        rel = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
        print(f"{args.arch if args.model is None else model_dir} {size}: shape {got.shape}, "
              f"max |diff| {maxabs:.3g}, relative L2 {rel:.3g}")


if __name__ == "__main__":
    main()
