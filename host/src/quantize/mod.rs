//! Graphs that carry their own precision, written by `dinoedge model quantize`: FP16 with FP32
//! islands, and INT8 quantise/dequantise pairs calibrated on the user's own frames.
//!
//! Flow: [`frames::gather`] reads and preprocesses calibration frames (recordings or images, as
//! the pipeline would); every fifth frame is held out. For INT8, the FP32 graph runs the
//! calibration frames with each quantisation point's activation as an extra output
//! ([`crate::backbone::numerics::Numerics::taps`]), [`calibrate`] turns those into per-tensor
//! scales, and a per-block sensitivity sweep keeps blocks in FP32 until the quantised graph's
//! tokens reach the target cosine against FP32 on the held-out frames. The written graph and the
//! [`QuantizeReport`] follow from the inputs alone: the same inputs give the same bytes.

pub mod calibrate;
pub mod frames;
mod measure;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use tract_onnx::pb::ModelProto;

use crate::backbone::graph::{GraphOptions, build_graph_with};
use crate::backbone::numerics::{GraphPrecision, Numerics};
use crate::backbone::{BackboneError, InputSize, ModelDir, onnx};
use crate::preprocess::{PreprocessConfig, Roi};

pub use calibrate::Method;
pub use frames::SkippedFrame;
pub use measure::{Cosine, MatmulShare, matmul_share};

/// Why a quantised graph could not be written.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    /// A calibration source could not be read.
    #[error("calibration source {path}: {reason}")]
    Source {
        /// The file or folder.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// Too few usable frames.
    #[error(
        "{found} usable calibration frame(s){}: at least 5 are needed (every fifth is held out to measure the result)",
        skipped_note(*.skipped)
    )]
    TooFewFrames {
        /// Usable frames found.
        found: usize,
        /// Frames that could not be preprocessed.
        skipped: usize,
    },
    /// INT8 was asked for without calibration frames.
    #[error("INT8 needs calibration frames: give --calib with a recording or a folder of images")]
    NoCalibration,
    /// An option that does not fit the model.
    #[error("{0}")]
    Options(String),
    /// An activation held NaN or infinite values on a calibration frame.
    #[error("activation {point} holds NaN or infinite values on a calibration frame")]
    NonFinite {
        /// The quantisation point.
        point: String,
    },
    /// The target cosine was not reached even with every block kept out of INT8.
    #[error("target cosine {target} not reached: best {best:.5} with blocks {kept:?} kept in FP32")]
    TargetNotMet {
        /// The target.
        target: f64,
        /// The best cosine reached.
        best: f64,
        /// The blocks kept when it was reached.
        kept: Vec<usize>,
    },
    /// Building or running a graph failed.
    #[error(transparent)]
    Backbone(#[from] BackboneError),
}

fn skipped_note(skipped: usize) -> String {
    if skipped == 0 {
        String::new()
    } else {
        format!(" ({skipped} more could not be preprocessed)")
    }
}

/// Which blocks INT8 leaves in FP32.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Keep {
    /// As few as the sensitivity sweep needs to reach the target cosine.
    Auto,
    /// These (0-based), no sweep.
    Blocks(BTreeSet<usize>),
}

impl std::str::FromStr for Keep {
    type Err = String;

    /// `auto`, `none`, or comma-separated block indices.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Keep::Auto),
            "none" | "" => Ok(Keep::Blocks(BTreeSet::new())),
            _ => s
                .split(',')
                .map(|b| {
                    b.trim().parse::<usize>().map_err(|_| {
                        format!("{s:?}: expected auto, none or block indices like 0,11")
                    })
                })
                .collect::<Result<_, _>>()
                .map(Keep::Blocks),
        }
    }
}

