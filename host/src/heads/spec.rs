//! A head on disk: `head.json` (what it does, for which backbone) and `head.safetensors` (its
//! linear layer), and the check that it fits the backbone it is asked to run on.

use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};

use crate::backbone::{InputSize, ModelDir};

/// The description file's name in a head folder.
pub const SPEC_FILE: &str = "head.json";
/// The weights file's name in a head folder.
pub const WEIGHTS_FILE: &str = "head.safetensors";
/// The `format` value of a head description.
pub const FORMAT: &str = "dinoedge-head";
/// The description version this build writes and reads.
pub const VERSION: u32 = 1;

/// What a head predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// One (or, multi-label, several) classes per frame.
    Classify,
    /// A class per pixel.
    Segment,
}

/// Which backbone features a head reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HeadInput {
    /// `[CLS ; mean of the patch tokens]`, 2D values per frame (the DINOv3 linear evaluation).
    ClsMeanPatch,
    /// Each patch token of the last block, then of these intermediate blocks (normed), D values
    /// each, concatenated per patch.
    Patch {
        /// 0-based intermediate blocks, in order.
        #[serde(default)]
        blocks: Vec<usize>,
    },
}

impl HeadInput {
    /// Values per sample for a backbone of width `d`.
    pub fn width(&self, d: usize) -> usize {
        match self {
            HeadInput::ClsMeanPatch => 2 * d,
            HeadInput::Patch { blocks } => d * (1 + blocks.len()),
        }
    }
}

/// The backbone a head was fitted on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackboneId {
    /// Architecture name (`vits16`, ...).
    pub arch: String,
    /// Embedding width.
    pub hidden_size: usize,
    /// Content fingerprint of the weights.
    pub fingerprint: String,
    /// Whether those were random weights from `dinoedge model init`.
    pub random_weights: bool,
}

impl BackboneId {
    /// The identity of a loaded model.
    pub fn of(model: &ModelDir) -> Self {
        BackboneId {
            arch: model.config.arch_name(),
            hidden_size: model.config.hidden_size,
            fingerprint: model.weights.fingerprint().to_string(),
            random_weights: model.random_weights,
        }
    }
}

/// `head.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadSpec {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`VERSION`].
    pub version: u32,
    /// Classification or segmentation.
    pub task: Task,
    /// Sigmoid per class instead of one softmax (classification only).
    #[serde(default)]
    pub multi_label: bool,
    /// Class names, in output order (index 0 is background for segmentation).
    pub classes: Vec<String>,
    /// Features read.
    pub input: HeadInput,
    /// Backbone fitted on.
    pub backbone: BackboneId,
    /// Input size `[height, width]` the features were extracted at.
    pub size: [usize; 2],
    /// How it was fitted (free-form: regularisation, samples, metrics).
    #[serde(default)]
    pub fit: serde_json::Value,
}

/// Why a head could not be loaded, saved or used.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// `head.json` or `head.safetensors` is malformed or inconsistent.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The head was fitted for another backbone, size or feature layout.
    #[error("head {head} does not fit this backbone: {reason}")]
    Mismatch {
        /// The head folder.
        head: PathBuf,
        /// What differs (fitted value versus this backbone's).
        reason: String,
    },
}

/// A head read from disk: description and linear layer.
#[derive(Clone, Debug)]
pub struct HeadFiles {
    /// Where it was read from.
    pub path: PathBuf,
    /// `head.json`.
    pub spec: HeadSpec,
    /// `[classes, input width]`.
    pub weight: Array2<f32>,
    /// `[classes]`.
    pub bias: Array1<f32>,
}

impl HeadFiles {
    /// Reads and checks a head folder.
    pub fn load(dir: &Path) -> Result<Self, HeadError> {
        let spec_path = dir.join(SPEC_FILE);
        let text = std::fs::read_to_string(&spec_path).map_err(|source| HeadError::Io {
            path: spec_path.clone(),
            source,
        })?;
        let spec: HeadSpec = serde_json::from_str(&text).map_err(|e| HeadError::Format {
            path: spec_path.clone(),
            reason: e.to_string(),
        })?;
        let bad = |reason: String| HeadError::Format {
            path: spec_path.clone(),
            reason,
        };
        if spec.format != FORMAT {
            return Err(bad(format!(
                "format is {:?}, expected {FORMAT:?}",
                spec.format
            )));
        }
        if spec.version != VERSION {
            return Err(bad(format!(
                "version {} is not supported (this build reads version {VERSION}); upgrade dinoedge",
                spec.version
            )));
        }
        if spec.classes.len() < 2 && !spec.multi_label {
            return Err(bad(format!(
                "{} class(es); a head needs at least 2",
                spec.classes.len()
            )));
        }
        let weights_path = dir.join(WEIGHTS_FILE);
        let bytes = std::fs::read(&weights_path).map_err(|source| HeadError::Io {
            path: weights_path.clone(),
            source,
        })?;
        let wbad = |reason: String| HeadError::Format {
            path: weights_path.clone(),
            reason,
        };
        let st = SafeTensors::deserialize(&bytes).map_err(|e| wbad(e.to_string()))?;
        let read = |name: &str, shape: &[usize]| -> Result<Vec<f32>, HeadError> {
            let t = st
                .tensor(name)
                .map_err(|_| wbad(format!("lacks tensor {name}")))?;
            if t.dtype() != Dtype::F32 || t.shape() != shape {
                return Err(wbad(format!(
                    "tensor {name} is {:?} {:?}, expected F32 {shape:?}",
                    t.dtype(),
                    t.shape()
                )));
            }
            let v = crate::backbone::widen(name, t.dtype(), t.data())
                .map_err(|e| wbad(e.to_string()))?;
            if v.iter().any(|x| !x.is_finite()) {
                return Err(wbad(format!("tensor {name} holds NaN or infinite values")));
            }
            Ok(v)
        };
        let k = spec.classes.len();
        let f = spec.input.width(spec.backbone.hidden_size);
        let weight = Array2::from_shape_vec((k, f), read("weight", &[k, f])?)
            .map_err(|e| wbad(e.to_string()))?;
        let bias = Array1::from(read("bias", &[k])?);
        Ok(HeadFiles {
            path: dir.to_path_buf(),
            spec,
            weight,
            bias,
        })
    }

