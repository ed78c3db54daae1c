//! `dinoedge probe fit|eval`: fit heads on frozen features of a labelled dataset, and measure
//! them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use dinoedge::backbone::{Backbone, InputSize, ModelDir, RuntimeOptions};
use dinoedge::heads::LinearClassifier;
use dinoedge::heads::{
    BackboneId, ClassMask, FORMAT, HeadFiles, HeadInput, HeadSpec, Segmenter, Task, VERSION, dice,
    iou,
};
use dinoedge::probe::dataset::{Dataset, DatasetSource, Target};
use dinoedge::probe::extract::Extractor;
use dinoedge::probe::fit::{FitOptions, Labels, fit_with_sweep, stack_patches};
use dinoedge::probe::logreg::ClassWeight;
use dinoedge::probe::masks::{load_mask, patch_labels};
use dinoedge::probe::metrics::{accuracy, argmax, balanced_accuracy, roc_auc_ovr};
use ndarray::{Array2, Axis, concatenate};

use super::engine::EngineArgs;
use super::model::weights_note;

#[derive(Debug, Subcommand)]
pub enum ProbeCommand {
    /// Fit a head (logistic regression, regularisation chosen on a validation split by group) on
    /// frozen features of a labelled dataset.
    Fit(FitArgs),
    /// Measure a head on a labelled dataset: accuracy, balanced accuracy, ROC AUC, confusion
    /// matrix (classification); Dice and IoU (segmentation).
    Eval(EvalArgs),
}

/// Where the labelled images are, shared by fit and eval.
#[derive(Debug, Args, Clone)]
pub struct DataArgs {
    /// Dataset: a folder with a subfolder per class, a CSV manifest (path,label[,group]; labels
    /// joined by ';' for multi-label), or (segmentation) a folder of images. Repeatable.
    #[arg(long)]
    pub(super) data: Vec<PathBuf>,
    /// Segmentation: mask folder paired with each --data folder; masks match images by name.
    #[arg(long)]
    pub(super) masks: Vec<PathBuf>,
    /// Segmentation: masks lie beside the images, the mask of X.png named X<SUFFIX>.png.
    #[arg(long)]
    pub(super) mask_suffix: Option<String>,
    /// Subject or patient groups from file names: the first capture group of this regex (e.g.
    /// '^(\d+)_' for HC18); each file is its own group by default.
    #[arg(long)]
    pub(super) group_by: Option<String>,
    /// Hold out this fraction of groups as a test set: `fit` leaves it out, `eval` uses only it
    /// (same --split-seed on both).
    #[arg(long, default_value_t = 0.0)]
    pub(super) test_fraction: f64,
    /// Seed of the test split.
    #[arg(long, default_value_t = 0)]
    pub(super) split_seed: u64,
    /// Skip images that cannot be read or processed, naming each, instead of stopping.
    #[arg(long)]
    pub(super) skip_bad: bool,
    /// Drop duplicate images before splitting: difference hashes within this many bits of an
    /// earlier image's (0: identical thumbnails; 4 catches re-encodings and small edits). Copies
    /// that carry different labels are all dropped.
    #[arg(long)]
    pub(super) dedupe: Option<u32>,
    /// Feature cache folder (keyed by model, size, features and file content).
    #[arg(long, default_value = "target/dinoedge-feature-cache")]
    pub(super) cache: PathBuf,
    /// Parallel workers (one backbone state each).
    #[arg(long, default_value_t = 2)]
    pub(super) workers: usize,
    #[command(flatten)]
    pub(super) engine: EngineArgs,
}

#[derive(Debug, Args)]
pub struct FitArgs {
    /// Backbone model folder.
    #[arg(long)]
    model: PathBuf,
    /// What to fit.
    #[arg(long, value_enum)]
    task: Task,
    #[command(flatten)]
    data: DataArgs,
    /// Input size HxW.
    #[arg(long, default_value = "224x224")]
    size: InputSize,
    #[command(flatten)]
    fit: FitFlags,
    /// Head folder to write.
    #[arg(short, long)]
    output: PathBuf,
}

