#!/usr/bin/env python3
"""Independent references for `host/tests/references.rs`, written to models/fixtures/reference/.

Run by hand (not in CI), from the repository root:

    python3 -m venv /tmp/refenv && /tmp/refenv/bin/pip install -r models/requirements.txt
    /tmp/refenv/bin/python models/make_reference_fixtures.py [--only echo|pixels|preprocess]

Three parts, none of which runs any dinoedge code:

- echo: frames 0 and 29 (the last) of tests/data/echo_cine.dcm as pydicom decodes them by
  default, with the Pillow plugin named (libjpeg-turbo underneath; YBR_FULL_422 converted to RGB;
  if pylibjpeg is installed pydicom would prefer it, and libjpeg 9 rounds differently), the
  pixels a DICOM viewer shows. `echo_rgb_<i>.npy`, u8 [240, 320, 3].
- pixels: Rgb565 and Yuyv422 to RGB888, computed from the format definitions (PROTOCOL.md:
  Rgb565 is the u16 rrrrrggggggbbbbb little-endian; Yuyv422 is Y0 U Y1 V) and ITU-R BT.601
  limited range (Kr 0.299, Kb 0.114; Y in 16..235, Cb/Cr in 16..240 around 128), in float64,
  rounded to nearest and clamped to 0..255. Channels of n bits scale to 8 by v * 255 / (2^n - 1),
  rounded. `rgb565.csv` (b0,b1,r,g,b) and `yuyv422.csv` (y0,u,y1,v,r0,g0,b0,r1,g1,b1).
- preprocess: transformers' DINOv3ViTImageProcessor (resize with antialiased bilinear filtering,
  rescale by 1/255, ImageNet mean and std) on three small deterministic PNG images written here
  (`pre_<name>.png`), each at its own output size. `pre_<name>_<H>x<W>.npy`, f32 [1, 3, H, W].

Pinned: see models/README.md. Regenerating with the same versions reproduces the same bytes.
"""

import argparse
import csv
import json
import pathlib

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "models/fixtures/reference"
ECHO = ROOT / "tests/data/echo_cine.dcm"
ECHO_FRAMES = (0, 29)


def echo() -> None:
    import PIL
    import pydicom
    from pydicom.pixels import pixel_array

    ds = pydicom.dcmread(ECHO)
    assert ds.PhotometricInterpretation == "YBR_FULL_422", ds.PhotometricInterpretation
    assert int(ds.NumberOfFrames) == 30
    for i in ECHO_FRAMES:
        rgb = pixel_array(ds, index=i, decoding_plugin="pillow")
        assert rgb.shape == (240, 320, 3) and rgb.dtype == np.uint8, (rgb.shape, rgb.dtype)
        np.save(OUT / f"echo_rgb_{i}.npy", np.ascontiguousarray(rgb))
    print("echo: pydicom", pydicom.__version__, "Pillow", PIL.__version__)


def scale(v: np.ndarray, bits: int) -> np.ndarray:
    """An n-bit channel to 8 bits: full scale to 255, rounded to nearest."""
    return np.floor(v.astype(np.float64) * 255.0 / (2**bits - 1) + 0.5).astype(np.int64)


def rgb565_rows() -> list[list[int]]:
    rng = np.random.default_rng(565)
    values = {0x0000, 0xFFFF, 0xF800, 0x07E0, 0x001F, 0x0821, 0x8410, 0x7BEF, 0xFFDF, 0x0020}
    # Every level of every channel at least once, the others at a random level.
    for level in range(32):
        values.add((level << 11) | (int(rng.integers(64)) << 5) | int(rng.integers(32)))
        values.add((int(rng.integers(32)) << 11) | (int(rng.integers(64)) << 5) | level)
    for level in range(64):
        values.add((int(rng.integers(32)) << 11) | (level << 5) | int(rng.integers(32)))
    values.update(int(v) for v in rng.integers(0, 65536, size=100))
    v = np.array(sorted(values), dtype=np.int64)
    r, g, b = scale(v >> 11, 5), scale((v >> 5) & 0x3F, 6), scale(v & 0x1F, 5)
    return [[int(x) & 0xFF, int(x) >> 8, int(rr), int(gg), int(bb)] for x, rr, gg, bb in zip(v, r, g, b)]


KR, KB = 0.299, 0.114
KG = 1.0 - KR - KB


