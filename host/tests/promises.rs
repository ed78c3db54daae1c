//! What the README promises about `bench`, `run`, `replay` and `preprocess` that no other test
//! checks: a frame that cannot be preprocessed is counted as `bad_input: ...` and answered with
//! a `BAD_INPUT` alarm while the frames around it go through; `--roi` blacks out what lies
//! outside a circle or sector before the model sees it; the default `bench` (no arguments)
//! works and says "random weights"; `bench` exits 1 when frames were lost on the link; and
//! every field of `report.json` is there, typed and consistent.

use crate::common::{
    dinoedge, dinoedge_in, fixture_model, gray_frame, read_json, s, write_recording,
};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use dinoedge::backbone::{InputSize, ModelDir};
use dinoedge::engine::EngineSetup;
use dinoedge::heads::{HeadFiles, Task};
use dinoedge::import::SourceFrame;
use dinoedge::pipeline::{self, FrameFailure, Input, Models, PipelineConfig, Policy};
use dinoedge::preprocess::{IMAGENET_MEAN, IMAGENET_STD, Roi};
use dinoedge::proto::{AlarmFlags, PixelFormat};
use dinoedge::recording::{Pace, RecordKind, RecordingReader, RecordingWriter};
use serde_json::Value;

/// The frame of the bad-input recordings that cannot be preprocessed.
const BAD: u32 = 3;

fn tiny() -> (ModelDir, PathBuf) {
    let dir = PathBuf::from(fixture_model("tiny_mlp"));
    (ModelDir::load(&dir).unwrap(), dir)
}

fn class_names(n: usize) -> Vec<String> {
    (0..n).map(|c| format!("c{c}")).collect()
}

/// A frame the link carries intact (its declared length, 0 bytes, fits its size) but that
/// cannot be preprocessed: it has no columns.
fn frame_without_pixels() -> SourceFrame {
    SourceFrame {
        width: 0,
        height: 48,
        format: PixelFormat::Gray8,
        data: Vec::new(),
        label: None,
    }
}

/// Seven 64x48 frames; frame [`BAD`] has no pixels.
fn bad_input_recording(dir: &Path) -> PathBuf {
    let frames = (0..7)
        .map(|i| {
            if i == BAD {
                frame_without_pixels()
            } else {
                gray_frame(64, 48, i)
            }
        })
        .collect();
    write_recording(&dir.join("bad-input.rec"), frames)
}

#[test]
fn a_frame_that_cannot_be_preprocessed_is_counted_and_answered_with_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, dir) = tiny();
    let size = InputSize::new(32, 32);
    let heads = vec![(
        PathBuf::from("classify"),
        HeadFiles::random(&model, Task::Classify, class_names(3), size, 1),
    )];
    let models = Models::from_files(&model, &dir, Some(size), heads, &EngineSetup::cpu(1)).unwrap();
    let path = bad_input_recording(tmp.path());
    let config = PipelineConfig {
        policy: Policy::Offline,
        workers: 1,
        capture_clock: false,
        ..PipelineConfig::default()
    };
    let stop = AtomicBool::new(false);
    // Per seq: the error, the alarms and classes of the result sent to the edge, the head
    // outputs, the results-file line.
    let mut seen = BTreeMap::new();
    let report = pipeline::run(
        &models,
        &config,
        Input::Replay {
            path,
            pace: Pace::MaxSpeed,
            repeat_for: None,
        },
        &stop,
        |r| {
            let sent = r.wire_result(&models, &config);
            assert_eq!(sent.result.seq, r.frame.start.seq);
            let previous = seen.insert(
                r.frame.start.seq,
                (
                    r.failure().cloned(),
                    sent.result.alarms,
                    sent.result.top_k.len(),
                    r.heads().len(),
                    r.to_json(&models),
                ),
            );
            assert!(
                previous.is_none(),
                "seq {} handed over twice",
                r.frame.start.seq
            );
        },
        |_| {},
    )
    .unwrap();

    // Nothing lost: every frame came out of the link, and every one was answered.
    assert_eq!(report.frames_received, 7);
    assert!(report.lost.is_empty(), "{:?}", report.lost);
    assert!(report.recording_damage.is_empty());
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        (0..7).collect::<Vec<_>>()
    );
    assert_eq!(report.frames_processed, 6);

    let (error, alarms, top_k, outputs, line) = &seen[&BAD];
    let failure = error.as_ref().expect("the bad frame carries its failure");
    let FrameFailure::BadInput(error) = failure else {
        panic!("{failure:?} is not bad input")
    };
    assert!(error.contains("0x48"), "the error names the frame: {error}");
    assert!(alarms.contains(AlarmFlags::BAD_INPUT), "{alarms:?}");
    assert_eq!(
        (*top_k, *outputs),
        (0, 0),
        "no classes for a frame not seen"
    );
    assert_eq!(
        line["error"].as_str(),
        Some(failure.to_string().as_str()),
        "{line}"
    );
    assert_eq!(line["seq"], BAD, "{line}");
    assert_eq!(
        report.dropped,
        BTreeMap::from([(failure.counter(), 1)]),
        "counted once, by reason"
    );

    for (seq, (error, alarms, top_k, outputs, line)) in &seen {
        if *seq == BAD {
            continue;
        }
        assert_eq!(error, &None, "seq {seq}");
        assert!(
            !alarms.contains(AlarmFlags::BAD_INPUT),
            "seq {seq}: {alarms:?}"
        );
        assert_eq!((*top_k, *outputs), (3, 1), "seq {seq}");
        assert!(line["error"].is_null(), "{line}");
        assert_eq!(
            line["heads"]["classify"]["top"].as_array().unwrap().len(),
            3
        );
    }
}

