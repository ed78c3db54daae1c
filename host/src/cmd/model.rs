//! `dinoedge model init|export|quantize`: make random-weight model folders, export the ONNX
//! graph, and write it in FP16 or calibrated INT8.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use dinoedge::backbone::numerics::GraphPrecision;
use dinoedge::backbone::{Arch, AttentionOp, GraphOptions, InputSize, ModelDir};
use dinoedge::quantize::{self, Keep, Method, QuantizeOptions};

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Write a model folder (config.json + model.safetensors, Hugging Face layout) with
    /// deterministic random weights for a released DINOv3 ViT architecture.
    Init(InitArgs),
    /// Write the inference graph of a model folder for one input size as ONNX
    /// (input pixel_values f32 [N,3,H,W], output last_hidden_state f32 [N,5+Hp*Wp,D]).
    Export(ExportArgs),
    /// Write the graph with its own precision: FP16 with FP32 islands, or INT8 (explicit
    /// QuantizeLinear/DequantizeLinear) calibrated on recorded frames or images, keeping as
    /// many blocks in FP32 as the target cosine against FP32 needs.
    Quantize(QuantizeArgs),
    /// Convert one of Meta's own DINOv3 checkpoints (.pth, as released with the paper) into a
    /// model folder in the Hugging Face layout, without Python (the name map:
    /// models/META_KEYS.md).
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Meta's checkpoint, e.g. dinov3_vits16_pretrain_lvd1689m-08c60483.pth.
    #[arg(long)]
    meta: PathBuf,
    /// The released architecture it is (its configuration is written beside the weights).
    #[arg(
        long,
        value_enum,
        required_unless_present = "config",
        conflicts_with = "config"
    )]
    arch: Option<Arch>,
    /// A Hugging Face config.json to use instead of --arch (a variant not in the list).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Folder to write (config.json + model.safetensors).
    #[arg(short, long)]
    output: PathBuf,
}

#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// Model folder (config.json + model.safetensors).
    #[arg(long)]
    model: PathBuf,
    /// Input size HxW; both multiples of the patch size (16).
    #[arg(long, default_value = "224x224")]
    size: InputSize,
    /// fp16 or int8.
    #[arg(long, value_enum)]
    precision: GraphPrecision,
    /// Calibration frames: recordings, image files, DICOM cines or folders of them (repeatable). Every
    /// fifth frame is held out to measure the result. Needed for int8; for fp16 they measure it.
    #[arg(long)]
    calib: Vec<PathBuf>,
    /// Calibration frames to use (the held-out frames come on top).
    #[arg(long, default_value_t = 64)]
    calib_frames: usize,
    /// Key file of encrypted recordings among the --calib sources.
    #[arg(long, value_name = "FILE")]
    recording_key: Option<PathBuf>,
    /// How each activation's range is chosen: max, percentile:P or mse.
    #[arg(long, default_value = "percentile:99.99")]
    method: Method,
    /// Blocks kept in FP32: auto (a greedy sweep keeps the most helpful blocks first until
    /// --target-cosine is met), none, or indices like 0,11.
    #[arg(long, default_value = "auto")]
    keep: Keep,
    /// The cosine against FP32 (CLS and patch tokens, held-out frames) the int8 graph must reach.
    #[arg(long, default_value_t = 0.995)]
    target_cosine: f64,
    /// Leave the attention products (q·k and softmax·v) in FP32 instead of INT8.
    #[arg(long)]
    fp32_attention: bool,
    #[command(flatten)]
    region: super::RoiArg,
    /// CPU threads for calibration and the sweep.
    #[arg(long, default_value_t = std::thread::available_parallelism().map_or(1, |n| n.get()))]
    threads: usize,
    /// Folder for report.json (what was kept, scales, cosines, the sweep).
    #[arg(long)]
    report: Option<PathBuf>,
    /// ONNX file to write.
    #[arg(short, long)]
    output: PathBuf,
}

/// What `--outlier-channels` adds: about forty times a random-weight residual's spread.
const OUTLIER_MAGNITUDE: f32 = 20.0;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Architecture.
    #[arg(long, value_enum, default_value = "vits16")]
    arch: Arch,
    /// Seed of the random weights; the same seed gives the same bytes on every machine.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Plant this many residual channels with very large activations, as trained ViTs with
    /// register tokens have and random weights lack (a test model for INT8 calibration).
    #[arg(long, default_value_t = 0)]
    outlier_channels: usize,
    /// Folder to write.
    #[arg(short, long)]
    output: PathBuf,
}

