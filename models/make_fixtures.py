#!/usr/bin/env python3
"""Builds the reference-parity fixtures under models/fixtures/ from transformers' DINOv3ViTModel.

Run by hand (not in CI), from the repository root:

    python3 -m venv /tmp/refenv && /tmp/refenv/bin/pip install -r models/requirements.txt
    /tmp/refenv/bin/python models/make_fixtures.py

Each tiny model (hidden 64, 2 layers, 2 heads, 4 registers, patch 16) gets random weights from a
fixed seed. Every parameter is then perturbed, so that biases, LayerNorm affines and LayerScale are
not at their trivial initial values and a port that ignored one of them would fail the tests. The
models run in eval mode, in float32, on the CPU, with the eager attention path.

Written per model: config.json and model.safetensors (the Hugging Face layout, as
save_pretrained writes them), and expected_<H>x<W>.npy, the last_hidden_state for the shared input
input_<H>x<W>.npy (f32 [1, 3, H, W], already normalised); and at 224x224 also
expected_block0_224x224.npy, the output of block 0 normed by the final LayerNorm.
"""

import json
import pathlib

import numpy as np
import torch
from transformers import DINOv3ViTConfig, DINOv3ViTModel

OUT = pathlib.Path(__file__).resolve().parent / "fixtures"
SIZES = [(224, 224), (160, 240)]

TINY = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_register_tokens=4,
    patch_size=16,
    layer_norm_eps=1e-5,
    rope_theta=100.0,
    image_size=224,
)
VARIANTS = {
    "tiny_mlp": dict(TINY, intermediate_size=256, hidden_act="gelu", use_gated_mlp=False),
    "tiny_swiglu": dict(TINY, intermediate_size=176, hidden_act="silu", use_gated_mlp=True),
}


def perturb(model: DINOv3ViTModel, gen: torch.Generator) -> None:
    """Moves every parameter away from its initial value, deterministically."""
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith("lambda1"):
                p.copy_(0.5 + torch.rand(p.shape, generator=gen))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith("bias") or "token" in name:
                p.copy_(0.1 * noise)
            else:
                p.add_(0.05 * noise)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(20261128)
    inputs = {}
    for h, w in SIZES:
        x = torch.randn((1, 3, h, w), generator=gen)
        inputs[(h, w)] = x
        np.save(OUT / f"input_{h}x{w}.npy", x.numpy().astype(np.float32))
    for name, cfg in VARIANTS.items():
        torch.manual_seed(1)
        config = DINOv3ViTConfig(**cfg)
        config._attn_implementation = "eager"
        model = DINOv3ViTModel(config).eval()
        perturb(model, gen)
        folder = OUT / name
        model.save_pretrained(folder, safe_serialization=True)
        with torch.no_grad():
            for (h, w), x in inputs.items():
                out = model(pixel_values=x, output_hidden_states=True)
                y = out.last_hidden_state
                np.save(folder / f"expected_{h}x{w}.npy", y.numpy().astype(np.float32))
                if (h, w) == SIZES[0]:
                    # Block 0's output normed by the final norm, as get_intermediate_layers gives it.
                    block0 = model.norm(out.hidden_states[1])
                    np.save(folder / f"expected_block0_{h}x{w}.npy", block0.numpy().astype(np.float32))
                print(name, (h, w), tuple(y.shape), float(y.abs().max()))
    sizes = {p.name: p.stat().st_size for p in OUT.rglob("*") if p.is_file()}
    print(json.dumps(sizes, indent=1), "total", sum(sizes.values()))


if __name__ == "__main__":
    main()
