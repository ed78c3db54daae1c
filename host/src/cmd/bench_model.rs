//! `dinoedge bench-model`: time the backbone alone, per frame, on one engine.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use dinoedge::backbone::{Backbone, InputSize, ModelDir, OnnxFile, RuntimeOptions};
use ndarray::Array4;

use super::engine::EngineArgs;
use super::model::{GraphArgs, weights_note};
use dinoedge::engine::{EngineInfo, EngineKind};

#[derive(Debug, Args)]
pub struct BenchModelArgs {
    /// Model folder (config.json + model.safetensors); the graph is built in memory.
    #[arg(long, required_unless_present = "onnx", conflicts_with = "onnx")]
    model: Option<PathBuf>,
    /// Time this ONNX file instead (e.g. from `model export`, the file ONNX Runtime is timed on).
    #[arg(long)]
    onnx: Option<PathBuf>,
    /// Input size HxW.
    #[arg(long, default_value = "224x224")]
    size: InputSize,
    /// Threads the CPU engine uses inside one run.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[command(flatten)]
    engine: EngineArgs,
    /// Timed runs (after warm-up runs that are not timed).
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Untimed warm-up runs.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Frames per run.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Independent tract states running side by side, one OS thread each (throughput mode:
    /// e.g. --states 2 --threads 1 on two cores).
    #[arg(long, default_value_t = 1)]
    states: usize,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    graph: GraphArgs,
}

/// What is timed: the graph built from a model folder, or an ONNX file as it is.
enum Prepared {
    Model(Box<Backbone>),
    File(OnnxFile),
}

impl Prepared {
    fn engine(&self) -> &EngineInfo {
        match self {
            Prepared::Model(b) => b.engine(),
            Prepared::File(f) => f.engine(),
        }
    }

    fn mean_gpu_ms(&self) -> Option<f64> {
        match self {
            Prepared::Model(b) => b.mean_gpu_ms(),
            Prepared::File(f) => f.mean_gpu_ms(),
        }
    }