/// How a head is fitted, shared by `probe fit` and `sweep`.
#[derive(Debug, Args, Clone)]
pub struct FitFlags {
    /// Segmentation class names, background first.
    #[arg(long, value_delimiter = ',')]
    pub(super) classes: Option<Vec<String>>,
    /// Segmentation: also read these intermediate blocks (normed), e.g. 2,5,8,11.
    #[arg(long, value_delimiter = ',')]
    pub(super) blocks: Vec<usize>,
    /// Seed of the validation split used to choose the regularisation.
    #[arg(long, default_value_t = 0)]
    pub(super) seed: u64,
    /// Weight classes equally (balanced) or samples equally (none).
    #[arg(long, default_value = "balanced")]
    pub(super) class_weight: String,
    /// Segmentation: most patches used for fitting (rare classes kept whole).
    #[arg(long, default_value_t = 200_000)]
    pub(super) max_patches: usize,
}

impl FitFlags {
    /// The options for fitting a `task` head at `size`.
    pub(super) fn head_options(&self, task: Task, size: InputSize) -> HeadOptions {
        HeadOptions {
            task,
            size,
            blocks: self.blocks.clone(),
            seed: self.seed,
            class_weight: self.class_weight.clone(),
            max_patches: self.max_patches,
        }
    }
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Backbone model folder.
    #[arg(long)]
    model: PathBuf,
    /// Head folder.
    #[arg(long)]
    head: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Folder for report.json and PNGs (confusion matrix, overlays).
    #[arg(long)]
    report: Option<PathBuf>,
}

pub fn run(cmd: ProbeCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ProbeCommand::Fit(args) => fit(args),
        ProbeCommand::Eval(args) => eval(args),
    }
}

fn source(data: &DataArgs, classes: Option<Vec<String>>) -> DatasetSource {
    DatasetSource {
        data: data.data.clone(),
        masks: data.masks.clone(),
        mask_suffix: data.mask_suffix.clone(),
        classes,
        group_by: data.group_by.clone(),
    }
}

/// The dataset's items on the side asked for: all, the kept side (fit) or the held-out side (eval).
pub(super) fn open_dataset(
    task: Task,
    data: &DataArgs,
    classes: Option<Vec<String>>,
) -> anyhow::Result<Dataset> {
    if data.data.is_empty() {
        bail!("give the dataset with --data");
    }
    let mut ds = Dataset::open(task, &source(data, classes))?;
    if let Some(bits) = data.dedupe {
        let (dups, conflicts) = ds.dedupe(bits);
        eprintln!(
            "dedupe: dropped {} duplicate image(s) and {} image(s) whose copies carry different labels; {} remain",
            dups.len(),
            conflicts.len(),
            ds.items.len()
        );
    }
    Ok(ds)
}

pub(super) fn select(ds: &Dataset, data: &DataArgs, held_out: bool) -> Vec<usize> {
    if data.test_fraction <= 0.0 {
        return (0..ds.items.len()).collect();
    }
    let (kept, held) = ds.split(data.test_fraction, data.split_seed);
    if held_out { held } else { kept }
}

pub(super) fn backbone_for(
    model: &ModelDir,
    size: InputSize,
    blocks: &[usize],
    engine: &EngineArgs,
) -> anyhow::Result<Backbone> {
    // Batch 1 and the graph tract runs fastest, with the blocks the head reads.
    let mut options = RuntimeOptions {
        engine: engine.engine,
        precision: engine.precision,
        ..RuntimeOptions::default()
    };
    options.graph.intermediate_blocks = blocks.to_vec();
    let backbone = Backbone::load(model, size, &options)
        .with_context(|| format!("preparing {} at {size}", model.config.arch_name()))?;
    Ok(backbone)
}