#[test]
fn bench_counts_bad_input_names_it_per_frame_and_exits_0() {
    let tmp = tempfile::tempdir().unwrap();
    let rec = bad_input_recording(tmp.path());
    let out_dir = tmp.path().join("bench");
    let results = tmp.path().join("results.jsonl");
    let (code, out, err) = dinoedge(&[
        "bench",
        &s(&rec),
        "--model",
        &fixture_model("tiny_mlp"),
        "--size",
        "32x32",
        "--workers",
        "1",
        "--out",
        &s(&out_dir),
        "--results",
        &s(&results),
    ]);
    // Bad input is dropped by the host and counted, not lost: exit 0.
    assert_eq!(code, 0, "{out}\n{err}");
    let report = read_json(&out_dir.join("report.json"));
    check_report(&report);
    assert_eq!(report["frames_received"], 7, "{report}");
    assert_eq!(report["frames_processed"], 6, "{report}");
    let dropped = report["dropped"].as_object().unwrap();
    assert_eq!(dropped.len(), 1, "{report}");
    let (reason, count) = dropped.iter().next().unwrap();
    assert_eq!(count, 1);
    let error = reason
        .strip_prefix("bad_input: ")
        .unwrap_or_else(|| panic!("{reason}"));
    assert!(out.contains(&format!("({reason} 1)")), "{out}");

    let lines: Vec<Value> = std::fs::read_to_string(&results)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 7);
    for line in &lines {
        if line["seq"] == BAD {
            assert_eq!(
                line["error"].as_str(),
                Some(format!("bad input: {error}").as_str()),
                "{line}"
            );
        } else {
            assert!(line["error"].is_null(), "{line}");
        }
    }
}

/// Copies a recording record by record, flipping one bit inside the packet of the frame chunk
/// numbered `chunk`: the recording itself stays intact, the link sees a damaged packet.
fn damage_one_chunk(src: &Path, dst: &Path, chunk: usize) {
    let mut reader = RecordingReader::open(src).unwrap();
    let mut writer = RecordingWriter::create(dst).unwrap();
    let mut chunks = 0;
    while let Some(r) = reader.next_record().unwrap() {
        let mut payload = r.payload;
        // Only chunks fill a packet this far; the other packets are short.
        if r.kind == RecordKind::EdgeToHost && payload.len() > 1000 {
            if chunks == chunk {
                // A bit that cannot turn into a delimiter (0x00).
                let at = (payload.len() / 2..payload.len())
                    .find(|&i| payload[i] != 0x01)
                    .unwrap();
                payload[at] ^= 0x01;
            }
            chunks += 1;
        }
        writer.write_at(r.kind, r.t_us, &payload).unwrap();
    }
    assert!(chunks > chunk, "only {chunks} chunks");
    writer.finish().unwrap();
}

