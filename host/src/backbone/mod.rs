//! The DINOv3 ViT backbone: Hugging Face-layout weights in, an ONNX graph built for one input
//! size, run on the CPU by tract.
//!
//! Data flow: [`ModelDir::load`] reads `config.json` and `model.safetensors` and checks every
//! tensor; [`graph::build_graph`] writes the inference graph for an [`InputSize`] (RoPE tables as
//! constants, no `If`/`Loop`); [`Backbone::load`] has tract optimise it, and a [`BackboneState`]
//! per worker turns normalised `[N, 3, H, W]` pixels into [`Features`].

mod config;
mod error;
pub mod graph;
pub mod hub;
pub mod meta;
pub mod npy;
pub mod numerics;
pub mod onnx;
pub mod rope;
mod runtime;
mod weights;

use std::path::{Path, PathBuf};

pub use config::{Arch, Dinov3Config};
pub use error::BackboneError;
pub use graph::{AttentionOp, GraphOptions};
pub use runtime::{Backbone, BackboneState, Features, OnnxFile, OnnxFileState, RuntimeOptions};
pub(crate) use weights::widen;
pub use weights::{RANDOM_SEED_KEY, WeightTensor, Weights, expected_tensors};

/// An input size in pixels, height by width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputSize {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

impl InputSize {
    /// A size; see [`InputSize::check`] for what a model accepts.
    pub fn new(height: usize, width: usize) -> Self {
        InputSize { height, width }
    }

    /// Both sides positive multiples of the patch size.
    pub fn check(self, patch: usize) -> Result<(), BackboneError> {
        let bad = |reason: String| BackboneError::InputSize {
            height: self.height,
            width: self.width,
            reason,
        };
        if self.height == 0 || self.width == 0 {
            return Err(bad("both sides must be positive".into()));
        }
        if !self.height.is_multiple_of(patch) || !self.width.is_multiple_of(patch) {
            return Err(bad(format!(
                "both sides must be multiples of the patch size {patch} (nearest below: {}x{})",
                self.height / patch * patch,
                self.width / patch * patch
            )));
        }
        Ok(())
    }
}

impl std::fmt::Display for InputSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.height, self.width)
    }
}

impl std::str::FromStr for InputSize {
    type Err = String;

    /// `"224"` (square) or `"HxW"`, e.g. `"160x240"`.
    fn from_str(s: &str) -> Result<Self, String> {
        let parse = |t: &str| {
            t.trim()
                .parse::<usize>()
                .map_err(|_| format!("{s:?} is not a size: expected HxW, e.g. 224x224"))
        };
        match s.split_once(['x', 'X']) {
            Some((h, w)) => Ok(InputSize::new(parse(h)?, parse(w)?)),
            None => {
                let n = parse(s)?;
                Ok(InputSize::new(n, n))
            }
        }
    }
}

/// A model folder in the Hugging Face layout, read and checked.
#[derive(Clone, Debug)]
pub struct ModelDir {
    /// Where it was read from.
    pub path: PathBuf,
    /// `config.json`.
    pub config: Dinov3Config,
    /// `model.safetensors`, widened to f32.
    pub weights: Weights,
    /// Whether the weights came from `dinoedge model init` (random, not pretrained).
    pub random_weights: bool,
}

/// Weight bytes from which an export puts the weights in a side file (protobuf's limit is 2 GB).
pub const EXTERNAL_DATA_THRESHOLD: usize = 1 << 30;

/// The weights file's name in a model folder.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The configuration file's name in a model folder.
pub const CONFIG_FILE: &str = "config.json";

#[cfg(test)]
impl ModelDir {
    /// A small random-weight ViT for tests: ViT-S/16's layout narrowed to `hidden` wide (MLP
    /// twice that, two heads) and `blocks` deep.
    pub(crate) fn tiny_random(hidden: usize, blocks: usize, seed: u64) -> Self {
        let mut config = Arch::Vits16.config();
        config.hidden_size = hidden;
        config.intermediate_size = 2 * hidden;
        config.num_attention_heads = 2;
        config.num_hidden_layers = blocks;
        ModelDir::random_for(config, seed)
    }
}

