#!/usr/bin/env python3
"""Times an ONNX file with ONNX Runtime's CPU provider, the way `dinoedge bench-model` times tract.

Used by scripts/bench_vs_ort.sh; prints one JSON object. Not run in CI.
"""

import argparse
import json
import time

import numpy as np
import onnxruntime as ort


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("onnx")
    ap.add_argument("--size", default="224x224")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--save-input", help="write the input used as .npy")
    ap.add_argument("--save-output", help="write last_hidden_state as .npy")
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.lower().split("x"))
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    t0 = time.perf_counter()
    sess = ort.InferenceSession(args.onnx, so, providers=["CPUExecutionProvider"])
    prepare_ms = (time.perf_counter() - t0) * 1e3
    # The same smooth pattern as dinoedge bench-model.
    n, c, y, x = np.meshgrid(np.arange(1), np.arange(3), np.arange(h), np.arange(w), indexing="ij")
    pixels = (np.sin((y * 7 + x * 3 + c * 11 + n) * 0.013) * 2.0).astype(np.float32)
    for _ in range(args.warmup):
        out = sess.run(None, {"pixel_values": pixels})
    times = []
    for _ in range(args.runs):
        t = time.perf_counter()
        out = sess.run(None, {"pixel_values": pixels})
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    pct = lambda p: times[round((len(times) - 1) * p)]
    if args.save_input:
        np.save(args.save_input, pixels)
    if args.save_output:
        np.save(args.save_output, out[0])
    print(json.dumps({
        "runtime": "onnxruntime " + ort.__version__,
        "size": args.size, "threads": args.threads, "runs": args.runs,
        "median_ms": pct(0.5), "p90_ms": pct(0.9), "min_ms": times[0], "max_ms": times[-1],
        "fps": 1e3 / pct(0.5), "prepare_ms": prepare_ms,
    }))


if __name__ == "__main__":
    main()