def bt601_limited(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """BT.601 limited-range Y'CbCr (8-bit codes) to R'G'B' 0..255, from the definition."""
    yn = (y.astype(np.float64) - 16.0) / 219.0  # 0..1
    pb = (u.astype(np.float64) - 128.0) / 224.0  # -0.5..0.5
    pr = (v.astype(np.float64) - 128.0) / 224.0
    r = yn + 2.0 * (1.0 - KR) * pr
    b = yn + 2.0 * (1.0 - KB) * pb
    g = (yn - KR * r - KB * b) / KG
    rgb = np.stack([r, g, b], axis=-1) * 255.0
    return np.clip(np.floor(rgb + 0.5), 0, 255).astype(np.int64)


def yuyv_rows() -> list[list[int]]:
    rng = np.random.default_rng(422)
    edges = [0, 1, 15, 16, 17, 64, 128, 200, 234, 235, 236, 254, 255]
    chroma = [0, 1, 16, 17, 64, 127, 128, 129, 192, 239, 240, 241, 255]
    quads = set()
    for y in edges:
        for c in chroma:
            quads.add((y, c, 255 - y, 128))
            quads.add((y, 128, 255 - y, c))
    for u in chroma:
        for v in chroma:
            quads.add((16, u, 235, v))
            quads.add((126, u, 81, v))
    # Saturated primaries and secondaries as the definition codes them.
    for rgb in ([1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1]):
        r, g, b = rgb
        yn = KR * r + KG * g + KB * b
        pb, pr = (b - yn) / (2 * (1 - KB)), (r - yn) / (2 * (1 - KR))
        y8, u8, v8 = (round(16 + 219 * yn), round(128 + 224 * pb), round(128 + 224 * pr))
        quads.add((y8, u8, y8, v8))
    while len(quads) < 500:
        quads.add(tuple(int(x) for x in rng.integers(0, 256, size=4)))
    q = np.array(sorted(quads), dtype=np.int64)
    p0 = bt601_limited(q[:, 0], q[:, 1], q[:, 3])
    p1 = bt601_limited(q[:, 2], q[:, 1], q[:, 3])
    return [list(map(int, row)) for row in np.concatenate([q, p0, p1], axis=1)]


def pixels() -> None:
    for name, header, rows in (
        ("rgb565.csv", ["b0", "b1", "r", "g", "b"], rgb565_rows()),
        ("yuyv422.csv", ["y0", "u", "y1", "v", "r0", "g0", "b0", "r1", "g1", "b1"], yuyv_rows()),
    ):
        with open(OUT / name, "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(header)
            w.writerows(rows)
        print(f"pixels: {name}, {len(rows)} rows")


def images() -> dict[str, tuple[np.ndarray, tuple[int, int]]]:
    """Three small test images, from a fixed seed, and the output size each is checked at."""
    rng = np.random.default_rng(20261130)
    # A 160x120 colour scene: smooth gradients, a hard-edged disc, a thin grid and mild noise;
    # downscaled 2.5x (antialiasing matters).
    h, w = 120, 160
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    scene = np.stack([xx / w * 255, yy / h * 255, 255 - (xx + yy) / (w + h) * 255], axis=-1)
    disc = (xx - 70) ** 2 + (yy - 55) ** 2 < 35**2
    scene[disc] = [230, 40, 60]
    scene[(xx.astype(int) % 16 == 0) | (yy.astype(int) % 16 == 0)] = [250, 250, 250]
    scene += rng.normal(0, 6, size=scene.shape)
    # A 40x30 grey texture, upscaled (no antialiasing in play).
    small = ((np.mgrid[0:30, 0:40][1] * 7 + np.mgrid[0:30, 0:40][0] * 13) % 17 * 9 + 60).astype(np.float64)
    small = np.repeat(small[..., None], 3, axis=-1)
    # A 100x150 (WxH) noisy ultrasound-like fan on black, downscaled 2.5x by 2.3x.
    h, w = 150, 100
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = np.hypot(xx - 50, yy + 10)
    ang = np.degrees(np.arctan2(xx - 50, yy + 10))
    fan = (r > 20) & (r < 155) & (np.abs(ang) < 35)
    speckle = rng.gamma(2.0, 40.0, size=(h, w)) * (1.0 - r / 200)
    grey = np.where(fan, speckle, 0.0)
    fanimg = np.repeat(grey[..., None], 3, axis=-1)
    u8 = lambda a: np.clip(np.rint(a), 0, 255).astype(np.uint8)  # noqa: E731
    return {
        "scene": (u8(scene), (48, 64)),
        "texture": (u8(small), (64, 64)),
        "fan": (u8(fanimg), (64, 40)),
    }


def preprocess() -> None:
    import torch
    import torchvision
    import transformers
    from PIL import Image
    from transformers import DINOv3ViTImageProcessor

    for name, (pixels_, (h, w)) in images().items():
        path = OUT / f"pre_{name}.png"
        Image.fromarray(pixels_, "RGB").save(path, optimize=True)
        img = Image.open(path).convert("RGB")
        proc = DINOv3ViTImageProcessor(size={"height": h, "width": w})
        x = proc(img, return_tensors="np")["pixel_values"]
        assert x.shape == (1, 3, h, w) and x.dtype == np.float32, (x.shape, x.dtype)
        np.save(OUT / f"pre_{name}_{h}x{w}.npy", x)
    print(
        "preprocess:", type(proc).__name__, "transformers", transformers.__version__,
        "torch", torch.__version__, "torchvision", torchvision.__version__,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=["echo", "pixels", "preprocess"])
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    parts = {"echo": echo, "pixels": pixels, "preprocess": preprocess}
    for name, part in parts.items():
        if args.only in (None, name):
            part()
    sizes = {p.name: p.stat().st_size for p in sorted(OUT.iterdir()) if p.is_file()}
    print(json.dumps(sizes, indent=1), "total", sum(sizes.values()))


if __name__ == "__main__":
    main()