impl ModelDir {
    /// Reads `DIR/config.json` and `DIR/model.safetensors` and checks them against each other.
    /// `DIR` may also be a Hugging Face repo id (`ORG/NAME[@REVISION]`), found offline in the
    /// hub cache ([`hub`]).
    pub fn load(dir: &Path) -> Result<Self, BackboneError> {
        let dir = &hub::resolve_model_arg(dir, hub::HubCache::from_env().as_ref())?;
        let config = Dinov3Config::from_file(&dir.join(CONFIG_FILE))?;
        let weights = Weights::load(&dir.join(WEIGHTS_FILE), &config)?;
        Ok(ModelDir {
            path: dir.to_path_buf(),
            random_weights: weights.random_seed().is_some(),
            config,
            weights,
        })
    }

    /// Which weights these are, for every figure made with them: `random weights`, or
    /// `weights ORG/NAME@COMMIT` (from the hub cache) or `weights FOLDER`, with the content
    /// fingerprint.
    pub fn weights_label(&self) -> String {
        if self.random_weights {
            return "random weights".into();
        }
        let name =
            hub::repo_of_snapshot(&self.path).unwrap_or_else(|| self.path.display().to_string());
        format!("weights {name} ({})", self.weights.fingerprint())
    }

    /// Deterministic random weights for a released architecture (what `dinoedge model init` writes).
    pub fn random(arch: Arch, seed: u64) -> Self {
        ModelDir::random_for(arch.config(), seed)
    }

    /// Deterministic random weights for `config`.
    fn random_for(config: Dinov3Config, seed: u64) -> Self {
        let weights = Weights::random(&config, seed);
        ModelDir {
            path: PathBuf::new(),
            config,
            weights,
            random_weights: true,
        }
    }

    /// Writes `config.json` and `model.safetensors` into `dir`, creating it.
    pub fn save(&self, dir: &Path) -> Result<(), BackboneError> {
        let io = |path: PathBuf| move |source| BackboneError::Io { path, source };
        std::fs::create_dir_all(dir).map_err(io(dir.to_path_buf()))?;
        let config_path = dir.join(CONFIG_FILE);
        let json =
            serde_json::to_string_pretty(&self.config).map_err(|e| BackboneError::Config {
                path: config_path.clone(),
                reason: e.to_string(),
            })?;
        std::fs::write(&config_path, json + "\n").map_err(io(config_path.clone()))?;
        self.weights.save(&dir.join(WEIGHTS_FILE))
    }

    /// The ONNX model for `size` as bytes, weights included.
    pub fn export_onnx(
        &self,
        size: InputSize,
        options: &GraphOptions,
    ) -> Result<Vec<u8>, BackboneError> {
        let proto = graph::build_graph(&self.config, &self.weights, size, options)?;
        Ok(onnx::to_bytes(&proto))
    }

    /// Writes the ONNX model for `size` to `path` (what `dinoedge model export` does). From
    /// [`EXTERNAL_DATA_THRESHOLD`] bytes of weights (or when `external` is set) the weights go to
    /// `<file name>.data` beside it, in ONNX's external-data form, since one protobuf message
    /// cannot exceed 2 GB. Returns the bytes written in all.
    pub fn write_onnx(
        &self,
        size: InputSize,
        options: &GraphOptions,
        path: &Path,
        external: bool,
    ) -> Result<u64, BackboneError> {
        self.write_onnx_with(size, options, &numerics::Numerics::fp32(), path, external)
    }

    /// [`ModelDir::write_onnx`], with the graph's numbers written as `numerics` asks (FP16
    /// with FP32 islands, say).
    pub fn write_onnx_with(
        &self,
        size: InputSize,
        options: &GraphOptions,
        numerics: &numerics::Numerics,
        path: &Path,
        external: bool,
    ) -> Result<u64, BackboneError> {
        let proto = graph::build_graph_with(&self.config, &self.weights, size, options, numerics)?;
        let external_from = if external { 0 } else { EXTERNAL_DATA_THRESHOLD };
        onnx::write_model(&proto, path, external_from)
    }
}