/// What to write and how to calibrate it.
#[derive(Clone, Debug)]
pub struct QuantizeOptions {
    /// FP16 or INT8.
    pub precision: GraphPrecision,
    /// Input size.
    pub size: InputSize,
    /// Calibration sources: recordings, image files, folders of images.
    pub calib: Vec<PathBuf>,
    /// Calibration frames to use (held-out frames come on top: one in five).
    pub calib_frames: usize,
    /// How activation clips are chosen.
    pub method: Method,
    /// Blocks left in FP32.
    pub keep: Keep,
    /// The lowest acceptable cosine against FP32 on held-out frames (CLS and patch tokens).
    pub target_cosine: f64,
    /// Also quantise the attention products.
    pub int8_attention: bool,
    /// Region of interest, as the pipeline would crop.
    pub roi: Option<Roi>,
    /// CPU threads for calibration and the sweep.
    pub threads: usize,
    /// The key of encrypted recordings among the calibration sources.
    pub recording_key: Option<crate::recording::RecordingKey>,
}

/// One step of the sensitivity sweep: the blocks kept and the cosine reached.
#[derive(Clone, Debug, Serialize)]
pub struct SweepStep {
    /// Blocks kept in FP32.
    pub kept: Vec<usize>,
    /// Cosine against FP32 on the held-out frames.
    pub cosine: Cosine,
}

/// What `model quantize` did and measured.
#[derive(Clone, Debug, Serialize)]
pub struct QuantizeReport {
    /// Architecture.
    pub arch: String,
    /// Input size.
    pub size: String,
    /// Whether the weights are random (every figure then says so).
    pub random_weights: bool,
    /// Precision written.
    pub precision: GraphPrecision,
    /// ONNX opset of the file.
    pub opset: i64,
    /// Calibration method (INT8).
    pub method: Option<String>,
    /// Whether attention products are INT8.
    pub int8_attention: bool,
    /// Frames calibrated on.
    pub calibration_frames: usize,
    /// Frames held out to measure the result.
    pub held_out_frames: usize,
    /// Frames that could not be preprocessed, named, with why.
    pub skipped_frames: Vec<SkippedFrame>,
    /// Target cosine.
    pub target_cosine: f64,
    /// Cosine of the written graph against FP32 on the held-out frames (`None` without frames).
    pub cosine: Option<Cosine>,
    /// Blocks left in FP32 (INT8).
    pub kept_blocks: Vec<usize>,
    /// Why: `auto` (the sweep) or `given`.
    pub kept_by: &'static str,
    /// Each block's cosine when it alone is kept in FP32 (INT8, auto, when the sweep ran).
    pub sensitivity: Vec<(usize, f64)>,
    /// The sweep, step by step.
    pub sweep: Vec<SweepStep>,
    /// The share of MatMul and convolution multiply-adds in INT8.
    pub int8_share: Option<MatmulShare>,
    /// Ops kept in FP32 in an FP16 graph, and why.
    pub fp32_islands: Vec<&'static str>,
    /// Per-tensor activation scales, by quantisation point (INT8).
    pub activation_scales: BTreeMap<String, f32>,
}

/// A quantised graph and its report.
pub struct Quantized {
    /// The graph to write.
    pub proto: ModelProto,
    /// What was done and measured.
    pub report: QuantizeReport,
}

/// Why each FP32 island of the FP16 graph stays FP32.
pub const FP32_ISLANDS: [&str; 5] = [
    "residual stream: sums of many block outputs lose their small terms in FP16",
    "LayerNormalization: its variance overflows FP16 on large activations",
    "attention softmax (and its key mask): exponentials overflow FP16",
    "RoPE rotation: q and k are rotated in FP32 with FP32 cos/sin tables, then cast back to FP16",
    "LayerScale: an FP32 multiply, not folded, since its small scales would make FP16 weights subnormal",
];

/// Every fifth frame is held out.
const HOLD_OUT_EVERY: usize = 5;

/// The most calibration frames `--calib-frames` takes (each is held in memory, preprocessed).
pub const MAX_CALIBRATION_FRAMES: usize = 4096;

