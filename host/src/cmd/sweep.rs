//! `dinoedge sweep`: which model and input size to deploy for a latency budget. For each
//! configuration, the probe's fit with its grouped validation split (as `probe fit`) and the
//! backbone's latency on the chosen engine; then the choice on validation alone (the fastest
//! within a tolerance of the best), the test split scored once for the chosen and the best with
//! bootstrap intervals, a table, `sweep.json` and a plot. Resumes where it stopped.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use dinoedge::backbone::{Backbone, InputSize, ModelDir};
use dinoedge::heads::{ClassMask, HeadFiles, HeadInput, Segmenter, Task, dice};
use dinoedge::pipeline::plot::{SweepPoint, sweep_plot};
use dinoedge::probe::dataset::Dataset;
use dinoedge::probe::fit::{Labels, score_of_proba};
use dinoedge::probe::masks::load_mask;
use dinoedge::probe::sweep::{ConfigResult, SweepFile, TestScore, bootstrap_ci, group_ids};
use ndarray::{Axis, concatenate};

use super::probe::{
    DataArgs, FitFlags, backbone_for, classes_of, extract, fit_head, label_sets_of, mask_of,
    open_dataset, select,
};

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// What the heads do.
    #[arg(long, value_enum)]
    task: Task,
    #[command(flatten)]
    data: DataArgs,
    /// Model folders or Hugging Face repo ids, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    models: Vec<PathBuf>,
    /// Input sizes, comma-separated: 224 (square) or HxW.
    #[arg(long, value_delimiter = ',', default_value = "224")]
    sizes: Vec<String>,
    #[command(flatten)]
    fit: FitFlags,
    /// The chosen configuration is the fastest whose validation score is at least the best's
    /// minus this.
    #[arg(long, default_value_t = 0.01)]
    tolerance: f64,
    /// Bootstrap resamples for the test scores' 95% intervals.
    #[arg(long, default_value_t = 1000)]
    bootstrap: usize,
    /// Timed runs per configuration (after 3 warm-up runs).
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Only measure latency again (on this machine, e.g. the target device), for the
    /// configurations already in OUT/sweep.json, and choose again; no data needed.
    #[arg(long)]
    latency_only: bool,
    /// Folder for sweep.json, sweep.png and the heads; a sweep there is resumed.
    #[arg(long)]
    out: PathBuf,
}

/// The input size of a `--sizes` entry.
fn parse_size(s: &str) -> anyhow::Result<InputSize> {
    if let Ok(side) = s.parse::<usize>() {
        return Ok(InputSize::new(side, side));
    }
    s.parse::<InputSize>()
        .map_err(|e| anyhow::anyhow!("--sizes {s:?}: {e}"))
}

/// What the sweep's figures depend on, besides the models and sizes: a resumed sweep must
/// have been made with the same.
fn data_key(args: &SweepArgs) -> String {
    let d = &args.data;
    format!(
        "task={:?} data={:?} masks={:?} mask_suffix={:?} group_by={:?} test_fraction={} \
         split_seed={} dedupe={:?} classes={:?} blocks={:?} seed={} class_weight={} \
         max_patches={} engine={} precision={} skip_bad={}",
        args.task,
        d.data,
        d.masks,
        d.mask_suffix,
        d.group_by,
        d.test_fraction,
        d.split_seed,
        d.dedupe,
        args.fit.classes,
        args.fit.blocks,
        args.fit.seed,
        args.fit.class_weight,
        args.fit.max_patches,
        d.engine.engine,
        d.engine.precision,
        d.skip_bad
    )
}

/// A digest of the dataset as opened (paths, groups, labels, after dedupe): files added,
/// removed or relabelled between runs make it another sweep.
fn dataset_digest(ds: &Dataset) -> String {
    let mut h = crc32fast::Hasher::new();
    for item in &ds.items {
        h.update(item.path.as_os_str().as_encoded_bytes());
        h.update(item.group.as_bytes());
        h.update(format!("{:?}", item.target).as_bytes());
    }
    format!("{} items, crc32 {:08x}", ds.items.len(), h.finalize())
}

