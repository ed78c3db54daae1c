//! Weights in the Hugging Face layout (`model.safetensors`), checked tensor by tensor against the
//! configuration, widened to f32 whatever they were stored as; and deterministic random weights.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use safetensors::{Dtype, SafeTensors};

use super::{BackboneError, Dinov3Config};

/// One tensor, widened to f32, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightTensor {
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its values.
    pub data: Vec<f32>,
}

/// Every tensor of a DINOv3 ViT, by its Hugging Face name, checked against a configuration.
#[derive(Clone, Debug)]
pub struct Weights {
    tensors: BTreeMap<String, WeightTensor>,
    stored_as: String,
    random_seed: Option<u64>,
    /// [`Weights::fingerprint`], computed on first use (it reads every value).
    fingerprint: std::sync::OnceLock<String>,
}

/// The safetensors metadata key under which `dinoedge model init` records its seed, so that
/// every result from such weights can say "random weights".
pub const RANDOM_SEED_KEY: &str = "dinoedge.random_weights_seed";

/// Names and shapes of every tensor the configuration calls for, in the Hugging Face layout.
/// `embeddings.mask_token` is optional (training only) and not listed here.
pub fn expected_tensors(c: &Dinov3Config) -> Vec<(String, Vec<usize>)> {
    let d = c.hidden_size;
    let f = c.intermediate_size;
    let p = c.patch_size;
    let mut out = vec![
        ("embeddings.cls_token".to_string(), vec![1, 1, d]),
        (
            "embeddings.register_tokens".to_string(),
            vec![1, c.num_register_tokens, d],
        ),
        (
            "embeddings.patch_embeddings.weight".to_string(),
            vec![d, c.num_channels, p, p],
        ),
        ("embeddings.patch_embeddings.bias".to_string(), vec![d]),
        ("norm.weight".to_string(), vec![d]),
        ("norm.bias".to_string(), vec![d]),
    ];
    if c.num_register_tokens == 0 {
        out.retain(|(n, _)| n != "embeddings.register_tokens");
    }
    for i in 0..c.num_hidden_layers {
        let l = |s: &str| format!("layer.{i}.{s}");
        let mut push = |name: String, shape: Vec<usize>| out.push((name, shape));
        push(l("norm1.weight"), vec![d]);
        push(l("norm1.bias"), vec![d]);
        for (proj, has_bias) in [
            ("q_proj", c.query_bias),
            ("k_proj", c.key_bias),
            ("v_proj", c.value_bias),
            ("o_proj", c.proj_bias),
        ] {
            push(l(&format!("attention.{proj}.weight")), vec![d, d]);
            if has_bias {
                push(l(&format!("attention.{proj}.bias")), vec![d]);
            }
        }
        push(l("layer_scale1.lambda1"), vec![d]);
        push(l("norm2.weight"), vec![d]);
        push(l("norm2.bias"), vec![d]);
        let mut ffn_in = vec!["up_proj"];
        if c.use_gated_mlp {
            ffn_in.insert(0, "gate_proj");
        }
        for proj in ffn_in {
            push(l(&format!("mlp.{proj}.weight")), vec![f, d]);
            if c.mlp_bias {
                push(l(&format!("mlp.{proj}.bias")), vec![f]);
            }
        }
        push(l("mlp.down_proj.weight"), vec![d, f]);
        if c.mlp_bias {
            push(l("mlp.down_proj.bias"), vec![d]);
        }
        push(l("layer_scale2.lambda1"), vec![d]);
    }
    out
}

/// Names transformers may write that inference does not use.
const UNUSED_TENSORS: &[&str] = &["embeddings.mask_token"];

