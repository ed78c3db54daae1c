//! `dinoedge model init|export`: make random-weight model folders and export the ONNX graph.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use dinoedge::backbone::{Arch, AttentionOp, GraphOptions, InputSize, ModelDir};

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Write a model folder (config.json + model.safetensors, Hugging Face layout) with
    /// deterministic random weights for a released DINOv3 ViT architecture.
    Init(InitArgs),
    /// Write the inference graph of a model folder for one input size as ONNX
    /// (input pixel_values f32 [N,3,H,W], output last_hidden_state f32 [N,5+Hp*Wp,D]).
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Architecture.
    #[arg(long, value_enum, default_value = "vits16")]
    arch: Arch,
    /// Seed of the random weights; the same seed gives the same bytes on every machine.
    #[arg(long, default_value_t = 0)]
    seed: u64,
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
    /// ONNX file to write.
    #[arg(short, long)]
    output: PathBuf,
}

pub fn run(cmd: ModelCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ModelCommand::Init(args) => {
            let model = ModelDir::random(args.arch, args.seed);
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
            let model = ModelDir::load(&args.model)
                .with_context(|| format!("loading model {}", args.model.display()))?;
            let bytes = model
                .write_onnx(
                    args.size,
                    &args.graph.options(args.batch),
                    &args.output,
                    args.external_data,
                )
                .with_context(|| format!("exporting {}", args.output.display()))?;
            println!(
                "{}: {} at {} ({} tokens), {:.1} MB{}",
                args.output.display(),
                model.config.arch_name(),
                args.size,
                model.config.prefix_tokens()
                    + (args.size.height / model.config.patch_size)
                        * (args.size.width / model.config.patch_size),
                bytes as f64 / 1e6,
                random_label(model.random_weights)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// ", random weights" where the weights are not pretrained, so no figure passes for a real one.
pub fn random_label(random: bool) -> &'static str {
    if random { ", random weights" } else { "" }
}
