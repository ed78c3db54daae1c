//! Provisioning an engine: the graph (built in memory, or a file from `model export` or
//! `model quantize`), the build through the shim with the kept timing cache (or an engine made
//! by `trtexec`, imported), the gate against the CPU on real frames, and the cache entry with
//! the verdict.

use std::path::{Path, PathBuf};
use std::time::Instant;

use dinoedge_tensorrt::{BuildOptions, Progress, Shim};
use ndarray::{Array4, ArrayView3};
use prost::Message;
use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::runtime::Runnable;

use super::TensorrtError;
use super::cache::{self, BuildSettings, EngineCache, EngineMeta, Environment};
use super::gate::GateTally;
use super::runnable::{TrtPlan, TrtRunnable};
use crate::backbone::graph::{
    GraphOptions, INPUT_NAME, OUTPUT_NAME, build_graph_with, intermediate_output_name,
};
use crate::backbone::numerics::{GraphPrecision, Numerics};
use crate::backbone::{Backbone, InputSize, ModelDir, RuntimeOptions, onnx};
use crate::engine::{EngineRequest, Precision};

/// What to provision.
#[derive(Debug)]
pub struct BuildRequest<'a> {
    /// The model the engine runs (its FP32 graph is the gate's reference).
    pub model: &'a ModelDir,
    /// Input size.
    pub size: InputSize,
    /// Frames per run.
    pub batch: usize,
    /// The engine's precision; it must be the graph's.
    pub precision: GraphPrecision,
    /// The graph to build from (`model export`, `model quantize`); `None` builds the FP32 or
    /// FP16 graph in memory (INT8 needs `model quantize`'s graph).
    pub graph: Option<&'a Path>,
    /// Import this engine made by `trtexec` instead of building.
    pub trtexec: Option<&'a Path>,
    /// Builder optimisation level, 0-5.
    pub opt_level: Option<i32>,
    /// Workspace limit, MiB.
    pub workspace_mib: Option<u64>,
    /// The gate's frames, preprocessed, `[3, H, W]` each, flattened.
    pub frames: &'a [Vec<f32>],
    /// Where they came from.
    pub frames_from: Vec<String>,
    /// The gate's threshold.
    pub threshold: f64,
    /// CPU threads for the reference.
    pub threads: usize,
    /// Build again even if a passing engine for the same key is cached.
    pub force: bool,
}

/// What provisioning did.
#[derive(Debug)]
pub struct BuildOutcome {
    /// The entry, with its verdict.
    pub meta: EngineMeta,
    /// The engine file.
    pub path: PathBuf,
    /// Whether a cached engine was reused instead of built.
    pub reused: bool,
}

/// The output names of an ONNX file (the main one first, then `block_N`), and its precision
/// from dinoedge's metadata (`fp32` when the graph says none).
pub fn graph_outputs(path: &Path) -> Result<(Vec<String>, String), TensorrtError> {
    let bytes = std::fs::read(path)
        .map_err(|e| TensorrtError::Graph(format!("{}: {e}", path.display())))?;
    let proto = ModelProto::decode(bytes.as_slice())
        .map_err(|e| TensorrtError::Graph(format!("{}: not an ONNX model: {e}", path.display())))?;
    let outputs = proto
        .graph
        .as_ref()
        .map(|g| g.output.iter().map(|o| o.name.clone()).collect())
        .unwrap_or_default();
    let precision = proto
        .metadata_props
        .iter()
        .find(|p| p.key == "dinoedge.precision")
        .map_or_else(|| "fp32".to_owned(), |p| p.value.clone());
    Ok((outputs, precision))
}

/// The graph an engine is built from: a file, or built from the model in memory.
enum GraphSource<'a> {
    File(&'a Path),
    Built(Box<ModelProto>),
}

