//! The numeric form a backbone graph is written in: FP32; FP16 with FP32 islands; or INT8
//! quantise/dequantise pairs on the inputs of the MatMuls and the patch convolution, in an FP32
//! graph. Also the calibration taps, through which the FP32 graph hands out the activations that
//! INT8 scales are measured on.
//!
//! The graph carries its own precision (a strongly typed network, in TensorRT's terms), so the
//! runtime that reads it makes no precision choices of its own.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

/// The precision a written graph computes in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum GraphPrecision {
    /// 32-bit floats throughout.
    #[default]
    Fp32,
    /// Weights and activations in FP16; the residual stream, LayerNorm, the attention softmax,
    /// the RoPE rotation and LayerScale in FP32.
    Fp16,
    /// INT8 on both inputs of each projection MatMul, of the patch convolution and (with
    /// `int8_attention`) of the two attention products: per-channel weights, per-tensor
    /// calibrated activations, all symmetric; FP32 elsewhere and in kept blocks.
    Int8,
}

impl std::fmt::Display for GraphPrecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GraphPrecision::Fp32 => "fp32",
            GraphPrecision::Fp16 => "fp16",
            GraphPrecision::Int8 => "int8",
        })
    }
}

/// How a graph's numbers are written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Numerics {
    /// The precision.
    pub precision: GraphPrecision,
    /// INT8: the per-tensor scale of each quantisation point's activation, by point name
    /// ([`point_name`]). A point without one is left in FP32.
    pub activation_scales: BTreeMap<String, f32>,
    /// INT8: blocks (0-based) left wholly in FP32.
    pub keep_blocks: BTreeSet<usize>,
    /// INT8: also quantise the attention products (q, k, the softmax output and v).
    pub int8_attention: bool,
    /// Add each quantisation point's activation as a graph output named
    /// [`TAP_PREFIX`]`<point>` (FP32 graphs, for calibration).
    pub taps: bool,
}

impl Numerics {
    /// Plain FP32, no taps.
    pub fn fp32() -> Self {
        Numerics::default()
    }
}

/// The prefix of a calibration tap's output name.
pub const TAP_PREFIX: &str = "calib:";

/// The name of a quantisation point: `patch` for the patch convolution's input, else
/// `block<i>.<what>` (`qkv`, `o`, `fc1`, `fc2`; with attention, `q`, `k`, `probs`, `v`).
pub fn point_name(block: Option<usize>, what: &str) -> String {
    match block {
        Some(i) => format!("block{i}.{what}"),
        None => what.to_string(),
    }
}

/// The block a point belongs to, if any.
pub fn point_block(point: &str) -> Option<usize> {
    point.strip_prefix("block")?.split_once('.')?.0.parse().ok()
}

/// Every quantisation point of a model with `blocks` blocks, in graph order.
pub fn quant_points(blocks: usize, int8_attention: bool) -> Vec<String> {
    let mut points = vec![point_name(None, "patch")];
    for i in 0..blocks {
        let mut whats = vec!["qkv"];
        if int8_attention {
            whats.extend(["q", "k", "probs", "v"]);
        }
        whats.extend(["o", "fc1", "fc2"]);
        points.extend(whats.into_iter().map(|w| point_name(Some(i), w)));
    }
    points
}

/// The largest magnitude INT8 holds symmetrically (-127..=127: TensorRT's range, which leaves
/// -128 unused so that the grid is symmetric about zero).
pub const INT8_MAX: f32 = 127.0;

/// Symmetric per-channel quantisation of a row-major `[rows, cols]` weight whose channels are
/// its columns (`channel_axis == 1`, a MatMul's right operand `[in, out]`) or its rows
/// (`channel_axis == 0`, a convolution's `[out, ...]`). Returns the INT8 values and one scale
/// per channel; an all-zero channel gets scale 1 so that nothing divides by zero.
pub fn quantize_weight(
    w: &[f32],
    rows: usize,
    cols: usize,
    channel_axis: usize,
) -> (Vec<i8>, Vec<f32>) {
    let channels = if channel_axis == 0 { rows } else { cols };
    let channel = |r: usize, c: usize| if channel_axis == 0 { r } else { c };
    let mut max = vec![0.0f32; channels];
    for r in 0..rows {
        for c in 0..cols {
            let m = &mut max[channel(r, c)];
            *m = m.max(w[r * cols + c].abs());
        }
    }
    let scales: Vec<f32> = max
        .iter()
        .map(|&m| {
            if m > 0.0 {
                (m / INT8_MAX).max(f32::MIN_POSITIVE)
            } else {
                1.0
            }
        })
        .collect();
    let mut q = vec![0i8; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            let s = scales[channel(r, c)];
            q[r * cols + c] = quantize_value(w[r * cols + c], s);
        }
    }
    (q, scales)
}

/// One value to INT8 with `scale`, rounded half to even as ONNX's QuantizeLinear does, and
/// saturated to ±127.
pub fn quantize_value(v: f32, scale: f32) -> i8 {
    (v / scale).round_ties_even().clamp(-INT8_MAX, INT8_MAX) as i8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_names_round_trip_their_block() {
        assert_eq!(point_block(&point_name(Some(11), "fc2")), Some(11));
        assert_eq!(point_block(&point_name(None, "patch")), None);
        let points = quant_points(2, true);
        assert_eq!(points.len(), 1 + 2 * 8);
        assert_eq!(quant_points(2, false).len(), 1 + 2 * 4);
    }

    #[test]
    fn weights_quantise_per_channel_symmetrically() {
        // [in = 2, out = 3]: channels are columns.
        let w = [1.0, -0.5, 0.0, -2.0, 0.25, 0.0];
        let (q, s) = quantize_weight(&w, 2, 3, 1);
        assert_eq!(s, vec![2.0 / 127.0, 0.5 / 127.0, 1.0]);
        assert_eq!(q, vec![64, -127, 0, -127, 64, 0]);
        // Rows as channels.
        let (q, s) = quantize_weight(&w, 2, 3, 0);
        assert_eq!(s, vec![1.0 / 127.0, 2.0 / 127.0]);
        assert_eq!(q[..3], [127, -64, 0]);
    }
}