/// The intermediate blocks the backbone is built with: segmentation heads read them,
/// classification heads do not (and extra outputs would change what is timed).
fn timed_blocks(task: Task, blocks: &[usize]) -> Vec<usize> {
    match task {
        Task::Segment => blocks.to_vec(),
        Task::Classify => Vec::new(),
    }
}

/// Every configuration's latency must come from one engine on one device, or the choice
/// compares unlike things (`auto` may take TensorRT for one configuration and not another; a
/// resumed sweep may run on another machine).
fn check_one_device(file: &SweepFile) -> anyhow::Result<()> {
    let mut devices: Vec<(&str, String)> = Vec::new();
    for r in &file.results {
        if !devices.iter().any(|(d, _)| *d == r.latency_device) {
            devices.push((r.latency_device.as_str(), r.label()));
        }
    }
    if devices.len() > 1 {
        bail!(
            "the configurations were timed on different engines or devices, so their latencies \
             do not compare:\n  {}\nbuild TensorRT engines for every configuration, or name \
             the engine with --engine, or re-time them all here with --latency-only",
            devices
                .iter()
                .map(|(d, l)| format!("{l}: {d}"))
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
    Ok(())
}

pub fn run(args: SweepArgs) -> anyhow::Result<ExitCode> {
    if !(0.0..1.0).contains(&args.tolerance) {
        bail!("--tolerance {} must be in [0, 1)", args.tolerance);
    }
    if args.runs == 0 || args.bootstrap == 0 {
        bail!("--runs and --bootstrap must be at least 1");
    }
    let path = args.out.join("sweep.json");
    let existing = SweepFile::read(&path).map_err(anyhow::Error::msg)?;
    let mut file = if args.latency_only {
        match existing {
            Some(f) if !f.results.is_empty() => {
                let task = format!("{:?}", args.task).to_lowercase();
                if f.task != task {
                    bail!("{} is a {} sweep, not {task}", path.display(), f.task);
                }
                f
            }
            _ => bail!(
                "{}: no sweep to measure again; run `dinoedge sweep` with the data first",
                path.display()
            ),
        }
    } else {
        let key = data_key(&args);
        match existing {
            Some(f) if f.data_key != key => bail!(
                "{} holds a sweep of other data or options:\n  {}\nthis one:\n  {key}\n\
                 use another --out, or remove it",
                path.display(),
                f.data_key
            ),
            Some(f) => {
                println!(
                    "resuming {}: {} configuration(s) done",
                    path.display(),
                    f.results.iter().filter(|r| r.val_score.is_some()).count()
                );
                f
            }
            None => SweepFile::new(key, format!("{:?}", args.task).to_lowercase()),
        }
    };
    if args.latency_only {
        measure_latency_again(&args, &mut file, &path)?;
    } else {
        sweep(&args, &mut file, &path)?;
    }
    report(&args, &file)?;
    Ok(ExitCode::SUCCESS)
}

/// The engine, precision and device latency is measured on (`cpu fp32 on cpu: ... (1 thread)`).
fn latency_device(backbone: &Backbone) -> String {
    let e = backbone.engine();
    format!("{} {} on {}", e.engine, e.precision, e.device)
}

/// Median and 99th percentile ms of single-frame runs, after warm-up.
fn time_backbone(backbone: &Backbone, runs: usize) -> anyhow::Result<(f64, f64)> {
    let size = backbone.size();
    let zeros = ndarray::Array4::<f32>::zeros((backbone.batch(), 3, size.height, size.width));
    let mut state = backbone.state()?;
    for _ in 0..3 {
        state.run(zeros.view())?;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        state.run(zeros.view())?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let i = ((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1;
        times.get(i).copied().unwrap_or(f64::NAN)
    };
    Ok((at(0.5), at(0.99)))
}

fn sweep(args: &SweepArgs, file: &mut SweepFile, path: &Path) -> anyhow::Result<()> {
    if args.data.test_fraction <= 0.0 {
        bail!(
            "a sweep scores its choice on a held-out test split: give --test-fraction (e.g. 0.2)"
        );
    }
    let sizes: Vec<InputSize> = args
        .sizes
        .iter()
        .map(|s| parse_size(s))
        .collect::<anyhow::Result<_>>()?;
    let ds = open_dataset(args.task, &args.data, args.fit.classes.clone())?;
    let kept = select(&ds, &args.data, false);
    let test = select(&ds, &args.data, true);
    if kept.is_empty() || test.is_empty() {
        bail!(
            "the split left {} image(s) to fit and {} to test: every side needs some",
            kept.len(),
            test.len()
        );
    }
    let digest = dataset_digest(&ds);
    match &file.data_digest {
        Some(d) if *d != digest => bail!(
            "{} was made from another dataset ({d}; now {digest}): files were added, removed or \
             relabelled; use another --out, or remove it",
            path.display()
        ),
        _ => file.data_digest = Some(digest),
    }
    let total = args.models.len() * sizes.len();
    let mut n = 0;
    // Only paths are kept: models are loaded one at a time (a Jetson has little memory).
    let mut requested: Vec<(String, [usize; 2], PathBuf)> = Vec::new();
    for model_arg in &args.models {
        let model = ModelDir::load(model_arg)
            .with_context(|| format!("loading model {}", model_arg.display()))?;
        for &size in &sizes {
            n += 1;
            let fingerprint = model.weights.fingerprint().to_owned();
            let sz = [size.height, size.width];
            requested.push((fingerprint.clone(), sz, model_arg.clone()));
            let label = format!("{} {}", model.config.arch_name(), size);
            if file
                .results
                .iter()
                .any(|r| r.same_config(&fingerprint, sz) && r.val_score.is_some())
            {
                println!("[{n}/{total}] {label}: done before, kept");
                continue;
            }
            println!("[{n}/{total}] {label}: features and fit ...");
            let backbone = backbone_for(
                &model,
                size,
                &timed_blocks(args.task, &args.fit.blocks),
                &args.data.engine,
            )?;
            let head_dir = format!(
                "heads/{}-{}x{}-{}",
                model.config.arch_name(),
                size.height,
                size.width,
                fingerprint.replace(':', "_")
            );
            let fitted = fit_head(
                &model,
                &backbone,
                &ds,
                &kept,
                &args.data,
                &args.fit.head_options(args.task, size),
                &args.out.join(&head_dir),
            )?;
            fitted
                .head
                .save(&args.out.join(&head_dir))
                .with_context(|| format!("writing {head_dir}"))?;
            let Some(val) = fitted
                .outcome
                .sweep
                .iter()
                .find(|(c, _)| *c == fitted.outcome.c)
                .map(|(_, s)| *s)
            else {
                bail!(
                    "{label}: the validation split could not score the regularisation (a class \
                     missing on one side of it, or no validation group): nothing to choose on; \
                     give more data, other groups or another --seed"
                );
            };
            println!("[{n}/{total}] {label}: latency ({} runs) ...", args.runs);
            let (median, p99) = time_backbone(&backbone, args.runs)?;
            file.results.retain(|r| !r.same_config(&fingerprint, sz));
            file.results.push(ConfigResult {
                model: model_arg.display().to_string(),
                arch: model.config.arch_name().to_owned(),
                weights: model.weights_label(),
                fingerprint,
                size: sz,
                val_score: Some(val),
                score_name: fitted.outcome.score_name.to_owned(),
                c: Some(fitted.outcome.c),
                images: fitted.images,
                latency_median_ms: median,
                latency_p99_ms: p99,
                latency_device: latency_device(&backbone),
                head: Some(head_dir),
                test: None,
            });
            file.update(args.tolerance);
            // Written after every configuration: an interrupted sweep resumes from here.
            file.write(path).map_err(anyhow::Error::msg)?;
        }
    }
    // Configurations of an earlier run that were not asked for this time are left out of the
    // choice (and of the file), said so.
    let before = file.results.len();
    file.results
        .retain(|r| requested.iter().any(|(f, sz, _)| r.same_config(f, *sz)));
    if file.results.len() < before {
        println!(
            "{} configuration(s) of an earlier run not in --models x --sizes: left out",
            before - file.results.len()
        );
    }
    check_one_device(file)?;
    // A resumed sweep may have been given another tolerance: choose again.
    file.update(args.tolerance);
    file.write(path).map_err(anyhow::Error::msg)?;
    // The test split, once, for the chosen and the best only.
    let Some(choice) = file.choice.clone() else {
        bail!("no configuration has a validation score");
    };
    for idx in [choice.chosen, choice.best] {
        let Some(r) = file.results.get(idx).cloned() else {
            continue;
        };
        if r.test.is_some() {
            continue;
        }
        let Some((_, _, model_path)) = requested.iter().find(|(f, sz, _)| r.same_config(f, *sz))
        else {
            continue;
        };
        let model = ModelDir::load(model_path)
            .with_context(|| format!("loading model {}", model_path.display()))?;
        println!("test split: {} ...", r.label());
        let head_dir = args.out.join(r.head.as_deref().unwrap_or_default());
        let test_score = score_test(args, &model, &ds, &test, &head_dir, idx as u64)?;
        if let Some(slot) = file.results.get_mut(idx) {
            slot.test = Some(test_score);
        }
        file.write(path).map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

/// The head of one configuration on the test split, with a bootstrap interval over images.
fn score_test(
    args: &SweepArgs,
    model: &ModelDir,
    ds: &Dataset,
    test: &[usize],
    head_dir: &Path,
    seed: u64,
) -> anyhow::Result<TestScore> {
    let head = HeadFiles::load(head_dir)?;
    let size = InputSize::new(head.spec.size[0], head.spec.size[1]);
    let blocks = match &head.spec.input {
        HeadInput::Patch { blocks } => blocks.clone(),
        HeadInput::ClsMeanPatch => Vec::new(),
    };
    head.check_fits(model, size, &blocks)?;
    let backbone = backbone_for(model, size, &blocks, &args.data.engine)?;
    let (ok_idx, feats, _) = extract(&backbone, model, &head.spec.input, ds, test, &args.data)?;
    let resamples = args.bootstrap;
    let seed = 0x5eed ^ seed;
    match head.spec.task {
        Task::Classify => {
            let views: Vec<_> = feats.iter().map(|f| f.view()).collect();
            let x = concatenate(Axis(0), &views).context("stacking features")?;
            let p = head
                .linear()
                .predict_proba(x.view())
                .context("features do not fit the head")?;
            let labels = if ds.multi_label {
                Labels::Multi(label_sets_of(ds, &ok_idx)?)
            } else {
                Labels::Single(classes_of(ds, &ok_idx)?)
            };
            let score = score_of_proba(p.view(), &labels);
            let name = labels.score_name();
            let pick = |idx: &[usize]| -> Option<f64> {
                let rows = p.select(Axis(0), idx);
                let l = match &labels {
                    Labels::Single(y) => {
                        Labels::Single(idx.iter().filter_map(|&i| y.get(i).copied()).collect())
                    }
                    Labels::Multi(y) => {
                        let sets: Vec<Vec<bool>> =
                            idx.iter().filter_map(|&i| y.get(i).cloned()).collect();
                        // A draw where no label has both positives and negatives has no ROC AUC.
                        let scorable = (0..p.ncols()).any(|c| {
                            let pos = sets.iter().filter(|l| l.get(c) == Some(&true)).count();
                            pos > 0 && pos < sets.len()
                        });
                        if !scorable {
                            return None;
                        }
                        Labels::Multi(sets)
                    }
                };
                Some(score_of_proba(rows.view(), &l))
            };
            Ok(test_score(
                name,
                score,
                &test_groups(ds, &ok_idx),
                resamples,
                seed,
                pick,
            ))
        }
        Task::Segment => {
            let k = ds.classes.len();
            let patch = model.config.patch_size;
            let (hp, wp) = (size.height / patch, size.width / patch);
            let segmenter = Segmenter::new(head)?;
            // Each image's mean foreground Dice (classes it or the prediction holds).
            let mut per_image = Vec::with_capacity(ok_idx.len());
            let mut scored = Vec::with_capacity(ok_idx.len());
            for (&i, f) in ok_idx.iter().zip(&feats) {
                let truth = load_mask(mask_of(ds, i)?, k)?;
                let logits = segmenter
                    .logits_of_patches(f.view(), (hp, wp))
                    .context("patch features do not fit the head")?;
                let pred = ClassMask::from_logits(logits.view(), truth.width, truth.height);
                let fg: Vec<f64> = (1..k)
                    .filter_map(|c| u8::try_from(c).ok().and_then(|c| dice(&pred, &truth, c)))
                    .collect();
                if !fg.is_empty() {
                    per_image.push(fg.iter().sum::<f64>() / fg.len() as f64);
                    scored.push(i);
                }
            }
            if per_image.is_empty() {
                bail!("no test image has a foreground class to score");
            }
            let mean = |idx: &[usize]| -> Option<f64> {
                let v: Vec<f64> = idx
                    .iter()
                    .filter_map(|&i| per_image.get(i))
                    .copied()
                    .collect();
                (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
            };
            let all: Vec<usize> = (0..per_image.len()).collect();
            let score = mean(&all).unwrap_or(f64::NAN);
            Ok(test_score(
                "mean foreground Dice",
                score,
                &test_groups(ds, &scored),
                resamples,
                seed,
                mean,
            ))
        }
    }
}

/// A test score with its bootstrap interval over `groups` (one id per scored item).
fn test_score(
    name: &str,
    score: f64,
    groups: &[usize],
    resamples: usize,
    seed: u64,
    metric: impl Fn(&[usize]) -> Option<f64>,
) -> TestScore {
    let ci = bootstrap_ci(groups, resamples, seed, metric);
    TestScore {
        name: name.into(),
        score,
        ci_low: ci.map(|c| c.0),
        ci_high: ci.map(|c| c.1),
        images: groups.len(),
        groups: groups.iter().max().map_or(0, |m| m + 1),
        resamples,
    }
}

/// The group (subject) id of each scored test item, for the bootstrap.
fn test_groups(ds: &Dataset, idx: &[usize]) -> Vec<usize> {
    let names: Vec<&str> = idx
        .iter()
        .map(|&i| ds.items.get(i).map_or("", |it| it.group.as_str()))
        .collect();
    group_ids(&names)
}

fn measure_latency_again(
    args: &SweepArgs,
    file: &mut SweepFile,
    path: &Path,
) -> anyhow::Result<()> {
    let total = file.results.len();
    // Until every configuration is timed here, there is no choice: a half re-timed file would
    // compare this machine with another.
    file.choice = None;
    for n in 0..total {
        let Some(r) = file.results.get(n).cloned() else {
            continue;
        };
        let model = ModelDir::load(Path::new(&r.model))
            .with_context(|| format!("loading model {}", r.model))?;
        if model.weights.fingerprint() != r.fingerprint {
            bail!(
                "{} now holds other weights ({}) than the sweep measured ({})",
                r.model,
                model.weights.fingerprint(),
                r.fingerprint
            );
        }
        let size = InputSize::new(r.size[0], r.size[1]);
        // The graph its head reads, as the full sweep timed it.
        let blocks = match r.head.as_deref() {
            Some(head) => match HeadFiles::load(&args.out.join(head))?.spec.input {
                HeadInput::Patch { blocks } => blocks,
                HeadInput::ClsMeanPatch => Vec::new(),
            },
            None => Vec::new(),
        };
        println!(
            "[{}/{total}] {}: latency ({} runs) ...",
            n + 1,
            r.label(),
            args.runs
        );
        let backbone = backbone_for(&model, size, &blocks, &args.data.engine)?;
        let (median, p99) = time_backbone(&backbone, args.runs)?;
        let device = latency_device(&backbone);
        drop(backbone);
        drop(model);
        if let Some(slot) = file.results.get_mut(n) {
            slot.latency_median_ms = median;
            slot.latency_p99_ms = p99;
            slot.latency_device = device;
        }
        file.write(path).map_err(anyhow::Error::msg)?;
    }
    check_one_device(file)?;
    file.update(args.tolerance);
    file.write(path).map_err(anyhow::Error::msg)?;
    Ok(())
}

/// The table, the plot, and what the choice means.
fn report(args: &SweepArgs, file: &SweepFile) -> anyhow::Result<()> {
    println!(
        "\n{:<22} {:>10} {:>10} {:>10}  {:<6} test (95% CI)",
        "configuration", "val score", "median ms", "p99 ms", "front"
    );
    for (i, r) in file.results.iter().enumerate() {
        let mark = match &file.choice {
            Some(c) if c.chosen == i && c.best == i => " <- chosen, best",
            Some(c) if c.chosen == i => " <- chosen",
            Some(c) if c.best == i => " <- best",
            _ => "",
        };
        let test = r
            .test
            .as_ref()
            .map_or("-".to_owned(), |t| match (t.ci_low, t.ci_high) {
                (Some(lo), Some(hi)) => format!("{:.4} [{lo:.4}, {hi:.4}]", t.score),
                _ => format!("{:.4} [no interval]", t.score),
            });
        println!(
            "{:<22} {:>10} {:>10.2} {:>10.2}  {:<6} {test}{mark}",
            r.label(),
            r.val_score.map_or("-".to_owned(), |s| format!("{s:.4}")),
            r.latency_median_ms,
            r.latency_p99_ms,
            if file.pareto.get(i) == Some(&true) {
                "yes"
            } else {
                ""
            }
        );
    }
    let weights: Vec<&str> = file.results.iter().map(|r| r.weights.as_str()).collect();
    // Every figure says which weights it comes from.
    let mut named = std::collections::BTreeSet::new();
    for r in &file.results {
        if named.insert((r.model.as_str(), r.weights.as_str())) {
            println!("  {} = {} ({})", r.arch, r.model, r.weights);
        }
    }
    if let Some(c) = &file.choice {
        println!("\nchosen: {}", c.reason);
        if let Some(r) = file.results.get(c.chosen)
            && r.test.is_none()
        {
            println!(
                "  (its test score is not measured yet: run the sweep with the data to score it)"
            );
        }
    }
    let random = weights.contains(&"random weights");
    if random {
        println!(
            "Random weights: these scores say nothing about a pretrained model; they only show the sweep working."
        );
    }
    println!("{}", file.note);
    let score_name = file
        .results
        .first()
        .map_or("score".to_owned(), |r| r.score_name.clone());
    let points: Vec<SweepPoint> = file
        .results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            Some(SweepPoint {
                label: r.label(),
                latency_ms: r.latency_median_ms,
                score: r.val_score?,
                on_front: file.pareto.get(i) == Some(&true),
                chosen: file.choice.as_ref().is_some_and(|c| c.chosen == i),
            })
        })
        .collect();
    let title = format!(
        "dinoedge sweep: {} ({}){}",
        file.task,
        file.results
            .first()
            .map_or(String::new(), |r| r.latency_device.clone()),
        if random { ", random weights" } else { "" }
    );
    let png = args.out.join("sweep.png");
    sweep_plot(&points, &title, &score_name)
        .save(&png)
        .with_context(|| format!("writing {}", png.display()))?;
    println!(
        "{}, {}",
        args.out.join("sweep.json").display(),
        png.display()
    );
    Ok(())
}