#[test]
fn bench_exits_1_and_names_the_reason_when_a_frame_was_lost_on_the_link() {
    let tmp = tempfile::tempdir().unwrap();
    let clean = write_recording(
        &tmp.path().join("clean.rec"),
        (0..6).map(|i| gray_frame(64, 48, i)).collect(),
    );
    let damaged = tmp.path().join("damaged.rec");
    // 3072-byte frames in 2 KiB packets: two chunks a frame, so chunk 4 is frame 2's first.
    damage_one_chunk(&clean, &damaged, 4);
    let out_dir = tmp.path().join("bench");
    let (code, out, err) = dinoedge(&[
        "bench",
        &s(&damaged),
        "--model",
        &fixture_model("tiny_mlp"),
        "--size",
        "32x32",
        "--out",
        &s(&out_dir),
    ]);
    assert_eq!(code, 1, "{out}\n{err}");
    let report = read_json(&out_dir.join("report.json"));
    check_report(&report);
    // The recording is sound: the exit code is the link's loss alone.
    assert_eq!(
        report["recording_damage"],
        serde_json::json!([]),
        "{report}"
    );
    let lost = report["lost"].as_object().unwrap();
    assert_eq!(lost.len(), 1, "{report}");
    let (reason, count) = lost.iter().next().unwrap();
    assert_eq!(count, 1, "{report}");
    assert!(!reason.is_empty());
    assert!(
        out.contains(&format!("lost on the link 1 ({reason} 1)")),
        "the summary names the reason: {out}"
    );
    assert_eq!(report["frames_received"], 5, "{report}");
    assert_eq!(report["frames_processed"], 5, "{report}");

    // The same recording undamaged exits 0.
    let (code, out, err) = dinoedge(&[
        "bench",
        &s(&clean),
        "--model",
        &fixture_model("tiny_mlp"),
        "--size",
        "32x32",
        "--out",
        &s(&tmp.path().join("clean-bench")),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
}

#[test]
fn the_default_bench_runs_the_shipped_cine_and_says_random_weights() {
    let tmp = tempfile::tempdir().unwrap();
    // No arguments at all, as the README's first command; it writes under ./target.
    let (code, out, err) = dinoedge_in(tmp.path(), &["bench"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("random weights"), "{out}");
    assert!(
        err.contains("random weights"),
        "the header says it too: {err}"
    );
    let dir = tmp.path().join("target/dinoedge-bench");
    let report = read_json(&dir.join("report.json"));
    check_report(&report);
    assert_eq!(report["random_weights"], true, "{report}");
    assert_eq!(report["weights"], "random weights", "{report}");
    assert_eq!(report["arch"], "vits16", "{report}");
    assert_eq!(report["size"], "224x224", "{report}");
    assert_eq!(
        report["heads"],
        serde_json::json!(["demo-classify", "demo-segment"]),
        "{report}"
    );
    assert_eq!(report["frames_received"], 30, "{report}");
    assert_eq!(report["frames_processed"], 30, "{report}");
    assert_eq!(report["lost"], serde_json::json!({}), "{report}");
    let png = image::open(dir.join("latency.png")).unwrap();
    assert!(png.width() > 100 && png.height() > 100);
}

/// Checks one percentile block: its fields, its count, and their order.
fn check_percentiles(name: &str, p: &Value, count: u64) {
    let keys: BTreeSet<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "count", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"
        ]),
        "{name}: {p}"
    );
    assert_eq!(p["count"].as_u64(), Some(count), "{name}: {p}");
    let v = |k: &str| p[k].as_f64().unwrap_or_else(|| panic!("{name}.{k}: {p}"));
    let (p50, p90, p99, p999, max, mean) = (
        v("p50_ms"),
        v("p90_ms"),
        v("p99_ms"),
        v("p999_ms"),
        v("max_ms"),
        v("mean_ms"),
    );
    assert!(
        p50 > 0.0 && p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max,
        "{name}: percentiles out of order: {p}"
    );
    assert!(mean > 0.0 && mean <= max, "{name}: {p}");
}

