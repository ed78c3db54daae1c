//! The DINOv3 ViT inference graph for one input size, written as ONNX: RoPE tables as constants,
//! no `If` or `Loop`, no run-time shape arithmetic; the batch may stay symbolic.
//!
//! Algebra folded into the weights at build time (each exact up to f32 rounding):
//! LayerScale into the projection before it, the attention scale 1/sqrt(Dh) into the query
//! projection (RoPE is linear), and the affine part of each block's LayerNorms into the projection
//! after it. The final norm keeps its affine, since nothing follows it.
//!
//! The same builder writes the FP16 and INT8 forms ([`Numerics`]): FP16 keeps the residual
//! stream, LayerNorm, the RoPE rotation, the softmax and LayerScale (then not folded: small
//! scales would become FP16 subnormals) in FP32 islands, with a Cast at each island boundary;
//! INT8 puts quantise/dequantise pairs on the inputs of each MatMul and of the patch
//! convolution.

use super::numerics::{GraphPrecision, Numerics, TAP_PREFIX, point_name, quantize_weight};
use super::onnx::{Attr, Dim, ElemType, GraphWriter};
use super::rope::rope_tables;
use super::{BackboneError, Dinov3Config, InputSize, Weights};
use tract_onnx::pb;

/// How attention products are written; both are exact, they differ in how the runtime optimises them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AttentionOp {
    /// `MatMul` on `[N, heads, T, Dh]`.
    #[default]
    Matmul,
    /// `Einsum` "nthd,nshd->nhts" and "nhts,nshd->nthd", on `[N, T, heads, Dh]` as the
    /// projection leaves it, with no transposes.
    Einsum,
    /// One ONNX `Attention` node (opset 23) per block, which tract runs as its fused
    /// flash-attention kernel; ONNX Runtime 1.22+ reads it, TensorRT 10.3 does not.
    Sdpa,
}

impl AttentionOp {
    /// The ONNX opset a graph with this form needs.
    pub fn opset(self) -> i64 {
        match self {
            AttentionOp::Sdpa => 23,
            _ => super::onnx::OPSET,
        }
    }
}

/// Choices of op form, kept so that they can be measured against each other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphOptions {
    /// Batch size; `None` leaves it symbolic (`N`).
    pub batch: Option<usize>,
    /// One `[D, 3D]` projection for q, k and v instead of three.
    pub fused_qkv: bool,
    /// The attention op form.
    pub attention: AttentionOp,
    /// Pad keys and values with zero rows, masked out of the softmax, to a multiple of this many
    /// tokens (1: no padding), so that softmax rows have a length tract's kernels prefer
    /// ([`TRACT_KEY_MULTIPLE`]). Exact: padded keys get a weight of exactly 0.
    pub key_multiple: usize,
    /// 0-based blocks whose output, normed by the final LayerNorm, is also a graph output
    /// (`block_<i>`), as `get_intermediate_layers(norm=True)` gives them.
    pub intermediate_blocks: Vec<usize>,
}

impl Default for GraphOptions {
    fn default() -> Self {
        GraphOptions {
            batch: None,
            fused_qkv: true,
            attention: AttentionOp::Matmul,
            key_multiple: 1,
            intermediate_blocks: Vec::new(),
        }
    }
}

/// The key padding tract runs fastest with: its x86 softmax kernels work in 64-float blocks and
/// its arm64 row kernel needs a multiple of 4 (measured: ViT-S/16 at 224, 201 tokens, softmax
/// 15.4 -> 4.3 ms a frame on one x86 core).
pub const TRACT_KEY_MULTIPLE: usize = 64;

/// Name of the graph input.
pub const INPUT_NAME: &str = "pixel_values";
/// Name of the main graph output.
pub const OUTPUT_NAME: &str = "last_hidden_state";

/// The name of the output for an intermediate block.
pub fn intermediate_output_name(block: usize) -> String {
    format!("block_{block}")
}

/// `[out, in]` row-major (PyTorch Linear) to `[in, out]` (ONNX MatMul's right operand), each
/// row `i` of the result scaled by `row_scale[i]` and each column `o` by `col_scale[o]`.
fn linear_for_matmul(
    w: &[f32],
    out: usize,
    inp: usize,
    row_scale: &[f32],
    col_scale: &[f32],
) -> Vec<f32> {
    let mut t = vec![0.0f32; out * inp];
    for o in 0..out {
        for i in 0..inp {
            let v = f64::from(w[o * inp + i]) * f64::from(row_scale[i]) * f64::from(col_scale[o]);
            t[i * out + o] = v as f32;
        }
    }
    t
}