    fn op_census(&self) -> std::collections::BTreeMap<String, usize> {
        match self {
            Prepared::Model(b) => b.op_census(),
            Prepared::File(f) => f.op_census(),
        }
    }
}

pub fn run(args: BenchModelArgs) -> anyhow::Result<ExitCode> {
    if args.runs == 0 || args.batch == 0 || args.states == 0 || args.threads == 0 {
        bail!("--runs, --batch, --states and --threads must be at least 1");
    }
    let graph = args.graph.tract_options(args.batch);
    let shape = [args.batch, 3, args.size.height, args.size.width];
    let prepare_start = Instant::now();
    // Either the graph built in memory from a model folder, or an ONNX file as it is.
    let (backbone, arch, weights) = match (&args.model, &args.onnx) {
        (Some(dir), _) => {
            let model =
                ModelDir::load(dir).with_context(|| format!("loading model {}", dir.display()))?;
            let arch = model.config.arch_name();
            let backbone = Backbone::load(
                &model,
                args.size,
                &RuntimeOptions {
                    batch: args.batch,
                    threads: args.threads,
                    engine: args.engine.engine,
                    precision: args.engine.precision,
                    graph: graph.clone(),
                },
            )
            .with_context(|| format!("preparing {arch} at {}", args.size))?;
            (
                Prepared::Model(Box::new(backbone)),
                arch,
                Some(model.weights_label()),
            )
        }
        (None, Some(file)) => (
            Prepared::File(OnnxFile::load(
                file,
                shape,
                args.threads,
                args.engine.engine,
                args.engine.precision,
            )?),
            format!("onnx:{}", file.display()),
            None,
        ),
        (None, None) => bail!("give --model DIR or --onnx FILE"),
    };
    let prepare_ms = prepare_start.elapsed().as_secs_f64() * 1e3;
    let engine = backbone.engine().clone();
    let (h, w) = (args.size.height, args.size.width);
    // A smooth deterministic pattern in the range of normalised pixels.
    let pixels = Array4::from_shape_fn((args.batch, 3, h, w), |(n, c, y, x)| {
        ((y * 7 + x * 3 + c * 11 + n) as f32 * 0.013).sin() * 2.0
    });
    let wall = Instant::now();
    let per_state: Vec<anyhow::Result<Vec<f64>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..args.states)
            .map(|_| {
                let backbone = &backbone;
                let pixels = &pixels;
                scope.spawn(move || -> anyhow::Result<Vec<f64>> {
                    let mut run: Box<dyn FnMut() -> anyhow::Result<()>> = match backbone {
                        Prepared::Model(b) => {
                            let mut state = b.state()?;
                            Box::new(move || Ok(state.run(pixels.view()).map(drop)?))
                        }
                        Prepared::File(f) => {
                            let mut state = f.state()?;
                            Box::new(move || Ok(state.run(pixels.view()).map(drop)?))
                        }
                    };
                    for _ in 0..args.warmup {
                        run()?;
                    }
                    let mut times = Vec::with_capacity(args.runs);
                    for _ in 0..args.runs {
                        let t = Instant::now();
                        run()?;
                        times.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                    Ok(times)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a benchmark thread panicked")))
            })
            .collect()
    });
    let wall_s = wall.elapsed().as_secs_f64();
    let mut times = Vec::new();
    for t in per_state {
        times.extend(t?);
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        let i = ((times.len() as f64 - 1.0) * p).round() as usize;
        times.get(i).copied().unwrap_or(f64::NAN)
    };
    let (median, p90, p99) = (pct(0.5), pct(0.9), pct(0.99));
    let (min, max) = (pct(0.0), pct(1.0));
    let per_frame = |ms: f64| ms / args.batch as f64;
    // Throughput: from the median latency for one state; measured over the wall clock (warm-up
    // included, so slightly pessimistic) when several states share the cores.
    let fps = if args.states == 1 {
        1e3 * args.batch as f64 / median
    } else {
        (args.states * (args.runs + args.warmup) * args.batch) as f64 / wall_s
    };
    if args.json {
        let v = serde_json::json!({
            "arch": arch,
            "size": args.size.to_string(),
            "threads": args.threads,
            "states": args.states,
            "batch": args.batch,
            "runs": args.runs,
            "median_ms": per_frame(median),
            "p90_ms": per_frame(p90),
            "p99_ms": per_frame(p99),
            "min_ms": per_frame(min),
            "max_ms": per_frame(max),
            "fps": fps,
            "prepare_ms": prepare_ms,
            // Unknown for a bare ONNX file.
            "random_weights": weights.as_ref().map(|w| w == "random weights"),
            "weights": weights,
            "runtime": if engine.engine == EngineKind::Tensorrt { "tensorrt" } else { "tract" },
            // TensorRT's own GPU time per run (CUDA events around each enqueue), warm-up included.
            "gpu_ms_mean": backbone.mean_gpu_ms(),
            "engine": engine.engine,
            "precision": engine.precision,
            "device": engine.device,
            "graph_hash": engine.graph_hash,
            "engine_requested": engine.requested,
            "engines_not_taken": engine.not_taken,
            // Nodes per op in the engine's plan: which ops a GPU engine took over.
            "ops": backbone.op_census(),
        });
        let mut v = v;
        // The graph's op forms apply only where dinoedge built the graph.
        if let (Some(obj), Some(_)) = (v.as_object_mut(), &args.model) {
            obj.insert(
                "attention".into(),
                format!("{:?}", graph.attention).to_lowercase().into(),
            );
            obj.insert("fused_qkv".into(), graph.fused_qkv.into());
            obj.insert("key_multiple".into(), graph.key_multiple.into());
        }
        println!("{v}");
    } else {
        println!(
            "{arch} at {} (batch {}, {} thread(s), {} state(s)), {} {}{}",
            args.size,
            args.batch,
            args.threads,
            args.states,
            engine.engine,
            engine.precision,
            weights.as_deref().map(weights_note).unwrap_or_default()
        );
        println!(
            "  ms per frame: median {:.2}  p90 {:.2}  p99 {:.2}  min {:.2}  max {:.2}   ({} runs, prepared in {:.0} ms)",
            per_frame(median),
            per_frame(p90),
            per_frame(p99),
            per_frame(min),
            per_frame(max),
            times.len(),
            prepare_ms
        );
        println!("  frames/s: {fps:.2}");
        if let Some(gpu) = backbone.mean_gpu_ms() {
            println!("  GPU time per run (CUDA events): mean {gpu:.2} ms");
        }
    }
    Ok(ExitCode::SUCCESS)
}