/// Every field of a bench `report.json`: present, of its type, and consistent with the others.
fn check_report(r: &Value) {
    let o = r.as_object().unwrap();
    let keys: BTreeSet<&str> = o.keys().map(String::as_str).collect();
    let always = BTreeSet::from([
        "arch",
        "cpu_cores_busy",
        "degraded",
        "description",
        "device",
        "dropped",
        "dropped_at_edge",
        "elapsed_s",
        "engine",
        "engine_requested",
        "engines_not_taken",
        "fps",
        "frames_processed",
        "frames_received",
        "graph_hash",
        "heads",
        "latency",
        "latency_from_capture",
        "latency_timeline",
        "link",
        "lost",
        "peak_rss_mib",
        "policy",
        "precision",
        "preprocess_device",
        "preprocess_moved_to_cpu",
        "random_weights",
        "recording_damage",
        "results_not_queued",
        "results_sent",
        "rss_timeline",
        "size",
        "stages",
        "threads",
        "weights",
        "workers",
    ]);
    // `backbone_gpu` too, only on an engine that times itself on the GPU (TensorRT).
    let sometimes = BTreeSet::from([
        "accuracy",
        "labelled_frames",
        "dice",
        "mask_errors",
        "backbone_gpu",
        // Only where the machine exposes clocks, temperatures or power (telemetry).
        "telemetry",
        // Rotation, retention and the disk-space guard: filled in by `run` when it writes a
        // recording or a results file (host/tests/storage.rs checks it); bench leaves it out.
        "storage",
        // The edge's buttons and pedal (only when it sent any), and its controls beside a
        // capture (tests/tests/capture_controls.rs checks both).
        "edge_events",
        "controls",
    ]);
    assert!(
        always.is_subset(&keys),
        "missing {:?}",
        always.difference(&keys)
    );
    let unknown: Vec<_> = keys
        .iter()
        .filter(|k| !always.contains(*k) && !sometimes.contains(*k))
        .collect();
    assert!(
        unknown.is_empty(),
        "fields this test does not know: {unknown:?}"
    );

    // The engine: which, how, on what, the graph's hash, and why `auto` passed over the others.
    let engine = r["engine"].as_str().unwrap();
    assert!(["cpu", "cuda"].contains(&engine), "{r}");
    assert_eq!(r["precision"], "fp32", "{r}");
    assert!(r["device"].as_str().unwrap().starts_with(engine), "{r}");
    let hash = r["graph_hash"].as_str().unwrap();
    assert!(
        hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()),
        "{r}"
    );
    assert_eq!(r["engine_requested"], "auto", "{r}");
    assert!(r["degraded"].is_null(), "no GPU fault, no fallback: {r}");
    // Frames are preprocessed where the engine runs.
    let on_gpu = if engine == "cuda" { "gpu" } else { "cpu" };
    assert_eq!(r["preprocess_device"], on_gpu, "{r}");
    assert!(r["preprocess_moved_to_cpu"].is_null(), "{r}");
    let passed_over: Vec<&str> = r["engines_not_taken"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            assert!(!n["reason"].as_str().unwrap().is_empty(), "{r}");
            n["engine"].as_str().unwrap()
        })
        .collect();
    assert_eq!(passed_over.first(), Some(&"tensorrt"), "{r}");
    assert_eq!(passed_over.contains(&"cuda"), engine == "cpu", "{r}");

    let u = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k}: {r}"));
    let f = |k: &str| r[k].as_f64().unwrap_or_else(|| panic!("{k}: {r}"));
    let counts = |k: &str| -> BTreeMap<String, u64> {
        r[k].as_object()
            .unwrap_or_else(|| panic!("{k}: {r}"))
            .iter()
            .map(|(reason, n)| (reason.clone(), n.as_u64().unwrap()))
            .collect()
    };

    // What it ran.
    let arch = r["arch"].as_str().unwrap();
    let size = r["size"].as_str().unwrap();
    assert!(!arch.is_empty());
    let (h, w) = size.split_once('x').unwrap();
    assert!(
        h.parse::<u32>().unwrap() > 0 && w.parse::<u32>().unwrap() > 0,
        "{size}"
    );
    let description = r["description"].as_str().unwrap();
    assert!(
        description.contains(arch) && description.contains(size),
        "{description}"
    );
    assert!(r["random_weights"].is_boolean());
    assert_eq!(
        description.contains("random weights"),
        r["random_weights"] == true,
        "{description}"
    );
    assert!(["live", "offline"].contains(&r["policy"].as_str().unwrap()));
    assert!(u("workers") >= 1 && u("threads") >= 1, "{r}");
    assert!(r["heads"].as_array().unwrap().iter().all(Value::is_string));

    // Frames: every frame received is processed or dropped with a reason.
    let received = u("frames_received");
    let processed = u("frames_processed");
    let dropped = counts("dropped");
    let lost = counts("lost");
    for (reason, n) in &dropped {
        assert!(*n > 0, "{reason}");
        assert!(
            reason == "superseded"
                || reason == "stopped"
                || reason.starts_with("bad_input: ")
                || reason.starts_with("head_failed: "),
            "unknown drop reason {reason:?}"
        );
    }
    assert!(lost.values().all(|n| *n > 0), "{lost:?}");
    assert_eq!(processed + dropped.values().sum::<u64>(), received, "{r}");
    let _ = u("dropped_at_edge");
    assert!(
        r["recording_damage"]
            .as_array()
            .unwrap()
            .iter()
            .all(Value::is_string)
    );

    // Results: every frame that came out of the stages (processed, or answered as bad input)
    // has a result that was sent, found its session ended, or found no room.
    let answered = processed
        + dropped
            .iter()
            .filter(|(k, _)| k.starts_with("bad_input: "))
            .map(|(_, n)| n)
            .sum::<u64>();
    let link = &r["link"];
    let lu = |k: &str| link[k].as_u64().unwrap_or_else(|| panic!("link.{k}: {r}"));
    assert_eq!(
        link.as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([
            "frames_received",
            "results_sent",
            "results_stale",
            "resyncs",
            "sessions"
        ])
    );
    assert_eq!(lu("frames_received"), received, "{r}");
    assert_eq!(lu("results_sent"), u("results_sent"), "{r}");
    assert_eq!(
        lu("results_sent") + lu("results_stale") + u("results_not_queued"),
        answered,
        "{r}"
    );
    assert!(lu("sessions") >= 1, "{r}");
    let _ = lu("resyncs");

    // Time and throughput.
    let elapsed = f("elapsed_s");
    assert!(elapsed > 0.0, "{r}");
    let fps = f("fps");
    assert!(fps > 0.0, "{r}");
    let expected = processed as f64 / elapsed;
    assert!(
        (fps - expected).abs() <= 1e-9 * expected,
        "fps {fps} vs {expected}"
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let busy = f("cpu_cores_busy");
    assert!(
        busy > 0.0 && busy <= cores * 1.1 + 0.2,
        "{busy} of {cores} cores"
    );

    // Latency and stages: ordered percentiles, one value per processed frame, and the stages
    // add up to the latency (within the histograms' 3 significant digits).
    check_percentiles("latency", &r["latency"], processed);
    let from_capture = r["latency_from_capture"].as_bool().unwrap();
    let stages = r["stages"].as_object().unwrap();
    let mut expected_stages =
        BTreeSet::from(["wait", "preprocess", "queue", "backbone", "heads", "send"]);
    if from_capture {
        expected_stages.insert("transfer");
    }
    assert_eq!(
        stages.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        expected_stages
    );
    for (name, p) in stages {
        check_percentiles(name, p, processed);
    }
    let stage_sum: f64 = stages
        .values()
        .map(|p| p["mean_ms"].as_f64().unwrap())
        .sum();
    let mean = r["latency"]["mean_ms"].as_f64().unwrap();
    assert!(
        (stage_sum - mean).abs() <= 0.005 * mean + 0.01,
        "stages add up to {stage_sum} ms, latency is {mean} ms"
    );
    let max = r["latency"]["max_ms"].as_f64().unwrap();
    let timeline = r["latency_timeline"].as_array().unwrap();
    assert_eq!(timeline.len() as u64, processed);
    let mut last_t = 0.0;
    for point in timeline {
        let (t, ms) = (point[0].as_f64().unwrap(), point[1].as_f64().unwrap());
        assert!(t >= last_t, "the timeline goes forward: {t} after {last_t}");
        assert!(
            ms >= 0.0 && ms <= max * 1.001 + 0.001,
            "{ms} ms above max {max}"
        );
        last_t = t;
    }

    // Memory.
    let peak = f("peak_rss_mib");
    assert!(peak > 0.0, "{r}");
    let rss = r["rss_timeline"].as_array().unwrap();
    assert!(!rss.is_empty(), "sampled at the start at least");
    let mut last_t = -1.0;
    for point in rss {
        let (t, mib) = (point[0].as_f64().unwrap(), point[1].as_f64().unwrap());
        assert!(
            t > last_t,
            "one sample a second, in order: {t} after {last_t}"
        );
        assert!(
            mib > 0.0 && mib <= peak * 1.01,
            "{mib} MiB above the peak {peak}"
        );
        last_t = t;
    }

    // Scores, when labels were given.
    if let Some(a) = r.get("accuracy") {
        let a = a.as_f64().unwrap();
        assert!((0.0..=1.0).contains(&a), "{a}");
        assert!(u("labelled_frames") <= processed);
    }
    if let Some(d) = r.get("dice") {
        for (class, v) in d.as_object().unwrap() {
            assert!(
                (0.0..=1.0).contains(&v.as_f64().unwrap()),
                "Dice {class}: {v}"
            );
        }
    }
}

