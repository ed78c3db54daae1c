//! Running candidate graphs on the CPU (tract) and measuring them: calibration statistics,
//! cosine against FP32, and the share of the work left in INT8.

use std::collections::BTreeMap;

use serde::Serialize;
use tract_onnx::prelude::*;

use super::calibrate::{ActivationStats, Method, scale_for};
use super::{QuantizeError, measured_graph_options};
use crate::backbone::graph::build_graph_with;
use crate::backbone::numerics::{Numerics, TAP_PREFIX, point_block};
use crate::backbone::{BackboneError, Dinov3Config, InputSize, ModelDir};
use crate::engine::compare::cosine;

/// Samples kept per activation for percentiles and the MSE search.
const SAMPLE_BUDGET: u64 = 1 << 14;

/// Runs graphs of one model at one size, one frame at a time.
pub(super) struct Runner<'a> {
    pub model: &'a ModelDir,
    pub size: InputSize,
    pub threads: usize,
}

fn runtime(e: impl std::fmt::Display) -> QuantizeError {
    QuantizeError::Backbone(BackboneError::Runtime(e.to_string()))
}

impl Runner<'_> {
    /// Every output of the graph `numerics` describes, for each frame, by output name.
    fn run(
        &self,
        numerics: &Numerics,
        frames: &[Vec<f32>],
        mut each: impl FnMut(&str, &[f32]) -> Result<(), QuantizeError>,
    ) -> Result<(), QuantizeError> {
        let proto = build_graph_with(
            &self.model.config,
            &self.model.weights,
            self.size,
            &measured_graph_options(),
            numerics,
        )?;
        let names: Vec<String> = proto
            .graph
            .as_ref()
            .map(|g| g.output.iter().map(|o| o.name.clone()).collect())
            .unwrap_or_default();
        let shape = [1, 3, self.size.height, self.size.width];
        let plan = crate::engine::cpu_plan(&proto, shape, self.threads)
            .map_err(|e| QuantizeError::Backbone(BackboneError::Engine(e)))?;
        let mut state = plan.spawn().map_err(runtime)?;
        for pixels in frames {
            let input = ndarray::Array4::from_shape_vec(shape, pixels.clone()).map_err(runtime)?;
            let outputs = state
                .run(tvec![Tensor::from(input).into_tvalue()])
                .map_err(runtime)?;
            for (name, value) in names.iter().zip(outputs) {
                let t = value.into_tensor();
                let t = t.cast_to::<f32>().map_err(runtime)?.into_owned();
                let a = t.into_plain_array::<f32>().map_err(runtime)?;
                let values: Vec<f32> = a.iter().copied().collect();
                each(name, &values)?;
            }
        }
        Ok(())
    }

    /// The main output (`[tokens, D]` flattened) for each frame.
    pub fn outputs(
        &self,
        numerics: &Numerics,
        frames: &[Vec<f32>],
    ) -> Result<Vec<Vec<f32>>, QuantizeError> {
        let mut out = Vec::with_capacity(frames.len());
        self.run(numerics, frames, |name, values| {
            if name == crate::backbone::graph::OUTPUT_NAME {
                out.push(values.to_vec());
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Per-tensor activation scales from the FP32 graph's taps over `frames`.
    pub fn calibrate(
        &self,
        frames: &[Vec<f32>],
        int8_attention: bool,
        method: Method,
    ) -> Result<BTreeMap<String, f32>, QuantizeError> {
        let numerics = Numerics {
            taps: true,
            int8_attention,
            ..Numerics::fp32()
        };
        let mut stats: BTreeMap<String, ActivationStats> = BTreeMap::new();
        let n = frames.len() as u64;
        self.run(&numerics, frames, |name, values| {
            if let Some(point) = name.strip_prefix(TAP_PREFIX) {
                stats
                    .entry(point.to_string())
                    .or_insert_with(|| ActivationStats::new(values.len() as u64 * n, SAMPLE_BUDGET))
                    .add(point, values)?;
            }
            Ok(())
        })?;
        Ok(stats
            .into_iter()
            .map(|(point, mut s)| (point, scale_for(s.clip(method))))
            .collect())
    }

    /// Cosine of the graph `numerics` describes against `reference` outputs on `frames`.
    pub fn cosine(
        &self,
        numerics: &Numerics,
        frames: &[Vec<f32>],
        reference: &[Vec<f32>],
    ) -> Result<Cosine, QuantizeError> {
        let got = self.outputs(numerics, frames)?;
        Ok(Cosine::between(
            reference,
            &got,
            self.model.config.hidden_size,
            self.model.config.prefix_tokens(),
        ))
    }
}

/// Cosine similarity of a graph's tokens against FP32's, over held-out frames.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Cosine {
    /// Mean over frames of the CLS token's cosine.
    pub cls: f64,
    /// Mean over frames and patch tokens of each patch token's cosine.
    pub patch: f64,
    /// The lowest CLS cosine of any frame.
    pub cls_min: f64,
    /// The lowest patch-token cosine of any token of any frame.
    pub patch_min: f64,
}

impl Cosine {
    /// The figure a target is held to: the lower of the CLS and patch means.
    pub fn worst(&self) -> f64 {
        self.cls.min(self.patch)
    }

    /// Compares `got` with `reference`, frame by frame, each `[tokens, d]` flattened, the
    /// first `prefix` tokens being CLS and registers.
    pub fn between(reference: &[Vec<f32>], got: &[Vec<f32>], d: usize, prefix: usize) -> Cosine {
        let d = d.max(1);
        let (mut cls, mut patch, mut patches) = (0.0, 0.0, 0usize);
        let (mut cls_min, mut patch_min) = (1.0f64, 1.0f64);
        for (r, g) in reference.iter().zip(got) {
            for (t, (rt, gt)) in r.chunks_exact(d).zip(g.chunks_exact(d)).enumerate() {
                let c = cosine(rt, gt);
                if t == 0 {
                    cls += c;
                    cls_min = cls_min.min(c);
                } else if t >= prefix {
                    patch += c;
                    patches += 1;
                    patch_min = patch_min.min(c);
                }
            }
        }
        let frames = reference.len().min(got.len()).max(1) as f64;
        Cosine {
            cls: cls / frames,
            patch: patch / patches.max(1) as f64,
            cls_min,
            patch_min,
        }
    }
}

/// How much of the network's MatMul and convolution work runs in INT8.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MatmulShare {
    /// Multiply-adds per frame in INT8.
    pub int8_macs: u64,
    /// Multiply-adds per frame in all MatMuls and the patch convolution.
    pub total_macs: u64,
    /// `int8_macs / total_macs`.
    pub share: f64,
}

/// The INT8 share of the multiply-adds of one frame at `size`: the patch convolution, each
/// block's projections, and its two attention products (INT8 only with `int8_attention`).
pub fn matmul_share(config: &Dinov3Config, size: InputSize, numerics: &Numerics) -> MatmulShare {
    let p = config.patch_size.max(1);
    let patches = (size.height / p) * (size.width / p);
    let t = (config.prefix_tokens() + patches) as u64;
    let d = config.hidden_size as u64;
    let f = config.intermediate_size as u64;
    let up = if config.use_gated_mlp {
        2 * d * f
    } else {
        d * f
    };
    let linear = t * (3 * d * d + d * d + up + f * d);
    let attention = 2 * t * t * d;
    let patch = patches as u64 * d * 3 * (p * p) as u64;
    let quantised = |point: &str| numerics.activation_scales.contains_key(point);
    let mut int8 = if quantised("patch") { patch } else { 0 };
    let mut total = patch;
    for b in 0..config.num_hidden_layers {
        total += linear + attention;
        if numerics.keep_blocks.contains(&b) {
            continue;
        }
        let in_block = numerics
            .activation_scales
            .keys()
            .any(|k| point_block(k) == Some(b));
        if in_block {
            int8 += linear;
            if numerics.int8_attention {
                int8 += attention;
            }
        }
    }
    MatmulShare {
        int8_macs: int8,
        total_macs: total,
        share: int8 as f64 / total.max(1) as f64,
    }
}