impl Weights {
    /// Reads `model.safetensors` and checks it against `config`.
    pub fn load(path: &Path, config: &Dinov3Config) -> Result<Self, BackboneError> {
        let bytes = std::fs::read(path).map_err(|source| BackboneError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_safetensors(&bytes, config, path)
    }

    /// Parses safetensors bytes (`origin` names them in errors) and checks them against `config`.
    pub fn from_safetensors(
        bytes: &[u8],
        config: &Dinov3Config,
        origin: &Path,
    ) -> Result<Self, BackboneError> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| BackboneError::Safetensors {
            path: origin.to_path_buf(),
            reason: e.to_string(),
        })?;
        let random_seed = SafeTensors::read_metadata(bytes)
            .ok()
            .and_then(|(_, m)| m.metadata().as_ref()?.get(RANDOM_SEED_KEY)?.parse().ok());
        let mut found: BTreeMap<String, _> = BTreeMap::new();
        for (name, view) in st.tensors() {
            // Checkpoints saved from the encoder-wrapping module name blocks `model.layer.N`.
            let name = name.strip_prefix("model.").unwrap_or(&name).to_string();
            found.insert(name, view);
        }
        Self::assemble(
            config,
            found,
            |view| view.shape().to_vec(),
            |name, view| {
                Ok((
                    format!("{:?}", view.dtype()),
                    widen(name, view.dtype(), view.data())?,
                ))
            },
            random_seed,
        )
    }

    /// Checks tensors found in a file, by their Hugging Face names, against `config`: every
    /// expected one present with its shape (checked before its values are read, with `read`)
    /// and finite values, nothing unexpected. `shape` and `read` see each tensor as the file
    /// holds it; `read` gives its element type's name and its values widened to f32.
    pub(crate) fn assemble<T>(
        config: &Dinov3Config,
        mut found: BTreeMap<String, T>,
        shape: impl Fn(&T) -> Vec<usize>,
        read: impl Fn(&str, T) -> Result<(String, Vec<f32>), BackboneError>,
        random_seed: Option<u64>,
    ) -> Result<Self, BackboneError> {
        let mut tensors = BTreeMap::new();
        let mut dtypes = BTreeSet::new();
        for (name, expected) in expected_tensors(config) {
            let tensor = found
                .remove(&name)
                .ok_or_else(|| BackboneError::MissingTensor {
                    name: name.clone(),
                    expected: expected.clone(),
                })?;
            let found_shape = shape(&tensor);
            if found_shape != expected {
                return Err(BackboneError::TensorShape {
                    name,
                    expected,
                    found: found_shape,
                });
            }
            let (dtype, data) = read(&name, tensor)?;
            dtypes.insert(dtype);
            let bad = data.iter().filter(|v| !v.is_finite()).count();
            if bad > 0 {
                return Err(BackboneError::NonFinite { name, count: bad });
            }
            tensors.insert(
                name,
                WeightTensor {
                    shape: expected,
                    data,
                },
            );
        }
        for unused in UNUSED_TENSORS {
            found.remove(*unused);
        }
        if !found.is_empty() {
            return Err(BackboneError::UnexpectedTensors {
                names: found.into_keys().collect(),
            });
        }
        Ok(Weights {
            tensors,
            stored_as: dtypes.into_iter().collect::<Vec<_>>().join("+"),
            random_seed,
            fingerprint: Default::default(),
        })
    }

    /// Deterministic random weights for `config`, the same for the same seed on every machine:
    /// transformers' initialisation (truncated normal, std 0.02, for projections and tokens;
    /// LayerNorm at identity; LayerScale at `layerscale_value`), except that biases are drawn
    /// too, so that no part of the graph is trivially zero.
    pub fn random(config: &Dinov3Config, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut tensors = BTreeMap::new();
        for (name, shape) in expected_tensors(config) {
            let len: usize = shape.iter().product();
            let data = if name.ends_with("lambda1") {
                vec![config.layerscale_value as f32; len]
            } else if name.contains("norm") && name.ends_with("weight") {
                vec![1.0; len]
            } else if name.contains("norm") && name.ends_with("bias") {
                vec![0.0; len]
            } else {
                truncated_normal(&mut rng, len, 0.02)
            };
            tensors.insert(name, WeightTensor { shape, data });
        }
        // transformers expects the (training-only) mask token in a checkpoint; zeros, as its init.
        let d = config.hidden_size;
        tensors.insert(
            "embeddings.mask_token".into(),
            WeightTensor {
                shape: vec![1, 1, d],
                data: vec![0.0; d],
            },
        );
        Weights {
            tensors,
            stored_as: "F32".into(),
            random_seed: Some(seed),
            fingerprint: Default::default(),
        }
    }

    /// Plants `count` residual channels with very large activations, as trained ViTs with
    /// register tokens have (random weights lack them): the patch embedding's bias and the CLS
    /// and register tokens get `magnitude` added on evenly spaced channels, which the residual
    /// stream then carries into every block's LayerNorms and projections. The final norm gives
    /// those channels a weight of 0, so that the model's output (and any cosine or head measured
    /// on it) is about the other channels, not dominated by the planted ones. Returns the
    /// channels.
    pub fn plant_outlier_channels(
        &mut self,
        config: &Dinov3Config,
        count: usize,
        magnitude: f32,
    ) -> Vec<usize> {
        let d = config.hidden_size;
        let channels: Vec<usize> = (1..=count.min(d))
            .map(|i| i * d / (count.min(d) + 1))
            .collect();
        for name in [
            "embeddings.patch_embeddings.bias",
            "embeddings.cls_token",
            "embeddings.register_tokens",
        ] {
            if let Some(t) = self.tensors.get_mut(name) {
                for (i, v) in t.data.iter_mut().enumerate() {
                    if channels.contains(&(i % d)) {
                        *v += magnitude;
                    }
                }
            }
        }
        for name in ["norm.weight", "norm.bias"] {
            if let Some(t) = self.tensors.get_mut(name) {
                for &c in &channels {
                    if let Some(v) = t.data.get_mut(c) {
                        *v = 0.0;
                    }
                }
            }
        }
        channels
    }

    /// Writes the tensors as `model.safetensors` (f32).
    pub fn save(&self, path: &Path) -> Result<(), BackboneError> {
        let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = self
            .tensors
            .iter()
            .map(|(name, t)| {
                let raw = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
                (name.clone(), raw, t.shape.clone())
            })
            .collect();
        let mut views = Vec::with_capacity(bytes.len());
        for (name, raw, shape) in &bytes {
            let view = safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), raw)
                .map_err(|e| BackboneError::Safetensors {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
            views.push((name.as_str(), view));
        }
        let mut metadata =
            std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
        if let Some(seed) = self.random_seed {
            metadata.insert(RANDOM_SEED_KEY.to_string(), seed.to_string());
        }
        let metadata = Some(metadata);
        safetensors::serialize_to_file(views, metadata, path).map_err(|e| {
            BackboneError::Safetensors {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }
        })
    }

    /// The tensor called `name`; every name from [`expected_tensors`] is present.
    pub fn get(&self, name: &str) -> Result<&WeightTensor, BackboneError> {
        self.tensors
            .get(name)
            .ok_or_else(|| BackboneError::MissingTensor {
                name: name.to_string(),
                expected: Vec::new(),
            })
    }

    /// The storage types found in the file, e.g. `"BF16"`.
    pub fn stored_as(&self) -> &str {
        &self.stored_as
    }

    /// A content fingerprint of the tensors inference uses: CRC-32 over names and widened f32
    /// values, in name order. Heads record it, to refuse running on another backbone.
    pub fn fingerprint(&self) -> &str {
        self.fingerprint.get_or_init(|| {
            let mut h = crc32fast::Hasher::new();
            for (name, t) in &self.tensors {
                if UNUSED_TENSORS.contains(&name.as_str()) {
                    continue;
                }
                h.update(name.as_bytes());
                let bytes: Vec<u8> = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
                h.update(&bytes);
            }
            format!("crc32:{:08x}", h.finalize())
        })
    }

    /// The seed, when these are random weights from `dinoedge model init`.
    pub fn random_seed(&self) -> Option<u64> {
        self.random_seed
    }

    /// Number of parameters inference uses (the training-only mask token not counted).
    pub fn parameter_count(&self) -> usize {
        self.tensors
            .iter()
            .filter(|(name, _)| !UNUSED_TENSORS.contains(&name.as_str()))
            .map(|(_, t)| t.data.len())
            .sum()
    }
}

/// Widens little-endian f32, f16 or bf16 bytes to f32.
pub(crate) fn widen(name: &str, dtype: Dtype, raw: &[u8]) -> Result<Vec<f32>, BackboneError> {
    Ok(match dtype {
        Dtype::F32 => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => raw
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => raw
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        other => {
            return Err(BackboneError::TensorDtype {
                name: name.to_string(),
                found: format!("{other:?}"),
            });
        }
    })
}

/// `len` draws from N(0, std²) cut at ±2 std by redrawing, as `torch.nn.init.trunc_normal_`.
fn truncated_normal(rng: &mut ChaCha8Rng, len: usize, std: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    // A positive finite std always makes a valid distribution; fall back to zeros otherwise.
    let Ok(normal) = Normal::new(0.0f32, std) else {
        return vec![0.0; len];
    };
    while out.len() < len {
        let v = normal.sample(rng);
        if v.abs() <= 2.0 * std {
            out.push(v);
        }
    }
    out
}
