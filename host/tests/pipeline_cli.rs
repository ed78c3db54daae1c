//! `dinoedge import` and `dinoedge bench` end to end with heads fitted by `probe fit` on the
//! tiny fixture backbone: labels written by the import are scored, masks give Dice, and the
//! report, plot and results lines are written.

use crate::common::{dinoedge, fixture_model, grey, read_json, s, square};

fn model() -> String {
    fixture_model("tiny_mlp")
}

fn scratch(tag: &str) -> crate::common::Scratch {
    crate::common::scratch("bench", tag)
}

/// Whether the tests run in CI (`CI=true`, as CI services set it and `.ci/run` exports it),
/// where every tool a test needs is installed and a missing one must fail the test.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

#[test]
fn bench_scores_imported_class_labels() {
    let dir = scratch("cls");
    let data = dir.join("data");
    for (class, level) in [("bright", 200u8), ("dark", 20)] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        for i in 0..8u32 {
            grey(&data.join(class).join(format!("p{i:02}.png")), level, i);
        }
    }
    let head = dir.join("head");
    let (code, _, err) = dinoedge(&[
        "probe",
        "fit",
        "--model",
        &model(),
        "--task",
        "classify",
        "--data",
        &s(&data),
        "--size",
        "32x32",
        "--cache",
        &s(&dir.join("cache")),
        "-o",
        &s(&head),
    ]);
    assert_eq!(code, 0, "{err}");
    let rec = dir.join("cls.rec");
    let (code, out, err) = dinoedge(&["import", "--images", &s(&data), "--gray", "-o", &s(&rec)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("16 frames (40x30 Gray8)"), "{out}");
    let labels = std::fs::read_to_string(dir.join("cls.rec.labels.csv")).unwrap();
    assert_eq!(labels.lines().count(), 17, "{labels}");
    let out_dir = dir.join("bench");
    let results = dir.join("results.jsonl");
    let (code, out, err) = dinoedge(&[
        "bench",
        &s(&rec),
        "--model",
        &model(),
        "--head",
        &s(&head),
        "--out",
        &s(&out_dir),
        "--results",
        &s(&results),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("accuracy"), "{out}");
    // The fixture's weights come from transformers, not `model init`: no figure may claim
    // random weights (the default model's do: promises.rs).
    assert!(!out.contains("random weights"), "{out}");
    let report = read_json(&out_dir.join("report.json"));
    assert_eq!(report["random_weights"], false, "{report}");
    // Real weights are named by their folder and fingerprint.
    let weights = report["weights"].as_str().unwrap_or_default();
    assert!(
        weights.starts_with("weights ") && weights.contains("crc32:"),
        "{report}"
    );
    assert_eq!(report["frames_processed"], 16, "{report}");
    assert_eq!(report["labelled_frames"], 16, "{report}");
    assert!(report["accuracy"].as_f64().unwrap() >= 0.9, "{report}");
    for key in ["p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"] {
        assert!(
            report["latency"][key].as_f64().unwrap() > 0.0,
            "{key}: {report}"
        );
    }
    assert!(report["stages"]["backbone"]["p50_ms"].as_f64().unwrap() > 0.0);
    assert!(report["peak_rss_mib"].as_f64().unwrap() > 0.0);
    let png = image::open(out_dir.join("latency.png")).unwrap();
    assert!(png.width() > 100 && png.height() > 100);
    let lines = std::fs::read_to_string(&results).unwrap();
    assert_eq!(lines.lines().count(), 16);
    let first: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert!(first["heads"]["head"]["top"].is_array(), "{first}");
}

#[test]
fn bench_gives_dice_against_masks() {
    let dir = scratch("seg");
    let (images, masks) = (dir.join("images"), dir.join("masks"));
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&masks).unwrap();
    for i in 0..8u32 {
        square(&images, &masks, i);
    }
    let head = dir.join("head");
    let (code, _, err) = dinoedge(&[
        "probe",
        "fit",
        "--model",
        &model(),
        "--task",
        "segment",
        "--data",
        &s(&images),
        "--masks",
        &s(&masks),
        "--classes",
        "background,square",
        "--size",
        "64x64",
        "--blocks",
        "0",
        "--cache",
        &s(&dir.join("cache")),
        "-o",
        &s(&head),
    ]);
    assert_eq!(code, 0, "{err}");
    let rec = dir.join("seg.rec");
    let (code, _, err) = dinoedge(&["import", "--images", &s(&images), "--gray", "-o", &s(&rec)]);
    assert_eq!(code, 0, "{err}");
    let out_dir = dir.join("bench");
    let overlays = dir.join("overlays");
    let (code, out, err) = dinoedge(&[
        "bench",
        &s(&rec),
        "--model",
        &model(),
        "--head",
        &s(&head),
        "--masks",
        &s(&masks),
        "--out",
        &s(&out_dir),
        "--overlays",
        &s(&overlays),
        "--policy",
        "live",
        "--max-speed",
        "--workers",
        "1",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Dice class 1"), "{out}");
    let report = read_json(&out_dir.join("report.json"));
    let processed = report["frames_processed"].as_u64().unwrap();
    let dropped: u64 = report["dropped"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(processed + dropped, 8, "{report}");
    assert!(report["dice"]["1"].as_f64().unwrap() > 0.5, "{report}");
    assert_eq!(
        std::fs::read_dir(&overlays).unwrap().count() as u64,
        processed
    );
}

#[test]
fn bench_refuses_what_it_cannot_use() {
    let dir = scratch("bad");
    let junk = dir.join("junk.rec");
    std::fs::write(&junk, b"this is not a recording").unwrap();
    let (code, _, err) = dinoedge(&["bench", &s(&junk), "--model", &model(), "--size", "32x32"]);
    assert_eq!(code, 2);
    assert!(err.contains("not a dinoedge recording"), "{err}");
    let (code, _, err) = dinoedge(&[
        "import",
        "--images",
        &s(&dir.join("missing")),
        "-o",
        &s(&dir.join("x.rec")),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("missing"), "{err}");
    assert!(
        !dir.join("x.rec").exists(),
        "no half-made recording is left"
    );
    let (code, _, err) = dinoedge(&[
        "import",
        "--video",
        &s(&dir.join("none.mp4")),
        "-o",
        &s(&dir.join("v.rec")),
    ]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn a_video_is_imported_through_ffmpeg_when_it_is_installed() {
    let dir = scratch("video");
    let video = dir.join("test.mp4");
    let made = std::process::Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=96x64:rate=10",
            "-t",
            "1",
        ])
        .args(["-pix_fmt", "yuv420p"])
        .arg(&video)
        .status();
    let missing = match made {
        Ok(status) if status.success() => None,
        Ok(status) => Some(format!("ffmpeg failed to make the test video ({status})")),
        Err(e) => Some(format!("ffmpeg could not be run ({e})")),
    };
    if let Some(why) = missing {
        // CI installs ffmpeg (.ci/run), so there a missing tool is a failure, not a skip.
        assert!(!in_ci(), "{why}; CI needs it (.ci/run installs ffmpeg)");
        eprintln!("skipped: {why}; the video import is not exercised here");
        return;
    }
    let rec = dir.join("video.rec");
    let (code, out, err) = dinoedge(&["import", "--video", &s(&video), "-o", &s(&rec)]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("10 frames (96x64 Rgb888) at 10.00 fps"),
        "{out}"
    );
    let (code, out, err) = dinoedge(&[
        "bench",
        &s(&rec),
        "--model",
        &model(),
        "--size",
        "32x32",
        "--out",
        &s(&dir.join("b")),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("10 frames received, 10 processed"), "{out}");
}