/// The graph's op forms and extra outputs, shared by every command that builds the graph.
#[derive(Debug, Args, Clone)]
pub struct GraphArgs {
    /// Attention products as MatMul or Einsum.
    #[arg(long, value_enum, default_value = "matmul")]
    attention: AttentionOp,
    /// Three q/k/v projections instead of one fused projection.
    #[arg(long)]
    separate_qkv: bool,
    /// Pad keys to a multiple of this many tokens (masked, exact), for softmax kernels that
    /// prefer it [default: 1 for export, 64 when tract runs the graph].
    #[arg(long)]
    key_multiple: Option<usize>,
    /// Also output these blocks (0-based, comma-separated), normed by the final LayerNorm, as
    /// `block_<i>` (e.g. 2,5,8,11 for ViT-S/B segmentation heads).
    #[arg(long, value_delimiter = ',')]
    intermediate: Vec<usize>,
}

impl GraphArgs {
    /// The graph options these flags ask for, with the batch given, for a file to export.
    pub fn options(&self, batch: Option<usize>) -> GraphOptions {
        self.options_with(batch, 1)
    }

    /// The graph options these flags ask for, for tract to run in memory.
    pub fn tract_options(&self, batch: usize) -> GraphOptions {
        self.options_with(Some(batch), dinoedge::backbone::graph::TRACT_KEY_MULTIPLE)
    }

