#!/usr/bin/env python3
"""Builds fixtures for importing Meta's own DINOv3 `.pth` checkpoints (the files Meta distributes).

Run by hand (not in CI), from the repository root, with the pinned stack of requirements.txt:

    python3 -m venv target/torch-venv && target/torch-venv/bin/pip install -r models/requirements.txt
    target/torch-venv/bin/python models/make_meta_fixture.py [--converter PATH]

Two independent sources:

(a) The checkpoint. For each tiny Hugging Face config in fixtures/tiny_{mlp,swiglu}/config.json
    (hidden 64, 2 layers, 2 heads, 4 registers, patch 16), a state dict is written with exactly
    the parameter and buffer names and shapes that Meta's `DinoVisionTransformer`
    (facebookresearch/dinov3, dinov3/models/vision_transformer.py and dinov3/layers/*.py) has
    when built as the released ViTs are built in dinov3/hub/backbones.py: `n_storage_tokens=4`,
    `mask_k_bias=True`, `layerscale_init` set, `qkv_bias/proj_bias/ffn_bias=True`,
    `norm_layer="layernormbf16"` (eps 1e-5), `pos_embed_rope_base=100`,
    `pos_embed_rope_dtype="fp32"`, no untied norms. tiny_mlp is the vits16/vitb16/vitl16 kind
    (`ffn_layer="mlp"`, ffn_ratio 4 -> fc1 256); tiny_swiglu is the vits16plus/vith16plus kind
    (`ffn_layer="swiglu"`, align 8; with ffn_ratio 4: int(64*4) = 256, d = int(256*2/3) = 170,
    rounded up to a multiple of 8 = 176 = the config's intermediate_size). The names were read
    from Meta's code, not from transformers (see META_KEYS.md). Values are deterministic random
    numbers (seeded) and deliberately non-trivial: LayerScale gammas in [0.5, 1.5), every bias
    nonzero, LayerNorm affines off (1, 0), mask_token nonzero, and the k third of each
    `attn.qkv.bias` nonzero while `attn.qkv.bias_mask` is 1 on q and v and 0 on k -- the values
    Meta's `init_weights_vit` writes, which `LinearKMaskedBias.forward` multiplies into the bias
    at run time (so the k bias has no effect in Meta's model; an importer must drop or mask it).
    `rope_embed.periods` holds what Meta's `RopePositionEmbedding._init_weights` computes:
    base ** (2 * arange(D_head // 4) / (D_head // 2)), f32.
    Saved with `torch.save(state_dict, path)` as a plain state dict, as Meta releases them
    (dinov3/hub/backbones.py loads the file and passes it straight to
    `model.load_state_dict(state_dict, strict=True)`; no "model"/"teacher" wrapper). The two
    fixtures use the two pickle forms a state dict takes: meta_tiny_mlp is an OrderedDict with
    the `_metadata` attribute, as `nn.Module.state_dict()` returns it; meta_tiny_swiglu is a plain
    dict. All tensors f32, each in its own storage.

(b) The expected Hugging Face weights: transformers' own converter,
    src/transformers/models/dinov3_vit/convert_dinov3_vit_to_hf.py, applied to the saved file.
    That script is in neither the transformers wheel nor its sdist, so it is imported from a copy
    of the file from a transformers source tree (default target/hf-converter/, or --converter).
    Its `split_qkv` and `convert_old_keys_to_new_keys` are called as they are. The loop that
    follows them in `convert_and_test_dinov3_checkpoint` (which downloads from the Hub and so
    cannot be called) is replicated as glue, line for line: skip keys containing "bias_mask",
    "attn.k_proj.bias" or "local_cls_norm"; `unsqueeze(1)` the "embeddings.mask_token" tensor;
    skip the "inv_freq" (ex-`rope_embed.periods`) tensor. The other glue: `torch.load` with
    `map_location="cpu", weights_only=True` (the converter uses `mmap=True`), f32 + contiguous +
    clone before `safetensors.torch.save_file` (q/k/v are views of one qkv tensor), and, for the
    strict load check only, transformers' own registered rename for dinov3_vit
    (`layer.` -> `model.layer.`, from transformers.conversion_mapping), since 5.x keeps the
    blocks under `model.` in memory while the files on disk (the Hub's, and save_pretrained's)
    say `layer.`.

Written per variant, under fixtures/meta_tiny_{mlp,swiglu}/:
  checkpoint.pth            the Meta-layout state dict
  config.json               the HF config (a copy of fixtures/tiny_*/config.json)
  expected/model.safetensors  the converter's output, f32 (the on-disk HF layout: `layer.N...`)
  expected/config.json      the same HF config
  expected/last_hidden_state_224x224.npy  DINOv3ViTModel (eager) on those weights, for
                            fixtures/input_224x224.npy
  SOURCES.md                what the files were made from
"""