/// Writes the quantised graph of `model` as `options` ask.
pub fn quantize(model: &ModelDir, options: &QuantizeOptions) -> Result<Quantized, QuantizeError> {
    let config = &model.config;
    let blocks = config.num_hidden_layers;
    if options.precision == GraphPrecision::Fp32 {
        return Err(QuantizeError::Options(
            "fp32 is what `model export` writes; quantize writes fp16 or int8".into(),
        ));
    }
    if let Keep::Blocks(kept) = &options.keep
        && let Some(&bad) = kept.iter().find(|&&b| b >= blocks)
    {
        return Err(QuantizeError::Options(format!(
            "--keep {bad}: the model has blocks 0..{}",
            blocks - 1
        )));
    }
    if !(options.target_cosine > 0.0 && options.target_cosine <= 1.0) {
        return Err(QuantizeError::Options(format!(
            "target cosine {} is outside (0, 1]",
            options.target_cosine
        )));
    }
    options.size.check(config.patch_size)?;
    let int8 = options.precision == GraphPrecision::Int8;
    if int8 && options.calib.is_empty() {
        return Err(QuantizeError::NoCalibration);
    }

    let pre = PreprocessConfig {
        roi: options.roi,
        ..PreprocessConfig::new(options.size)
    };
    if !(HOLD_OUT_EVERY - 1..=MAX_CALIBRATION_FRAMES).contains(&options.calib_frames) {
        return Err(QuantizeError::Options(format!(
            "--calib-frames {}: between {} and {MAX_CALIBRATION_FRAMES}",
            options.calib_frames,
            HOLD_OUT_EVERY - 1
        )));
    }
    let wanted = options.calib_frames;
    let gathered = frames::gather_with(
        &options.calib,
        &pre,
        wanted + wanted.div_ceil(HOLD_OUT_EVERY - 1),
        options.recording_key.as_ref(),
    )?;
    let (mut calib, mut held_out) = (Vec::new(), Vec::new());
    for (i, f) in gathered.frames.into_iter().enumerate() {
        if i % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1 {
            held_out.push(f.pixels);
        } else {
            calib.push(f.pixels);
        }
    }
    calib.truncate(wanted);
    if !options.calib.is_empty() && (calib.len() < HOLD_OUT_EVERY - 1 || held_out.is_empty()) {
        return Err(QuantizeError::TooFewFrames {
            found: calib.len() + held_out.len(),
            skipped: gathered.skipped.len(),
        });
    }

    let run = measure::Runner {
        model,
        size: options.size,
        threads: options.threads.max(1),
    };
    let reference = if held_out.is_empty() {
        Vec::new()
    } else {
        run.outputs(&Numerics::fp32(), &held_out)?
    };
    let mut numerics = Numerics {
        precision: options.precision,
        int8_attention: int8 && options.int8_attention,
        ..Numerics::default()
    };
    let mut report = QuantizeReport {
        arch: config.arch_name(),
        size: options.size.to_string(),
        random_weights: model.random_weights,
        precision: options.precision,
        opset: onnx::OPSET,
        method: int8.then(|| options.method.to_string()),
        int8_attention: numerics.int8_attention,
        calibration_frames: calib.len(),
        held_out_frames: held_out.len(),
        skipped_frames: gathered.skipped,
        target_cosine: options.target_cosine,
        cosine: None,
        kept_blocks: Vec::new(),
        kept_by: "given",
        sensitivity: Vec::new(),
        sweep: Vec::new(),
        int8_share: None,
        fp32_islands: if int8 {
            Vec::new()
        } else {
            FP32_ISLANDS.to_vec()
        },
        activation_scales: BTreeMap::new(),
    };

    if int8 {
        numerics.activation_scales =
            run.calibrate(&calib, numerics.int8_attention, options.method)?;
        let cosine_with = |kept: &BTreeSet<usize>, numerics: &Numerics| {
            let trial = Numerics {
                keep_blocks: kept.clone(),
                ..numerics.clone()
            };
            run.cosine(&trial, &held_out, &reference)
        };
        let kept = match &options.keep {
            Keep::Blocks(kept) => kept.clone(),
            Keep::Auto => {
                report.kept_by = "auto";
                sweep(blocks, options.target_cosine, &mut report, |kept| {
                    cosine_with(kept, &numerics)
                })?
            }
        };
        numerics.keep_blocks = kept;
        report.activation_scales = numerics.activation_scales.clone();
        report.kept_blocks = numerics.keep_blocks.iter().copied().collect();
        report.int8_share = Some(matmul_share(config, options.size, &numerics));
    }
    if !held_out.is_empty() {
        let cosine = run.cosine(&numerics, &held_out, &reference)?;
        if !cosine.worst().is_finite() {
            return Err(QuantizeError::NonFinite {
                point: "the graph's output on a held-out frame".into(),
            });
        }
        // FP16 has no blocks to keep: below the target, no file is written.
        if !int8 && cosine.worst() < options.target_cosine {
            return Err(QuantizeError::TargetNotMet {
                target: options.target_cosine,
                best: cosine.worst(),
                kept: Vec::new(),
            });
        }
        report.cosine = Some(cosine);
    }
    let proto = build_graph_with(
        config,
        &model.weights,
        options.size,
        &GraphOptions::default(),
        &numerics,
    )?;
    Ok(Quantized { proto, report })
}

