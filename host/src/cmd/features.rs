//! `dinoedge features`: run the backbone (a model folder, or any ONNX file such as one
//! `model quantize` wrote) on normalised pixels from a `.npy` file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use dinoedge::backbone::{Backbone, InputSize, ModelDir, OnnxFile, RuntimeOptions, npy};

use super::engine::EngineArgs;
use super::model::{GraphArgs, weights_note};

#[derive(Debug, Args)]
pub struct FeaturesArgs {
    /// Model folder (config.json + model.safetensors).
    #[arg(long, required_unless_present = "onnx", conflicts_with = "onnx")]
    model: Option<PathBuf>,
    /// An ONNX file with one f32 [N,3,H,W] input instead (e.g. from `model quantize`); its
    /// first output is written.
    #[arg(long)]
    onnx: Option<PathBuf>,
    /// f32 .npy [N,3,H,W], already normalised (ImageNet mean/std).
    #[arg(long)]
    input: PathBuf,
    /// f32 .npy to write: last_hidden_state [N, 1+registers+Hp*Wp, D].
    #[arg(long)]
    output: PathBuf,
    /// Threads the CPU engine may use.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    graph: GraphArgs,
}

pub fn run(args: FeaturesArgs) -> anyhow::Result<ExitCode> {
    let pixels = npy::read_pixels(&args.input)?;
    let &[n, _, h, w] = pixels.shape() else {
        anyhow::bail!("{}: expected 4 dimensions", args.input.display());
    };
    let size = InputSize::new(h, w);
    let model_dir = match (&args.model, &args.onnx) {
        (Some(dir), _) => dir,
        (None, Some(file)) => {
            let onnx = OnnxFile::load(
                file,
                [n, 3, h, w],
                args.threads.max(1),
                args.engine.engine,
                args.engine.precision,
            )
            .with_context(|| format!("preparing {} at {size}", file.display()))?;
            let outputs = onnx.state()?.outputs(pixels.view())?;
            let first = outputs
                .first()
                .with_context(|| format!("{}: the graph has no output", file.display()))?;
            npy::write(&args.output, first)?;
            println!(
                "{}: first output {:?} from {} at {size} on {} {}",
                args.output.display(),
                first.shape(),
                file.display(),
                onnx.engine().engine,
                onnx.engine().precision,
            );
            return Ok(ExitCode::SUCCESS);
        }
        (None, None) => anyhow::bail!("give --model DIR or --onnx FILE"),
    };
    let model = ModelDir::load(model_dir)
        .with_context(|| format!("loading model {}", model_dir.display()))?;
    let backbone = Backbone::load(
        &model,
        size,
        &RuntimeOptions {
            batch: n,
            threads: args.threads.max(1),
            engine: args.engine.engine,
            precision: args.engine.precision,
            graph: args.graph.tract_options(n),
        },
    )
    .with_context(|| format!("preparing {} at {size}", model.config.arch_name()))?;
    let features = backbone.run(pixels.view())?;
    npy::write(&args.output, &features.last_hidden_state)?;
    for (block, a) in &features.intermediates {
        let path = args.output.with_extension(format!("block{block}.npy"));
        npy::write(&path, a)?;
    }
    let shape = features.last_hidden_state.shape().to_vec();
    println!(
        "{}: last_hidden_state {:?} from {} at {size} on {} {}{}",
        args.output.display(),
        shape,
        model.config.arch_name(),
        backbone.engine().engine,
        backbone.engine().precision,
        weights_note(&model.weights_label())
    );
    Ok(ExitCode::SUCCESS)
}
