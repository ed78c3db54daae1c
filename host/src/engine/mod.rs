//! The engine seam: what runs the backbone's graph. The model definition (configuration,
//! weights, the ONNX graph built from them) lives in [`crate::backbone`]; an engine takes that
//! graph once, prepares it for one input shape, and hands out one running state per worker.
//!
//! Engines: `cpu` (tract, always present), `cuda` (tract-cuda, in builds with a `cuda-*`
//! feature) and `tensorrt` (an engine built beforehand by `dinoedge engine build` and gated
//! against the CPU, run through the TensorRT shim loaded at run time; see [`tensorrt`]). `auto`
//! tries them in a fixed order (TensorRT, then CUDA, then the CPU) and records why each engine
//! it passed over was not taken. The choice is made, and the engine warmed up, before the first
//! frame; it does not change during a run.

pub mod compare;
mod cpu;
#[cfg(feature = "cuda")]
mod cuda;
pub mod fault;
pub(crate) mod hash;
pub mod tensorrt;

use std::sync::Arc;

use serde::Serialize;
use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::runtime::Runnable;

pub use fault::{GPU_FAULT_EXIT_CODE, GpuFaultPolicy};
pub use hash::graph_hash;

/// An engine that runs the backbone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// tract on the CPU.
    Cpu,
    /// tract-cuda on an NVIDIA GPU.
    Cuda,
    /// A TensorRT engine from the engine cache.
    Tensorrt,
}

impl EngineKind {
    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Cpu => "cpu",
            EngineKind::Cuda => "cuda",
            EngineKind::Tensorrt => "tensorrt",
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which engine the user asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EngineRequest {
    /// The first engine in the fixed order that this build has and this machine can run.
    #[default]
    Auto,
    /// tract on the CPU.
    Cpu,
    /// tract-cuda on the GPU; an error where it cannot run.
    Cuda,
    /// A TensorRT engine built by `dinoedge engine build` whose gate passed; an error where
    /// there is none.
    Tensorrt,
}

impl std::fmt::Display for EngineRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EngineRequest::Auto => "auto",
            EngineRequest::Cpu => "cpu",
            EngineRequest::Cuda => "cuda",
            EngineRequest::Tensorrt => "tensorrt",
        })
    }
}

/// How the pipeline's backbone is to be run: which engine, with how many CPU threads, and what
/// to do if the GPU faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineSetup {
    /// The engine asked for.
    pub request: EngineRequest,
    /// The precision it computes in.
    pub precision: Precision,
    /// Threads per run for the CPU engine.
    pub threads: usize,
    /// What a GPU fault does.
    pub on_gpu_fault: GpuFaultPolicy,
}

impl EngineSetup {
    /// The CPU engine with `threads` threads.
    pub fn cpu(threads: usize) -> Self {
        EngineSetup {
            request: EngineRequest::Cpu,
            precision: Precision::Fp32,
            threads,
            on_gpu_fault: GpuFaultPolicy::Exit,
        }
    }
}

/// The numeric precision the engine computes in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats throughout.
    #[default]
    Fp32,
    /// The engine's own half-precision form of the graph: weights and activations in 16-bit
    /// floats, with the normalisations (their reductions and scaling) and the attention softmax
    /// kept in 32-bit, and f32 in and out. For the GPU (on the CPU, tract emulates it slowly).
    Fp16,
    /// 8-bit integers where `dinoedge model quantize` put them: only on a TensorRT engine built
    /// from that graph.
    Int8,
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Int8 => "int8",
        })
    }
}

/// Ops an FP16 graph keeps in FP32: the LayerNorm's reductions and normalisation, and softmax,
/// where half precision loses range or accuracy (see `../shared/research/gpu-path.md`).
fn stays_fp32(op: &str) -> bool {
    op == "Softmax" || op == "RmsNorm" || op == "LayerNorm" || op.starts_with("Reduce")
}

/// An engine passed over, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NotTaken {
    /// The engine's name (`tensorrt`, `cuda`).
    pub engine: &'static str,
    /// Why it was not taken.
    pub reason: String,
}

