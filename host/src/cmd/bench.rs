//! `dinoedge bench`: a recording through the whole pipeline, measured: frames/s, latency
//! percentiles, drops and losses with reasons, time per stage, CPU and memory, as a table, a
//! JSON file and a PNG plot; accuracy or Dice where labels are given.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use dinoedge::heads::{ClassMask, overlap};
use dinoedge::import::{ImportConfig, dicom_frames, import, labels_path};
use dinoedge::pipeline::{
    self, FrameRecord, Head, HeadOutput, Input, Models, PipelineConfig, PipelineReport,
};
use dinoedge::recording::{RecordKind, RecordingKey, RecordingReader, RecordingWriter};
use indicatif::{ProgressBar, ProgressStyle};

use super::model::weights_note;
use super::run::{ModelArgs, OutputArgs, PaceArgs, PolicyArg, Writers, policy, summary};

/// The echo cine shipped with dinoedge (tests/data/README.md has its source and licence).
const ECHO_CINE: &[u8] = include_bytes!("../../../tests/data/echo_cine.dcm");

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The recording; default: the 30-frame echo cine shipped with dinoedge, imported.
    file: Option<PathBuf>,
    /// Scheduling when the backbone is busy.
    #[arg(long, value_enum, default_value = "offline")]
    policy: PolicyArg,
    #[command(flatten)]
    pace: PaceArgs,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// Class per frame, CSV `seq,label` (default: FILE.labels.csv when it exists, as `import`
    /// writes for class folders); scored against the first classification head.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Masks per frame, DIR/<seq>.png (0/255 or class indices); Dice of the first
    /// segmentation head.
    #[arg(long)]
    masks: Option<PathBuf>,
    /// Where report.json and latency.png go.
    #[arg(long, default_value = "target/dinoedge-bench")]
    out: PathBuf,
    /// Play the recording again and again for this many seconds (memory soak).
    #[arg(long)]
    loop_for: Option<f64>,
    /// Stop after this many frames.
    #[arg(long)]
    frames: Option<u64>,
    /// Key file of an encrypted recording.
    #[arg(long, value_name = "FILE")]
    recording_key: Option<PathBuf>,
    #[command(flatten)]
    view: super::view::ViewArgs,
}

/// Frames in a recording: `FrameStart` packets in what the edge sent.
fn count_frames(path: &Path, key: Option<&RecordingKey>) -> anyhow::Result<u64> {
    let mut reader = RecordingReader::open_with(path, key)?;
    let mut decoder = dinoedge::proto::wire::Decoder::new(vec![0u8; 1 << 20]);
    let mut frames = 0;
    while let Some(r) = reader.next_record()? {
        if r.kind == RecordKind::Connected {
            decoder = dinoedge::proto::wire::Decoder::new(vec![0u8; 1 << 20]);
        }
        if r.kind != RecordKind::EdgeToHost {
            continue;
        }
        let mut input = r.payload.as_slice();
        while let Some(kind) = decoder.push(&mut input) {
            if matches!(kind, Ok(dinoedge::proto::MessageKind::FrameStart)) {
                frames += 1;
            }
        }
    }
    Ok(frames)
}

/// Imports the shipped echo cine into `out`, once.
fn echo_cine_recording(out: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let dcm = out.join("echo_cine.dcm");
    let rec = out.join("echo_cine.rec");
    std::fs::write(&dcm, ECHO_CINE).with_context(|| format!("writing {}", dcm.display()))?;
    let _ = std::fs::remove_file(&rec);
    let (frames, fps) = dicom_frames(&dcm)?;
    let config = ImportConfig {
        fps: fps.unwrap_or(30.0),
        device_id: "echo-cine".into(),
        ..ImportConfig::default()
    };
    let mut writer = RecordingWriter::create(&rec)?;
    import(
        frames.into_iter().map(Ok),
        "echo_cine.dcm (pydicom test data, MIT)",
        &config,
        &mut writer,
    )?;
    writer.finish()?;
    Ok(rec)
}

/// Accuracy and Dice against labels, as frames come.
#[derive(Default)]
struct Scores {
    labels: BTreeMap<u32, String>,
    masks: Option<PathBuf>,
    correct: u64,
    scored: u64,
    unlabelled: u64,
    /// Per class: (intersection x 2, sum of areas), pooled over frames.
    dice: BTreeMap<u8, (u64, u64)>,
    mask_errors: Vec<String>,
}