import argparse
import collections
import importlib.util
import json
import math
import pathlib
import platform
import shutil
import sys

import numpy as np
import safetensors
import safetensors.torch
import torch
import transformers
from transformers import DINOv3ViTConfig, DINOv3ViTModel

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "models" / "fixtures"
DEFAULT_CONVERTER = ROOT / "target" / "hf-converter" / "convert_dinov3_vit_to_hf.py"

SEED = 20260315

# Where the names and shapes come from (read through the code-search index; see META_KEYS.md).
META_SOURCES = [
    ("facebookresearch/dinov3", "dinov3/models/vision_transformer.py", "dbeab0e7a38878a2366048cc64bcbc15e8b41ba4"),
    ("facebookresearch/dinov3", "dinov3/layers/block.py", "1eac7fce229a86924264ad270209973ac37e8e90"),
    ("facebookresearch/dinov3", "dinov3/hub/backbones.py", "071435e673b419dafe6ad926fa3dfae411934794"),
    ("facebookresearch/dinov3", "dinov3/models/__init__.py", "1eac7fce229a86924264ad270209973ac37e8e90"),
    # Not stored for facebookresearch/dinov3 in the index; read from an unmodified fork instead
    # (same copyright header; attention.py cross-checked against tldrafael/dinov3@92f33b0e).
    ("sergiocanar/dinov3 (fork)", "dinov3/layers/attention.py", "2ff68beec40199b41409a93a98f36eb999e12838"),
    ("sergiocanar/dinov3 (fork)", "dinov3/layers/ffn_layers.py", "2ff68beec40199b41409a93a98f36eb999e12838"),
    ("sergiocanar/dinov3 (fork)", "dinov3/layers/layer_scale.py", "2ff68beec40199b41409a93a98f36eb999e12838"),
    ("sergiocanar/dinov3 (fork)", "dinov3/layers/patch_embed.py", "2ff68beec40199b41409a93a98f36eb999e12838"),
    ("sergiocanar/dinov3 (fork)", "dinov3/layers/rope_position_encoding.py", "2ff68beec40199b41409a93a98f36eb999e12838"),
]
CONVERTER_SOURCE = ("huggingface/transformers", "src/transformers/models/dinov3_vit/convert_dinov3_vit_to_hf.py",
                    "a77460f27c7be433514120fff2ca64607c7a97c9")

VARIANTS = {
    # name: (HF fixture it mirrors, Meta ffn_layer, Meta ffn_ratio, Meta model it is a tiny copy of, pickle form)
    "meta_tiny_mlp": ("tiny_mlp", "mlp", 4.0, "dinov3_vits16 / vitb16 / vitl16 (LVD-1689M)", "OrderedDict"),
    "meta_tiny_swiglu": ("tiny_swiglu", "swiglu", 4.0, "dinov3_vits16plus / vith16plus", "dict"),
}


def swiglu_hidden(dim: int, ffn_ratio: float, align_to: int = 8) -> int:
    """Meta's SwiGLUFFN hidden width: hidden = int(dim * ffn_ratio) (SelfAttentionBlock), then
    d = int(hidden * 2 / 3) rounded up to a multiple of align_to (8 for "swiglu")."""
    hidden = int(dim * ffn_ratio)
    d = int(hidden * 2 / 3)
    return d + (-d % align_to)


