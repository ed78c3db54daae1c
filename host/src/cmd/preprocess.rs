//! `dinoedge preprocess`: image files to the backbone's normalised input, as a `.npy` batch.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use dinoedge::backbone::{InputSize, npy};
use dinoedge::preprocess::{FrameRef, PreprocessConfig, Preprocessor, load_image};
use dinoedge::proto::message::PixelFormat;
use ndarray::{Array4, Axis};

#[derive(Debug, Args)]
pub struct PreprocessArgs {
    /// Image files (PNG, JPEG); each becomes one item of the batch, in order.
    #[arg(long, required = true, num_args = 1..)]
    input: Vec<PathBuf>,
    /// Model input size HxW.
    #[arg(long, default_value = "224x224")]
    size: InputSize,
    #[command(flatten)]
    region: super::RoiArg,
    /// f32 .npy to write, [N, 3, H, W], ImageNet-normalised.
    #[arg(short, long)]
    output: PathBuf,
}

pub fn run(args: PreprocessArgs) -> anyhow::Result<ExitCode> {
    let mut config = PreprocessConfig::new(args.size);
    config.roi = args.region.roi;
    let mut pre = Preprocessor::new(config);
    let (h, w) = (args.size.height, args.size.width);
    let mut batch = Array4::<f32>::zeros((args.input.len(), 3, h, w));
    for (mut item, path) in batch.axis_iter_mut(Axis(0)).zip(&args.input) {
        let (width, height, rgb) = load_image(path)?;
        let out = item
            .as_slice_mut()
            .context("batch item is not contiguous")?;
        pre.run_into(
            FrameRef {
                format: PixelFormat::Rgb888,
                width,
                height,
                data: &rgb,
            },
            out,
        )
        .with_context(|| format!("preprocessing {}", path.display()))?;
    }
    npy::write(&args.output, &batch)?;
    println!(
        "{}: {} image(s) as [N, 3, {h}, {w}]",
        args.output.display(),
        args.input.len()
    );
    Ok(ExitCode::SUCCESS)
}