impl Scores {
    fn frame(&mut self, record: &FrameRecord, models: &Models) {
        if record.failure().is_some() {
            return;
        }
        let seq = record.frame.start.seq;
        let classify = models
            .heads
            .iter()
            .zip(record.outputs())
            .find(|(h, _)| matches!(h.head, Head::Classify(_)));
        if let (Some((head, HeadOutput::Classes(p))), false) = (classify, self.labels.is_empty()) {
            match self.labels.get(&seq) {
                Some(label) => {
                    let predicted = pipeline::best(p, 1)
                        .first()
                        .and_then(|(c, _)| head.classes().get(*c).cloned());
                    self.scored += 1;
                    if predicted.as_deref() == Some(label.as_str()) {
                        self.correct += 1;
                    }
                }
                None => self.unlabelled += 1,
            }
        }
        let Some(dir) = &self.masks else { return };
        let segment = models
            .heads
            .iter()
            .zip(record.outputs())
            .find(|(h, _)| matches!(h.head, Head::Segment(_)));
        let Some((head, HeadOutput::Mask(predicted))) = segment else {
            return;
        };
        let path = dir.join(format!("{seq}.png"));
        if !path.exists() {
            self.unlabelled += 1;
            return;
        }
        let truth = match dinoedge::probe::masks::load_mask(&path, head.classes().len()) {
            Ok(m) => m,
            Err(e) => {
                self.mask_errors.push(e.to_string());
                return;
            }
        };
        // The prediction covers the part the model saw: compare it there.
        let c = record.crop;
        let truth = crop_mask(
            &truth,
            c.x as usize,
            c.y as usize,
            c.width as usize,
            c.height as usize,
        );
        let predicted = predicted.resized(truth.width, truth.height);
        for class in 1..head.classes().len().min(256) as u8 {
            if let Some((inter, in_predicted, in_truth)) = overlap(&predicted, &truth, class) {
                let e = self.dice.entry(class).or_default();
                e.0 += 2 * inter as u64;
                e.1 += (in_predicted + in_truth) as u64;
            }
        }
    }
}

fn crop_mask(m: &ClassMask, x: usize, y: usize, w: usize, h: usize) -> ClassMask {
    let mut data = Vec::with_capacity(w * h);
    for row in y..y + h {
        for col in x..x + w {
            data.push(if row < m.height && col < m.width {
                m.data.get(row * m.width + col).copied().unwrap_or(0)
            } else {
                0
            });
        }
    }
    ClassMask {
        width: w,
        height: h,
        data,
    }
}