def meta_state_dict(cfg: dict, ffn_layer: str, ffn_ratio: float, gen: torch.Generator) -> "collections.OrderedDict":
    """Meta DinoVisionTransformer's state dict, in the order nn.Module.state_dict() lists it."""
    D = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    n_storage = cfg["num_register_tokens"]
    p = cfg["patch_size"]
    C = cfg["num_channels"]
    d_head = D // heads
    assert D % (4 * heads) == 0  # RopePositionEmbedding's own assertion

    def rnd(*shape, scale):
        return (scale * torch.randn(shape, generator=gen)).float().contiguous()

    def weight(*shape):
        return rnd(*shape, scale=0.06)

    def bias(n):
        return rnd(n, scale=0.1)

    def ln_weight(n):
        return (1.0 + rnd(n, scale=0.2)).contiguous()

    def gamma(n):
        return (0.5 + torch.rand((n,), generator=gen)).float().contiguous()

    sd = collections.OrderedDict()
    # Root parameters first (registered on the root module): cls_token, storage_tokens, mask_token.
    sd["cls_token"] = rnd(1, 1, D, scale=0.1)
    sd["storage_tokens"] = rnd(1, n_storage, D, scale=0.1)
    sd["mask_token"] = rnd(1, D, scale=0.1)  # Meta: (1, D); zeros at init, nonzero here
    sd["patch_embed.proj.weight"] = rnd(D, C, p, p, scale=0.05)
    sd["patch_embed.proj.bias"] = bias(D)
    base = float(cfg["rope_theta"])
    sd["rope_embed.periods"] = (base ** (2 * torch.arange(d_head // 4, dtype=torch.float32) / (d_head // 2))).float()
    if ffn_layer == "mlp":
        hidden = int(D * ffn_ratio)
    else:
        hidden = swiglu_hidden(D, ffn_ratio)
    assert hidden == cfg["intermediate_size"], (hidden, cfg["intermediate_size"])
    for i in range(cfg["num_hidden_layers"]):
        b = f"blocks.{i}."
        sd[b + "norm1.weight"] = ln_weight(D)
        sd[b + "norm1.bias"] = bias(D)
        sd[b + "attn.qkv.weight"] = weight(3 * D, D)
        qkv_bias = bias(3 * D)
        qkv_bias[D : 2 * D] = rnd(D, scale=0.5)  # the k part: nonzero and large, masked at run time
        sd[b + "attn.qkv.bias"] = qkv_bias.contiguous()
        mask = torch.ones(3 * D, dtype=torch.float32)
        mask[D : 2 * D] = 0.0  # init_weights_vit: fill 1, then [o//3 : 2*o//3] = 0
        sd[b + "attn.qkv.bias_mask"] = mask
        sd[b + "attn.proj.weight"] = weight(D, D)
        sd[b + "attn.proj.bias"] = bias(D)
        sd[b + "ls1.gamma"] = gamma(D)
        sd[b + "norm2.weight"] = ln_weight(D)
        sd[b + "norm2.bias"] = bias(D)
        if ffn_layer == "mlp":
            sd[b + "mlp.fc1.weight"] = weight(hidden, D)
            sd[b + "mlp.fc1.bias"] = bias(hidden)
            sd[b + "mlp.fc2.weight"] = weight(D, hidden)
            sd[b + "mlp.fc2.bias"] = bias(D)
        else:
            sd[b + "mlp.w1.weight"] = weight(hidden, D)
            sd[b + "mlp.w1.bias"] = bias(hidden)
            sd[b + "mlp.w2.weight"] = weight(hidden, D)
            sd[b + "mlp.w2.bias"] = bias(hidden)
            sd[b + "mlp.w3.weight"] = weight(D, hidden)
            sd[b + "mlp.w3.bias"] = bias(D)
        sd[b + "ls2.gamma"] = gamma(D)
    sd["norm.weight"] = ln_weight(D)
    sd["norm.bias"] = bias(D)
    return sd


def as_module_state_dict(sd: dict) -> "collections.OrderedDict":
    """The same tensors as nn.Module.state_dict() returns them (an OrderedDict carrying
    `_metadata`), through a throwaway tree of plain nn.Modules with the same dotted names."""
    root = torch.nn.Module()
    for name, t in sd.items():
        *path, leaf = name.split(".")
        m = root
        for part in path:
            if not hasattr(m, part):
                m.add_module(part, torch.nn.Module())
            m = getattr(m, part)
        if leaf in ("bias_mask", "periods"):
            m.register_buffer(leaf, t.clone(), persistent=True)
        else:
            m.register_parameter(leaf, torch.nn.Parameter(t.clone(), requires_grad=False))
    out = root.state_dict()
    assert list(out.keys()) == list(sd.keys()), "module tree changed the key order"
    return out


def load_converter(path: pathlib.Path):
    if not path.is_file():
        sys.exit(
            f"transformers' DINOv3 converter not found at {path}.\n"
            "It is not shipped in the transformers wheel or sdist: copy "
            "src/transformers/models/dinov3_vit/convert_dinov3_vit_to_hf.py from a transformers source tree "
            f"(read here at commit {CONVERTER_SOURCE[2]}) to that path, or pass --converter PATH."
        )
    spec = importlib.util.spec_from_file_location("convert_dinov3_vit_to_hf", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def convert_with_transformers(conv, checkpoint: pathlib.Path) -> dict:
    """transformers' conversion of a Meta checkpoint, as convert_and_test_dinov3_checkpoint does it."""
    original_state_dict = torch.load(checkpoint, map_location="cpu", weights_only=True)
    # --- the converter's own functions ---
    original_state_dict = conv.split_qkv(original_state_dict)
    original_keys = list(original_state_dict.keys())
    new_keys = conv.convert_old_keys_to_new_keys(original_keys)
    # --- glue: the loop inside convert_and_test_dinov3_checkpoint, unchanged ---
    converted_state_dict = {}
    for key in original_keys:
        new_key = new_keys[key]
        weight_tensor = original_state_dict[key]
        if "bias_mask" in key or "attn.k_proj.bias" in key or "local_cls_norm" in key:
            continue
        if "embeddings.mask_token" in new_key:
            weight_tensor = weight_tensor.unsqueeze(1)
        if "inv_freq" in new_key:
            continue
        converted_state_dict[new_key] = weight_tensor
    # --- glue: own storage, f32, contiguous (safetensors refuses views sharing one storage) ---
    return {k: v.detach().to(torch.float32).contiguous().clone() for k, v in converted_state_dict.items()}


def hf_renames():
    """transformers' own on-disk -> in-memory renames for dinov3_vit (conversion_mapping.py), as
    callables: each applies the WeightRenaming's own rename_source_key (first match only)."""
    from transformers.conversion_mapping import get_checkpoint_conversion_mapping

    return [r.rename_source_key for r in get_checkpoint_conversion_mapping("dinov3_vit") or []]


def check_complete(folder: pathlib.Path, converted: dict) -> DINOv3ViTModel:
    """The converted weights are a complete DINOv3ViTModel: strict load, and from_pretrained reports
    no missing, unexpected or mismatched keys and reads back the same tensors."""
    config = DINOv3ViTConfig.from_pretrained(folder)
    config._attn_implementation = "eager"
    model = DINOv3ViTModel(config).eval()
    renames = hf_renames()
    in_memory = {}
    for k, v in converted.items():
        for rename in renames:
            k = rename(k)[0]
        in_memory[k] = v
    result = model.load_state_dict(in_memory, strict=True)
    assert not result.missing_keys and not result.unexpected_keys, result

    loaded, info = DINOv3ViTModel.from_pretrained(folder, output_loading_info=True, attn_implementation="eager")
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        assert not info.get(kind), (kind, info[kind])
    lsd = loaded.state_dict()
    for k, v in in_memory.items():
        assert torch.equal(lsd[k], v), k
    assert set(lsd) == set(in_memory), set(lsd) ^ set(in_memory)
    return loaded.eval()


def write_sources(folder, hf_name, ffn_layer, ffn_ratio, meta_like, pickle_form, meta_sd, converted, converter_path):
    D = meta_sd["norm.weight"].shape[0]
    lines = [
        f"# {folder.name}: sources",
        "",
        f"A tiny DINOv3 checkpoint in Meta's own layout (`checkpoint.pth`), and what transformers' converter",
        f"makes of it (`expected/`). Built by `models/make_meta_fixture.py`; see `models/META_KEYS.md`.",
        "",
        "## checkpoint.pth",
        "",
        f"- The HF config is `models/fixtures/{hf_name}/config.json` (copied here as `config.json`).",
        f"- Meta architecture it is a tiny copy of: {meta_like}. Equivalent Meta constructor:",
        f"  `DinoVisionTransformer(img_size=224, patch_size=16, embed_dim={D}, depth=2, num_heads=2,",
        f"  ffn_ratio={ffn_ratio}, ffn_layer=\"{ffn_layer}\", qkv_bias=True, proj_bias=True, ffn_bias=True,",
        "  layerscale_init=1e-5, norm_layer=\"layernormbf16\", n_storage_tokens=4, mask_k_bias=True,",
        "  pos_embed_rope_base=100, pos_embed_rope_normalize_coords=\"separate\",",
        "  pos_embed_rope_rescale_coords=2, pos_embed_rope_dtype=\"fp32\")` (the hub/backbones.py settings).",
        f"- Saved with `torch.save(state_dict, path)` (zip format), pickled as a {pickle_form}"
        + (" carrying `_metadata`, as `nn.Module.state_dict()` returns it." if pickle_form == "OrderedDict" else "."),
        f"- Values: `torch.Generator().manual_seed({SEED})` (and `torch.manual_seed({SEED})`), drawn in the key",
        "  order below; every tensor f32 in its own storage. The k third of each `attn.qkv.bias` is nonzero",
        "  (scale 0.5); `attn.qkv.bias_mask` is 1 on q and v and 0 on k.",
        "- Names and shapes were read from Meta's code:",
    ]
    for repo, path, commit in META_SOURCES:
        lines.append(f"  - {repo} `{path}` @ `{commit}`")
    lines += ["", "| Meta key | shape |", "|---|---|"]
    for k, v in meta_sd.items():
        lines.append(f"| `{k}` | {list(v.shape)} |")
    lines += [
        "",
        "## expected/",
        "",
        f"- transformers {transformers.__version__}, converter `{CONVERTER_SOURCE[1]}` from",
        f"  {CONVERTER_SOURCE[0]} @ `{CONVERTER_SOURCE[2]}` (not in the wheel or sdist; imported from",
        f"  `{converter_path.relative_to(ROOT) if converter_path.is_relative_to(ROOT) else converter_path}`).",
        "  The copy used is that file with the network-bound tail of `convert_and_test_dinov3_checkpoint`",
        "  (image download, output check, save, push) cut; the functions called are unchanged.",
        "  Its `split_qkv` and `convert_old_keys_to_new_keys` are called as they are; the loop of",
        "  `convert_and_test_dinov3_checkpoint` after them (drop `bias_mask`, `attn.k_proj.bias`,",
        "  `local_cls_norm`, the ex-`periods` `inv_freq`; `unsqueeze(1)` the mask token) is replicated.",
        "- `model.safetensors`: that state dict, f32, contiguous, written with `safetensors.torch.save_file`",
        "  (keys in the on-disk HF layout, `layer.N...`, as the Hub's files and `save_pretrained` have them).",
        "- Checked: `DINOv3ViTModel.load_state_dict(strict=True)` (after transformers' own `layer.` ->",
        "  `model.layer.` rename for dinov3_vit), and `from_pretrained` with no missing, unexpected or",
        "  mismatched keys, reading back identical tensors.",
        "- `last_hidden_state_224x224.npy`: that model (eager attention, eval, f32, CPU) on",
        "  `models/fixtures/input_224x224.npy`, f32 `[1, 201, 64]`.",
        f"- torch {torch.__version__}, safetensors {safetensors.__version__}, numpy {np.__version__},",
        f"  Python {platform.python_version()}.",
        "",
        "| HF key | shape |",
        "|---|---|",
    ]
    for k, v in converted.items():
        lines.append(f"| `{k}` | {list(v.shape)} |")
    (folder / "SOURCES.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--converter", type=pathlib.Path, default=DEFAULT_CONVERTER,
                    help="path to transformers' convert_dinov3_vit_to_hf.py")
    args = ap.parse_args()
    conv = load_converter(args.converter.resolve())
    x = torch.from_numpy(np.load(FIXTURES / "input_224x224.npy"))

    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    for name, (hf_name, ffn_layer, ffn_ratio, meta_like, pickle_form) in VARIANTS.items():
        cfg_path = FIXTURES / hf_name / "config.json"
        cfg = json.loads(cfg_path.read_text())
        assert cfg["use_gated_mlp"] == (ffn_layer != "mlp")
        assert not cfg["key_bias"] and cfg["query_bias"] and cfg["value_bias"]
        assert math.isclose(cfg["layer_norm_eps"], 1e-5)  # Meta's "layernormbf16"

        folder = FIXTURES / name
        (folder / "expected").mkdir(parents=True, exist_ok=True)
        sd = meta_state_dict(cfg, ffn_layer, ffn_ratio, gen)
        to_save = as_module_state_dict(sd) if pickle_form == "OrderedDict" else dict(sd)
        torch.save(to_save, folder / "checkpoint.pth")
        shutil.copyfile(cfg_path, folder / "config.json")
        shutil.copyfile(cfg_path, folder / "expected" / "config.json")

        converted = convert_with_transformers(conv, folder / "checkpoint.pth")
        safetensors.torch.save_file(converted, folder / "expected" / "model.safetensors", metadata={"format": "pt"})
        model = check_complete(folder / "expected", converted)
        with torch.no_grad():
            y = model(pixel_values=x).last_hidden_state
        np.save(folder / "expected" / "last_hidden_state_224x224.npy", y.numpy().astype(np.float32))

        write_sources(folder, hf_name, ffn_layer, ffn_ratio, meta_like, pickle_form, sd, converted,
                      args.converter.resolve())
        sizes = {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}
        print(name, f"{len(sd)} Meta keys -> {len(converted)} HF keys", json.dumps(sizes))


if __name__ == "__main__":
    main()