/// The per-block sensitivity sweep: nothing kept if that meets `target`; else each block's
/// cosine when it alone is kept, then blocks kept most-helpful first until the target is met.
fn sweep(
    blocks: usize,
    target: f64,
    report: &mut QuantizeReport,
    mut cosine_with: impl FnMut(&BTreeSet<usize>) -> Result<Cosine, QuantizeError>,
) -> Result<BTreeSet<usize>, QuantizeError> {
    let mut kept = BTreeSet::new();
    let first = cosine_with(&kept)?;
    report.sweep.push(SweepStep {
        kept: Vec::new(),
        cosine: first,
    });
    if first.worst() >= target {
        return Ok(kept);
    }
    let mut gains = Vec::with_capacity(blocks);
    for b in 0..blocks {
        let c = cosine_with(&BTreeSet::from([b]))?;
        gains.push((b, c.worst()));
    }
    report.sensitivity = gains.clone();
    // Most helpful first; ties by block index, so the order is the same on every machine.
    gains.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut best = (first.worst(), Vec::new());
    for (b, _) in gains {
        kept.insert(b);
        let c = cosine_with(&kept)?;
        report.sweep.push(SweepStep {
            kept: kept.iter().copied().collect(),
            cosine: c,
        });
        if c.worst() > best.0 {
            best = (c.worst(), kept.iter().copied().collect());
        }
        if c.worst() >= target {
            return Ok(kept);
        }
    }
    Err(QuantizeError::TargetNotMet {
        target,
        best: best.0,
        kept: best.1,
    })
}

/// Writes `proto` to `path` as `model export` writes its files: each whole or not at all, the
/// weights in `<file name>.data` from [`crate::backbone::EXTERNAL_DATA_THRESHOLD`] bytes.
/// Returns the bytes written in all.
pub fn write_atomically(proto: &ModelProto, path: &Path) -> Result<u64, QuantizeError> {
    Ok(onnx::write_model(
        proto,
        path,
        crate::backbone::EXTERNAL_DATA_THRESHOLD,
    )?)
}

/// The graph options calibration and the sweep run with: those of the written file (no key
/// padding, so the softmax outputs calibrated are the file's), with the batch fixed at 1.
fn measured_graph_options() -> GraphOptions {
    GraphOptions {
        batch: Some(1),
        ..GraphOptions::default()
    }
}

#[cfg(test)]
mod tests;