/// Features of the selected items; bad files stop the run unless --skip-bad, and are named.
pub(super) fn extract(
    backbone: &Backbone,
    model: &ModelDir,
    input: &HeadInput,
    ds: &Dataset,
    idx: &[usize],
    data: &DataArgs,
) -> anyhow::Result<(Vec<usize>, Vec<Array2<f32>>, f64)> {
    let paths: Vec<PathBuf> = idx
        .iter()
        .filter_map(|&i| ds.items.get(i).map(|it| it.path.clone()))
        .collect();
    let bar = indicatif::ProgressBar::new(paths.len() as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "features {bar:30} {pos}/{len} {per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let extractor = Extractor {
        backbone,
        fingerprint: model.weights.fingerprint().to_string(),
        input: input.clone(),
        cache: Some(data.cache.clone()),
        workers: data.workers,
    };
    let start = Instant::now();
    let results = extractor.run(&paths, &|| bar.inc(1));
    bar.finish_and_clear();
    let per_image_ms = start.elapsed().as_secs_f64() * 1e3 / paths.len().max(1) as f64;
    let (mut ok_idx, mut feats, mut bad) = (Vec::new(), Vec::new(), Vec::new());
    for (&i, r) in idx.iter().zip(results) {
        match r {
            Ok(f) => {
                ok_idx.push(i);
                feats.push(f);
            }
            Err(e) => bad.push(e.to_string()),
        }
    }
    if !bad.is_empty() {
        if !data.skip_bad {
            bail!(
                "{} image(s) could not be used (pass --skip-bad to skip them):\n  {}",
                bad.len(),
                bad.join("\n  ")
            );
        }
        eprintln!("skipped {} image(s):\n  {}", bad.len(), bad.join("\n  "));
    }
    Ok((ok_idx, feats, per_image_ms))
}

/// Item `i`'s path and label.
fn target(ds: &Dataset, i: usize) -> anyhow::Result<(&Path, &Target)> {
    let item = ds
        .items
        .get(i)
        .with_context(|| format!("no item {i} in the dataset"))?;
    Ok((&item.path, &item.target))
}

/// The single class of each item, in order: an item without one stops the run, naming it,
/// rather than being left out (which would pair the next item's features with its label).
pub(super) fn classes_of(ds: &Dataset, idx: &[usize]) -> anyhow::Result<Vec<usize>> {
    idx.iter()
        .map(|&i| match target(ds, i)? {
            (_, Target::Class(c)) => Ok(*c),
            (path, _) => bail!("{}: no single class label", path.display()),
        })
        .collect()
}

/// The label set of each item, in order (multi-label); an item without one stops the run.
pub(super) fn label_sets_of(ds: &Dataset, idx: &[usize]) -> anyhow::Result<Vec<Vec<bool>>> {
    idx.iter()
        .map(|&i| match target(ds, i)? {
            (_, Target::Labels(l)) => Ok(l.clone()),
            (path, _) => bail!("{}: no label set", path.display()),
        })
        .collect()
}

/// Item `i`'s mask file: a segmentation item without one stops the run, naming it.
pub(super) fn mask_of(ds: &Dataset, i: usize) -> anyhow::Result<&Path> {
    match target(ds, i)? {
        (_, Target::Mask(m)) => Ok(m),
        (path, _) => bail!("{}: no mask", path.display()),
    }
}

/// Peak resident memory of this process, from /proc (Linux), in MiB.
pub(super) fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// What to fit a head with (the options `probe fit` and `sweep` share).
pub(super) struct HeadOptions {
    pub task: Task,
    pub size: InputSize,
    pub blocks: Vec<usize>,
    pub seed: u64,
    pub class_weight: String,
    pub max_patches: usize,
}

/// A fitted head, how it was chosen, and what it was fitted on.
pub(super) struct FittedHead {
    pub head: HeadFiles,
    pub outcome: dinoedge::probe::fit::FitOutcome,
    pub images: usize,
    pub samples: usize,
    pub per_image_ms: f64,
    pub fit_s: f64,
}