/// The bias after folding: `(ln_bias · W^T + b) * col_scale`, in f64.
fn folded_bias(
    w: &[f32],
    b: Option<&[f32]>,
    out: usize,
    inp: usize,
    ln_bias: Option<&[f32]>,
    col_scale: &[f32],
) -> Vec<f32> {
    (0..out)
        .map(|o| {
            let mut acc = b.map_or(0.0, |b| f64::from(b[o]));
            if let Some(lb) = ln_bias {
                for i in 0..inp {
                    acc += f64::from(lb[i]) * f64::from(w[o * inp + i]);
                }
            }
            (acc * f64::from(col_scale[o])) as f32
        })
        .collect()
}

/// One linear layer as it goes into the graph.
struct Folded {
    weight: Vec<f32>,
    bias: Vec<f32>,
    inp: usize,
    out: usize,
}

struct Builder<'a> {
    c: &'a Dinov3Config,
    w: &'a Weights,
    g: GraphWriter,
    n: &'a Numerics,
    /// The block being written (`None` before the first).
    block: Option<usize>,
    /// Calibration taps: (output name, value).
    taps: Vec<(String, String)>,
}

impl Builder<'_> {
    /// The element type of activations and weights outside the FP32 islands.
    fn act(&self) -> ElemType {
        if self.n.precision == GraphPrecision::Fp16 {
            ElemType::F16
        } else {
            ElemType::F32
        }
    }

    /// A float constant in the working type.
    fn act_const(&mut self, stem: &str, dims: &[usize], values: &[f32]) -> String {
        let ty = self.act();
        self.g.constant_as(ty, stem, dims, values)
    }

    fn cast(&mut self, x: &str, to: ElemType) -> String {
        self.g.node("Cast", &[x], &[("to", Attr::Int(to.code()))])
    }

    /// From an FP32 island into the working type.
    fn leave_island(&mut self, x: &str) -> String {
        match self.act() {
            ElemType::F32 => x.to_string(),
            ty => self.cast(x, ty),
        }
    }

    /// From the working type into an FP32 island.
    fn enter_island(&mut self, x: &str) -> String {
        match self.act() {
            ElemType::F32 => x.to_string(),
            _ => self.cast(x, ElemType::F32),
        }
    }

    /// An activation about to enter a MatMul or the convolution: tapped for calibration, and
    /// quantised and dequantised with its calibrated scale where this block is in INT8. Returns
    /// the value to use and whether it was quantised (its weight then is too).
    fn quant_point(&mut self, x: &str, what: &str) -> (String, bool) {
        let point = point_name(self.block, what);
        if self.n.taps {
            self.taps
                .push((format!("{TAP_PREFIX}{point}"), x.to_string()));
        }
        let kept = self.block.is_some_and(|b| self.n.keep_blocks.contains(&b));
        let scale = self.n.activation_scales.get(&point).copied();
        match scale {
            Some(scale) if self.n.precision == GraphPrecision::Int8 && !kept => {
                let s = self.g.constant("act_scale", &[], &[scale]);
                let z = self.g.constant_i8("act_zero", &[], &[0]);
                let q = self.g.node("QuantizeLinear", &[x, &s, &z], &[]);
                (self.g.node("DequantizeLinear", &[&q, &s, &z], &[]), true)
            }
            _ => (x.to_string(), false),
        }
    }

    /// A MatMul or convolution weight (`dims[0]` rows, row-major) as the graph holds it: in
    /// the working type, or, where its input is `quantized`, INT8 with one scale per channel
    /// (`channel_axis`: 1 for a MatMul's `[in, out]`, 0 for a convolution's `[out, ...]`) and
    /// a DequantizeLinear.
    fn weight(
        &mut self,
        stem: &str,
        dims: &[usize],
        values: &[f32],
        channel_axis: usize,
        quantized: bool,
    ) -> String {
        if !quantized {
            return self.act_const(stem, dims, values);
        }
        let rows = dims.first().copied().unwrap_or(1).max(1);
        let (q, scales) = quantize_weight(values, rows, values.len() / rows, channel_axis);
        let channels = scales.len();
        let qn = self.g.constant_i8(stem, dims, &q);
        let sn = self.g.constant("w_scale", &[channels], &scales);
        let zn = self
            .g
            .constant_i8("w_zero", &[channels], &vec![0; channels]);
        self.g.node(
            "DequantizeLinear",
            &[&qn, &sn, &zn],
            &[("axis", Attr::Int(channel_axis as i64))],
        )
    }

    fn tensor(&self, name: &str) -> Result<&[f32], BackboneError> {
        Ok(&self.w.get(name)?.data)
    }

    fn opt_tensor(&self, name: &str, present: bool) -> Result<Option<&[f32]>, BackboneError> {
        if present {
            self.tensor(name).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Linear `name` (`[out, in]` + optional bias) with the preceding LayerNorm's affine
    /// (`ln`) folded in and its outputs scaled by `col_scale`.
    fn fold(
        &self,
        name: &str,
        has_bias: bool,
        ln: Option<&str>,
        col_scale: Option<&[f32]>,
    ) -> Result<Folded, BackboneError> {
        let wt = self.w.get(&format!("{name}.weight"))?;
        let (out, inp) = (wt.shape[0], wt.shape[1]);
        let ones_in = vec![1.0f32; inp];
        let ones_out = vec![1.0f32; out];
        let (ln_w, ln_b) = match ln {
            Some(ln) => (
                self.tensor(&format!("{ln}.weight"))?,
                Some(self.tensor(&format!("{ln}.bias"))?),
            ),
            None => (ones_in.as_slice(), None),
        };
        let col = col_scale.unwrap_or(&ones_out);
        let bias = self.opt_tensor(&format!("{name}.bias"), has_bias)?;
        Ok(Folded {
            weight: linear_for_matmul(&wt.data, out, inp, ln_w, col),
            bias: folded_bias(&wt.data, bias, out, inp, ln_b, col),
            inp,
            out,
        })
    }

    /// `x @ [W1 W2 ...] + [b1 b2 ...]`: several folded linears sharing an input (quantisation
    /// point `what`) as one MatMul.
    fn linear_concat(&mut self, x: &str, parts: &[Folded], what: &str) -> String {
        let (x, quantized) = self.quant_point(x, what);
        let inp = parts.first().map_or(0, |p| p.inp);
        let total: usize = parts.iter().map(|p| p.out).sum();
        let mut weight = vec![0.0f32; inp * total];
        let mut bias = Vec::with_capacity(total);
        let mut col0 = 0;
        for p in parts {
            for i in 0..inp {
                weight[i * total + col0..i * total + col0 + p.out]
                    .copy_from_slice(&p.weight[i * p.out..(i + 1) * p.out]);
            }
            bias.extend_from_slice(&p.bias);
            col0 += p.out;
        }
        let wn = self.weight("w", &[inp, total], &weight, 1, quantized);
        let bn = self.act_const("b", &[total], &bias);
        let mm = self.g.node("MatMul", &[&x, &wn], &[]);
        self.g.node("Add", &[&mm, &bn], &[])
    }

    /// `x @ W + b` for several folded linears sharing an input (quantisation point `what`):
    /// one MatMul then a Split when `fuse`, else one MatMul each.
    fn linear(&mut self, x: &str, parts: &[Folded], fuse: bool, what: &str) -> Vec<String> {
        if fuse && parts.len() > 1 {
            let y = self.linear_concat(x, parts, what);
            let split: Vec<i64> = parts.iter().map(|p| p.out as i64).collect();
            let split_name = self.g.constant_i64("split", &[split.len()], &split);
            self.g.node_n(
                "Split",
                &[&y, &split_name],
                &[("axis", Attr::Int(-1))],
                parts.len(),
            )
        } else {
            let (x, quantized) = self.quant_point(x, what);
            parts
                .iter()
                .map(|p| {
                    let wn = self.weight("w", &[p.inp, p.out], &p.weight, 1, quantized);
                    let bn = self.act_const("b", &[p.out], &p.bias);
                    let mm = self.g.node("MatMul", &[&x, &wn], &[]);
                    self.g.node("Add", &[&mm, &bn], &[])
                })
                .collect()
        }
    }

    /// LayerNormalization over the last axis; without `affine`, the unit scale and no bias
    /// (the affine was folded into the next projection).
    fn layer_norm(
        &mut self,
        x: &str,
        affine: Option<(&str, &str)>,
    ) -> Result<String, BackboneError> {
        let d = self.c.hidden_size;
        let (scale, bias) = match affine {
            Some((wn, bn)) => {
                let (w, b) = (self.tensor(wn)?.to_vec(), self.tensor(bn)?.to_vec());
                (
                    self.g.constant("ln_w", &[d], &w),
                    Some(self.g.constant("ln_b", &[d], &b)),
                )
            }
            None => (self.g.constant("ln_w", &[d], &vec![1.0; d]), None),
        };
        let mut inputs = vec![x, scale.as_str()];
        if let Some(b) = &bias {
            inputs.push(b);
        }
        Ok(self.g.node(
            "LayerNormalization",
            &inputs,
            &[
                ("axis", Attr::Int(-1)),
                ("epsilon", Attr::Float(self.c.layer_norm_eps as f32)),
            ],
        ))
    }
}

impl Builder<'_> {
    /// A projection's output back into the FP32 residual stream, times its LayerScale where
    /// that was not folded into the projection.
    fn layer_scale(&mut self, y: &str, scale: Option<&[f32]>) -> String {
        let y = self.enter_island(y);
        match scale {
            Some(scale) => {
                let s = self.g.constant("layer_scale", &[scale.len()], scale);
                self.g.node("Mul", &[&y, &s], &[])
            }
            None => y,
        }
    }
}

