//! A TensorRT engine behind tract's `Runnable`/`State` seam, so that the pipeline's workers,
//! `bench-model` and `features` run it exactly as they run the CPU and CUDA plans: one state
//! (an execution context with its own CUDA stream and buffers) per worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dinoedge_tensorrt::{Context, DataType, Engine, Io};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::{bail, format_err};
use tract_onnx::tract_core::runtime::{Runnable, State};

use super::TensorrtError;

/// A deserialized engine with the facts of its inputs and outputs.
#[derive(Debug)]
pub struct TrtPlan {
    engine: Engine,
    io: Vec<Io>,
    inputs: Vec<(usize, TypedFact)>,
    outputs: Vec<(usize, TypedFact)>,
    gpu_micros: AtomicU64,
    runs: AtomicU64,
}

fn datum_type(io: &Io) -> Result<DatumType, TensorrtError> {
    match io.dtype {
        DataType::F32 => Ok(DatumType::F32),
        DataType::F16 => Ok(DatumType::F16),
        DataType::Other(n) => Err(TensorrtError::Io(format!(
            "tensor {} has TensorRT data type {n}; dinoedge's graphs take and give f32 or f16",
            io.name
        ))),
    }
}

fn fact(io: &Io) -> Result<TypedFact, TensorrtError> {
    let dims: Vec<usize> = io
        .dims
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| {
            TensorrtError::Io(format!(
                "tensor {} has a dynamic dimension at run time: {:?}",
                io.name, io.dims
            ))
        })?;
    Ok(TypedFact::dt_shape(datum_type(io)?, &*dims))
}

