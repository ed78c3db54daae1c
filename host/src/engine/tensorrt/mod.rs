//! The TensorRT engine: engines built from dinoedge's graphs through the shim
//! ([`dinoedge_tensorrt`]), kept in a cache keyed by what they were built from and for, gated
//! against the CPU on real frames, and run behind the engine seam.
//!
//! Engines are built when a device is provisioned (`dinoedge engine build`), never during a run:
//! a build takes minutes and competes for memory with the live pipeline. At run time the engine
//! seam only looks one up ([`find`]): one built for these weights, size, batch, precision and
//! outputs, on this TensorRT, CUDA and GPU, whose gate passed. `auto` passes over TensorRT,
//! saying why, when there is none.

pub mod cache;
pub mod fake;
pub mod gate;
mod provision;
mod runnable;

use std::path::PathBuf;
use std::sync::Arc;

use dinoedge_tensorrt::{Shim, ShimError};
use tract_onnx::tract_core::runtime::Runnable;

pub use cache::{EngineCache, EngineMeta, Environment, Listed, Verdict};
pub use provision::{BuildOutcome, BuildRequest, build, graph_outputs};
pub use runnable::{TrtPlan, TrtRunnable, last_gpu_ms};

/// What went wrong with a TensorRT engine.
#[derive(Debug, thiserror::Error)]
pub enum TensorrtError {
    /// The shim or TensorRT itself.
    #[error(transparent)]
    Shim(#[from] ShimError),
    /// A cache file could not be read or written.
    #[error("engine cache {}: {reason}", path.display())]
    Cache {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A cached engine that must not be loaded, and why (foreign, corrupt, truncated).
    #[error("engine {} refused: {reason}", path.display())]
    Refused {
        /// The engine file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No usable engine in the cache for what is asked.
    #[error("no TensorRT engine for {what}: {reason}")]
    NoEngine {
        /// What was looked for.
        what: String,
        /// Why none fits, and what to run.
        reason: String,
    },
    /// The engine's inputs or outputs are not what the backbone needs.
    #[error("the TensorRT engine does not fit the backbone: {0}")]
    Io(String),
    /// The graph to build from.
    #[error("graph: {0}")]
    Graph(String),
    /// The gate could not run.
    #[error("gate: {0}")]
    Gate(String),
}

/// Opens the shim from where [`dinoedge_tensorrt::locate`] finds it.
pub fn open_shim() -> Result<Shim, TensorrtError> {
    let path = dinoedge_tensorrt::locate()?;
    Ok(Shim::open(&path)?)
}

impl Environment {
    /// This machine's, where TensorRT loads and GPU 0 answers; `None` elsewhere (entries are
    /// then listed without being checked against it).
    pub fn here() -> Option<Environment> {
        open_shim()
            .ok()
            .and_then(|shim| Environment::current(&shim).ok())
    }

    /// What GPU 0 and the loaded TensorRT are, as engines are keyed.
    pub fn current(shim: &Shim) -> Result<Environment, TensorrtError> {
        let v = shim.versions()?;
        let d = shim.device(0)?;
        Ok(Environment {
            tensorrt: dinoedge_tensorrt::version_string(v.library),
            cuda: dinoedge_tensorrt::cuda_version_string(v.cuda_runtime),
            gpu: d.name,
            compute_capability: format!("{}.{}", d.compute_capability.0, d.compute_capability.1),
            multiprocessors: d.multiprocessors,
        })
    }
}

/// What the engine seam asks the cache for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// The weights' content fingerprint (a backbone built from a model folder).
    pub model_fingerprint: Option<String>,
    /// The graph file's hash (a backbone run from an ONNX file).
    pub graph_hash: Option<String>,
    /// Input height and width.
    pub size: [usize; 2],
    /// Frames per run.
    pub batch: usize,
    /// `fp32`, `fp16` or `int8`.
    pub precision: String,
    /// The outputs the backbone reads, in order.
    pub outputs: Vec<String>,
}

impl Wanted {
    fn describe(&self) -> String {
        format!(
            "{}x{} {} batch {} ({})",
            self.size[0],
            self.size[1],
            self.precision,
            self.batch,
            self.model_fingerprint
                .as_deref()
                .map(|f| format!("weights {f}"))
                .or_else(|| self.graph_hash.as_deref().map(|g| format!("graph {g}")))
                .unwrap_or_default()
        )
    }

    fn matches(&self, meta: &EngineMeta) -> bool {
        let model = match (&self.model_fingerprint, &self.graph_hash) {
            (Some(f), _) => meta.model_fingerprint.as_ref() == Some(f),
            (None, Some(g)) => &meta.graph_hash == g,
            (None, None) => false,
        };
        model
            && meta.size == self.size
            && meta.build.batch == self.batch
            && meta.precision == self.precision
            && meta.outputs == self.outputs
    }
}

/// The newest engine in `cache` for `wanted` that may run in `env`, or why there is none: none
/// built, only foreign ones, or only ones their gate refused (with the gate's figures).
pub fn find(
    cache: &EngineCache,
    env: &Environment,
    wanted: &Wanted,
) -> Result<EngineMeta, TensorrtError> {
    find_all(cache, env, wanted)?
        .into_iter()
        .next()
        .ok_or_else(|| TensorrtError::NoEngine {
            what: wanted.describe(),
            reason: "none found".into(),
        })
}

/// Every engine in `cache` for `wanted` that may run in `env`, newest first (so that a newest
/// one whose file turns out damaged leaves the next to try), or why there is none.
pub fn find_all(
    cache: &EngineCache,
    env: &Environment,
    wanted: &Wanted,
) -> Result<Vec<EngineMeta>, TensorrtError> {
    let mut refused = Vec::new();
    let mut foreign = Vec::new();
    let mut passed: Vec<EngineMeta> = Vec::new();
    for listed in cache.list()? {
        let Listed::Entry(meta) = listed else {
            continue;
        };
        if !wanted.matches(&meta) {
            continue;
        }
        if let Some(why) = meta.foreign_to(env) {
            foreign.push(why);
        } else if !meta.verdict.passed {
            refused.push(format!("{}: {}", meta.key, meta.verdict.summary));
        } else {
            passed.push(*meta);
        }
    }
    if !passed.is_empty() {
        passed.sort_by_key(|m| std::cmp::Reverse(m.created_unix));
        return Ok(passed);
    }
    let reason = if let Some(r) = refused.first() {
        format!("the gate refused the engine built for it ({r})")
    } else if let Some(f) = foreign.first() {
        format!(
            "the engine built for it is foreign ({f}); rebuild it here with `dinoedge engine build`"
        )
    } else {
        format!(
            "none built in {}; run `dinoedge engine build` first",
            cache.dir().display()
        )
    };
    Err(TensorrtError::NoEngine {
        what: wanted.describe(),
        reason,
    })
}

/// Loads `meta`'s engine from `cache` and wraps it for the seam: the plan, and the device's
/// description (`tensorrt: Orin (sm_87, 7620 MiB), TensorRT 10.3.0, engine KEY`).
pub fn load(
    shim: &Shim,
    cache: &EngineCache,
    env: &Environment,
    meta: &EngineMeta,
) -> Result<(Arc<TrtPlan>, String), TensorrtError> {
    let bytes = cache.engine_bytes(meta, env)?;
    let engine = shim.load_engine(&bytes)?;
    // TensorRT holds its own copy now; on an 8 GB Orin the file's bytes are worth freeing first.
    drop(bytes);
    let (plan, _context) = TrtPlan::new(engine, &meta.outputs)?;
    let mib = shim.device(0).map_or(0, |d| d.total_bytes >> 20);
    let device = format!(
        "tensorrt: {} (sm_{}, {mib} MiB), TensorRT {}, engine {}",
        env.gpu,
        env.compute_capability.replace('.', ""),
        env.tensorrt,
        meta.key
    );
    Ok((Arc::new(plan), device))
}

/// The seam's entry: the plan for `wanted` from the default cache, the device's description,
/// and the hash of the graph the engine was built from (what results name).
pub(crate) fn prepare(
    wanted: &Wanted,
) -> Result<(Arc<dyn Runnable>, String, String), TensorrtError> {
    let shim = open_shim()?;
    prepare_from(&shim, &EngineCache::new(cache::default_dir()), wanted)
}

/// [`prepare`] with a given shim and cache: the newest passing engine that loads.
pub(crate) fn prepare_from(
    shim: &Shim,
    cache: &EngineCache,
    wanted: &Wanted,
) -> Result<(Arc<dyn Runnable>, String, String), TensorrtError> {
    let env = Environment::current(shim)?;
    let mut failed = Vec::new();
    let mut taken = None;
    for meta in find_all(cache, &env, wanted)? {
        match load(shim, cache, &env, &meta) {
            Ok(loaded) => {
                taken = Some((meta, loaded));
                break;
            }
            Err(e) => {
                tracing::warn!("engine: TensorRT engine {} not usable: {e}", meta.key);
                failed.push(e.to_string());
            }
        }
    }
    let Some((meta, (plan, device))) = taken else {
        return Err(TensorrtError::NoEngine {
            what: wanted.describe(),
            reason: format!(
                "every engine built for it failed to load: {}",
                failed.join("; ")
            ),
        });
    };
    tracing::info!(
        "engine: TensorRT engine {} ({})",
        meta.key,
        meta.verdict.summary
    );
    Ok((
        Arc::new(runnable::TrtRunnable(plan)),
        device,
        meta.graph_hash.clone(),
    ))
}

/// Why this machine cannot run TensorRT engines at all (no shim, no TensorRT, a version the
/// shim was not built for), or `None`.
pub fn unavailable() -> Option<String> {
    open_shim().err().map(|e| e.to_string())
}

#[cfg(test)]
mod tests;