    fn options_with(&self, batch: Option<usize>, key_multiple: usize) -> GraphOptions {
        GraphOptions {
            batch,
            fused_qkv: !self.separate_qkv,
            attention: self.attention,
            key_multiple: self.key_multiple.unwrap_or(key_multiple),
            intermediate_blocks: self.intermediate.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Model folder (config.json + model.safetensors).
    #[arg(long)]
    model: PathBuf,
    /// Input size HxW; both multiples of the patch size (16).
    #[arg(long, default_value = "224x224")]
    size: InputSize,
    /// Fix the batch size instead of leaving it symbolic (N).
    #[arg(long)]
    batch: Option<usize>,
    #[command(flatten)]
    graph: GraphArgs,
    /// Put the weights in FILE.onnx.data beside the graph (ONNX external data); automatic from
    /// 1 GiB of weights, since a protobuf message cannot exceed 2 GB.
    #[arg(long)]
    external_data: bool,
    /// fp32, or fp16 with FP32 islands (as `model quantize --precision fp16` writes it, without
    /// measuring it); int8 needs calibration: `model quantize`.
    #[arg(long, value_enum, default_value_t = GraphPrecision::Fp32)]
    precision: GraphPrecision,
    /// ONNX file to write.
    #[arg(short, long)]
    output: PathBuf,
}

pub fn run(cmd: ModelCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ModelCommand::Quantize(args) => run_quantize(args),
        ModelCommand::Import(args) => {
            let config = match (&args.arch, &args.config) {
                (_, Some(path)) => dinoedge::backbone::Dinov3Config::from_file(path)
                    .with_context(|| format!("reading {}", path.display()))?,
                (Some(arch), None) => arch.config(),
                (None, None) => anyhow::bail!("give --arch or --config"),
            };
            let weights = dinoedge::backbone::meta::import(&args.meta, &config)
                .with_context(|| format!("importing {}", args.meta.display()))?;
            let model = ModelDir {
                path: args.output.clone(),
                config,
                weights,
                random_weights: false,
            };
            model
                .save(&args.output)
                .with_context(|| format!("writing {}", args.output.display()))?;
            println!(
                "{}: {} from {}, {:.2} M parameters (stored as {}), fingerprint {}",
                args.output.display(),
                model.config.arch_name(),
                args.meta.display(),
                model.weights.parameter_count() as f64 / 1e6,
                model.weights.stored_as(),
                model.weights.fingerprint()
            );
            Ok(ExitCode::SUCCESS)
        }
        ModelCommand::Init(args) => {
            let mut model = ModelDir::random(args.arch, args.seed);
            if args.outlier_channels > 0 {
                let channels = model.weights.plant_outlier_channels(
                    &model.config,
                    args.outlier_channels,
                    OUTLIER_MAGNITUDE,
                );
                println!("outlier channels planted (+{OUTLIER_MAGNITUDE}): {channels:?}");
            }
            model
                .save(&args.output)
                .with_context(|| format!("writing {}", args.output.display()))?;
            println!(
                "{}: {} with random weights (seed {}), {:.2} M parameters; not pretrained: every result from it is labelled \"random weights\"",
                args.output.display(),
                args.arch.name(),
                args.seed,
                model.weights.parameter_count() as f64 / 1e6
            );
            Ok(ExitCode::SUCCESS)
        }
        ModelCommand::Export(args) => {
            if args.precision == GraphPrecision::Int8 {
                anyhow::bail!(
                    "--precision int8 needs calibration frames: use `dinoedge model quantize --precision int8 --calib ...`"
                );
            }
            let model = ModelDir::load(&args.model)
                .with_context(|| format!("loading model {}", args.model.display()))?;
            let numerics = dinoedge::backbone::numerics::Numerics {
                precision: args.precision,
                ..Default::default()
            };
            let bytes = model
                .write_onnx_with(
                    args.size,
                    &args.graph.options(args.batch),
                    &numerics,
                    &args.output,
                    args.external_data,
                )
                .with_context(|| format!("exporting {}", args.output.display()))?;
            println!(
                "{}: {} {} at {} ({} tokens), {:.1} MB{}",
                args.output.display(),
                model.config.arch_name(),
                args.precision,
                args.size,
                model.config.prefix_tokens()
                    + (args.size.height / model.config.patch_size)
                        * (args.size.width / model.config.patch_size),
                bytes as f64 / 1e6,
                weights_note(&model.weights_label())
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// ", random weights", or ", weights NAME (FINGERPRINT)": every figure says which weights made
/// it, so no random-weight figure passes for a real one.
pub fn weights_note(label: &str) -> String {
    format!(", {label}")
}

fn run_quantize(args: QuantizeArgs) -> anyhow::Result<ExitCode> {
    let model = ModelDir::load(&args.model)
        .with_context(|| format!("loading model {}", args.model.display()))?;
    let options = QuantizeOptions {
        precision: args.precision,
        size: args.size,
        calib: args.calib.clone(),
        calib_frames: args.calib_frames,
        method: args.method,
        keep: args.keep.clone(),
        target_cosine: args.target_cosine,
        int8_attention: !args.fp32_attention,
        roi: args.region.roi,
        threads: args.threads,
        recording_key: super::record::recording_key(args.recording_key.as_deref())?,
    };
    let quantized = quantize::quantize(&model, &options).with_context(|| {
        format!(
            "quantizing {} to {} at {}",
            model.config.arch_name(),
            args.precision,
            args.size
        )
    })?;
    let report = &quantized.report;
    if let Some(dir) = &args.report {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("report.json");
        let json = serde_json::to_string_pretty(report)?;
        std::fs::write(&path, json + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let bytes = quantize::write_atomically(&quantized.proto, &args.output)?;
    let random = weights_note(&model.weights_label());
    println!(
        "{}: {} {} at {}, {:.1} MB{random}",
        args.output.display(),
        model.config.arch_name(),
        args.precision,
        args.size,
        bytes as f64 / 1e6
    );
    if !report.skipped_frames.is_empty() {
        println!("{} frame(s) skipped:", report.skipped_frames.len());
        for s in &report.skipped_frames {
            println!("  {}: {}", s.name, s.reason);
        }
    }
    match &report.cosine {
        Some(c) => {
            println!(
                "cosine against fp32 on {} held-out frame(s): CLS {:.5}, patch tokens {:.5} (lowest frame CLS {:.5}, lowest token {:.5}){random}",
                report.held_out_frames, c.cls, c.patch, c.cls_min, c.patch_min
            );
            if c.worst() < report.target_cosine {
                println!(
                    "note: below --target-cosine {} (the blocks kept were given with --keep, so no sweep ran)",
                    report.target_cosine
                );
            }
        }
        None => println!("cosine against fp32: not measured (no --calib frames)"),
    }
    if let Some(share) = &report.int8_share {
        println!(
            "int8: {:.1} % of MatMul and convolution multiply-adds; blocks kept in fp32: {:?} ({}); calibrated on {} frame(s), {}",
            share.share * 100.0,
            report.kept_blocks,
            report.kept_by,
            report.calibration_frames,
            args.method
        );
    }
    Ok(ExitCode::SUCCESS)
}
