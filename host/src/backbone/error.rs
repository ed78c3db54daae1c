//! What can go wrong loading, building or running the backbone; every variant names the file,
//! tensor or size concerned.

use std::path::PathBuf;

/// An error from the backbone: weights, configuration, graph, input or runtime.
#[derive(Debug, thiserror::Error)]
pub enum BackboneError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `config.json` is not a DINOv3 ViT configuration dinoedge can run.
    #[error("{path}: bad DINOv3 config: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The safetensors file is truncated, corrupt or not safetensors at all.
    #[error("{path}: not a readable safetensors file: {reason}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// A PyTorch checkpoint that cannot be read or does not fit the configuration.
    #[error("{}: {reason}", path.display())]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A tensor the configuration needs is not in the weights.
    #[error("weights lack tensor {name} (expected shape {expected:?})")]
    MissingTensor {
        /// The tensor's Hugging Face name.
        name: String,
        /// Its expected shape.
        expected: Vec<usize>,
    },
    /// The weights hold tensors the configuration does not use.
    #[error("weights hold {} tensor(s) the config does not account for: {}", names.len(), names.join(", "))]
    UnexpectedTensors {
        /// Their names.
        names: Vec<String>,
    },
    /// A tensor's shape disagrees with the configuration.
    #[error("tensor {name} has shape {found:?}, expected {expected:?} from config.json")]
    TensorShape {
        /// The tensor's name.
        name: String,
        /// Shape the configuration implies.
        expected: Vec<usize>,
        /// Shape in the file.
        found: Vec<usize>,
    },
    /// A tensor is stored in a type other than f32, f16 or bf16.
    #[error("tensor {name} is stored as {found}; dinoedge reads F32, F16 and BF16")]
    TensorDtype {
        /// The tensor's name.
        name: String,
        /// The type in the file.
        found: String,
    },
    /// A tensor holds NaN or infinite values.
    #[error("tensor {name} holds {count} NaN or infinite value(s)")]
    NonFinite {
        /// The tensor's name.
        name: String,
        /// How many.
        count: usize,
    },
    /// The requested input size cannot be run.
    #[error("input size {height}x{width}: {reason}")]
    InputSize {
        /// Requested height.
        height: usize,
        /// Requested width.
        width: usize,
        /// Why not.
        reason: String,
    },
    /// An input tensor has the wrong shape.
    #[error("{what} has shape {found:?}, expected {expected}")]
    InputShape {
        /// Which input.
        what: String,
        /// The shape expected, in words (may hold a symbolic batch).
        expected: String,
        /// The shape given.
        found: Vec<usize>,
    },
    /// A `.npy` file could not be read or written.
    #[error("{path}: {reason}")]
    Npy {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A `--model` argument that is neither a folder nor a repo id in the local hub cache.
    #[error(
        "{repo}: no such model folder, and not in the Hugging Face cache {}: {reason}. To use a hub model offline, download it where the hub is reachable (`huggingface-cli download {repo}`, after accepting its licence) and copy the cache (or set HF_HUB_CACHE to it), or give the model's folder",
        cache.display()
    )]
    NotInHubCache {
        /// The argument as given.
        repo: String,
        /// The cache looked in.
        cache: PathBuf,
        /// What was missing.
        reason: String,
    },
    /// A graph form that cannot be written with the numerics asked for.
    #[error("graph form: {0}")]
    GraphForm(String),
    /// tract refused the graph or failed while running it.
    #[error("tract: {0}")]
    Runtime(String),
    /// No engine could prepare the graph.
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
}

impl BackboneError {
    /// Wraps a tract error, keeping its whole chain of causes.
    pub(crate) fn runtime(e: impl std::fmt::Display) -> Self {
        BackboneError::Runtime(format!("{e:#}"))
    }
}