/// Whether the pixel centred at (`x` + 0.5, `y` + 0.5) lies clearly inside (`Some(true)`) or
/// clearly outside (`Some(false)`) a circle or sector given as the command line writes it, or
/// within a pixel of its edge (`None`). Written here from the README's definition, not taken
/// from the library.
fn side(roi: &str, x: u32, y: u32) -> Option<bool> {
    let (kind, args) = roi.split_once(':').unwrap();
    let v: Vec<f32> = args.split(',').map(|t| t.parse().unwrap()).collect();
    let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
    let (inside, outside) = match kind {
        "circle" => {
            let d = (px - v[0]).hypot(py - v[1]);
            (d < v[2] - 1.0, d > v[2] + 1.0)
        }
        "sector" => {
            let (dx, dy) = (px - v[0], py - v[1]);
            let r = dx.hypot(dy);
            // Degrees from straight down, positive towards the right.
            let angle = dx.atan2(dy).to_degrees();
            let margin = (1.0 / r.max(1.0)).to_degrees();
            (
                r > v[2] + 1.0 && r < v[3] - 1.0 && angle > v[4] + margin && angle < v[5] - margin,
                r < v[2] - 1.0 || r > v[3] + 1.0 || angle < v[4] - margin || angle > v[5] + margin,
            )
        }
        _ => panic!("{roi}"),
    };
    match (inside, outside) {
        (true, false) => Some(true),
        (false, true) => Some(false),
        _ => None,
    }
}

