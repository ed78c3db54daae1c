//! The backbone, ready to run: the ONNX graph is built in memory, handed to an engine (see
//! [`crate::engine`]) that prepares it once for one input shape, then run from one state per
//! worker.

use std::sync::Arc;

use ndarray::{Array3, ArrayD, ArrayView2, ArrayView3, ArrayView4, Axis, s};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::runtime::{Runnable, State};

use super::graph::{GraphOptions, INPUT_NAME, build_graph};
use super::{BackboneError, Dinov3Config, InputSize, ModelDir};
use crate::engine::{self, EngineInfo, EngineRequest, Graph, Precision};

/// How to prepare the backbone for running.
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    /// Frames per run; tract optimises for this exact batch.
    pub batch: usize,
    /// Threads the CPU engine may use inside one run (1 = the calling thread only).
    pub threads: usize,
    /// Which engine runs the graph.
    pub engine: EngineRequest,
    /// The precision it runs in.
    pub precision: Precision,
    /// Op forms and extra outputs; the default is the form tract runs fastest (keys padded to
    /// [`super::graph::TRACT_KEY_MULTIPLE`]), where an export defaults to the plain graph.
    pub graph: GraphOptions,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            batch: 1,
            threads: 1,
            engine: EngineRequest::Auto,
            precision: Precision::Fp32,
            graph: GraphOptions {
                key_multiple: super::graph::TRACT_KEY_MULTIPLE,
                ..GraphOptions::default()
            },
        }
    }
}

/// A DINOv3 ViT ready to run at one input size: the engine's prepared plan, shared by every
/// state.
#[derive(Clone)]
pub struct Backbone {
    config: Dinov3Config,
    size: InputSize,
    batch: usize,
    intermediate_blocks: Vec<usize>,
    random_weights: bool,
    weights_label: String,
    plan: Arc<dyn Runnable>,
    engine: Arc<EngineInfo>,
}

impl std::fmt::Debug for Backbone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backbone")
            .field("arch", &self.config.arch_name())
            .field("size", &self.size)
            .field("batch", &self.batch)
            .field("engine", &self.engine.engine)
            .finish_non_exhaustive()
    }
}

/// Any ONNX file with one f32 `[N, 3, H, W]` input, prepared once by an engine as the backbone
/// would be (for timing a file that also goes to ONNX Runtime or TensorRT); a state per worker.
#[derive(Clone)]
pub struct OnnxFile {
    shape: [usize; 4],
    plan: Arc<dyn Runnable>,
    engine: Arc<EngineInfo>,
}

impl OnnxFile {
    /// Reads `path` and prepares it for inputs of `shape` on the engine `request` names, in
    /// `precision`.
    pub fn load(
        path: &std::path::Path,
        shape: [usize; 4],
        threads: usize,
        request: EngineRequest,
        precision: Precision,
    ) -> Result<Self, BackboneError> {
        // An engine built for this file is found by the file's hash; its outputs are whatever
        // the file has.
        let outputs = engine::tensorrt::graph_outputs(path)
            .map(|(o, _)| o)
            .unwrap_or_default();
        let identity = engine::Identity {
            model_fingerprint: None,
            outputs,
        };
        let prepared = engine::prepare(
            request,
            Graph::File(path),
            &identity,
            shape,
            threads,
            precision,
        )?;
        Ok(OnnxFile {
            shape,
            plan: prepared.runnable,
            engine: Arc::new(prepared.info),
        })
    }

    /// The mean GPU time of a run so far in milliseconds, where the engine measures it.
    pub fn mean_gpu_ms(&self) -> Option<f64> {
        engine::mean_gpu_ms(&*self.plan)
    }

    /// The engine that runs it.
    pub fn engine(&self) -> &EngineInfo {
        &self.engine
    }

    /// How many nodes of each op the engine's plan runs (see [`Backbone::op_census`]).
    pub fn op_census(&self) -> std::collections::BTreeMap<String, usize> {
        engine::op_census(&*self.plan)
    }

