//! `--engine` and `--precision`, shared by every command that runs the backbone (the choice is
//! logged by the engine itself, and named in each command's summary and JSON).

use clap::Args;
use dinoedge::engine::{EngineRequest, Precision};

/// Which engine runs the backbone.
#[derive(Debug, Args, Clone, Copy)]
pub struct EngineArgs {
    /// The engine that runs the backbone: `auto` takes the first of TensorRT (an engine built by
    /// `dinoedge engine build` for this model, size, batch and precision whose gate passed),
    /// CUDA and the CPU that this build has and this machine can run, and says why it passed
    /// over the others.
    #[arg(long, value_enum, default_value_t = EngineRequest::Auto)]
    pub engine: EngineRequest,
    /// The precision the engine computes in: fp16 halves weights and activations, keeping the
    /// normalisations and softmax in fp32 (meant for the GPU; tract emulates it on the CPU);
    /// int8 runs only on a TensorRT engine built from `model quantize`'s graph.
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    pub precision: Precision,
}

/// TensorRT engines: build (or import) them for a device, see and clear the cache.
#[derive(Debug, clap::Subcommand)]
pub enum EngineCommand {
    /// Build a TensorRT engine from a model's graph (or import one made by trtexec), gate it
    /// against the CPU on real frames, and keep it in the engine cache with the verdict. Run it
    /// when provisioning a device, never during an exam: a build takes minutes on a Jetson.
    // Boxed: the build's arguments outweigh the other commands' many times over.
    Build(Box<BuildArgs>),
    /// The cached engines: what each was built from and for, and its gate's verdict.
    List(ListArgs),
    /// Remove cached engines: those the gate refused, those built for another TensorRT, CUDA or
    /// GPU, or all.
    Clean(CleanArgs),
}

/// Where the engine cache is.
#[derive(Debug, Clone, clap::Args)]
pub struct CacheArg {
    /// The engine cache folder (default: $DINOEDGE_ENGINE_CACHE, else
    /// $XDG_CACHE_HOME/dinoedge/engines, else ~/.cache/dinoedge/engines; the runtime looks
    /// there).
    #[arg(long)]
    pub cache: Option<std::path::PathBuf>,
}

impl CacheArg {
    fn open(&self) -> dinoedge::engine::tensorrt::EngineCache {
        dinoedge::engine::tensorrt::EngineCache::new(
            self.cache
                .clone()
                .unwrap_or_else(dinoedge::engine::tensorrt::cache::default_dir),
        )
    }
}

/// `engine build`.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Model folder (config.json + model.safetensors) or a Hugging Face repo id in the hub cache.
    #[arg(long)]
    model: std::path::PathBuf,
    /// Input size HxW.
    #[arg(long, default_value = "224x224")]
    size: dinoedge::backbone::InputSize,
    /// Frames per run.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// The engine's precision; it is the graph's (strongly typed: no builder precision flags).
    #[arg(long, value_enum, default_value = "fp32")]
    precision: dinoedge::backbone::numerics::GraphPrecision,
    /// The ONNX graph to build from (`model export` or `model quantize`; needed for int8).
    /// Without it the fp32 or fp16 graph is built from the model.
    #[arg(long)]
    graph: Option<std::path::PathBuf>,
    /// Import this engine made by trtexec instead of building (validated and gated like any).
    #[arg(long)]
    from_trtexec: Option<std::path::PathBuf>,
    /// The builder's optimisation level (0-5; TensorRT's default is 3).
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..=5))]
    opt_level: Option<i32>,
    /// The builder's workspace limit in MiB.
    #[arg(long)]
    workspace: Option<u64>,
    /// Real frames for the gate: recordings, images, DICOM cines or folders of them.
    #[arg(long, required = true)]
    frames: Vec<std::path::PathBuf>,
    /// How many frames the gate compares.
    #[arg(long, default_value_t = 16)]
    gate_frames: usize,
    /// Key file of encrypted recordings among the --frames.
    #[arg(long, value_name = "FILE")]
    recording_key: Option<std::path::PathBuf>,
    /// The lowest cosine (CLS and patch tokens, worst frame) the engine must reach against the
    /// CPU's FP32 (default 0.999 for fp32 and fp16, 0.995 for int8, `model quantize`'s target).
    #[arg(long)]
    gate_cosine: Option<f64>,
    #[command(flatten)]
    region: super::RoiArg,
    /// CPU threads for the reference.
    #[arg(long, default_value_t = std::thread::available_parallelism().map_or(1, |n| n.get()))]
    threads: usize,
    /// Build again even if a passing engine for the same graph, options and device is cached.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    cache: CacheArg,
}

