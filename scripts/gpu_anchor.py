#!/usr/bin/env python3
"""The anchor for dinoedge's GPU figures: transformers' DINOv3ViTModel in PyTorch on the same GPU,
with the same random weights (`from_pretrained` on a folder written by `dinoedge model init`).

Run by scripts/gpu_check.sh on the lent GPU machine; prints one JSON object per line:
model, size, batch, dtype, median and p99 ms per batch (CUDA events), and the cosine of fp16
against fp32 outputs (CLS and patch tokens). Exits 2 without CUDA.
"""

import argparse
import json
import sys
import time

import torch
from transformers import DINOv3ViTModel


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    return float((a @ b) / (a.norm() * b.norm()).clamp_min(1e-30))


def time_model(model, x, runs: int, warmup: int) -> list:
    """Milliseconds per run, sorted: CUDA events on the GPU, the wall clock on the CPU."""
    cuda = x.is_cuda
    with torch.inference_mode():
        for _ in range(warmup):
            model(pixel_values=x)
        if cuda:
            torch.cuda.synchronize()
        times = []
        for _ in range(runs):
            if cuda:
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                model(pixel_values=x)
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                model(pixel_values=x)
                times.append((time.perf_counter() - t0) * 1000.0)
    return sorted(times)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--sizes", nargs="+", type=int, default=[224, 448])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--device", default="cuda", help="cuda, or cpu to try the script without a GPU")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"error": "no CUDA device visible to PyTorch"}))
        return 2
    device = torch.device(args.device)
    fp32 = DINOv3ViTModel.from_pretrained(args.model, attn_implementation="eager").eval().to(device)
    fp16 = DINOv3ViTModel.from_pretrained(args.model, attn_implementation="eager").eval().to(device).half()
    gen = torch.Generator().manual_seed(0)
    for size in args.sizes:
        for batch in args.batches:
            x = torch.randn(batch, 3, size, size, generator=gen).to(device)
            with torch.inference_mode():
                ref = fp32(pixel_values=x).last_hidden_state.float()
                half = fp16(pixel_values=x.half()).last_hidden_state.float()
            for dtype, model, inp in (("fp32", fp32, x), ("fp16", fp16, x.half())):
                t0 = time.perf_counter()
                times = time_model(model, inp, args.runs, args.warmup)
                row = {
                    "model": args.model,
                    "size": size,
                    "batch": batch,
                    "dtype": dtype,
                    "median_ms": times[len(times) // 2],
                    "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))],
                    "runs": len(times),
                    "wall_s": time.perf_counter() - t0,
                    "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
                    "torch": torch.__version__,
                }
                if dtype == "fp16":
                    row["cosine_cls_vs_fp32"] = cosine(half[:, 0], ref[:, 0])
                    row["cosine_tokens_vs_fp32"] = cosine(half, ref)
                print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