    /// A state to run batches with; keep one per worker thread.
    pub fn state(&self) -> Result<OnnxFileState, BackboneError> {
        Ok(OnnxFileState {
            shape: self.shape,
            state: self.plan.spawn().map_err(BackboneError::runtime)?,
        })
    }
}

/// One worker's running state of an [`OnnxFile`].
pub struct OnnxFileState {
    shape: [usize; 4],
    state: Box<dyn State>,
}

impl OnnxFileState {
    /// Runs one batch, as the engine's plan returns it.
    fn run_plan(&mut self, pixels: ArrayView4<f32>) -> Result<TVec<TValue>, BackboneError> {
        if pixels.shape() != self.shape {
            return Err(BackboneError::InputShape {
                what: INPUT_NAME.into(),
                expected: format!("{:?}", self.shape),
                found: pixels.shape().to_vec(),
            });
        }
        let input = engine_input(&*self.state, pixels)?;
        self.state.run(tvec![input]).map_err(BackboneError::runtime)
    }

    /// Runs one batch; returns every output, as f32.
    pub fn outputs(&mut self, pixels: ArrayView4<f32>) -> Result<Vec<ArrayD<f32>>, BackboneError> {
        self.run_plan(pixels)?
            .into_iter()
            .map(|o| {
                f32_output(o.into_tensor())?
                    .into_plain_array::<f32>()
                    .map_err(BackboneError::runtime)
            })
            .collect()
    }

    /// Runs one batch; returns the first output's shape.
    pub fn run(&mut self, pixels: ArrayView4<f32>) -> Result<Vec<usize>, BackboneError> {
        let out = self.run_plan(pixels)?;
        Ok(out.first().map(|t| t.shape().to_vec()).unwrap_or_default())
    }
}

impl Backbone {
    /// Loads a model folder and prepares it for inputs of `size`.
    pub fn load(
        model: &ModelDir,
        size: InputSize,
        options: &RuntimeOptions,
    ) -> Result<Self, BackboneError> {
        let proto = build_graph(
            &model.config,
            &model.weights,
            size,
            &GraphOptions {
                batch: Some(options.batch),
                ..options.graph.clone()
            },
        )?;
        let identity = engine::Identity {
            model_fingerprint: Some(model.weights.fingerprint().to_owned()),
            outputs: std::iter::once(super::graph::OUTPUT_NAME.to_owned())
                .chain(
                    options
                        .graph
                        .intermediate_blocks
                        .iter()
                        .map(|&b| super::graph::intermediate_output_name(b)),
                )
                .collect(),
        };
        let prepared = engine::prepare(
            options.engine,
            Graph::Built(&proto),
            &identity,
            [options.batch, 3, size.height, size.width],
            options.threads,
            options.precision,
        )?;
        Ok(Backbone {
            config: model.config.clone(),
            size,
            batch: options.batch,
            intermediate_blocks: options.graph.intermediate_blocks.clone(),
            random_weights: model.random_weights,
            weights_label: model.weights_label(),
            plan: prepared.runnable,
            engine: Arc::new(prepared.info),
        })
    }

    /// A state to run frames with; keep one per worker thread.
    pub fn state(&self) -> Result<BackboneState, BackboneError> {
        Ok(BackboneState {
            backbone: self.clone(),
            state: self.plan.spawn().map_err(BackboneError::runtime)?,
            #[cfg(test)]
            fault: None,
        })
    }

    /// Runs one batch on a fresh state (convenient, slower than reusing a state).
    pub fn run(&self, pixels: ArrayView4<f32>) -> Result<Features, BackboneError> {
        self.state()?.run(pixels)
    }

    /// The model's configuration.
    pub fn config(&self) -> &Dinov3Config {
        &self.config
    }

    /// The input size it was prepared for.
    pub fn size(&self) -> InputSize {
        self.size
    }

