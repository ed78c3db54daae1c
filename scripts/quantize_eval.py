#!/usr/bin/env python3
"""Measures quantised backbone files against FP32 on held-out real images. Not run in CI.

Driven by scripts/quantize_eval.sh, which exports and quantises the files and preprocesses the
images with dinoedge itself. Given FP32 features and each candidate's features (from
ONNX Runtime's CPU provider), it reports:
  - cosine of the CLS token and of the patch tokens against FP32;
  - a linear head fitted on FP32 features (classification: CLS + mean patch; segmentation: a
    per-patch classifier) and applied to each candidate's features: top-1 agreement with the
    FP32 predictions, and Dice between the FP32 and the candidate's masks.
Prints one JSON object per candidate.
"""

import argparse
import json

import numpy as np
import onnxruntime as ort
from sklearn.linear_model import LogisticRegression


def ort_features(path, pixels, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    out = [sess.run(None, {"pixel_values": pixels[i:i + 8]})[0] for i in range(0, len(pixels), 8)]
    return np.concatenate(out).astype(np.float32)


def cosines(ref, got, prefix):
    def cos(a, b):
        num = (a * b).sum(-1)
        den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
        return num / np.maximum(den, 1e-30)
    cls = cos(ref[:, 0], got[:, 0])
    patch = cos(ref[:, prefix:], got[:, prefix:])
    return {"cls": float(cls.mean()), "cls_min": float(cls.min()),
            "patch": float(patch.mean()), "patch_min": float(patch.min())}


def cls_mean(f, prefix):
    return np.concatenate([f[:, 0], f[:, prefix:].mean(1)], axis=1)


def dice(a, b):
    inter = np.logical_and(a, b).sum()
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * inter / total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prefix", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cls-pixels", required=True, help="classification images, .npy [N,3,H,W]")
    ap.add_argument("--cls-labels", required=True, help="their labels, .npy [N]")
    ap.add_argument("--seg-pixels", required=True, help="segmentation images, .npy")
    ap.add_argument("--seg-masks", required=True, help="their patch masks, .npy [N, Hp*Wp] 0/1")
    ap.add_argument("--fp32", required=True, help="the FP32 ONNX file")
    ap.add_argument("--candidate", action="append", default=[], help="NAME=FILE.onnx")
    args = ap.parse_args()

    cls_px = np.load(args.cls_pixels)
    cls_y = np.load(args.cls_labels)
    seg_px = np.load(args.seg_pixels)
    seg_m = np.load(args.seg_masks).astype(bool)
    fc = ort_features(args.fp32, cls_px, args.threads)
    fs = ort_features(args.fp32, seg_px, args.threads)
    p = args.prefix

    # Heads fitted on FP32 features, even-numbered images; scored on the odd ones.
    train = np.arange(len(cls_px)) % 2 == 0
    clf = LogisticRegression(max_iter=2000, C=1.0).fit(cls_mean(fc, p)[train], cls_y[train])
    seg_train = np.arange(len(seg_px)) % 2 == 0
    xs = fs[seg_train][:, p:].reshape(-1, fs.shape[-1])
    ys = seg_m[seg_train].reshape(-1)
    seg = LogisticRegression(max_iter=2000, C=1.0, class_weight="balanced").fit(xs, ys)
    test_c, test_s = ~train, ~seg_train
    print(json.dumps({"eval": "fp32 heads", "cls_images": int(len(cls_px)), "seg_images": int(len(seg_px)),
                      "cls_accuracy_fp32": float((clf.predict(cls_mean(fc, p)[test_c]) == cls_y[test_c]).mean()),
                      "note": "random weights"}))

    for spec in args.candidate:
        name, path = spec.split("=", 1)
        gc, gs = ort_features(path, cls_px, args.threads), ort_features(path, seg_px, args.threads)
        rc, rs = fc, fs
        c = cosines(np.concatenate([rc, rs]), np.concatenate([gc, gs]), p)
        proba_ref = clf.predict_proba(cls_mean(rc, p)[test_c])
        pred_ref = proba_ref.argmax(1)
        pred = clf.predict_proba(cls_mean(gc, p)[test_c]).argmax(1)
        # A head on random-weight features sits near chance, so many FP32 predictions are near
        # ties; agreement is also given where FP32's top-1 leads the runner-up by 0.1 or more.
        top2 = np.sort(proba_ref, 1)[:, -2:]
        confident = (top2[:, 1] - top2[:, 0]) >= 0.1
        dices = []
        for i in np.where(test_s)[0]:
            a = seg.predict(rs[i, p:])
            b = seg.predict(gs[i, p:])
            dices.append(dice(a.astype(bool), b.astype(bool)))
        print(json.dumps({"candidate": name, "runtime": "onnxruntime " + ort.__version__, **c,
                          "top1_agreement": float((pred == pred_ref).mean()),
                          "top1_agreement_confident": float((pred == pred_ref)[confident].mean()) if confident.any() else None,
                          "confident_images": int(confident.sum()), "test_images": int(len(pred)),
                          "dice_vs_fp32_mean": float(np.mean(dices)), "dice_vs_fp32_min": float(np.min(dices)),
                          "note": "random weights"}))


if __name__ == "__main__":
    main()