const ROIS: [&str; 2] = ["circle:48,40,30", "sector:48,-20,30,95,-35,35"];

#[test]
fn preprocess_roi_blacks_out_what_lies_outside_a_circle_or_sector() {
    let tmp = tempfile::tempdir().unwrap();
    let colour = [200u8, 150, 100];
    let image = tmp.path().join("flat.png");
    image::RgbImage::from_pixel(96, 80, image::Rgb(colour))
        .save(&image)
        .unwrap();
    for roi in ROIS {
        // The model size is the crop's, so that the resize keeps every pixel where it was.
        let crop = roi.parse::<Roi>().unwrap().bounds(96, 80).unwrap();
        let out = tmp.path().join("x.npy");
        let (code, stdout, err) = dinoedge(&[
            "preprocess",
            "--input",
            &s(&image),
            "--size",
            &format!("{}x{}", crop.height, crop.width),
            "--roi",
            roi,
            "-o",
            &s(&out),
        ]);
        assert_eq!(code, 0, "{roi}: {stdout}\n{err}");
        let x: ndarray::Array4<f32> = ndarray_npy::read_npy(&out).unwrap();
        assert_eq!(
            x.shape(),
            &[1, 3, crop.height as usize, crop.width as usize]
        );
        let (mut inside, mut outside) = (0, 0);
        for y in 0..crop.height {
            for x_ in 0..crop.width {
                let Some(is_inside) = side(roi, crop.x + x_, crop.y + y) else {
                    continue;
                };
                let level = |c: usize| {
                    if is_inside {
                        f32::from(colour[c]) / 255.0
                    } else {
                        0.0
                    }
                };
                for c in 0..3 {
                    let want = (level(c) - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
                    let got = x[[0, c, y as usize, x_ as usize]];
                    assert!(
                        (got - want).abs() < 1e-4,
                        "{roi}: pixel ({}, {}) channel {c} is {got}, want {want} ({})",
                        crop.x + x_,
                        crop.y + y,
                        if is_inside {
                            "inside"
                        } else {
                            "outside: black"
                        }
                    );
                }
                if is_inside {
                    inside += 1;
                } else {
                    outside += 1;
                }
            }
        }
        // The crop is the shape's bounding box: its corners lie outside the shape.
        assert!(
            inside > 100 && outside > 100,
            "{roi}: {inside} in, {outside} out"
        );
    }
}

/// Four 96x80 frames, alike wherever `roi` may keep a pixel and different, frame by frame,
/// clearly outside it.
fn frames_differing_outside(roi: &str) -> Vec<SourceFrame> {
    (0..4u32)
        .map(|i| {
            let mut data = Vec::with_capacity(96 * 80);
            for y in 0..80u32 {
                for x in 0..96u32 {
                    data.push(if side(roi, x, y) == Some(false) {
                        ((x * 31 + y * 17 + i * 97) % 251) as u8
                    } else {
                        (60 + (x * 3 + y * 5) % 120) as u8
                    });
                }
            }
            SourceFrame {
                width: 96,
                height: 80,
                format: PixelFormat::Gray8,
                data,
                label: None,
            }
        })
        .collect()
}

/// The classification head's classes and probabilities and the segmentation head's mask size,
/// per results line.
fn outputs(results: &Path) -> Vec<(String, Value)> {
    std::fs::read_to_string(results)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            assert!(v["error"].is_null(), "{v}");
            // Every result names the engine, precision and graph that produced it.
            assert!(
                ["cpu", "cuda"].contains(&v["engine"].as_str().unwrap()),
                "{v}"
            );
            assert_eq!(v["precision"], "fp32", "{v}");
            assert_eq!(v["graph_hash"].as_str().unwrap().len(), 16, "{v}");
            (
                v["heads"]["cls"]["top"].to_string(),
                v["heads"]["seg"]["mask_size"].clone(),
            )
        })
        .collect()
}