/// The largest attention score buffer (one block, all heads, f32) a graph may need; far beyond
/// any bedside use, it turns an absurd size into an error instead of an allocation failure.
pub const MAX_ATTENTION_BYTES: u64 = 8 << 30;

/// Refuses sizes whose attention scores alone would not fit in memory.
fn check_attention_memory(
    c: &Dinov3Config,
    size: InputSize,
    options: &GraphOptions,
) -> Result<(), BackboneError> {
    let tokens =
        (c.prefix_tokens() + (size.height / c.patch_size) * (size.width / c.patch_size)) as u64;
    let keys = tokens.next_multiple_of(options.key_multiple.max(1) as u64);
    let bytes = (options.batch.unwrap_or(1) as u64)
        .saturating_mul(c.num_attention_heads as u64)
        .saturating_mul(tokens)
        .saturating_mul(keys)
        .saturating_mul(4);
    if bytes > MAX_ATTENTION_BYTES {
        return Err(BackboneError::InputSize {
            height: size.height,
            width: size.width,
            reason: format!(
                "{tokens} tokens: attention would need {:.1} GiB per block (limit {} GiB)",
                bytes as f64 / (1u64 << 30) as f64,
                MAX_ATTENTION_BYTES >> 30
            ),
        });
    }
    Ok(())
}