/// Checks the outputs are the backbone's (`last_hidden_state`, then `block_N`s); returns the
/// intermediate blocks.
fn backbone_blocks(outputs: &[String]) -> Result<Vec<usize>, TensorrtError> {
    let mut names = outputs.iter();
    if names.next().map(String::as_str) != Some(OUTPUT_NAME) {
        return Err(TensorrtError::Io(format!(
            "its first output must be {OUTPUT_NAME}, it has {}",
            outputs.join(", ")
        )));
    }
    names
        .map(|n| {
            n.strip_prefix("block_")
                .and_then(|b| b.parse::<usize>().ok())
                .filter(|b| &intermediate_output_name(*b) == n)
                .ok_or_else(|| {
                    TensorrtError::Io(format!(
                        "output {n} is not one of the backbone's (calibration taps and other \
                         extra outputs are not run on TensorRT)"
                    ))
                })
        })
        .collect()
}

fn precision_name(p: GraphPrecision) -> String {
    p.to_string()
}

/// Provisions an engine: builds (or imports) it, gates it against the CPU on the request's
/// frames, and stores it with the verdict. A refused engine is stored too (so `engine list`
/// and `doctor` say why), and `auto` never takes it.
pub fn build(
    shim: &Shim,
    cache: &EngineCache,
    request: &BuildRequest<'_>,
    progress: &mut (dyn FnMut(&Progress<'_>) -> bool + Send),
) -> Result<BuildOutcome, TensorrtError> {
    if request.frames.is_empty() {
        return Err(TensorrtError::Gate(
            "no frames to gate the engine with (give a recording or images)".into(),
        ));
    }
    if request.batch == 0 {
        return Err(TensorrtError::Graph("the batch must be at least 1".into()));
    }
    let env = Environment::current(shim)?;
    let precision = precision_name(request.precision);
    // The graph: a file, or written from memory into a scratch folder inside the cache (so the
    // rename-free parser reads it from the same disk).
    // A graph built from the model stays in memory until a build needs it as a file: a cached
    // engine is found by the graph's hash alone.
    let (source, graph_hash, outputs) = match request.graph {
        Some(path) => {
            let (outputs, graph_precision) = graph_outputs(path)?;
            if graph_precision != precision {
                return Err(TensorrtError::Graph(format!(
                    "{} is a {graph_precision} graph (its dinoedge.precision), but the engine \
                     is asked for {precision}",
                    path.display()
                )));
            }
            let hash = crate::engine::hash::file_hash(path)
                .map_err(|e| TensorrtError::Graph(format!("{}: {e}", path.display())))?;
            (GraphSource::File(path), hash, outputs)
        }
        None => {
            if request.precision == GraphPrecision::Int8 {
                return Err(TensorrtError::Graph(
                    "an INT8 engine is built from `dinoedge model quantize`'s graph: give it \
                     with --graph"
                        .into(),
                ));
            }
            let proto = build_graph_with(
                &request.model.config,
                &request.model.weights,
                request.size,
                &GraphOptions::default(),
                &Numerics {
                    precision: request.precision,
                    ..Numerics::default()
                },
            )
            .map_err(|e| TensorrtError::Graph(e.to_string()))?;
            let outputs = proto
                .graph
                .as_ref()
                .map(|g| g.output.iter().map(|o| o.name.clone()).collect())
                .unwrap_or_default();
            let hash = crate::engine::graph_hash(&proto);
            (GraphSource::Built(Box::new(proto)), hash, outputs)
        }
    };
    let blocks = backbone_blocks(&outputs)?;
    let settings = BuildSettings {
        batch: request.batch,
        opt_level: request.opt_level,
        workspace_mib: request.workspace_mib,
        source: if request.trtexec.is_some() {
            "trtexec"
        } else {
            "built"
        }
        .into(),
    };
    // An imported engine is keyed by its own bytes too: two trtexec builds of one graph differ.
    let imported = match request.trtexec {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| TensorrtError::Graph(format!("{}: {e}", path.display())))?,
        ),
        None => None,
    };
    let keyed_graph = match &imported {
        Some(bytes) => format!("{graph_hash}+{}", cache::sha256(bytes)),
        None => graph_hash.clone(),
    };
    let fingerprint = request.model.weights.fingerprint().to_owned();
    let key = cache::key(&keyed_graph, &fingerprint, &settings, &precision, &env);
    // A cached engine is reused only if its gate was at least as strict as the one asked for.
    if !request.force
        && let Ok(meta) = cache.meta(&key)
        && meta.verdict.passed
        && meta.verdict.threshold >= request.threshold
        && cache.engine_bytes(&meta, &env).is_ok()
    {
        let path = cache.dir().join(format!("{key}.engine"));
        return Ok(BuildOutcome {
            meta,
            path,
            reused: true,
        });
    }

    let started = Instant::now();
    let engine_bytes = match imported {
        Some(bytes) => bytes,
        None => {
            // The parser reads a file: one written from memory goes to a scratch folder inside
            // the cache (the same disk), removed when the build is over.
            let scratch = tempfile::Builder::new()
                .prefix(".graph-")
                .tempdir_in(ensure_dir(cache.dir())?)
                .map_err(|e| TensorrtError::Cache {
                    path: cache.dir().to_path_buf(),
                    reason: e.to_string(),
                })?;
            let graph_path = match &source {
                GraphSource::Built(proto) => {
                    let path = scratch.path().join("graph.onnx");
                    onnx::write_model(proto, &path, crate::backbone::EXTERNAL_DATA_THRESHOLD)
                        .map_err(|e| TensorrtError::Graph(e.to_string()))?;
                    path
                }
                GraphSource::File(path) => path.to_path_buf(),
            };
            let timing = cache.timing_cache(&env);
            let built = shim.build(
                &graph_path,
                &BuildOptions {
                    batch: i32::try_from(request.batch).unwrap_or(i32::MAX),
                    opt_level: request.opt_level,
                    workspace_bytes: request.workspace_mib.map(|m| m << 20),
                },
                &timing,
                progress,
            )?;
            cache.store_timing_cache(&env, &built.timing_cache)?;
            built.engine
        }
    };
    let build_seconds = started.elapsed().as_secs_f64();
    drop(source);

    let mut meta = EngineMeta {
        format: cache::FORMAT,
        key: key.clone(),
        model_fingerprint: Some(fingerprint),
        weights: request.model.weights_label(),
        graph_hash,
        graph_file: request.graph.map(|p| p.display().to_string()),
        size: [request.size.height, request.size.width],
        precision,
        outputs,
        build: settings,
        environment: env.clone(),
        engine_bytes: 0,
        engine_sha256: String::new(),
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        build_seconds,
        verdict: GateTally::default().verdict(request.threshold, Vec::new()),
    };
    // An engine that does not deserialize here, or takes another input, is not stored at all.
    let (plan, _) = TrtPlan::new(shim.load_engine(&engine_bytes)?, &meta.outputs)?;
    check_input(&plan, request)?;
    // Stored before the gate runs, so that an engine that brings the process down during the
    // gate is still on record, as refused (its verdict says no frames were compared).
    let path = cache.store(&mut meta, &engine_bytes)?;
    meta.verdict = run_gate(&std::sync::Arc::new(plan), request, &blocks)?;
    cache.store_meta(&meta)?;
    Ok(BuildOutcome {
        meta,
        path,
        reused: false,
    })
}