    /// Writes `head.json` and `head.safetensors` into `dir`, creating it.
    pub fn save(&self, dir: &Path) -> Result<(), HeadError> {
        let io = |path: PathBuf| move |source| HeadError::Io { path, source };
        std::fs::create_dir_all(dir).map_err(io(dir.to_path_buf()))?;
        let spec_path = dir.join(SPEC_FILE);
        let json = serde_json::to_string_pretty(&self.spec).map_err(|e| HeadError::Format {
            path: spec_path.clone(),
            reason: e.to_string(),
        })?;
        std::fs::write(&spec_path, json + "\n").map_err(io(spec_path))?;
        let weights_path = dir.join(WEIGHTS_FILE);
        let w: Vec<u8> = self.weight.iter().flat_map(|v| v.to_le_bytes()).collect();
        let b: Vec<u8> = self.bias.iter().flat_map(|v| v.to_le_bytes()).collect();
        let fbad = |e: safetensors::SafeTensorError| HeadError::Format {
            path: dir.join(WEIGHTS_FILE),
            reason: e.to_string(),
        };
        let views = vec![
            (
                "weight",
                TensorView::new(Dtype::F32, self.weight.shape().to_vec(), &w).map_err(fbad)?,
            ),
            (
                "bias",
                TensorView::new(Dtype::F32, vec![self.bias.len()], &b).map_err(fbad)?,
            ),
        ];
        safetensors::serialize_to_file(views, None, &weights_path).map_err(fbad)
    }

    /// A head with random weights for `model` (seeded, so runs repeat): for demonstrations and
    /// tests of the machinery only; its outputs mean nothing, and its fit record says so.
    pub fn random(
        model: &ModelDir,
        task: Task,
        classes: Vec<String>,
        size: InputSize,
        seed: u64,
    ) -> Self {
        use rand::SeedableRng;
        use rand_distr::Distribution;
        let input = match task {
            Task::Classify => HeadInput::ClsMeanPatch,
            Task::Segment => HeadInput::Patch { blocks: Vec::new() },
        };
        let width = input.width(model.config.hidden_size);
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(seed);
        let normal = rand_distr::StandardNormal;
        let scale = 1.0 / (width as f32).sqrt();
        let weight = Array2::from_shape_simple_fn((classes.len(), width), || {
            let v: f32 = normal.sample(&mut rng);
            v * scale
        });
        HeadFiles {
            path: PathBuf::from(format!("random-{task:?}-head").to_lowercase()),
            spec: HeadSpec {
                format: FORMAT.into(),
                version: VERSION,
                task,
                multi_label: false,
                classes: classes.clone(),
                input,
                backbone: BackboneId::of(model),
                size: [size.height, size.width],
                fit: serde_json::json!({"random_weights": true, "seed": seed}),
            },
            bias: Array1::zeros(classes.len()),
            weight,
        }
    }

    /// Checks that the head was fitted on `model` at `size`; the error names what differs.
    pub fn check_fits(
        &self,
        model: &ModelDir,
        size: InputSize,
        blocks_available: &[usize],
    ) -> Result<(), HeadError> {
        let here = BackboneId::of(model);
        let mismatch = |reason: String| HeadError::Mismatch {
            head: self.path.clone(),
            reason,
        };
        let fitted = &self.spec.backbone;
        if fitted.arch != here.arch || fitted.hidden_size != here.hidden_size {
            return Err(mismatch(format!(
                "fitted on {} (D {}), this backbone is {} (D {})",
                fitted.arch, fitted.hidden_size, here.arch, here.hidden_size
            )));
        }
        if fitted.fingerprint != here.fingerprint {
            return Err(mismatch(format!(
                "fitted on weights {}, these are {}",
                fitted.fingerprint, here.fingerprint
            )));
        }
        if self.spec.size != [size.height, size.width] {
            return Err(mismatch(format!(
                "fitted at {}x{}, running at {size}",
                self.spec.size[0], self.spec.size[1]
            )));
        }
        if let HeadInput::Patch { blocks } = &self.spec.input
            && let Some(b) = blocks.iter().find(|b| !blocks_available.contains(b))
        {
            return Err(mismatch(format!(
                "reads intermediate block {b}, which the backbone was not asked for"
            )));
        }
        Ok(())
    }
}
