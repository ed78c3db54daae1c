#!/usr/bin/env python3
"""Compares two last_hidden_state arrays (.npy, [N, tokens, D]) from `dinoedge features`, one
per engine: max and mean absolute difference, cosine of the CLS tokens and of the patch tokens
(worst frame, worst token). Prints one JSON line. Used by scripts/gpu_check.sh."""
import argparse
import json

import numpy as np


def cosine(a, b):
    num = (a * b).sum(-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return num / np.maximum(den, 1e-12)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("reference")
    p.add_argument("other")
    p.add_argument("--label", default="")
    p.add_argument("--prefix", type=int, default=5, help="CLS + register tokens")
    a = p.parse_args()
    x = np.load(a.reference).astype(np.float64)
    y = np.load(a.other).astype(np.float64)
    if x.shape != y.shape:
        print(json.dumps({"label": a.label, "error": f"shapes {x.shape} and {y.shape}"}))
        return
    diff = np.abs(x - y)
    cls = cosine(x[:, 0], y[:, 0])
    patch = cosine(x[:, a.prefix:], y[:, a.prefix:])
    print(json.dumps({
        "label": a.label,
        "shape": list(x.shape),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "cls_cosine_min": float(cls.min()),
        "patch_cosine_min": float(patch.min()),
        "patch_cosine_mean": float(patch.mean()),
    }))


if __name__ == "__main__":
    main()
