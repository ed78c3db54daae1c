//! `dinoedge probe fit` and `probe eval` end to end on small synthetic datasets with the tiny
//! fixture backbone, and their bad-input paths.

use crate::common::{dinoedge, fixture_model, grey, read_json, s, square};

fn model(name: &str) -> String {
    fixture_model(name)
}

fn scratch(tag: &str) -> crate::common::Scratch {
    crate::common::scratch("probe", tag)
}

#[test]
fn classification_fit_then_eval_separates_bright_from_dark() {
    let dir = scratch("cls");
    let data = dir.join("data");
    for (class, level) in [("bright", 200u8), ("dark", 20)] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        for i in 0..10 {
            grey(
                &data.join(class).join(format!("p{i:02}_{class}.png")),
                level,
                i,
            );
        }
    }
    let head = dir.join("head");
    let cache = dir.join("cache");
    let (code, out, err) = dinoedge(&[
        "probe",
        "fit",
        "--model",
        &model("tiny_mlp"),
        "--task",
        "classify",
        "--data",
        &s(&data),
        "--size",
        "32x32",
        "--group-by",
        r"^(p\d+)_",
        "--cache",
        &s(&cache),
        "-o",
        &s(&head),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 classes, 20 images"), "{out}");
    assert!(head.join("head.json").exists() && head.join("head.safetensors").exists());
    let spec: serde_json::Value = read_json(&head.join("head.json"));
    assert_eq!(spec["classes"], serde_json::json!(["bright", "dark"]));
    assert_eq!(spec["size"], serde_json::json!([32, 32]));
    assert_eq!(spec["input"]["kind"], "cls_mean_patch");

    let report = dir.join("report");
    let (code, out, err) = dinoedge(&[
        "probe",
        "eval",
        "--model",
        &model("tiny_mlp"),
        "--head",
        &s(&head),
        "--data",
        &s(&data),
        "--cache",
        &s(&cache),
        "--report",
        &s(&report),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("accuracy"), "{out}");
    let r: serde_json::Value = read_json(&report.join("report.json"));
    assert!(r["accuracy"].as_f64().unwrap() >= 0.95, "{r}");
    assert_eq!(r["images"], 20);
    assert!(report.join("confusion.png").exists());

    // The head refuses another backbone, by name.
    let (code, _, err) = dinoedge(&[
        "probe",
        "eval",
        "--model",
        &model("tiny_swiglu"),
        "--head",
        &s(&head),
        "--data",
        &s(&data),
        "--cache",
        &s(&cache),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("does not fit"), "{err}");

    // An unreadable image stops the run, named; --skip-bad skips it, named.
    std::fs::write(data.join("dark").join("p99_broken.png"), b"not a png").unwrap();
    let (m, d, c, o) = (
        model("tiny_mlp"),
        s(&data),
        s(&cache),
        s(&dir.join("head2")),
    );
    let fit_args = |extra: &[&'static str]| {
        let mut a = vec![
            "probe", "fit", "--model", &m, "--task", "classify", "--data", &d,
        ];
        a.extend(["--size", "32x32", "--cache", &c, "-o", &o]);
        a.extend_from_slice(extra);
        a.into_iter().map(String::from).collect::<Vec<String>>()
    };
    let run = |v: Vec<String>| dinoedge(&v.iter().map(String::as_str).collect::<Vec<_>>());
    let (code, _, err) = run(fit_args(&[]));
    assert_eq!(code, 2);
    assert!(
        err.contains("p99_broken.png") && err.contains("--skip-bad"),
        "{err}"
    );
    let (code, out, err) = run(fit_args(&["--skip-bad"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("skipped 1 image") && err.contains("p99_broken.png"),
        "{err}"
    );
    assert!(out.contains("20 images"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn segmentation_fit_then_eval_reports_dice() {
    let dir = scratch("seg");
    let (images, masks) = (dir.join("images"), dir.join("masks"));
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&masks).unwrap();
    for i in 0..8u32 {
        square(&images, &masks, i);
    }
    let head = dir.join("head");
    let cache = dir.join("cache");
    let (code, out, err) = dinoedge(&[
        "probe",
        "fit",
        "--model",
        &model("tiny_mlp"),
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
        &s(&cache),
        "-o",
        &s(&head),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("8 images (128 samples)"), "{out}");
    let report = dir.join("report");
    let (code, out, err) = dinoedge(&[
        "probe",
        "eval",
        "--model",
        &model("tiny_mlp"),
        "--head",
        &s(&head),
        "--data",
        &s(&images),
        "--masks",
        &s(&masks),
        "--cache",
        &s(&cache),
        "--report",
        &s(&report),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Dice"), "{out}");
    let r: serde_json::Value = read_json(&report.join("report.json"));
    let dice = r["per_class"][1]["dice"].as_f64().unwrap();
    assert!(dice > 0.5 && dice <= 1.0, "{r}");
    assert!(report.join("overlays.png").exists());

    // A mask of the wrong size, and a mask with a value that is no class, are named.
    image::GrayImage::new(10, 10)
        .save(masks.join("3.png"))
        .unwrap();
    let (m, i, k, c, o) = (
        model("tiny_mlp"),
        s(&images),
        s(&masks),
        s(&cache),
        s(&dir.join("h2")),
    );
    let fit_again = || {
        dinoedge(&[
            "probe", "fit", "--model", &m, "--task", "segment", "--data", &i, "--masks", &k,
            "--size", "64x64", "--cache", &c, "-o", &o,
        ])
    };
    let (code, _, err) = fit_again();
    assert_eq!(code, 2);
    assert!(err.contains("3.png") && err.contains("10x10"), "{err}");
    image::GrayImage::from_pixel(64, 64, image::Luma([7]))
        .save(masks.join("3.png"))
        .unwrap();
    let (code, _, err) = fit_again();
    assert_eq!(code, 2);
    assert!(err.contains("3.png") && err.contains("value 7"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn empty_datasets_and_classes_are_errors() {
    let dir = scratch("empty");
    let (m, d, o) = (model("tiny_mlp"), s(&dir), s(&dir.join("h")));
    let fit = || {
        dinoedge(&[
            "probe", "fit", "--model", &m, "--task", "classify", "--data", &d, "-o", &o,
        ])
    };
    let (code, _, err) = fit();
    assert_eq!(code, 2);
    assert!(err.contains("holds no labelled images"), "{err}");
    std::fs::create_dir_all(dir.join("a")).unwrap();
    let (code, _, err) = fit();
    assert_eq!(code, 2);
    assert!(err.contains("class \"a\" has no images"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