    /// Frames per run.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Whether the weights were made by `dinoedge model init` (random, not pretrained).
    pub fn random_weights(&self) -> bool {
        self.random_weights
    }

    /// Which weights (see [`ModelDir::weights_label`]).
    pub fn weights_label(&self) -> &str {
        &self.weights_label
    }

    /// The engine that runs it, how, and why.
    pub fn engine(&self) -> &EngineInfo {
        &self.engine
    }

    /// How many nodes of each op the engine's plan runs, by op name: on a GPU engine, which
    /// ops it took over and which it left on the CPU.
    pub fn op_census(&self) -> std::collections::BTreeMap<String, usize> {
        engine::op_census(&*self.plan)
    }

    /// The mean GPU time of a run so far in milliseconds (CUDA events around each run), where
    /// the engine measures it (TensorRT).
    pub fn mean_gpu_ms(&self) -> Option<f64> {
        engine::mean_gpu_ms(&*self.plan)
    }

    /// Runs one batch of zeros on a fresh state, so that the engine compiles its kernels and
    /// allocates before the first frame is accepted. Returns how long it took.
    pub fn warm_up(&self) -> Result<std::time::Duration, BackboneError> {
        let start = std::time::Instant::now();
        let zeros =
            ndarray::Array4::<f32>::zeros((self.batch, 3, self.size.height, self.size.width));
        self.run(zeros.view())?;
        let took = start.elapsed();
        tracing::info!(
            "engine: warmed up in {:.0} ms ({})",
            took.as_secs_f64() * 1e3,
            self.engine.engine
        );
        Ok(took)
    }
}

/// One worker's running state of a [`Backbone`].
pub struct BackboneState {
    backbone: Backbone,
    state: Box<dyn State>,
    /// Runs left before an injected failure, and its message (tests of what a fault does).
    #[cfg(test)]
    fault: Option<(usize, String)>,
}

impl BackboneState {
    /// This state, failing with `message` on every run after the first `runs`.
    #[cfg(test)]
    pub(crate) fn failing_after(mut self, runs: usize, message: &str) -> Self {
        self.fault = Some((runs, message.to_owned()));
        self
    }

    /// The GPU time of this state's last run in milliseconds (CUDA events around it), where the
    /// engine measures it (TensorRT).
    pub fn last_gpu_ms(&self) -> Option<f64> {
        engine::last_gpu_ms(&*self.state)
    }

    /// Runs a batch of normalised pixels `[batch, 3, H, W]`.
    pub fn run(&mut self, pixels: ArrayView4<f32>) -> Result<Features, BackboneError> {
        #[cfg(test)]
        if let Some((left, message)) = &mut self.fault {
            if *left == 0 {
                return Err(BackboneError::Runtime(message.clone()));
            }
            *left -= 1;
        }
        let b = &self.backbone;
        let expected = [b.batch, 3, b.size.height, b.size.width];
        if pixels.shape() != expected {
            return Err(BackboneError::InputShape {
                what: INPUT_NAME.into(),
                expected: format!("{expected:?}"),
                found: pixels.shape().to_vec(),
            });
        }
        let input = engine_input(&*self.state, pixels)?;
        let outputs = self
            .state
            .run(tvec![input])
            .map_err(BackboneError::runtime)?;
        let mut arrays = Vec::with_capacity(outputs.len());
        for o in outputs {
            let a = f32_output(o.into_tensor())?
                .into_plain_array::<f32>()
                .map_err(BackboneError::runtime)?
                .into_dimensionality::<ndarray::Ix3>()
                .map_err(BackboneError::runtime)?;
            arrays.push(a);
        }
        let mut arrays = arrays.into_iter();
        let last = arrays
            .next()
            .ok_or_else(|| BackboneError::Runtime("the graph returned no output".into()))?;
        let intermediates = b.intermediate_blocks.iter().copied().zip(arrays).collect();
        Ok(Features {
            last_hidden_state: last,
            intermediates,
            prefix: b.config.prefix_tokens(),
            grid: (
                b.size.height / b.config.patch_size,
                b.size.width / b.config.patch_size,
            ),
        })
    }
}

