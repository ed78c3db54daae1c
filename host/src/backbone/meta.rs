//! Meta's own DINOv3 checkpoints (`dinov3_<arch>_pretrain_<data>-<hash>.pth`, a ZIP holding a
//! pickled state dict), read without Python and mapped to the Hugging Face layout dinoedge
//! loads. The map (`models/META_KEYS.md` has it as a table, with its two sources):
//!
//! - `cls_token` → `embeddings.cls_token`; `storage_tokens` → `embeddings.register_tokens`;
//!   `patch_embed.proj.*` → `embeddings.patch_embeddings.*`; `norm.*` → `norm.*`.
//! - `blocks.N.` → `layer.N.`, and inside a block: `norm1`/`norm2` kept; `attn.qkv.weight`
//!   `[3D, D]` split in thirds into `attention.{q,k,v}_proj.weight`; `attn.qkv.bias` times
//!   `attn.qkv.bias_mask` (Meta applies the mask at run time: it zeroes the key bias) split into
//!   `q_proj.bias` and `v_proj.bias`, the key third dropped (it must be zero once masked: the
//!   key projection has no bias); `attn.proj` → `attention.o_proj`; `ls1.gamma`/`ls2.gamma` →
//!   `layer_scale1.lambda1`/`layer_scale2.lambda1`; MLP `mlp.fc1`/`fc2` → `mlp.up_proj`/
//!   `down_proj`; SwiGLU `mlp.w1`/`w2`/`w3` → `mlp.gate_proj`/`up_proj`/`down_proj`.
//! - Dropped: `mask_token` (training only), `rope_embed.periods` (checked against the config's
//!   `rope_theta`, then recomputed by the graph), `local_cls_norm.*` (Meta applies it to local
//!   training crops only).
//!
//! Anything else is an error naming the tensors: a checkpoint this map does not cover is never
//! half imported.

use std::collections::BTreeMap;
use std::path::Path;

use pytorch_reader::{DType, PytorchReader};

use super::weights::Weights;
use super::{BackboneError, Dinov3Config};

/// A tensor as the checkpoint holds it: its shape and its values widened to f32 (a checkpoint
/// holding a tensor of another type is refused whole).
#[derive(Clone, Debug, PartialEq)]
pub struct MetaTensor {
    /// Its shape in the checkpoint.
    pub shape: Vec<usize>,
    /// Its element type's name (`F32`, `BF16`, ...).
    pub dtype: String,
    /// Its values, row-major.
    pub data: Vec<f32>,
}

/// Reads every tensor of a Meta checkpoint. A checkpoint that wraps its state dict (under
/// `model`, `teacher` or `state_dict`, as training snapshots do) is unwrapped.
pub fn read_checkpoint(path: &Path) -> Result<BTreeMap<String, MetaTensor>, BackboneError> {
    let error = |reason: String| BackboneError::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let mut reader = PytorchReader::new(path).map_err(|e| error(e.to_string()))?;
    if reader.get("cls_token").is_none() {
        for key in ["teacher", "model", "state_dict"] {
            if let Ok(inner) = PytorchReader::with_top_level_key(path, key)
                && inner.get("cls_token").is_some()
            {
                reader = inner;
                break;
            }
        }
    }
    let mut out = BTreeMap::new();
    for (name, tensor) in reader.tensors() {
        let bytes = tensor.read().map_err(|e| error(e.to_string()))?;
        let data = widen(tensor.dtype(), &bytes)
            .ok_or_else(|| error(format!("{name}: {:?} is not a float type", tensor.dtype())))?;
        if data.len() != tensor.num_elements() {
            return Err(error(format!(
                "{name}: {} values for shape {:?}",
                data.len(),
                tensor.shape()
            )));
        }
        out.insert(
            name.clone(),
            MetaTensor {
                shape: tensor.shape().to_vec(),
                dtype: format!("{:?}", tensor.dtype()),
                data,
            },
        );
    }
    Ok(out)
}

/// Native-endian float bytes as f32 (`None` for a non-float type).
fn widen(dtype: DType, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        DType::F64 => bytes
            .chunks_exact(8)
            .map(|c| f64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_ne_bytes([c[0], c[1]]).to_f32())
            .collect(),
        DType::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_ne_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}

/// Meta names that are read but carry nothing the Hugging Face layout keeps.
fn dropped(name: &str) -> bool {
    name == "mask_token"
        || name == "rope_embed.periods"
        || name.starts_with("local_cls_norm.")
        || (name.starts_with("blocks.") && name.ends_with(".attn.qkv.bias_mask"))
}

/// Meta names outside the blocks that are only renamed, and their Hugging Face names.
const TOP_RENAMES: [(&str, &str); 6] = [
    ("cls_token", "embeddings.cls_token"),
    ("storage_tokens", "embeddings.register_tokens"),
    (
        "patch_embed.proj.weight",
        "embeddings.patch_embeddings.weight",
    ),
    ("patch_embed.proj.bias", "embeddings.patch_embeddings.bias"),
    ("norm.weight", "norm.weight"),
    ("norm.bias", "norm.bias"),
];