/// `engine list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print the entries as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    cache: CacheArg,
}

/// `engine clean`.
#[derive(Debug, clap::Args)]
pub struct CleanArgs {
    /// Remove every entry, unreadable ones too (the timing caches stay).
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    cache: CacheArg,
}

/// Runs an `engine` subcommand.
pub fn run(cmd: EngineCommand) -> anyhow::Result<std::process::ExitCode> {
    match cmd {
        EngineCommand::Build(args) => run_build(*args),
        EngineCommand::List(args) => run_list(args),
        EngineCommand::Clean(args) => run_clean(args),
    }
}

fn run_build(args: BuildArgs) -> anyhow::Result<std::process::ExitCode> {
    use anyhow::Context as _;
    use dinoedge::backbone::numerics::GraphPrecision;
    use dinoedge::engine::tensorrt::{self, BuildRequest, gate};

    let model = dinoedge::backbone::ModelDir::load(&args.model)
        .with_context(|| format!("loading model {}", args.model.display()))?;
    let shim = tensorrt::open_shim()?;
    let env = tensorrt::Environment::current(&shim)?;
    println!("{} ({})", env.summary(), shim.path().display());
    let config = dinoedge::preprocess::PreprocessConfig {
        roi: args.region.roi,
        ..dinoedge::preprocess::PreprocessConfig::new(args.size)
    };
    let key = super::record::recording_key(args.recording_key.as_deref())?;
    let gathered = dinoedge::quantize::frames::gather_with(
        &args.frames,
        &config,
        args.gate_frames,
        key.as_ref(),
    )
    .context("reading the gate's frames")?;
    for s in &gathered.skipped {
        println!("skipped {}: {}", s.name, s.reason);
    }
    if gathered.frames.is_empty() {
        anyhow::bail!("no usable frame for the gate in {:?}", args.frames);
    }
    let threshold = args.gate_cosine.unwrap_or(match args.precision {
        GraphPrecision::Int8 => 0.995,
        _ => gate::FLOAT_THRESHOLD,
    });
    let frames: Vec<Vec<f32>> = gathered.frames.iter().map(|f| f.pixels.clone()).collect();
    let request = BuildRequest {
        model: &model,
        size: args.size,
        batch: args.batch,
        precision: args.precision,
        graph: args.graph.as_deref(),
        trtexec: args.from_trtexec.as_deref(),
        opt_level: args.opt_level,
        workspace_mib: args.workspace,
        frames: &frames,
        frames_from: gathered.frames.iter().map(|f| f.name.clone()).collect(),
        threshold,
        threads: args.threads,
        force: args.force,
    };
    let cache = args.cache.open();
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let mut phases: Vec<String> = Vec::new();
    let mut on_progress = |p: &dinoedge_tensorrt::Progress<'_>| {
        let depth = usize::try_from(p.depth).unwrap_or(0);
        phases.truncate(depth);
        phases.push(format!("{} {}/{}", p.phase, p.step, p.steps));
        bar.set_message(phases.join(" > "));
        true
    };
    let outcome = tensorrt::build(&shim, &cache, &request, &mut on_progress);
    bar.finish_and_clear();
    let outcome = outcome.with_context(|| {
        format!(
            "building a {} TensorRT engine for {} at {}",
            args.precision,
            model.config.arch_name(),
            args.size
        )
    })?;
    let meta = &outcome.meta;
    println!(
        "{}: {} {} at {}x{} batch {}, {:.1} MB, {} in {:.1} s{}",
        outcome.path.display(),
        model.config.arch_name(),
        meta.precision,
        meta.size[0],
        meta.size[1],
        meta.build.batch,
        meta.engine_bytes as f64 / 1e6,
        if outcome.reused { "cached" } else { "built" },
        meta.build_seconds,
        super::model::weights_note(&meta.weights)
    );
    print_verdict(meta);
    Ok(if meta.verdict.passed {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}

fn print_verdict(meta: &dinoedge::engine::tensorrt::EngineMeta) {
    let v = &meta.verdict;
    println!("gate: {}", v.summary);
    for c in &v.cosines {
        println!(
            "  {:<20} {:<5} min {:.6} mean {:.6}{}",
            c.output,
            c.part,
            c.min,
            c.mean,
            if c.min < v.threshold {
                "  < threshold"
            } else {
                ""
            }
        );
    }
}

fn run_list(args: ListArgs) -> anyhow::Result<std::process::ExitCode> {
    use dinoedge::engine::tensorrt::{self, Listed};
    let cache = args.cache.open();
    let listed = cache.list()?;
    // Without TensorRT the entries are still listed, just not checked against this machine.
    let env = tensorrt::Environment::here();
    if args.json {
        let entries: Vec<serde_json::Value> = listed
            .iter()
            .map(|l| match l {
                Listed::Entry(meta) => serde_json::json!({
                    "entry": meta,
                    "usable_here": env.as_ref().map(|e| meta.foreign_to(e).is_none() && meta.verdict.passed),
                }),
                Listed::Unreadable { path, reason } => serde_json::json!({
                    "unreadable": path, "reason": reason,
                }),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(std::process::ExitCode::SUCCESS);
    }
    println!(
        "engine cache {}: {} entr{}",
        cache.dir().display(),
        listed.len(),
        if listed.len() == 1 { "y" } else { "ies" }
    );
    for l in &listed {
        match l {
            Listed::Entry(meta) => {
                let here = match &env {
                    Some(e) => match meta.foreign_to(e) {
                        Some(why) => format!("foreign: {why}"),
                        None => "for this machine".to_owned(),
                    },
                    None => "TensorRT not loaded here".to_owned(),
                };
                println!(
                    "{}  {} {}x{} batch {} {}, {}, {}",
                    meta.key,
                    meta.precision,
                    meta.size[0],
                    meta.size[1],
                    meta.build.batch,
                    meta.build.source,
                    meta.weights,
                    meta.environment.summary()
                );
                println!(
                    "    {} | {}",
                    if meta.verdict.passed {
                        "PASSED"
                    } else {
                        "REFUSED"
                    },
                    here
                );
                println!("    gate: {}", meta.verdict.summary);
            }
            Listed::Unreadable { path, reason } => {
                println!("{}: unreadable: {reason}", path.display());
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn run_clean(args: CleanArgs) -> anyhow::Result<std::process::ExitCode> {
    use dinoedge::engine::tensorrt::{self, Listed};
    let cache = args.cache.open();
    let env = tensorrt::Environment::here();
    let removed = cache.remove_where(|l| match l {
        _ if args.all => true,
        // Possibly written by a newer dinoedge: only `--all` removes what cannot be read.
        Listed::Unreadable { .. } => false,
        Listed::Entry(meta) => {
            !meta.verdict.passed || env.as_ref().is_some_and(|e| meta.foreign_to(e).is_some())
        }
    })?;
    // A build takes minutes: leftovers a day old are from builds that were killed.
    let stale = cache.remove_stale_scratch(std::time::Duration::from_secs(24 * 3600))?;
    if !stale.is_empty() {
        println!(
            "removed {} leftover(s) of interrupted builds (a day old or more)",
            stale.len()
        );
    }
    println!(
        "removed {} engine(s) from {}{}",
        removed.len(),
        cache.dir().display(),
        if env.is_none() && !args.all {
            " (TensorRT not loaded here: foreign engines were kept; --all removes every one)"
        } else {
            ""
        }
    );
    for key in removed {
        println!("  {key}");
    }
    Ok(std::process::ExitCode::SUCCESS)
}
