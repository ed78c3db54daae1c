//! The pipeline end to end on imported recordings, with the tiny fixture model: every frame
//! offline, exact drop accounting live, damaged and cut recordings, mismatched heads.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::common::{gray_frame, write_recording};
use dinoedge::backbone::{InputSize, ModelDir};
use dinoedge::engine::EngineSetup;
use dinoedge::heads::{BackboneId, HeadFiles, HeadInput, HeadSpec, Task};
use dinoedge::import::SourceFrame;
use dinoedge::pipeline::{
    self, HeadOutput, Input, Models, ModelsError, PipelineConfig, PipelineReport, Policy,
};
use dinoedge::recording::Pace;
use ndarray::{Array1, Array2};

/// A fresh temporary folder for one test: everything the test writes goes under it, so that
/// tests running in parallel never share or overwrite a path.
fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn fixture() -> (ModelDir, PathBuf) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures/tiny_mlp");
    (ModelDir::load(&dir).unwrap(), dir)
}

/// `n` frames; the size changes half way, as when a sonographer changes depth.
fn frames(n: u32) -> Vec<SourceFrame> {
    (0..n)
        .map(|i| {
            if i < n / 2 {
                gray_frame(64, 48, i)
            } else {
                gray_frame(80, 60, i)
            }
        })
        .collect()
}

fn recording(dir: &Path, name: &str, n: u32) -> PathBuf {
    write_recording(&dir.join(name), frames(n))
}

fn head(dir: &Path, model: &ModelDir, task: Task, classes: usize) -> PathBuf {
    let d = model.config.hidden_size;
    let input = match task {
        Task::Classify => HeadInput::ClsMeanPatch,
        Task::Segment => HeadInput::Patch { blocks: vec![] },
    };
    let width = input.width(d);
    let files = HeadFiles {
        path: PathBuf::new(),
        spec: HeadSpec {
            format: "dinoedge-head".into(),
            version: 1,
            task,
            multi_label: false,
            classes: (0..classes).map(|c| format!("c{c}")).collect(),
            input,
            backbone: BackboneId::of(model),
            size: [64, 64],
            fit: serde_json::Value::Null,
        },
        weight: Array2::from_shape_fn((classes, width), |(k, f)| {
            ((k * 31 + f * 7) % 13) as f32 / 13.0 - 0.5
        }),
        bias: Array1::zeros(classes),
    };
    let path = dir.join(format!("head-{task:?}"));
    files.save(&path).unwrap();
    path
}

fn run(
    models: &Models,
    path: &Path,
    policy: Policy,
    pace: Pace,
) -> (PipelineReport, Vec<serde_json::Value>) {
    let config = PipelineConfig {
        policy,
        workers: 2,
        capture_clock: false,
        ..PipelineConfig::default()
    };
    let stop = AtomicBool::new(false);
    let mut lines = Vec::new();
    let report = pipeline::run(
        models,
        &config,
        Input::Replay {
            path: path.to_owned(),
            pace,
            repeat_for: None,
        },
        &stop,
        |r| {
            if r.failure().is_none() {
                for o in r.outputs() {
                    if let HeadOutput::Mask(m) = o {
                        assert_eq!(
                            (m.width, m.height),
                            (r.crop.width as usize, r.crop.height as usize)
                        );
                    }
                }
            }
            // The result sent to the edge carries the frame's seq and its own latency.
            let out = r.wire_result(models, &PipelineConfig::default());
            assert_eq!(out.result.seq, r.frame.start.seq);
            assert!(out.result.latency.total_us > 0);
            lines.push(r.to_json(models))
        },
        |_| {},
    )
    .unwrap();
    (report, lines)
}

fn models(scratch: &Path) -> Models {
    let (model, dir) = fixture();
    let heads = [
        head(scratch, &model, Task::Classify, 3),
        head(scratch, &model, Task::Segment, 2),
    ];
    Models::load(
        &model,
        &dir,
        Some(InputSize::new(64, 64)),
        &heads,
        &EngineSetup::cpu(1),
    )
    .unwrap()
}