/// Extracts features of the items `idx` and fits a head on them, the regularisation chosen on
/// a validation split by group; the head is not yet saved (`output` is where it will be).
pub(super) fn fit_head(
    model: &ModelDir,
    backbone: &Backbone,
    ds: &Dataset,
    idx: &[usize],
    data: &DataArgs,
    o: &HeadOptions,
    output: &Path,
) -> anyhow::Result<FittedHead> {
    let class_weight = match o.class_weight.as_str() {
        "balanced" => ClassWeight::Balanced,
        "none" => ClassWeight::None,
        other => bail!("--class-weight {other:?}: expected balanced or none"),
    };
    let input = match o.task {
        Task::Classify => HeadInput::ClsMeanPatch,
        Task::Segment => HeadInput::Patch {
            blocks: o.blocks.clone(),
        },
    };
    let (ok_idx, feats, per_image_ms) = extract(backbone, model, &input, ds, idx, data)?;
    let options = FitOptions {
        seed: o.seed,
        class_weight,
        ..Default::default()
    };
    let groups: Vec<String> = ok_idx
        .iter()
        .filter_map(|&i| ds.items.get(i).map(|it| it.group.clone()))
        .collect();
    let fit_start = Instant::now();
    let (outcome, samples) = match o.task {
        Task::Classify => {
            let views: Vec<_> = feats.iter().map(|f| f.view()).collect();
            let x = concatenate(Axis(0), &views).context("stacking features")?;
            let labels = if ds.multi_label {
                Labels::Multi(label_sets_of(ds, &ok_idx)?)
            } else {
                Labels::Single(classes_of(ds, &ok_idx)?)
            };
            (
                fit_with_sweep(x.view(), &labels, &groups, ds.classes.len(), &options)?,
                x.nrows(),
            )
        }
        Task::Segment => {
            let (hp, wp) = (
                o.size.height / model.config.patch_size,
                o.size.width / model.config.patch_size,
            );
            let mut per_image = Vec::with_capacity(feats.len());
            for ((&i, f), g) in ok_idx.iter().zip(feats).zip(&groups) {
                let (item_path, _) = target(ds, i)?;
                let mask_path = mask_of(ds, i)?;
                let mask = load_mask(mask_path, ds.classes.len())?;
                let (iw, ih) = image::image_dimensions(item_path)
                    .with_context(|| format!("reading {}", item_path.display()))?;
                if (mask.width, mask.height) != (iw as usize, ih as usize) {
                    bail!(
                        "{}: mask is {}x{}, its image {} is {iw}x{ih}",
                        mask_path.display(),
                        mask.width,
                        mask.height,
                        item_path.display()
                    );
                }
                per_image.push((f, patch_labels(&mask, hp, wp, ds.classes.len()), g.clone()));
            }
            let (x, labels, groups) = stack_patches(&per_image, ds.classes.len(), o.max_patches)?;
            (
                fit_with_sweep(
                    x.view(),
                    &Labels::Single(labels),
                    &groups,
                    ds.classes.len(),
                    &options,
                )?,
                x.nrows(),
            )
        }
    };
    let fit_s = fit_start.elapsed().as_secs_f64();
    let head = HeadFiles {
        path: output.to_path_buf(),
        spec: HeadSpec {
            format: FORMAT.into(),
            version: VERSION,
            task: o.task,
            multi_label: ds.multi_label,
            classes: ds.classes.clone(),
            input,
            backbone: BackboneId::of(model),
            size: [o.size.height, o.size.width],
            fit: serde_json::json!({
                "c": outcome.c,
                "sweep": outcome.sweep,
                "score": outcome.score_name,
                "images": ok_idx.len(),
                "samples": samples,
                "validation_samples": outcome.val_samples,
                "class_weight": o.class_weight,
                "seed": o.seed,
                "test_fraction": data.test_fraction,
                "split_seed": data.split_seed,
                "engine": backbone.engine(),
            }),
        },
        weight: outcome.classifier.weight.clone(),
        bias: outcome.classifier.bias.clone(),
    };
    Ok(FittedHead {
        head,
        outcome,
        images: ok_idx.len(),
        samples,
        per_image_ms,
        fit_s,
    })
}