fn ensure_dir(dir: &Path) -> Result<&Path, TensorrtError> {
    std::fs::create_dir_all(dir).map_err(|e| TensorrtError::Cache {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(dir)
}

/// The engine must take `[batch, 3, H, W]`: an imported engine may have been built for
/// something else.
fn check_input(plan: &TrtPlan, request: &BuildRequest<'_>) -> Result<(), TensorrtError> {
    let want = vec![request.batch, 3, request.size.height, request.size.width];
    let got = plan.input_shape();
    if got != want {
        return Err(TensorrtError::Io(format!(
            "its input ({INPUT_NAME}) is {got:?}, this model at this size and batch needs {want:?}"
        )));
    }
    Ok(())
}

/// Runs the gate's frames through the engine and the FP32 CPU reference, batch by batch (the
/// last batch filled up with the first frames).
fn run_gate(
    plan: &std::sync::Arc<TrtPlan>,
    request: &BuildRequest<'_>,
    blocks: &[usize],
) -> Result<super::Verdict, TensorrtError> {
    let size = request.size;
    let reference = Backbone::load(
        request.model,
        size,
        &RuntimeOptions {
            batch: request.batch,
            threads: request.threads,
            engine: EngineRequest::Cpu,
            precision: Precision::Fp32,
            graph: GraphOptions {
                intermediate_blocks: blocks.to_vec(),
                ..RuntimeOptions::default().graph
            },
        },
    )
    .map_err(|e| TensorrtError::Gate(format!("the CPU reference: {e}")))?;
    let mut reference_state = reference
        .state()
        .map_err(|e| TensorrtError::Gate(format!("the CPU reference: {e}")))?;
    let runnable = TrtRunnable(plan.clone());
    let mut engine_state = runnable
        .spawn()
        .map_err(|e| TensorrtError::Gate(format!("the engine: {e:#}")))?;
    let input_dt = runnable
        .input_fact(0)
        .map_err(|e| TensorrtError::Gate(format!("{e:#}")))?
        .datum_type;
    let names: Vec<String> = std::iter::once(OUTPUT_NAME.to_owned())
        .chain(blocks.iter().map(|&b| intermediate_output_name(b)))
        .collect();
    let per_frame = 3 * size.height * size.width;
    let batches = request.frames.len().div_ceil(request.batch);
    let mut tally = GateTally::default();
    for b in 0..batches {
        let mut pixels = Vec::with_capacity(per_frame * request.batch);
        for i in 0..request.batch {
            let frame = request
                .frames
                .get((b * request.batch + i) % request.frames.len())
                .ok_or_else(|| TensorrtError::Gate("no frame".into()))?;
            if frame.len() != per_frame {
                return Err(TensorrtError::Gate(format!(
                    "a frame has {} values, {per_frame} expected",
                    frame.len()
                )));
            }
            pixels.extend_from_slice(frame);
        }
        let pixels = Array4::from_shape_vec((request.batch, 3, size.height, size.width), pixels)
            .map_err(|e| TensorrtError::Gate(e.to_string()))?;
        let expected = reference_state
            .run(pixels.view())
            .map_err(|e| TensorrtError::Gate(format!("the CPU reference: {e}")))?;
        let input = Tensor::from(pixels)
            .cast_to_dt(input_dt)
            .map_err(|e| TensorrtError::Gate(format!("{e:#}")))?
            .into_owned()
            .into_tvalue();
        let got = match engine_state.run(tvec![input]) {
            Ok(got) => got,
            // An engine that fails on real frames is refused, like one that computes wrongly.
            Err(e) => {
                let mut verdict = tally.verdict(request.threshold, request.frames_from.clone());
                verdict.passed = false;
                verdict.summary = format!(
                    "refused: the engine failed on the gate's batch {}: {e:#}",
                    b + 1
                );
                return Ok(verdict);
            }
        };
        let got: Vec<ndarray::Array3<f32>> = got
            .into_iter()
            .map(|t| {
                t.into_tensor()
                    .cast_to::<f32>()
                    .map_err(|e| format!("{e:#}"))?
                    .into_owned()
                    .into_plain_array::<f32>()
                    .map_err(|e| format!("{e:#}"))?
                    .into_dimensionality::<ndarray::Ix3>()
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<_, String>>()
            .map_err(|e| TensorrtError::Gate(format!("the engine's output: {e}")))?;
        let mut refs: Vec<ArrayView3<'_, f32>> = vec![expected.last_hidden_state.view()];
        for block in blocks {
            let found = expected
                .intermediates
                .iter()
                .find(|(b, _)| b == block)
                .map(|(_, a)| a.view())
                .ok_or_else(|| {
                    TensorrtError::Gate(format!("the reference has no block {block}"))
                })?;
            refs.push(found);
        }
        let gots: Vec<ArrayView3<'_, f32>> = got.iter().map(|a| a.view()).collect();
        tally
            .add_batch(&names, &refs, &gots, request.model.config.prefix_tokens())
            .map_err(TensorrtError::Gate)?;
    }
    // A padded last batch counts its repeated frames again; the figures are per frame run.
    Ok(tally.verdict(request.threshold, request.frames_from.clone()))
}