/// Builds the FP32 ONNX model of `weights` (checked against `config`) for inputs of `size`.
pub fn build_graph(
    config: &Dinov3Config,
    weights: &Weights,
    size: InputSize,
    options: &GraphOptions,
) -> Result<pb::ModelProto, BackboneError> {
    build_graph_with(config, weights, size, options, &Numerics::fp32())
}

/// Builds the ONNX model of `weights` for inputs of `size`, written with `numerics`.
pub fn build_graph_with(
    config: &Dinov3Config,
    weights: &Weights,
    size: InputSize,
    options: &GraphOptions,
    numerics: &Numerics,
) -> Result<pb::ModelProto, BackboneError> {
    size.check(config.patch_size)?;
    if numerics.taps && numerics.precision != GraphPrecision::Fp32 {
        return Err(BackboneError::GraphForm(
            "calibration taps are FP32 outputs of the FP32 graph".into(),
        ));
    }
    if (numerics.precision != GraphPrecision::Fp32 || numerics.taps)
        && options.attention != AttentionOp::Matmul
    {
        return Err(BackboneError::GraphForm(format!(
            "{} graphs and calibration taps are written with MatMul attention, not {:?}",
            numerics.precision, options.attention
        )));
    }
    check_attention_memory(config, size, options)?;
    if let Some(&bad) = options
        .intermediate_blocks
        .iter()
        .find(|&&b| b >= config.num_hidden_layers)
    {
        return Err(BackboneError::Config {
            path: "config.json".into(),
            reason: format!(
                "intermediate block {bad} requested, but the model has blocks 0..{}",
                config.num_hidden_layers - 1
            ),
        });
    }
    let c = config;
    let (d, heads, dh, p) = (
        c.hidden_size,
        c.num_attention_heads,
        c.head_dim(),
        c.patch_size,
    );
    let (hp, wp) = (size.height / p, size.width / p);
    let prefix = c.prefix_tokens();
    let tokens = prefix + hp * wp;
    let mut b = Builder {
        c,
        w: weights,
        g: GraphWriter::default(),
        n: numerics,
        block: None,
        taps: Vec::new(),
    };
    let fp16 = numerics.precision == GraphPrecision::Fp16;
    // LayerScale is folded into the projection before it, except in FP16, where it stays an
    // FP32 multiply (DINOv3's small scales would make FP16 weights subnormal).
    let fold_layer_scale = !fp16;
    let batch_dim = match options.batch {
        Some(n) => Dim::Fixed(n),
        None => Dim::Symbol("N".into()),
    };
    b.g.input(
        INPUT_NAME,
        &[
            batch_dim.clone(),
            Dim::Fixed(3),
            Dim::Fixed(size.height),
            Dim::Fixed(size.width),
        ],
    );

    // Patch embedding: a stride-p convolution, then [N, D, Hp, Wp] -> [N, P, D].
    let pe_w = b.tensor("embeddings.patch_embeddings.weight")?.to_vec();
    let pe_b = b.tensor("embeddings.patch_embeddings.bias")?.to_vec();
    let pixels = b.leave_island(INPUT_NAME);
    let (pixels, quantized) = b.quant_point(&pixels, "patch");
    let pe_w = b.weight("patch_w", &[d, 3, p, p], &pe_w, 0, quantized);
    let pe_b = b.act_const("patch_b", &[d], &pe_b);
    let k = p as i64;
    let conv = b.g.node(
        "Conv",
        &[&pixels, &pe_w, &pe_b],
        &[
            ("kernel_shape", Attr::Ints(&[k, k])),
            ("strides", Attr::Ints(&[k, k])),
        ],
    );
    let flat_shape =
        b.g.constant_i64("shape", &[3], &[0, d as i64, (hp * wp) as i64]);
    let flat = b.g.node("Reshape", &[&conv, &flat_shape], &[]);
    let patches =
        b.g.node("Transpose", &[&flat], &[("perm", Attr::Ints(&[0, 2, 1]))]);
    let patches = b.enter_island(&patches);

    // Prefix tokens broadcast over the batch without reading the batch size: a [N, 1, 1] zero
    // taken from the patches plus the [1, prefix, D] constants. (A NaN pixel would poison every
    // token through attention anyway, so the zero adds no new failure.)
    let mut prefix_values = b.tensor("embeddings.cls_token")?.to_vec();
    if c.num_register_tokens > 0 {
        prefix_values.extend_from_slice(b.tensor("embeddings.register_tokens")?);
    }
    let prefix_const =
        b.g.constant("prefix_tokens", &[1, prefix, d], &prefix_values);
    let starts = b.g.constant_i64("starts", &[2], &[0, 0]);
    let ends = b.g.constant_i64("ends", &[2], &[1, 1]);
    let axes = b.g.constant_i64("axes", &[2], &[1, 2]);
    let corner = b.g.node("Slice", &[&patches, &starts, &ends, &axes], &[]);
    let zero = b.g.constant("zero", &[], &[0.0]);
    let batch_zero = b.g.node("Mul", &[&corner, &zero], &[]);
    let prefix_tokens = b.g.node("Add", &[&batch_zero, &prefix_const], &[]);
    let mut x = b.g.node(
        "Concat",
        &[&prefix_tokens, &patches],
        &[("axis", Attr::Int(1))],
    );

    let rope = rope_tables(hp, wp, dh, c.rope_theta as f32, prefix);
    // Einsum works on [N, T, h, Dh] as the projection leaves it (no transposes); the other
    // forms on [N, h, T, Dh].
    let tokens_major = options.attention == AttentionOp::Einsum;
    let table_dims: &[usize] = if tokens_major {
        &[tokens, 1, dh]
    } else {
        &[tokens, dh]
    };
    let cos = b.g.constant("rope_cos", table_dims, &rope.cos);
    let sin = b.g.constant("rope_sin", table_dims, &rope.sin_signed);
    let half = (dh / 2) as i64;
    let lo = (
        b.g.constant_i64("lo_s", &[1], &[0]),
        b.g.constant_i64("lo_e", &[1], &[half]),
    );
    let hi = (
        b.g.constant_i64("hi_s", &[1], &[half]),
        b.g.constant_i64("hi_e", &[1], &[2 * half]),
    );
    let last_axis = b.g.constant_i64("last_axis", &[1], &[-1]);
    let heads_shape =
        b.g.constant_i64("shape", &[4], &[0, tokens as i64, heads as i64, dh as i64]);
    let merge_shape =
        b.g.constant_i64("shape", &[3], &[0, tokens as i64, d as i64]);
    let qkv_shape = b.g.constant_i64(
        "shape",
        &[5],
        &[0, tokens as i64, 3, heads as i64, dh as i64],
    );
    let qkv_index: Vec<String> = (0..3)
        .map(|i| b.g.constant_i64("index", &[], &[i]))
        .collect();
    let scale = vec![(1.0 / (dh as f64).sqrt()) as f32; d];

    let key_multiple = options.key_multiple.max(1);
    let padded = tokens.div_ceil(key_multiple) * key_multiple;
    let key_pad = (padded > tokens && options.attention != AttentionOp::Sdpa).then(|| {
        let pad = padded - tokens;
        let starts = b.g.constant_i64("pad_s", &[1], &[0]);
        let ends = b.g.constant_i64("pad_e", &[1], &[1]);
        let token_axis = if tokens_major { 1 } else { 2 };
        let axis = b.g.constant_i64("pad_axis", &[1], &[token_axis]);
        let mut repeats = [1i64; 4];
        repeats[token_axis as usize] = pad as i64;
        let repeats = b.g.constant_i64("pad_repeats", &[4], &repeats);
        // exp(-1e9 - max) is exactly 0 in f32: padded keys get no weight at all.
        let mut mask = vec![0.0f32; padded];
        mask[tokens..].fill(-1e9);
        let mask = b.g.constant("key_mask", &[1, 1, 1, padded], &mask);
        (starts, ends, axis, repeats, mask)
    });

    let mut intermediates = Vec::new();
    for i in 0..c.num_hidden_layers {
        b.block = Some(i);
        let l = |s: &str| format!("layer.{i}.{s}");
        // Attention.
        let h = b.layer_norm(&x, None)?;
        let h = b.leave_island(&h);
        let q = b.fold(
            &l("attention.q_proj"),
            c.query_bias,
            Some(&l("norm1")),
            Some(&scale),
        )?;
        let kp = b.fold(&l("attention.k_proj"), c.key_bias, Some(&l("norm1")), None)?;
        let v = b.fold(
            &l("attention.v_proj"),
            c.value_bias,
            Some(&l("norm1")),
            None,
        )?;
        let mut per_head = Vec::with_capacity(3);
        if options.fused_qkv {
            // One [D, 3D] MatMul, then [N, T, 3, h, Dh] -> [3, N, h, T, Dh] and one Gather each:
            // a Split after the MatMul would let the runtime cut it back into three.
            let qkv = b.linear_concat(&h, &[q, kp, v], "qkv");
            let r = b.g.node("Reshape", &[&qkv, &qkv_shape], &[]);
            if tokens_major {
                for index in &qkv_index {
                    per_head.push(b.g.node("Gather", &[&r, index], &[("axis", Attr::Int(2))]));
                }
            } else {
                let t = b.g.node(
                    "Transpose",
                    &[&r],
                    &[("perm", Attr::Ints(&[2, 0, 3, 1, 4]))],
                );
                for index in &qkv_index {
                    per_head.push(b.g.node("Gather", &[&t, index], &[("axis", Attr::Int(0))]));
                }
            }
        } else {
            for t in &b.linear(&h, &[q, kp, v], false, "qkv") {
                let r = b.g.node("Reshape", &[t, &heads_shape], &[]);
                per_head.push(if tokens_major {
                    r
                } else {
                    b.g.node("Transpose", &[&r], &[("perm", Attr::Ints(&[0, 2, 1, 3]))])
                });
            }
        }
        let mut rotated = Vec::with_capacity(2);
        for t in &per_head[..2] {
            // The rotation is an FP32 island: RoPE's tables lose too much in FP16.
            let t = &b.enter_island(t);
            let a = b.g.node("Slice", &[t, &lo.0, &lo.1, &last_axis], &[]);
            let z = b.g.node("Slice", &[t, &hi.0, &hi.1, &last_axis], &[]);
            let swapped = b.g.node("Concat", &[&z, &a], &[("axis", Attr::Int(-1))]);
            let tc = b.g.node("Mul", &[t, &cos], &[]);
            let ts = b.g.node("Mul", &[&swapped, &sin], &[]);
            rotated.push(b.g.node("Add", &[&tc, &ts], &[]));
        }
        let (qr, mut kr, mut vh) = (rotated[0].clone(), rotated[1].clone(), per_head[2].clone());
        if let Some((pad_starts, pad_ends, token_axis, repeats, _)) = &key_pad {
            // [N, h, pad, Dh] zeros made from the keys themselves (one token, times 0, tiled),
            // so the batch stays symbolic without reading a shape.
            let one_k =
                b.g.node("Slice", &[&kr, pad_starts, pad_ends, token_axis], &[]);
            let zero_k = b.g.node("Mul", &[&one_k, &zero], &[]);
            let zeros = b.g.node("Tile", &[&zero_k, repeats], &[]);
            let axis = if tokens_major { 1 } else { 2 };
            kr =
                b.g.node("Concat", &[&kr, &zeros], &[("axis", Attr::Int(axis))]);
            let zeros = b.leave_island(&zeros);
            vh =
                b.g.node("Concat", &[&vh, &zeros], &[("axis", Attr::Int(axis))]);
        }
        let mut qr = b.leave_island(&qr);
        let kr = b.leave_island(&kr);
        if numerics.int8_attention {
            qr = b.quant_point(&qr, "q").0;
            vh = b.quant_point(&vh, "v").0;
        }
        let (qr, kr, vh) = (&qr, &kr, &vh);
        let attn = match options.attention {
            AttentionOp::Matmul => {
                let mut kt =
                    b.g.node("Transpose", &[kr], &[("perm", Attr::Ints(&[0, 1, 3, 2]))]);
                if numerics.int8_attention {
                    // After the transpose, so that the MatMul reads a dequantised input.
                    kt = b.quant_point(&kt, "k").0;
                }
                let scores = b.g.node("MatMul", &[qr, &kt], &[]);
                // The softmax is an FP32 island: its exponentials overflow FP16.
                let mut scores = b.enter_island(&scores);
                if let Some((.., mask)) = &key_pad {
                    scores = b.g.node("Add", &[&scores, mask], &[]);
                }
                let probs = b.g.node("Softmax", &[&scores], &[("axis", Attr::Int(-1))]);
                let mut probs = b.leave_island(&probs);
                if numerics.int8_attention {
                    probs = b.quant_point(&probs, "probs").0;
                }
                b.g.node("MatMul", &[&probs, vh], &[])
            }
            AttentionOp::Sdpa => {
                // The 1/sqrt(Dh) scale is already in the query weights.
                b.g.node("Attention", &[qr, kr, vh], &[("scale", Attr::Float(1.0))])
            }
            AttentionOp::Einsum => {
                let mut scores = b.g.node(
                    "Einsum",
                    &[qr, kr],
                    &[("equation", Attr::Str("nthd,nshd->nhts"))],
                );
                if let Some((.., mask)) = &key_pad {
                    scores = b.g.node("Add", &[&scores, mask], &[]);
                }
                let probs = b.g.node("Softmax", &[&scores], &[("axis", Attr::Int(-1))]);
                b.g.node(
                    "Einsum",
                    &[&probs, vh],
                    &[("equation", Attr::Str("nhts,nshd->nthd"))],
                )
            }
        };
        let merged = if tokens_major {
            attn
        } else {
            b.g.node(
                "Transpose",
                &[&attn],
                &[("perm", Attr::Ints(&[0, 2, 1, 3]))],
            )
        };
        let merged = b.g.node("Reshape", &[&merged, &merge_shape], &[]);
        let ls1 = b.tensor(&l("layer_scale1.lambda1"))?.to_vec();
        let o = b.fold(
            &l("attention.o_proj"),
            c.proj_bias,
            None,
            fold_layer_scale.then_some(ls1.as_slice()),
        )?;
        let o = b.linear(&merged, &[o], false, "o");
        let o = b.layer_scale(&o[0], (!fold_layer_scale).then_some(ls1.as_slice()));
        x = b.g.node("Add", &[&x, &o], &[]);

        // Feed-forward.
        let h = b.layer_norm(&x, None)?;
        let h = b.leave_island(&h);
        let ls2 = b.tensor(&l("layer_scale2.lambda1"))?.to_vec();
        let act = if c.use_gated_mlp {
            let gate = b.fold(&l("mlp.gate_proj"), c.mlp_bias, Some(&l("norm2")), None)?;
            let up = b.fold(&l("mlp.up_proj"), c.mlp_bias, Some(&l("norm2")), None)?;
            let gu = b.linear(&h, &[gate, up], true, "fc1");
            let sig = b.g.node("Sigmoid", &[&gu[0]], &[]);
            let silu = b.g.node("Mul", &[&gu[0], &sig], &[]);
            b.g.node("Mul", &[&silu, &gu[1]], &[])
        } else {
            let up = b.fold(&l("mlp.up_proj"), c.mlp_bias, Some(&l("norm2")), None)?;
            let u = b.linear(&h, &[up], false, "fc1");
            // Exact GELU: x * 0.5 * (1 + erf(x / sqrt 2)); tract recognises the pattern.
            let inv_sqrt2 = b.act_const("inv_sqrt2", &[], &[std::f32::consts::FRAC_1_SQRT_2]);
            let one = b.act_const("one", &[], &[1.0]);
            let halfc = b.act_const("half", &[], &[0.5]);
            let scaled = b.g.node("Mul", &[&u[0], &inv_sqrt2], &[]);
            let erf = b.g.node("Erf", &[&scaled], &[]);
            let onep = b.g.node("Add", &[&erf, &one], &[]);
            let xh = b.g.node("Mul", &[&u[0], &halfc], &[]);
            b.g.node("Mul", &[&xh, &onep], &[])
        };
        let down = b.fold(
            &l("mlp.down_proj"),
            c.mlp_bias,
            None,
            fold_layer_scale.then_some(ls2.as_slice()),
        )?;
        let down = b.linear(&act, &[down], false, "fc2");
        let down = b.layer_scale(&down[0], (!fold_layer_scale).then_some(ls2.as_slice()));
        x = b.g.node("Add", &[&x, &down], &[]);
        if options.intermediate_blocks.contains(&i) {
            intermediates.push((i, b.layer_norm(&x, Some(("norm.weight", "norm.bias")))?));
        }
    }
    let out = b.layer_norm(&x, Some(("norm.weight", "norm.bias")))?;
    let out_dims = [batch_dim, Dim::Fixed(tokens), Dim::Fixed(d)];
    b.g.output(OUTPUT_NAME, &out, &out_dims);
    for (i, t) in intermediates {
        b.g.output(&intermediate_output_name(i), &t, &out_dims);
    }
    for (name, value) in std::mem::take(&mut b.taps) {
        b.g.output_unshaped(&name, &value);
    }
    let mut metadata = vec![
        ("dinoedge.arch", c.arch_name()),
        ("dinoedge.size", format!("{}x{}", size.height, size.width)),
        ("dinoedge.prefix_tokens", prefix.to_string()),
        ("dinoedge.hidden_size", d.to_string()),
    ];
    if numerics.precision != GraphPrecision::Fp32 {
        metadata.push(("dinoedge.precision", numerics.precision.to_string()));
    }
    if numerics.precision == GraphPrecision::Int8 {
        let kept: Vec<String> = numerics.keep_blocks.iter().map(|b| b.to_string()).collect();
        metadata.push(("dinoedge.int8_kept_blocks", kept.join(",")));
    }
    Ok(b.g.into_model("dinov3_vit", options.attention.opset(), &metadata))
}