fn fit(args: FitArgs) -> anyhow::Result<ExitCode> {
    let model = ModelDir::load(&args.model)
        .with_context(|| format!("loading model {}", args.model.display()))?;
    let ds = open_dataset(args.task, &args.data, args.fit.classes.clone())?;
    let idx = select(&ds, &args.data, false);
    let backbone = backbone_for(&model, args.size, &args.fit.blocks, &args.data.engine)?;
    let fitted = fit_head(
        &model,
        &backbone,
        &ds,
        &idx,
        &args.data,
        &args.fit.head_options(args.task, args.size),
        &args.output,
    )?;
    fitted
        .head
        .save(&args.output)
        .with_context(|| format!("writing head {}", args.output.display()))?;
    let outcome = &fitted.outcome;
    let best = outcome
        .sweep
        .iter()
        .find(|(c, _)| *c == outcome.c)
        .map_or(String::new(), |(_, s)| {
            format!(", validation {} {s:.4}", outcome.score_name)
        });
    println!(
        "{}: {:?} head, {} classes, {} images ({} samples); C = {}{best}{}",
        args.output.display(),
        args.task,
        ds.classes.len(),
        fitted.images,
        fitted.samples,
        outcome.c,
        weights_note(&model.weights_label())
    );
    println!(
        "  features {:.1} ms/image ({} workers, cache {}), fit {:.2} s, peak memory {:.0} MiB",
        fitted.per_image_ms,
        args.data.workers,
        args.data.cache.display(),
        fitted.fit_s,
        peak_rss_mib().unwrap_or(f64::NAN)
    );
    Ok(ExitCode::SUCCESS)
}