/// Inside a block (`blocks.N.` in Meta's names, `layer.N.` in Hugging Face's), the tensors
/// that are only renamed, whatever the MLP.
const BLOCK_RENAMES: [(&str, &str); 8] = [
    ("norm1.weight", "norm1.weight"),
    ("norm1.bias", "norm1.bias"),
    ("norm2.weight", "norm2.weight"),
    ("norm2.bias", "norm2.bias"),
    ("attn.proj.weight", "attention.o_proj.weight"),
    ("attn.proj.bias", "attention.o_proj.bias"),
    ("ls1.gamma", "layer_scale1.lambda1"),
    ("ls2.gamma", "layer_scale2.lambda1"),
];

/// A GELU MLP's (`fc2(gelu(fc1 x))`).
const MLP_RENAMES: [(&str, &str); 4] = [
    ("mlp.fc1.weight", "mlp.up_proj.weight"),
    ("mlp.fc1.bias", "mlp.up_proj.bias"),
    ("mlp.fc2.weight", "mlp.down_proj.weight"),
    ("mlp.fc2.bias", "mlp.down_proj.bias"),
];

/// A SwiGLU's (`w3(silu(w1 x) * w2 x)`).
const SWIGLU_RENAMES: [(&str, &str); 6] = [
    ("mlp.w1.weight", "mlp.gate_proj.weight"),
    ("mlp.w1.bias", "mlp.gate_proj.bias"),
    ("mlp.w2.weight", "mlp.up_proj.weight"),
    ("mlp.w2.bias", "mlp.up_proj.bias"),
    ("mlp.w3.weight", "mlp.down_proj.weight"),
    ("mlp.w3.bias", "mlp.down_proj.bias"),
];

/// A Meta name's Hugging Face name, for the tensors that are only renamed.
fn renamed(name: &str) -> Option<String> {
    if let Some((_, hf)) = TOP_RENAMES.iter().find(|(m, _)| *m == name) {
        return Some((*hf).to_owned());
    }
    let (block, rest) = name.strip_prefix("blocks.")?.split_once('.')?;
    let block: usize = block.parse().ok()?;
    let (_, hf) = BLOCK_RENAMES
        .iter()
        .chain(&MLP_RENAMES)
        .chain(&SWIGLU_RENAMES)
        .find(|(m, _)| *m == rest)?;
    Some(format!("layer.{block}.{hf}"))
}

/// Maps a Meta state dict to checked Hugging Face weights for `config`: missing, misshapen and
/// unknown tensors are errors that name them by their Meta names.
pub fn to_weights(
    mut meta: BTreeMap<String, MetaTensor>,
    config: &Dinov3Config,
) -> Result<Weights, BackboneError> {
    let d = config.hidden_size;
    check_rope_periods(meta.get("rope_embed.periods"), config)?;
    let mut hf: BTreeMap<String, MetaTensor> = BTreeMap::new();
    for i in 0..config.num_hidden_layers {
        let qkv_w = format!("blocks.{i}.attn.qkv.weight");
        let w = take(&mut meta, &qkv_w, &[3 * d, d])?;
        for (part, proj) in ["q_proj", "k_proj", "v_proj"].iter().enumerate() {
            hf.insert(
                format!("layer.{i}.attention.{proj}.weight"),
                MetaTensor {
                    shape: vec![d, d],
                    dtype: w.dtype.clone(),
                    data: w.data[part * d * d..(part + 1) * d * d].to_vec(),
                },
            );
        }
        let qkv_b = format!("blocks.{i}.attn.qkv.bias");
        if !meta.contains_key(&qkv_b) {
            continue;
        }
        let mut b = take(&mut meta, &qkv_b, &[3 * d])?;
        let mask_name = format!("blocks.{i}.attn.qkv.bias_mask");
        if let Some(mask) = meta.get(&mask_name) {
            if mask.shape != [3 * d] {
                return Err(BackboneError::TensorShape {
                    name: mask_name,
                    expected: vec![3 * d],
                    found: mask.shape.clone(),
                });
            }
            // What Meta's attention does on every call: the stored key bias never counts.
            for (v, m) in b.data.iter_mut().zip(&mask.data) {
                *v *= *m;
            }
        }
        // A third the configuration has no bias for must be zero once masked: dropping a bias
        // Meta applies would change the model.
        for (part, name, kept) in [
            (0, "query", config.query_bias),
            (1, "key", config.key_bias),
            (2, "value", config.value_bias),
        ] {
            if !kept && b.data[part * d..(part + 1) * d].iter().any(|v| *v != 0.0) {
                return Err(BackboneError::Checkpoint {
                    path: Default::default(),
                    reason: format!(
                        "{qkv_b}: the {name} third is not zero once masked, and this \
                         configuration's {name} projection has no bias ({name}_bias false)"
                    ),
                });
            }
        }
        for (part, proj, kept) in [
            (0, "q_proj", config.query_bias),
            (1, "k_proj", config.key_bias),
            (2, "v_proj", config.value_bias),
        ] {
            if kept {
                hf.insert(
                    format!("layer.{i}.attention.{proj}.bias"),
                    MetaTensor {
                        shape: vec![d],
                        dtype: b.dtype.clone(),
                        data: b.data[part * d..(part + 1) * d].to_vec(),
                    },
                );
            }
        }
    }
    let mut unknown = Vec::new();
    for (name, tensor) in meta {
        if dropped(&name) {
            continue;
        }
        match renamed(&name) {
            Some(to) => {
                hf.insert(to, tensor);
            }
            None => unknown.push(name),
        }
    }
    if !unknown.is_empty() {
        return Err(BackboneError::UnexpectedTensors { names: unknown });
    }
    // Errors name tensors as the checkpoint does, not as they were renamed.
    Weights::assemble(
        config,
        hf,
        |t| t.shape.clone(),
        |_, t| Ok((t.dtype, t.data)),
        None,
    )
    .map_err(|e| match e {
        BackboneError::MissingTensor { name, expected } => BackboneError::MissingTensor {
            name: meta_name(&name, config),
            expected,
        },
        BackboneError::TensorShape {
            name,
            expected,
            found,
        } => BackboneError::TensorShape {
            name: meta_name(&name, config),
            expected,
            found,
        },
        other => other,
    })
}

