//! `dinoedge engine` and `--engine tensorrt` end to end, with the fake TensorRT shim standing in
//! for TensorRT (built by the test with the system C compiler): build and gate, list, the
//! runtime taking the engine (`auto` and explicit), falling back with the reason when the gate
//! refused it, and what a machine without TensorRT is told.

use std::path::Path;
use std::process::Command;

use crate::common::{fixture_model, grey, s};
use dinoedge::backbone::{InputSize, ModelDir, npy};
use dinoedge::preprocess::PreprocessConfig;

const SIZE: usize = 32;

/// Runs `dinoedge ARGS` with the fake shim and the cache of `dir`.
fn dinoedge(shim: &Path, cache: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dinoedge"))
        .args(args)
        .env("DINOEDGE_TENSORRT_SHIM", shim)
        .env("DINOEDGE_ENGINE_CACHE", cache)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes the graph and the fake's control file, whose table holds the CPU's outputs for the
/// frames `engine build` will gate with (the images, preprocessed as it does). Returns the
/// first frame's pixels.
fn prepare(dir: &Path, model: &ModelDir, images: &Path, extra: &str) -> Vec<f32> {
    let size = InputSize::new(SIZE, SIZE);
    let frames: Vec<Vec<f32>> = dinoedge::quantize::frames::gather(
        &[images.to_path_buf()],
        &PreprocessConfig::new(size),
        16,
    )
    .unwrap()
    .frames
    .into_iter()
    .map(|f| f.pixels)
    .collect();
    dinoedge::engine::tensorrt::fake::write_graph_for_fake(dir, model, size, &frames, extra)
        .unwrap();
    frames[0].clone()
}

/// `dinoedge features --model MODEL --input INPUT --output OUTPUT EXTRA...`.
fn features(
    shim: &Path,
    cache: &Path,
    model: &str,
    input: &Path,
    output: &str,
    extra: &[&str],
) -> (i32, String, String) {
    let mut args = vec!["features", "--model", model, "--output", output];
    let input = s(input);
    args.extend(["--input", &input]);
    args.extend(extra);
    dinoedge(shim, cache, &args)
}

#[test]
fn a_gated_engine_is_built_listed_and_taken_by_auto_and_a_refused_one_is_passed_over() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let shim = dinoedge_tensorrt::build_fake_shim(d, &[]).unwrap();
    let cache = d.join("cache");
    let images = d.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for i in 0..3 {
        grey(&images.join(format!("{i}.png")), 40 + 60 * i as u8, i);
    }
    let model_dir = fixture_model("tiny_mlp");
    let model = ModelDir::load(Path::new(&model_dir)).unwrap();
    let first = prepare(d, &model, &images, "");
    let graph = s(&d.join("graph.onnx"));
    let build = [
        "engine",
        "build",
        "--model",
        &model_dir,
        "--size",
        "32x32",
        "--graph",
        &graph,
        "--frames",
        &s(&images),
        "--threads",
        "1",
    ];
    let (code, out, err) = dinoedge(&shim, &cache, &build);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("TensorRT 10.3.0") && out.contains("Fake Orin"),
        "{out}"
    );
    assert!(
        out.contains("gate: passed") && out.contains("over 3 frames"),
        "{out}"
    );
    assert!(
        out.contains("random weights") || out.contains("weights "),
        "{out}"
    );

    let (code, out, _) = dinoedge(&shim, &cache, &["engine", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("PASSED | for this machine"), "{out}");
    let (_, json, _) = dinoedge(&shim, &cache, &["engine", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(listed[0]["usable_here"], true, "{json}");
    assert_eq!(listed[0]["entry"]["verdict"]["passed"], true);

    // `features` on auto takes the engine, and its output is the CPU's.
    let input = d.join("x.npy");
    npy::write(
        &input,
        &ndarray::Array4::from_shape_vec((1, 3, SIZE, SIZE), first.clone()).unwrap(),
    )
    .unwrap();
    let (code, _, err) = features(
        &shim,
        &cache,
        &model_dir,
        &input,
        &s(&d.join("y_cpu.npy")),
        &["--engine", "cpu"],
    );
    assert_eq!(code, 0, "{err}");
    for engine in ["auto", "tensorrt"] {
        let output = d.join(format!("y_{engine}.npy"));
        let (code, out, err) = features(
            &shim,
            &cache,
            &model_dir,
            &input,
            &s(&output),
            &["--engine", engine],
        );
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(out.contains("on tensorrt fp32"), "{engine}: {out}");
        assert_eq!(
            std::fs::read(&output).unwrap(),
            std::fs::read(d.join("y_cpu.npy")).unwrap(),
            "the engine's features are the CPU's"
        );
    }

    // The pipeline on the engine: bench reports the backbone's GPU time from the engine's own
    // CUDA events (the fake reports 0.25 ms a run) beside the wall-clock stages.
    let bench_out = d.join("bench");
    let (code, out, err) = dinoedge(
        &shim,
        &cache,
        &[
            "bench",
            "--model",
            &model_dir,
            "--size",
            "32x32",
            "--engine",
            "tensorrt",
            "--max-speed",
            "--out",
            &s(&bench_out),
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("of which GPU"), "{out}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bench_out.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["engine"], "tensorrt", "{report}");
    let gpu = &report["backbone_gpu"];
    assert_eq!(gpu["p50_ms"].as_f64(), Some(0.25), "{report}");
    assert_eq!(gpu["count"], report["frames_processed"], "{report}");

    // A refused engine: `engine build` exits 1 with the figures, and `auto` falls back saying why.
    let (code, _, _) = dinoedge(&shim, &cache, &["engine", "clean", "--all"]);
    assert_eq!(code, 0);
    prepare(d, &model, &images, "noise=0.5\n");
    let (code, out, err) = dinoedge(&shim, &cache, &build);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("gate: refused") && out.contains("< threshold"),
        "{out}"
    );
    let (code, out, err) = features(&shim, &cache, &model_dir, &input, &s(&d.join("y.npy")), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("on cpu fp32"), "{out}");
    assert!(
        err.contains("tensorrt not taken") && err.contains("the gate refused"),
        "{err}"
    );
    let (code, _, err) = features(
        &shim,
        &cache,
        &model_dir,
        &input,
        &s(&d.join("y.npy")),
        &["--engine", "tensorrt"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("the gate refused"), "{err}");
    let (code, out, _) = dinoedge(&shim, &cache, &["engine", "clean"]);
    assert_eq!(code, 0);
    assert!(out.contains("removed 1 engine"), "{out}");
}

#[test]
fn without_tensorrt_every_command_says_so_and_auto_runs_on() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let missing = d.join("libdinoedge_trt.so");
    let cache = d.join("cache");
    let images = d.join("images");
    std::fs::create_dir_all(&images).unwrap();
    grey(&images.join("0.png"), 90, 1);
    let model_dir = fixture_model("tiny_mlp");
    let (code, _, err) = dinoedge(
        &missing,
        &cache,
        &[
            "engine",
            "build",
            "--model",
            &model_dir,
            "--size",
            "32x32",
            "--frames",
            &s(&images),
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("TensorRT is not available"), "{err}");
    let (code, out, _) = dinoedge(&missing, &cache, &["engine", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("0 entries"), "{out}");

    let input = d.join("x.npy");
    npy::write(&input, &ndarray::Array4::<f32>::zeros((1, 3, SIZE, SIZE))).unwrap();
    let (code, _, err) = features(
        &missing,
        &cache,
        &model_dir,
        &input,
        &s(&d.join("y.npy")),
        &["--engine", "tensorrt"],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("tensorrt engine is not available")
            && err.contains("TensorRT is not available"),
        "{err}"
    );
    let (code, out, err) = features(
        &missing,
        &cache,
        &model_dir,
        &input,
        &s(&d.join("y.npy")),
        &["--precision", "int8"],
    );
    assert_eq!(code, 2, "{out}");
    assert!(err.contains("int8 runs only on a TensorRT engine"), "{err}");
}