fn read_labels(path: &Path) -> anyhow::Result<BTreeMap<u32, String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut labels = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.starts_with("seq")) {
            continue;
        }
        let Some((seq, label)) = line.split_once(',') else {
            bail!(
                "{} line {}: expected `seq,label`, got {line:?}",
                path.display(),
                i + 1
            );
        };
        let seq: u32 = seq.trim().parse().with_context(|| {
            format!(
                "{} line {}: {seq:?} is not a frame number",
                path.display(),
                i + 1
            )
        })?;
        labels.insert(seq, label.trim().to_owned());
    }
    Ok(labels)
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let policy = policy(args.policy);
    let key = super::record::recording_key(args.recording_key.as_deref())?;
    let file = match &args.file {
        Some(f) => f.clone(),
        None => echo_cine_recording(&args.out).context("importing the shipped echo cine")?,
    };
    let total =
        count_frames(&file, key.as_ref()).with_context(|| format!("reading {}", file.display()))?;
    let (workers, threads) = args.model.layout(policy);
    let models = args.model.load(threads)?;
    let view = args.view.start(&models, true)?;
    let pace = args.pace.pace(policy)?;
    let repeat_for = args
        .loop_for
        .map(|s| Duration::try_from_secs_f64(s).with_context(|| format!("--loop-for {s}")))
        .transpose()?;
    let config = PipelineConfig {
        policy,
        workers,
        roi: args.model.region.roi,
        max_frames: args.frames,
        capture_clock: false,
        recording_key: key,
        ..PipelineConfig::default()
    };
    let labels_file = args
        .labels
        .clone()
        .or_else(|| Some(labels_path(&file)).filter(|p| p.exists()));
    let mut scores = Scores {
        labels: labels_file
            .as_deref()
            .map(read_labels)
            .transpose()?
            .unwrap_or_default(),
        masks: args.masks.clone(),
        ..Scores::default()
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut writers = Writers::open(&args.output)?;
    let header = format!(
        "bench: {} ({total} frames{}), {} at {}{}, {} heads, {} policy, {:?}, {workers} worker(s) x {threads} thread(s), {} {}",
        file.display(),
        if repeat_for.is_some() { ", looped" } else { "" },
        models.backbone.config().arch_name(),
        models.backbone.size(),
        weights_note(models.backbone.weights_label()),
        models.heads.len(),
        policy,
        pace,
        models.backbone.engine().engine,
        models.backbone.engine().precision,
    );
    eprintln!("{header}");
    let bar = if repeat_for.is_some() {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} frames {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let stop = super::run::ctrl_c_flag();
    let input = Input::Replay {
        path: file.clone(),
        pace,
        repeat_for,
    };
    let report = pipeline::run(
        &models,
        &config,
        input,
        &stop,
        |record| {
            bar.inc(1);
            writers.frame(record, &models);
            scores.frame(record, &models);
            if let Some(view) = &view {
                view.frame(record, &models);
            }
        },
        |status| {
            bar.set_message(format!(
                "{:.1} fps, p50 {:.0} ms, p99 {:.0} ms, dropped {}",
                status.fps, status.p50_ms, status.p99_ms, status.dropped
            ));
            if let Some(view) = &view {
                view.status(status);
            }
        },
    )?;
    bar.finish_and_clear();
    writers.finish()?;
    let json = report_json(&report, &models, &scores, &header, workers, threads);
    let json_path = args.out.join("report.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    let plot_path = args.out.join("latency.png");
    let title = format!(
        "{} {} {}{} - {} policy",
        file.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        models.backbone.config().arch_name(),
        models.backbone.size(),
        weights_note(models.backbone.weights_label()),
        policy
    );
    let footer = report
        .telemetry
        .as_ref()
        .map(|t| t.summary_line())
        .unwrap_or_default();
    pipeline::plot::latency_plot(&report.latency_timeline, &title, &footer)
        .save(&plot_path)
        .with_context(|| format!("writing {}", plot_path.display()))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", table(&report, &models, &scores))?;
    // Frames in the file that never came out of the link (a rejected Hello, packets outside a
    // session) are named, not passed over.
    let told = report.frames_received + report.lost_total();
    let unaccounted = if repeat_for.is_none() && args.frames.is_none() {
        total.saturating_sub(told)
    } else {
        0
    };
    if unaccounted > 0 {
        writeln!(
            out,
            "{unaccounted} of the recording's {total} frames never came out of the link \
             ({} packets outside a session, {} sessions)",
            report.link.out_of_session, report.link.sessions
        )?;
    }
    writeln!(
        out,
        "report: {}  plot: {}",
        json_path.display(),
        plot_path.display()
    )?;
    Ok(
        if report.lost_total() == 0 && report.recording_damage.is_empty() && unaccounted == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        },
    )
}

fn table(report: &PipelineReport, models: &Models, scores: &Scores) -> String {
    let mut t = summary(report, models);
    t.push_str("\n\nstage          p50 ms   p90 ms   p99 ms  p99.9 ms   max ms");
    let mut row = |name: &str, p: &pipeline::Percentiles| {
        t.push_str(&format!(
            "\n{name:<12} {:>8.2} {:>8.2} {:>8.2} {:>9.2} {:>8.2}",
            p.p50_ms, p.p90_ms, p.p99_ms, p.p999_ms, p.max_ms
        ));
    };
    for name in [
        "transfer",
        "wait",
        "preprocess",
        "queue",
        "backbone",
        "heads",
        "send",
    ] {
        if let Some(p) = report.stages.get(name) {
            row(name, p);
        }
    }
    row("total", &report.latency);
    if let Some(gpu) = &report.backbone_gpu {
        // Inside `backbone`: the engine's own time on the GPU, by CUDA events.
        row("  of which GPU", gpu);
    }
    t.push_str(&format!(
        "\n\nCPU {:.2} cores busy, peak memory {:.0} MiB",
        report.cpu_cores_busy, report.peak_rss_mib
    ));
    if scores.scored > 0 {
        t.push_str(&format!(
            "\naccuracy {:.3} on {} labelled frames{}",
            scores.correct as f64 / scores.scored as f64,
            scores.scored,
            weights_note(models.backbone.weights_label())
        ));
    }
    for (class, (twice_inter, area)) in &scores.dice {
        if *area > 0 {
            t.push_str(&format!(
                "\nDice class {class}: {:.3}{}",
                *twice_inter as f64 / *area as f64,
                weights_note(models.backbone.weights_label())
            ));
        }
    }
    t
}

fn report_json(
    report: &PipelineReport,
    models: &Models,
    scores: &Scores,
    header: &str,
    workers: usize,
    threads: usize,
) -> serde_json::Value {
    let mut v = serde_json::to_value(report).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("description".into(), header.into());
        o.insert("arch".into(), models.backbone.config().arch_name().into());
        o.insert("size".into(), models.backbone.size().to_string().into());
        o.insert(
            "random_weights".into(),
            models.backbone.random_weights().into(),
        );
        o.insert("weights".into(), models.backbone.weights_label().into());
        o.insert("workers".into(), workers.into());
        o.insert("threads".into(), threads.into());
        o.insert(
            "heads".into(),
            models
                .heads
                .iter()
                .map(|h| h.name.clone())
                .collect::<Vec<_>>()
                .into(),
        );
        if scores.scored > 0 {
            o.insert(
                "accuracy".into(),
                (scores.correct as f64 / scores.scored as f64).into(),
            );
            o.insert("labelled_frames".into(), scores.scored.into());
        }
        let dice: serde_json::Map<String, serde_json::Value> = scores
            .dice
            .iter()
            .filter(|(_, (_, a))| *a > 0)
            .map(|(c, (i, a))| (c.to_string(), (*i as f64 / *a as f64).into()))
            .collect();
        if !dice.is_empty() {
            o.insert("dice".into(), dice.into());
        }
        if !scores.mask_errors.is_empty() {
            o.insert("mask_errors".into(), scores.mask_errors.clone().into());
        }
        o.insert(
            "link".into(),
            serde_json::json!({
                "frames_received": report.link.frames_received,
                "results_sent": report.link.results_sent,
                "results_stale": report.link.results_stale,
                "resyncs": report.link.resyncs,
                "sessions": report.link.sessions,
            }),
        );
    }
    v
}