/// The Meta name a Hugging Face name was renamed from (the name itself where none was).
fn meta_name(hf: &str, config: &Dinov3Config) -> String {
    let from = |meta: &str| format!("{meta} (as {hf})");
    if let Some((meta, _)) = TOP_RENAMES.iter().find(|(_, h)| *h == hf) {
        return from(meta);
    }
    let in_block = hf
        .strip_prefix("layer.")
        .and_then(|rest| rest.split_once('.'));
    let Some((block, rest)) = in_block else {
        return hf.to_owned();
    };
    // up_proj and down_proj come from fc1/fc2 or w2/w3, by the MLP's kind.
    let mlp: &[(&str, &str)] = if config.use_gated_mlp {
        &SWIGLU_RENAMES
    } else {
        &MLP_RENAMES
    };
    BLOCK_RENAMES
        .iter()
        .chain(mlp)
        .find(|(_, h)| *h == rest)
        .map_or_else(
            || hf.to_owned(),
            |(meta, _)| from(&format!("blocks.{block}.{meta}")),
        )
}

/// Removes `name` from `meta`, checking its shape.
fn take(
    meta: &mut BTreeMap<String, MetaTensor>,
    name: &str,
    shape: &[usize],
) -> Result<MetaTensor, BackboneError> {
    let t = meta
        .remove(name)
        .ok_or_else(|| BackboneError::MissingTensor {
            name: name.to_owned(),
            expected: shape.to_vec(),
        })?;
    if t.shape != shape {
        return Err(BackboneError::TensorShape {
            name: name.to_owned(),
            expected: shape.to_vec(),
            found: t.shape,
        });
    }
    if t.data.len() != shape.iter().product::<usize>() {
        return Err(BackboneError::TensorShape {
            name: name.to_owned(),
            expected: shape.to_vec(),
            found: vec![t.data.len()],
        });
    }
    Ok(t)
}

/// Meta stores RoPE's periods; the graph recomputes them from `rope_theta`, so they must agree
/// (`period_j = theta^(4j / head_dim)`), or the imported model would rotate differently.
fn check_rope_periods(
    periods: Option<&MetaTensor>,
    config: &Dinov3Config,
) -> Result<(), BackboneError> {
    let Some(periods) = periods else {
        return Ok(());
    };
    let head_dim = config.hidden_size / config.num_attention_heads.max(1);
    let expected = head_dim / 4;
    if periods.shape != [expected] {
        return Err(BackboneError::TensorShape {
            name: "rope_embed.periods".into(),
            expected: vec![expected],
            found: periods.shape.clone(),
        });
    }
    // What the stored type can hold: bf16 keeps 8 bits of mantissa, f16 11.
    let tolerance = match periods.dtype.as_str() {
        "BF16" => 8e-3,
        "F16" => 1e-3,
        _ => 1e-5,
    };
    for (j, &p) in periods.data.iter().enumerate() {
        let want = config.rope_theta.powf(4.0 * j as f64 / head_dim as f64);
        let relative = ((f64::from(p) - want) / want).abs();
        if relative.is_nan() || relative > tolerance {
            return Err(BackboneError::Checkpoint {
                path: Default::default(),
                reason: format!(
                    "rope_embed.periods[{j}] is {p}, rope_theta {} gives {want}: the \
                     configuration does not match the checkpoint",
                    config.rope_theta
                ),
            });
        }
    }
    Ok(())
}

/// Reads a Meta checkpoint and maps it for `config` (`dinoedge model import --meta`).
pub fn import(path: &Path, config: &Dinov3Config) -> Result<Weights, BackboneError> {
    let meta = read_checkpoint(path)?;
    to_weights(meta, config).map_err(|e| match e {
        BackboneError::Checkpoint { reason, .. } => BackboneError::Checkpoint {
            path: path.to_path_buf(),
            reason,
        },
        other => other,
    })
}