/// Which engine runs the backbone, and how: what every result and report names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EngineInfo {
    /// What was asked for.
    #[serde(rename = "engine_requested")]
    pub requested: EngineRequest,
    /// The engine taken.
    pub engine: EngineKind,
    /// The precision it computes in.
    pub precision: Precision,
    /// The device it runs on, e.g. `cpu: AMD EPYC 7B13 (2 threads)` or
    /// `cuda: NVIDIA H200 (sm_90, 143771 MiB)`.
    pub device: String,
    /// A hash of the graph it runs (see [`graph_hash`]).
    pub graph_hash: String,
    /// The engines `auto` passed over before it, with why (empty for an explicit request).
    #[serde(rename = "engines_not_taken")]
    pub not_taken: Vec<NotTaken>,
}

impl EngineInfo {
    /// One line for logs and summaries: `cuda fp32 on NVIDIA H200 (sm_90), graph 3f2a...`.
    pub fn summary(&self) -> String {
        format!(
            "{} {} on {}, graph {}",
            self.engine, self.precision, self.device, self.graph_hash
        )
    }

    /// One line per engine not taken: `tensorrt not taken: ...`.
    pub fn not_taken_lines(&self) -> Vec<String> {
        self.not_taken
            .iter()
            .map(|n| format!("{} not taken: {}", n.engine, n.reason))
            .collect()
    }
}

/// Why no engine could run the backbone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The engine asked for is not in this build, or this machine cannot run it.
    #[error("the {engine} engine is not available: {reason}")]
    Unavailable {
        /// The engine.
        engine: EngineKind,
        /// Why, naming what is missing.
        reason: String,
    },
    /// The engine could not prepare the graph (an op it lacks, a kernel that failed to
    /// compile, out of device memory).
    #[error("the {engine} engine could not prepare the graph: {reason}")]
    Prepare {
        /// The engine.
        engine: EngineKind,
        /// Why.
        reason: String,
    },
}

/// Why this machine or build cannot run the CUDA engine, or `None` where it can (libraries,
/// a driver new enough, the toolkit headers its kernels compile against). Probes by looking,
/// never by a call that could abort the process.
pub fn cuda_unavailable() -> Option<String> {
    #[cfg(feature = "cuda")]
    {
        cuda::unavailable()
    }
    #[cfg(not(feature = "cuda"))]
    {
        Some(
            "this build has no CUDA support (rebuild with --features cuda-12060 for JetPack 6.1+ \
             or cuda-13000 for CUDA 13)"
                .to_owned(),
        )
    }
}

/// What `auto` would take on this machine, without preparing anything: the engine and the
/// engines passed over before it (for `doctor`). Preparing can still fail where this says
/// CUDA (a kernel that does not compile, no device memory); `auto` then falls back, saying why.
pub fn auto_choice() -> (EngineKind, Vec<NotTaken>) {
    let mut not_taken = vec![NotTaken {
        engine: "tensorrt",
        reason: tensorrt::unavailable().unwrap_or_else(|| {
            "TensorRT is here; auto takes an engine only where `dinoedge engine build` made one \
             for the model, size, batch and precision and its gate passed"
                .to_owned()
        }),
    }];
    match cuda_unavailable() {
        None => (EngineKind::Cuda, not_taken),
        Some(reason) => {
            not_taken.push(NotTaken {
                engine: "cuda",
                reason,
            });
            (EngineKind::Cpu, not_taken)
        }
    }
}

/// How many nodes of each op the prepared plan runs, by the op's name (e.g. which ops a GPU
/// engine took over and which it left on the CPU); empty where the plan does not say.
pub(crate) fn op_census(runnable: &dyn Runnable) -> std::collections::BTreeMap<String, usize> {
    let mut census = std::collections::BTreeMap::new();
    if let Some(model) = runnable.typed_model() {
        for node in &model.nodes {
            *census.entry(node.op.name().into_owned()).or_insert(0) += 1;
        }
    }
    census
}

/// The mean GPU time of a run so far, in milliseconds, measured by CUDA events around each
/// enqueue, where the engine measures it (TensorRT).
pub(crate) fn mean_gpu_ms(runnable: &dyn Runnable) -> Option<f64> {
    runnable
        .downcast_ref::<tensorrt::TrtRunnable>()
        .and_then(|r| r.0.mean_gpu_ms())
}

/// The GPU time of a state's last run in milliseconds, where its engine measures it
/// (TensorRT).
pub(crate) fn last_gpu_ms(state: &dyn tract_onnx::tract_core::runtime::State) -> Option<f64> {
    tensorrt::last_gpu_ms(state)
}