#[test]
fn offline_processes_every_frame_of_a_replay_even_when_the_size_changes() {
    let tmp = scratch();
    let models = models(tmp.path());
    let path = recording(tmp.path(), "offline.rec", 24);
    let (report, lines) = run(&models, &path, Policy::Offline, Pace::MaxSpeed);
    assert_eq!(report.frames_received, 24);
    assert_eq!(report.frames_processed, 24);
    assert!(report.dropped.is_empty(), "{:?}", report.dropped);
    assert!(report.lost.is_empty(), "{:?}", report.lost);
    assert!(report.recording_damage.is_empty());
    let mut seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..24).collect::<Vec<_>>());
    let sizes: std::collections::BTreeSet<String> =
        lines.iter().map(|l| l["size"].to_string()).collect();
    assert_eq!(sizes.len(), 2, "{sizes:?}");
    for l in &lines {
        assert!(
            l["heads"]["head-Classify"]["top"].as_array().unwrap().len() == 3,
            "{l}"
        );
        assert!(l["heads"]["head-Segment"]["mask_size"].is_array(), "{l}");
        assert!(l["latency_ms"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(report.latency.count, 24);
    assert!(report.stages.contains_key("backbone"));
}

#[test]
fn live_accounts_for_every_frame_exactly() {
    let tmp = scratch();
    let models = models(tmp.path());
    let path = recording(tmp.path(), "live.rec", 40);
    let (report, lines) = run(&models, &path, Policy::Live, Pace::MaxSpeed);
    assert_eq!(report.frames_received, 40);
    assert_eq!(
        report.frames_processed + report.dropped_total(),
        40,
        "processed {} dropped {:?}",
        report.frames_processed,
        report.dropped
    );
    assert_eq!(lines.len() as u64, report.frames_processed);
    // Only newer frames replace older ones: what was processed comes in increasing order
    // per worker; at least the last frame is never superseded.
    assert!(
        lines.iter().any(|l| l["seq"] == 39),
        "the newest frame is processed"
    );
}

#[test]
fn damaged_and_cut_recordings_lose_only_what_was_damaged() {
    let tmp = scratch();
    let models = models(tmp.path());
    let path = recording(tmp.path(), "damaged.rec", 20);
    let mut bytes = std::fs::read(&path).unwrap();
    let len = bytes.len();
    // Damage a byte a third of the way in, and cut the last 1000 bytes (a crash).
    bytes[len / 3] ^= 0x5A;
    bytes.truncate(len - 1000);
    std::fs::write(&path, &bytes).unwrap();
    let (report, _) = run(&models, &path, Policy::Offline, Pace::MaxSpeed);
    assert_eq!(
        report.recording_damage.len(),
        2,
        "{:?}",
        report.recording_damage
    );
    assert!(report.recording_damage[0].starts_with("corrupt"));
    assert!(report.recording_damage[1].starts_with("truncated"));
    assert!(
        report.lost_total() >= 1,
        "the damaged frame is reported lost"
    );
    assert!(report.frames_processed >= 16, "{}", report.frames_processed);
    assert!(report.frames_processed < 20);
    // Everything that arrived was processed.
    assert_eq!(report.frames_processed, report.frames_received);
}

#[test]
fn a_head_for_another_model_is_refused_by_name() {
    let tmp = scratch();
    let (model, dir) = fixture();
    let other = ModelDir::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures/tiny_swiglu"),
    )
    .unwrap();
    let foreign = head(&tmp.path().join("other-model"), &other, Task::Classify, 2);
    match Models::load(
        &model,
        &dir,
        Some(InputSize::new(64, 64)),
        std::slice::from_ref(&foreign),
        &EngineSetup::cpu(1),
    ) {
        Err(ModelsError::Head { path, source }) => {
            assert_eq!(path, foreign);
            assert!(!source.to_string().is_empty());
        }
        other => panic!("expected a head mismatch, got {:?}", other.map(|_| ())),
    }
    let own = head(&tmp.path().join("own-model"), &model, Task::Classify, 2);
    match Models::load(
        &model,
        &dir,
        Some(InputSize::new(96, 96)),
        &[own],
        &EngineSetup::cpu(1),
    ) {
        Err(ModelsError::SizeMismatch { .. }) => {}
        other => panic!("expected a size mismatch, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_recording_of_a_newer_format_is_an_error_not_an_empty_run() {
    let tmp = scratch();
    let models = models(tmp.path());
    let path = recording(tmp.path(), "newer.rec", 2);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8] = 99;
    std::fs::write(&path, &bytes).unwrap();
    let stop = AtomicBool::new(false);
    let err = pipeline::run(
        &models,
        &PipelineConfig::default(),
        Input::Replay {
            path: path.clone(),
            pace: Pace::MaxSpeed,
            repeat_for: None,
        },
        &stop,
        |_| {},
        |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("version 99"), "{err}");
}