impl TrtPlan {
    /// Wraps `engine`, reading its inputs and outputs from a first context. `outputs` orders the
    /// outputs as the graph does (TensorRT may list them otherwise).
    pub fn new(engine: Engine, outputs: &[String]) -> Result<(TrtPlan, Context), TensorrtError> {
        let context = engine.context()?;
        let io = context.io().to_vec();
        let mut inputs = Vec::new();
        for (i, t) in io.iter().enumerate().filter(|(_, t)| t.is_input) {
            inputs.push((i, fact(t)?));
        }
        if inputs.len() != 1 {
            return Err(TensorrtError::Io(format!(
                "the engine has {} inputs, dinoedge's backbone has one",
                inputs.len()
            )));
        }
        let mut ordered = Vec::new();
        for name in outputs {
            let Some((i, t)) = io
                .iter()
                .enumerate()
                .find(|(_, t)| !t.is_input && &t.name == name)
            else {
                return Err(TensorrtError::Io(format!(
                    "the engine has no output {name} (it has {})",
                    io.iter()
                        .filter(|t| !t.is_input)
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            ordered.push((i, fact(t)?));
        }
        Ok((
            TrtPlan {
                engine,
                io,
                inputs,
                outputs: ordered,
                gpu_micros: AtomicU64::new(0),
                runs: AtomicU64::new(0),
            },
            context,
        ))
    }

    /// The engine's input shape.
    pub fn input_shape(&self) -> Vec<usize> {
        self.inputs
            .first()
            .and_then(|(_, f)| f.shape.as_concrete().map(<[usize]>::to_vec))
            .unwrap_or_default()
    }

    /// The mean GPU time of a run so far (CUDA events around the enqueue), in milliseconds.
    pub fn mean_gpu_ms(&self) -> Option<f64> {
        let runs = self.runs.load(Ordering::Relaxed);
        (runs > 0).then(|| self.gpu_micros.load(Ordering::Relaxed) as f64 / runs as f64 / 1e3)
    }
}

impl Runnable for TrtPlan {
    fn spawn(&self) -> TractResult<Box<dyn State>> {
        bail!("a TensorRT plan is spawned through TrtRunnable")
    }

    fn input_count(&self) -> usize {
        self.inputs.len()
    }

    fn output_count(&self) -> usize {
        self.outputs.len()
    }

    fn input_fact(&self, ix: usize) -> TractResult<&TypedFact> {
        self.inputs
            .get(ix)
            .map(|(_, f)| f)
            .ok_or_else(|| format_err!("no input {ix}"))
    }

    fn output_fact(&self, ix: usize) -> TractResult<&TypedFact> {
        self.outputs
            .get(ix)
            .map(|(_, f)| f)
            .ok_or_else(|| format_err!("no output {ix}"))
    }

    fn typed_plan(&self) -> Option<&Arc<TypedSimplePlan>> {
        None
    }

    fn typed_model(&self) -> Option<&Arc<TypedModel>> {
        None
    }
}

/// The shared plan, as tract's seam wants it: each spawn is a new execution context.
#[derive(Debug, Clone)]
pub struct TrtRunnable(pub Arc<TrtPlan>);

impl Runnable for TrtRunnable {
    fn spawn(&self) -> TractResult<Box<dyn State>> {
        let context = self.0.engine.context().map_err(|e| format_err!("{e}"))?;
        Ok(Box::new(TrtState {
            plan: self.clone(),
            context: Some(context),
            last_gpu_ms: None,
        }))
    }

    fn input_count(&self) -> usize {
        self.0.input_count()
    }

    fn output_count(&self) -> usize {
        self.0.output_count()
    }

    fn input_fact(&self, ix: usize) -> TractResult<&TypedFact> {
        self.0.input_fact(ix)
    }

    fn output_fact(&self, ix: usize) -> TractResult<&TypedFact> {
        self.0.output_fact(ix)
    }

    fn typed_plan(&self) -> Option<&Arc<TypedSimplePlan>> {
        None
    }

    fn typed_model(&self) -> Option<&Arc<TypedModel>> {
        None
    }
}

/// One worker's execution context. A clone starts without one and makes its own on its first
/// run (contexts cannot be copied).
#[derive(Debug)]
struct TrtState {
    plan: TrtRunnable,
    context: Option<Context>,
    /// The last run's GPU time, ms.
    last_gpu_ms: Option<f32>,
}

impl Clone for TrtState {
    fn clone(&self) -> Self {
        TrtState {
            plan: self.plan.clone(),
            context: None,
            last_gpu_ms: None,
        }
    }
}

/// The GPU time of `state`'s last run in milliseconds, if it is a TensorRT state that has run.
pub fn last_gpu_ms(state: &dyn State) -> Option<f64> {
    state
        .downcast_ref::<TrtState>()
        .and_then(|s| s.last_gpu_ms)
        .map(f64::from)
}

impl State for TrtState {
    fn run(&mut self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let plan = &self.plan.0;
        let context = match &mut self.context {
            Some(c) => c,
            None => self
                .context
                .insert(plan.engine.context().map_err(|e| format_err!("{e}"))?),
        };
        if inputs.len() != plan.inputs.len() {
            bail!(
                "the TensorRT engine takes {} inputs, {} given",
                plan.inputs.len(),
                inputs.len()
            );
        }
        for (value, (index, fact)) in inputs.iter().zip(&plan.inputs) {
            let want = fact.shape.as_concrete().unwrap_or_default();
            if value.shape() != want || value.datum_type() != fact.datum_type {
                bail!(
                    "input {}: the engine takes {:?} {:?}, given {:?} {:?}",
                    plan.io.get(*index).map_or("?", |t| t.name.as_str()),
                    fact.datum_type,
                    want,
                    value.datum_type(),
                    value.shape()
                );
            }
            context
                .copy_input(*index, value.as_bytes())
                .map_err(|e| format_err!("{e}"))?;
        }
        let gpu_ms = context.run().map_err(|e| format_err!("{e}"))?;
        self.last_gpu_ms = Some(gpu_ms);
        plan.gpu_micros
            .fetch_add((f64::from(gpu_ms) * 1e3) as u64, Ordering::Relaxed);
        plan.runs.fetch_add(1, Ordering::Relaxed);
        let mut out = TVec::new();
        for (index, fact) in &plan.outputs {
            let bytes = context.output(*index).map_err(|e| format_err!("{e}"))?;
            let shape = fact.shape.as_concrete().unwrap_or_default().to_vec();
            out.push(tensor_from_bytes(fact.datum_type, &shape, bytes)?.into_tvalue());
        }
        Ok(out)
    }

    fn runnable(&self) -> &dyn Runnable {
        &self.plan
    }
}

/// A tensor of `shape` from little-endian bytes of f32 or f16.
fn tensor_from_bytes(dt: DatumType, shape: &[usize], bytes: &[u8]) -> TractResult<Tensor> {
    let count: usize = shape.iter().product();
    let size = dt.size_of();
    if bytes.len() != count * size {
        bail!(
            "the engine wrote {} bytes for an output of {count} {dt:?} values",
            bytes.len()
        );
    }
    match dt {
        DatumType::F32 => {
            let v: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Tensor::from_shape(shape, &v)
        }
        DatumType::F16 => {
            let v: Vec<f16> = bytes
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]))
                .collect();
            Tensor::from_shape(shape, &v)
        }
        other => bail!("the engine's output type {other:?} is not f32 or f16"),
    }
}