/// A graph prepared by one engine: shared by every worker's state.
#[derive(Clone)]
pub(crate) struct Prepared {
    /// The plan every state is spawned from.
    pub runnable: Arc<dyn Runnable>,
    /// Which engine, how, and why.
    pub info: EngineInfo,
}

/// The graph an engine is handed: built in memory from a model folder, or an ONNX file.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Graph<'a> {
    /// Built by [`crate::backbone::graph::build_graph`].
    Built(&'a ModelProto),
    /// Any ONNX file with one f32 `[N, 3, H, W]` input.
    File(&'a std::path::Path),
}

impl Graph<'_> {
    /// The graph as a typed tract model with a concrete input shape, in `precision`, not yet
    /// optimised: each engine optimises it for itself.
    fn typed_model(self, shape: [usize; 4], precision: Precision) -> TractResult<TypedModel> {
        let inference = match self {
            Graph::Built(proto) => tract_onnx::onnx().model_for_proto_model(proto)?,
            Graph::File(path) => tract_onnx::onnx()
                .model_for_path(path)
                .map_err(|e| e.context(path.display().to_string()))?,
        };
        let mut model = inference
            .with_input_fact(0, f32::fact(shape).into())?
            .into_typed()?
            .into_decluttered()?;
        if precision == Precision::Fp16 {
            use tract_onnx::tract_core::floats::FloatPrecisionTranslator;
            use tract_onnx::tract_core::transform::ModelTransform;
            FloatPrecisionTranslator::with_filter(DatumType::F32, DatumType::F16, |node| {
                !stays_fp32(&node.op.name())
            })
            .transform(&mut model)?;
            model = model.into_decluttered()?;
        }
        Ok(model)
    }

    /// Its hash (see [`graph_hash`]; a file's is the hash of its bytes).
    fn hash(self) -> Result<String, EngineError> {
        match self {
            Graph::Built(proto) => Ok(graph_hash(proto)),
            Graph::File(path) => hash::file_hash(path).map_err(|e| EngineError::Prepare {
                engine: EngineKind::Cpu,
                reason: format!("{}: {e}", path.display()),
            }),
        }
    }
}

/// What a TensorRT engine must have been built from to stand in for a graph: the weights (a
/// graph built from a model folder) and the outputs the backbone reads.
#[derive(Clone, Debug, Default)]
pub(crate) struct Identity {
    /// The weights' content fingerprint, for a graph built from a model folder.
    pub model_fingerprint: Option<String>,
    /// The graph's outputs, in order.
    pub outputs: Vec<String>,
}

/// Prepares `graph` for inputs of `shape` in `precision` on the engine `request` names
/// (`auto`: the first that prepares it). `threads` is the CPU engine's thread count; `identity`
/// picks a TensorRT engine from the cache.
pub(crate) fn prepare(
    request: EngineRequest,
    graph: Graph<'_>,
    identity: &Identity,
    shape: [usize; 4],
    threads: usize,
    precision: Precision,
) -> Result<Prepared, EngineError> {
    let graph_hash = graph.hash()?;
    let mut not_taken = Vec::new();
    let order: &[EngineKind] = match request {
        EngineRequest::Auto => &[EngineKind::Tensorrt, EngineKind::Cuda, EngineKind::Cpu],
        EngineRequest::Cpu => &[EngineKind::Cpu],
        EngineRequest::Cuda => &[EngineKind::Cuda],
        EngineRequest::Tensorrt => &[EngineKind::Tensorrt],
    };
    let wanted = tensorrt::Wanted {
        model_fingerprint: identity.model_fingerprint.clone(),
        graph_hash: match graph {
            Graph::File(_) => Some(graph_hash.clone()),
            Graph::Built(_) => None,
        },
        size: [shape[2], shape[3]],
        batch: shape[0],
        precision: precision.to_string(),
        outputs: identity.outputs.clone(),
    };
    let mut last = None;
    for &kind in order {
        match prepare_on(kind, graph, &wanted, shape, threads, precision) {
            Ok((runnable, device, built_from)) => {
                let info = EngineInfo {
                    requested: request,
                    engine: kind,
                    precision,
                    device,
                    // A TensorRT engine runs the graph it was built from, not the one in memory.
                    graph_hash: built_from.unwrap_or(graph_hash),
                    not_taken,
                };
                tracing::info!("engine: {}", info.summary());
                for line in info.not_taken_lines() {
                    tracing::info!("engine: {line}");
                }
                return Ok(Prepared { runnable, info });
            }
            Err(e) => {
                let reason = match &e {
                    EngineError::Unavailable { reason, .. } => reason.clone(),
                    EngineError::Prepare { .. } => e.to_string(),
                };
                not_taken.push(NotTaken {
                    engine: kind.name(),
                    reason,
                });
                last = Some(e);
            }
        }
    }
    // `auto` tried several: every reason counts, not only the last one's.
    match last {
        Some(e) if not_taken.len() > 1 => Err(EngineError::Unavailable {
            engine: match e {
                EngineError::Unavailable { engine, .. } | EngineError::Prepare { engine, .. } => {
                    engine
                }
            },
            reason: not_taken
                .iter()
                .map(|n| format!("{}: {}", n.engine, n.reason))
                .collect::<Vec<_>>()
                .join("; "),
        }),
        Some(e) => Err(e),
        None => Err(EngineError::Unavailable {
            engine: EngineKind::Cpu,
            reason: "no engine to try".to_owned(),
        }),
    }
}

