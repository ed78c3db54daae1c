//! Command-line parsing and dispatch: one file per subcommand.

mod bench;
mod bench_model;
mod config;
mod doctor;
mod engine;
mod features;
mod gpu;
mod import;
mod keys;
mod link;
mod model;
mod preprocess;
mod probe;
mod record;
mod run;
mod sweep;
mod view;
mod wire;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// dinoedge: DINOv3 on live ultrasound and endoscopy video, at the bedside.
#[derive(Debug, Parser)]
#[command(name = "dinoedge", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Link captures: synthesise one as an edge would send it, or inspect one packet by packet.
    #[command(subcommand)]
    Wire(wire::WireCommand),
    /// Connect to an edge over serial or TCP and show what arrives: counters live, a summary at
    /// the end.
    Link(link::LinkArgs),
    /// DINOv3 model folders: random-weight initialisation and ONNX export.
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// Run the backbone with tract on normalised pixels from a .npy file; write
    /// last_hidden_state as .npy.
    Features(features::FeaturesArgs),
    /// Preprocess image files (PNG, JPEG) as frames are: region of interest, antialiased resize,
    /// ImageNet normalisation; write the batch as a .npy for `features`.
    Preprocess(preprocess::PreprocessArgs),
    /// Fit heads on frozen features of labelled images, and measure them.
    #[command(subcommand)]
    Probe(probe::ProbeCommand),
    /// Which model and input size for a latency budget: for each, the probe's grouped
    /// validation score and the backbone's latency; the fastest within a tolerance of the best,
    /// scored once on the test split with bootstrap intervals; a table, sweep.json and a plot.
    Sweep(sweep::SweepArgs),
    /// Time the backbone alone with tract: median, p90, p99, min and max ms per frame, frames/s.
    BenchModel(bench_model::BenchModelArgs),
    /// Run the pipeline on a live link or a recording: results back to the edge, JSON lines,
    /// overlays, a live status line, a summary.
    Run(run::RunArgs),
    /// Record the link's raw bytes (both directions, with receive times) into a crash-safe file.
    Record(record::RecordArgs),
    /// Turn a DICOM cine, an image folder or a video into a recording, as an edge would send it.
    Import(import::ImportArgs),
    /// Feed a recording through the pipeline, by the same code as a live link.
    Replay(run::ReplayArgs),
    /// Replay a recording through the pipeline and report frames/s, latency percentiles, drops,
    /// losses, time per stage, CPU and memory (table, JSON, PNG plot); accuracy or Dice with
    /// labels. Without a file: the echo cine shipped with dinoedge.
    Bench(bench::BenchArgs),
    /// What this machine offers (CPU, GPU, CUDA and TensorRT libraries, Jetson release and
    /// power mode, serial devices) and which engine `auto` picks, and why. Exit 0 when the
    /// default pipeline can run.
    Doctor(doctor::DoctorArgs),
    /// The GPU preprocessing: compile its kernels with NVRTC (no GPU needed), or compare it with
    /// the CPU on images and time it. Needs a build with a `cuda-*` feature.
    Gpu(gpu::GpuCommand),
    /// TensorRT engines: build (or import) and gate them for this device, list and clean the
    /// cache.
    #[command(subcommand)]
    Engine(engine::EngineCommand),
    /// Link keys, one per edge: make, rotate, revoke, list.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Print the protocol and software versions.
    Version,
}

/// Runs the parsed command; the exit code says whether it found trouble (1) or not (0).
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Wire(cmd) => wire::run(cmd),
        Command::Link(args) => link::run(args),
        Command::Model(cmd) => model::run(cmd),
        Command::Features(args) => features::run(args),
        Command::Preprocess(args) => preprocess::run(args),
        Command::Probe(cmd) => probe::run(cmd),
        Command::Sweep(args) => sweep::run(args),
        Command::BenchModel(args) => bench_model::run(args),
        Command::Run(args) => run::run(args),
        Command::Record(args) => record::run(args),
        Command::Import(args) => import::run(args),
        Command::Replay(args) => run::run(args.into()),
        Command::Bench(args) => bench::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Gpu(cmd) => gpu::run(cmd),
        Command::Engine(cmd) => engine::run(cmd),
        Command::Keys(cmd) => keys::run(cmd),
        Command::Version => {
            println!(
                "dinoedge {} (wire protocol version {})",
                env!("CARGO_PKG_VERSION"),
                dinoedge::proto::PROTOCOL_VERSION
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `--roi`, for every command that preprocesses frames as the pipeline does.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct RoiArg {
    /// Region of interest, cropped before the resize: rect:X,Y,W,H, circle:CX,CY,R (an
    /// endoscope's round image) or sector:APEX_X,APEX_Y,R_INNER,R_OUTER,DEG_START,DEG_END (an
    /// ultrasound fan, degrees from straight down).
    #[arg(long)]
    pub roi: Option<dinoedge::preprocess::Roi>,
}