#[test]
fn roi_on_run_replay_and_bench_hides_what_lies_outside_from_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, _) = tiny();
    let size = InputSize::new(32, 32);
    let (cls, seg) = (tmp.path().join("cls"), tmp.path().join("seg"));
    HeadFiles::random(&model, Task::Classify, class_names(4), size, 3)
        .save(&cls)
        .unwrap();
    HeadFiles::random(&model, Task::Segment, class_names(2), size, 4)
        .save(&seg)
        .unwrap();
    let model = fixture_model("tiny_mlp");
    for (n, roi) in ROIS.iter().enumerate() {
        let rec = write_recording(
            &tmp.path().join(format!("roi{n}.rec")),
            frames_differing_outside(roi),
        );
        let crop = roi.parse::<Roi>().unwrap().bounds(96, 80).unwrap();
        let crop_size = serde_json::json!([crop.width, crop.height]);
        let run = |command: &[&str], roi: &str, tag: &str| {
            let results = tmp.path().join(format!("{tag}-{n}.jsonl"));
            let mut args: Vec<String> = command.iter().map(|a| (*a).to_owned()).collect();
            args.extend(
                [
                    "--model",
                    &model,
                    "--head",
                    &s(&cls),
                    &s(&seg),
                    "--roi",
                    roi,
                    "--workers",
                    "1",
                    "--threads",
                    "1",
                    "--results",
                    &s(&results),
                ]
                .map(str::to_owned),
            );
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (code, out, err) = dinoedge(&args);
            assert_eq!(code, 0, "{args:?}: {out}\n{err}");
            let outputs = outputs(&results);
            assert_eq!(outputs.len(), 4, "{args:?}");
            // The masks cover the part the model saw: the shape's bounding box.
            for (_, mask_size) in &outputs {
                assert_eq!(mask_size, &crop_size, "{args:?}");
            }
            outputs
                .into_iter()
                .map(|(top, _)| top)
                .collect::<BTreeSet<_>>()
        };
        let rec = s(&rec);
        let bench_out = s(&tmp.path().join(format!("bench-{n}")));
        for (tag, command) in [
            ("replay", vec!["replay", rec.as_str()]),
            (
                "bench",
                vec!["bench", rec.as_str(), "--out", bench_out.as_str()],
            ),
            (
                "run",
                vec!["run", "--replay", rec.as_str(), "--policy", "offline"],
            ),
        ] {
            let distinct = run(&command, roi, tag);
            assert_eq!(
                distinct.len(),
                1,
                "{tag} --roi {roi}: the frames differ only outside the region, so the model \
                 must see the same input: {distinct:?}"
            );
        }
        // The same crop as a rectangle, which blacks out nothing: the differences reach the
        // model (so the check above can fail).
        let rect = format!("rect:{},{},{},{}", crop.x, crop.y, crop.width, crop.height);
        let distinct = run(&["replay", rec.as_str()], &rect, "rect");
        assert!(distinct.len() > 1, "--roi {rect}: {distinct:?}");
    }
}