/// The backbone's outputs for one batch.
#[derive(Clone, Debug)]
pub struct Features {
    /// `[N, 1 + registers + Hp*Wp, D]`, normed, as transformers' `last_hidden_state`.
    pub last_hidden_state: Array3<f32>,
    /// Normed outputs of the requested intermediate blocks, same layout, by block index.
    pub intermediates: Vec<(usize, Array3<f32>)>,
    prefix: usize,
    grid: (usize, usize),
}

impl Features {
    /// Frames in the batch.
    pub fn batch(&self) -> usize {
        self.last_hidden_state.len_of(Axis(0))
    }

    /// The normed CLS token of every frame, `[N, D]`.
    pub fn cls(&self) -> ArrayView2<'_, f32> {
        self.last_hidden_state.slice(s![.., 0, ..])
    }

    /// The register tokens of every frame, `[N, registers, D]`.
    pub fn registers(&self) -> ArrayView3<'_, f32> {
        self.last_hidden_state.slice(s![.., 1..self.prefix, ..])
    }

    /// The patch tokens of frame `n` as an `[Hp, Wp, D]` grid, or `None` past the batch.
    pub fn patch_grid(&self, n: usize) -> Option<ArrayView3<'_, f32>> {
        grid_of(&self.last_hidden_state, n, self.prefix, self.grid)
    }

    /// The patch tokens of frame `n` from intermediate block `block`, as an `[Hp, Wp, D]` grid.
    pub fn intermediate_grid(&self, block: usize, n: usize) -> Option<ArrayView3<'_, f32>> {
        let (_, a) = self.intermediates.iter().find(|(b, _)| *b == block)?;
        grid_of(a, n, self.prefix, self.grid)
    }

    /// The grid size (Hp, Wp).
    pub fn grid(&self) -> (usize, usize) {
        self.grid
    }
}

#[cfg(test)]
impl Features {
    /// Features made by hand, for tests of what reads them (heads).
    pub(crate) fn from_parts(
        last_hidden_state: Array3<f32>,
        intermediates: Vec<(usize, Array3<f32>)>,
        prefix: usize,
        grid: (usize, usize),
    ) -> Self {
        Features {
            last_hidden_state,
            intermediates,
            prefix,
            grid,
        }
    }
}

fn grid_of(
    a: &Array3<f32>,
    n: usize,
    prefix: usize,
    (hp, wp): (usize, usize),
) -> Option<ArrayView3<'_, f32>> {
    if n >= a.len_of(Axis(0)) {
        return None;
    }
    let d = a.len_of(Axis(2));
    a.slice(s![n, prefix.., ..])
        .into_shape_with_order((hp, wp, d))
        .ok()
}

/// Pixels as the plan's input wants them: f32, or cast to f16 for a half-precision plan.
fn engine_input(state: &dyn State, pixels: ArrayView4<f32>) -> Result<TValue, BackboneError> {
    let input = Tensor::from(pixels.to_owned());
    let wanted = state
        .runnable()
        .input_fact(0)
        .map_err(BackboneError::runtime)?
        .datum_type;
    if wanted == DatumType::F32 {
        return Ok(input.into_tvalue());
    }
    Ok(input
        .cast_to_dt(wanted)
        .map_err(BackboneError::runtime)?
        .into_owned()
        .into_tvalue())
}

/// An output as f32 (a half-precision plan's outputs are cast back).
fn f32_output(t: Tensor) -> Result<Tensor, BackboneError> {
    if t.datum_type() == DatumType::F32 {
        return Ok(t);
    }
    Ok(t.cast_to::<f32>()
        .map_err(BackboneError::runtime)?
        .into_owned())
}