fn eval(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let model = ModelDir::load(&args.model)
        .with_context(|| format!("loading model {}", args.model.display()))?;
    let head = HeadFiles::load(&args.head)?;
    let spec = head.spec.clone();
    let size = InputSize::new(spec.size[0], spec.size[1]);
    let blocks = match &spec.input {
        HeadInput::Patch { blocks } => blocks.clone(),
        HeadInput::ClsMeanPatch => Vec::new(),
    };
    head.check_fits(&model, size, &blocks)?;
    let ds = open_dataset(spec.task, &args.data, Some(spec.classes.clone()))?;
    if spec.task == Task::Classify && ds.classes != spec.classes {
        bail!(
            "the dataset's classes {:?} differ from the head's {:?}",
            ds.classes,
            spec.classes
        );
    }
    let idx = select(&ds, &args.data, true);
    if idx.is_empty() {
        bail!(
            "no images on the held-out side (--test-fraction {})",
            args.data.test_fraction
        );
    }
    let backbone = backbone_for(&model, size, &blocks, &args.data.engine)?;
    let (ok_idx, feats, per_image_ms) =
        extract(&backbone, &model, &spec.input, &ds, &idx, &args.data)?;
    println!(
        "{}: {:?} head on {} images{}",
        args.head.display(),
        spec.task,
        ok_idx.len(),
        weights_note(&model.weights_label())
    );
    let linear = head.linear();
    let report = match spec.task {
        Task::Classify => eval_classify(&linear, &ds, &ok_idx, &feats, args.report.as_deref())?,
        Task::Segment => eval_segment(
            &Segmenter::new(head)?,
            &ds,
            &ok_idx,
            &feats,
            size,
            model.config.patch_size,
            args.report.as_deref(),
        )?,
    };
    let mut report = report;
    if let Some(obj) = report.as_object_mut() {
        obj.insert("images".into(), ok_idx.len().into());
        obj.insert("features_ms_per_image".into(), per_image_ms.into());
        obj.insert("random_weights".into(), model.random_weights.into());
        obj.insert("weights".into(), model.weights_label().into());
        obj.insert("peak_rss_mib".into(), peak_rss_mib().into());
        let engine = backbone.engine();
        obj.insert("engine".into(), engine.engine.name().into());
        obj.insert("precision".into(), engine.precision.to_string().into());
        obj.insert("device".into(), engine.device.clone().into());
        obj.insert("graph_hash".into(), engine.graph_hash.clone().into());
    }
    if let Some(dir) = &args.report {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("report.json");
        std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn eval_classify(
    linear: &LinearClassifier,
    ds: &Dataset,
    idx: &[usize],
    feats: &[Array2<f32>],
    report_dir: Option<&Path>,
) -> anyhow::Result<serde_json::Value> {
    let views: Vec<_> = feats.iter().map(|f| f.view()).collect();
    let x = concatenate(Axis(0), &views).context("stacking features")?;
    let p = linear
        .predict_proba(x.view())
        .context("features do not fit the head")?;
    let k = ds.classes.len();
    if ds.multi_label {
        let sets = label_sets_of(ds, idx)?;
        let mut per = Vec::new();
        for c in 0..k {
            let truth: Vec<bool> = sets.iter().map(|l| l.get(c) == Some(&true)).collect();
            let auc = dinoedge::probe::metrics::roc_auc(&p.column(c).to_vec(), &truth);
            println!(
                "  {:24} ROC AUC {}",
                ds.classes[c],
                auc.map_or("-".into(), |a| format!("{a:.4}"))
            );
            per.push(serde_json::json!({"class": ds.classes[c], "roc_auc": auc}));
        }
        return Ok(serde_json::json!({"task": "classify", "multi_label": true, "per_class": per}));
    }
    let y = classes_of(ds, idx)?;
    let mut confusion = vec![vec![0usize; k]; k];
    for (row, &t) in p.rows().into_iter().zip(&y) {
        if let Some(pred) = argmax(row.iter().copied()) {
            confusion[t][pred] += 1;
        }
    }
    let acc = accuracy(p.view(), &y);
    let bal = balanced_accuracy(p.view(), &y);
    let auc = roc_auc_ovr(p.view(), &y);
    println!(
        "  accuracy {acc:.4}  balanced accuracy {bal:.4}  ROC AUC (one-vs-rest) {}",
        auc.map_or("-".into(), |a| format!("{a:.4}"))
    );
    let mut per = Vec::new();
    for (c, row) in confusion.iter().enumerate() {
        let tp = row[c] as f64;
        let predicted: usize = confusion.iter().map(|r| r[c]).sum();
        let actual: usize = row.iter().sum();
        let precision = (predicted > 0).then(|| tp / predicted as f64);
        let recall = (actual > 0).then(|| tp / actual as f64);
        println!(
            "  {:24} precision {}  recall {}  n {actual}",
            ds.classes[c],
            precision.map_or("-".into(), |v| format!("{v:.4}")),
            recall.map_or("-".into(), |v| format!("{v:.4}"))
        );
        per.push(serde_json::json!({"class": ds.classes[c], "precision": precision, "recall": recall, "support": actual}));
    }
    println!("  confusion (rows true, columns predicted): {confusion:?}");
    if let Some(dir) = report_dir {
        std::fs::create_dir_all(dir)?;
        confusion_png(&confusion)
            .save(dir.join("confusion.png"))
            .context("writing confusion.png")?;
    }
    Ok(serde_json::json!({
        "task": "classify", "accuracy": acc, "balanced_accuracy": bal, "roc_auc_ovr": auc,
        "per_class": per, "confusion": confusion, "classes": ds.classes,
    }))
}

/// The confusion matrix as a picture: a cell per (true, predicted), darker for a larger share
/// of the true class (numbers are in report.json).
fn confusion_png(confusion: &[Vec<usize>]) -> image::RgbImage {
    let k = confusion.len().max(1) as u32;
    let cell = 48;
    image::RgbImage::from_fn(k * cell, k * cell, |x, y| {
        let (t, p) = ((y / cell) as usize, (x / cell) as usize);
        let row: usize = confusion.get(t).map_or(0, |r| r.iter().sum());
        let v = confusion
            .get(t)
            .and_then(|r| r.get(p))
            .copied()
            .unwrap_or(0);
        let share = if row > 0 { v as f32 / row as f32 } else { 0.0 };
        let border = x % cell == 0 || y % cell == 0;
        let shade = (255.0 * (1.0 - share)) as u8;
        if border {
            image::Rgb([128, 128, 128])
        } else if t == p {
            image::Rgb([shade, 255, shade])
        } else {
            image::Rgb([255, shade, shade])
        }
    })
}

fn eval_segment(
    segmenter: &Segmenter,
    ds: &Dataset,
    idx: &[usize],
    feats: &[Array2<f32>],
    size: InputSize,
    patch: usize,
    report_dir: Option<&Path>,
) -> anyhow::Result<serde_json::Value> {
    let k = ds.classes.len();
    let (hp, wp) = (size.height / patch, size.width / patch);
    let (mut dice_sum, mut iou_sum, mut n_defined) = (vec![0.0; k], vec![0.0; k], vec![0usize; k]);
    let (mut inter, mut total_pred, mut total_true) =
        (vec![0usize; k], vec![0usize; k], vec![0usize; k]);
    let mut tiles = Vec::new();
    for (&i, f) in idx.iter().zip(feats) {
        let item = &ds.items[i];
        let mask_path = mask_of(ds, i)?;
        let truth = load_mask(mask_path, k)?;
        let logits = segmenter
            .logits_of_patches(f.view(), (hp, wp))
            .context("patch features do not fit the head")?;
        let pred = ClassMask::from_logits(logits.view(), truth.width, truth.height);
        for c in 0..k {
            if let (Some(d), Some(j)) = (dice(&pred, &truth, c as u8), iou(&pred, &truth, c as u8))
            {
                dice_sum[c] += d;
                iou_sum[c] += j;
                n_defined[c] += 1;
            }
            for (&a, &b) in pred.data.iter().zip(&truth.data) {
                inter[c] += usize::from(a as usize == c && b as usize == c);
                total_pred[c] += usize::from(a as usize == c);
                total_true[c] += usize::from(b as usize == c);
            }
        }
        if tiles.len() < 16 && report_dir.is_some() {
            tiles.push((item.path.clone(), pred, truth));
        }
    }
    let mut per = Vec::new();
    for c in 0..k {
        let mean_dice = (n_defined[c] > 0).then(|| dice_sum[c] / n_defined[c] as f64);
        let mean_iou = (n_defined[c] > 0).then(|| iou_sum[c] / n_defined[c] as f64);
        let pooled = (total_pred[c] + total_true[c] > 0)
            .then(|| 2.0 * inter[c] as f64 / (total_pred[c] + total_true[c]) as f64);
        println!(
            "  {:24} Dice {}  IoU {}  (mean over {} images; pooled Dice {})",
            ds.classes[c],
            mean_dice.map_or("-".into(), |v| format!("{v:.4}")),
            mean_iou.map_or("-".into(), |v| format!("{v:.4}")),
            n_defined[c],
            pooled.map_or("-".into(), |v| format!("{v:.4}"))
        );
        per.push(serde_json::json!({"class": ds.classes[c], "dice": mean_dice, "iou": mean_iou, "pooled_dice": pooled, "images": n_defined[c]}));
    }
    let fg: Vec<f64> = per
        .iter()
        .skip(1)
        .filter_map(|v| v["dice"].as_f64())
        .collect();
    let mean_fg = (!fg.is_empty()).then(|| fg.iter().sum::<f64>() / fg.len() as f64);
    println!(
        "  mean foreground Dice {}",
        mean_fg.map_or("-".into(), |v| format!("{v:.4}"))
    );
    if let Some(dir) = report_dir {
        std::fs::create_dir_all(dir)?;
        overlay_grid(&tiles)?
            .save(dir.join("overlays.png"))
            .context("writing overlays.png")?;
    }
    Ok(
        serde_json::json!({"task": "segment", "per_class": per, "mean_foreground_dice": mean_fg, "classes": ds.classes}),
    )
}

/// Up to 16 images, each as [prediction over the image | ground truth over the image], 192 px
/// high.
fn overlay_grid(tiles: &[(PathBuf, ClassMask, ClassMask)]) -> anyhow::Result<image::RgbImage> {
    let (tw, th) = (256u32, 192u32);
    let cols = 2u32;
    let rows = (tiles.len() as u32).div_ceil(cols).max(1);
    let mut grid = image::RgbImage::new(cols * tw * 2, rows * th);
    for (n, (path, pred, truth)) in tiles.iter().enumerate() {
        let img = image::open(path)
            .with_context(|| format!("reading {}", path.display()))?
            .into_rgb8();
        for (side, mask) in [pred, truth].into_iter().enumerate() {
            let over = mask.overlay(img.as_raw(), 0.45).context("overlay size")?;
            let small =
                image::imageops::resize(&over, tw, th, image::imageops::FilterType::Triangle);
            let (x, y) = (
                (n as u32 % cols) * tw * 2 + side as u32 * tw,
                (n as u32 / cols) * th,
            );
            image::imageops::replace(&mut grid, &small, i64::from(x), i64::from(y));
        }
    }
    Ok(grid)
}