/// A built graph optimised for the CPU engine with `threads` threads, without choosing or
/// logging an engine: for tools that run many graphs (calibration, sensitivity sweeps).
pub(crate) fn cpu_plan(
    proto: &ModelProto,
    shape: [usize; 4],
    threads: usize,
) -> Result<Arc<dyn Runnable>, EngineError> {
    let prepare_error = |e: TractError| EngineError::Prepare {
        engine: EngineKind::Cpu,
        reason: format!("{e:#}"),
    };
    let model = Graph::Built(proto)
        .typed_model(shape, Precision::Fp32)
        .map_err(prepare_error)?;
    Ok(cpu::prepare(model, threads).map_err(prepare_error)?.0)
}

/// What one engine prepared: the plan, a description of the device, and the hash of the graph
/// it runs where that is not the graph handed in (a TensorRT engine's).
type PreparedOn = (Arc<dyn Runnable>, String, Option<String>);

/// Prepares the graph on one engine.
fn prepare_on(
    kind: EngineKind,
    graph: Graph<'_>,
    wanted: &tensorrt::Wanted,
    shape: [usize; 4],
    threads: usize,
    precision: Precision,
) -> Result<PreparedOn, EngineError> {
    let prepare_error = |e: TractError| EngineError::Prepare {
        engine: kind,
        reason: format!("{e:#}"),
    };
    if precision == Precision::Int8 && kind != EngineKind::Tensorrt {
        return Err(EngineError::Unavailable {
            engine: kind,
            reason: "int8 runs only on a TensorRT engine built from `dinoedge model quantize`'s \
                     graph (tract's INT8 is slower than its FP32 on the CPU)"
                .to_owned(),
        });
    }
    match kind {
        EngineKind::Tensorrt => tensorrt::prepare(wanted)
            .map(|(plan, device, built_from)| (plan, device, Some(built_from)))
            .map_err(|e| match e {
                tensorrt::TensorrtError::Shim(dinoedge_tensorrt::ShimError::Call { .. }) => {
                    EngineError::Prepare {
                        engine: kind,
                        reason: e.to_string(),
                    }
                }
                _ => EngineError::Unavailable {
                    engine: kind,
                    reason: e.to_string(),
                },
            }),
        EngineKind::Cpu => {
            let model = graph.typed_model(shape, precision).map_err(prepare_error)?;
            let (plan, device) = cpu::prepare(model, threads).map_err(prepare_error)?;
            Ok((plan, device, None))
        }
        EngineKind::Cuda => {
            if let Some(reason) = cuda_unavailable() {
                return Err(EngineError::Unavailable {
                    engine: kind,
                    reason,
                });
            }
            #[cfg(feature = "cuda")]
            {
                let model = graph.typed_model(shape, precision).map_err(prepare_error)?;
                cuda::prepare(model).map(|(plan, device)| (plan, device, None))
            }
            #[cfg(not(feature = "cuda"))]
            {
                let _ = (shape, threads, precision);
                Err(EngineError::Unavailable {
                    engine: kind,
                    reason: "this build has no CUDA support".to_owned(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests;
