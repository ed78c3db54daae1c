//! The `dinoedge` binary as users run it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;
use common::dinoedge;

#[test]
fn synth_then_inspect() {
    let dir = std::env::temp_dir().join(format!("dinoedge-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let capture = dir.join("demo.wire");
    let capture = capture.to_str().unwrap();
    let (code, out, err) = dinoedge(&[
        "wire", "synth", "-o", capture, "--frames", "5", "--size", "128x96",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("5 frames"), "{out}");
    let (code, out, _) = dinoedge(&["wire", "inspect", capture]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("frames delivered 5 (61440 bytes), lost 0"),
        "{out}"
    );

    // Damage one byte in the middle: the frame it belongs to is lost, named, and the exit
    // code says trouble was found.
    let mut bytes = std::fs::read(capture).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(capture, &bytes).unwrap();
    let (code, out, _) = dinoedge(&["wire", "inspect", capture]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("lost 1"), "{out}");
    assert!(out.contains("frame 2 lost: MissingChunk"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_arguments_are_named() {
    let (code, _, err) = dinoedge(&["wire", "synth", "-o", "/dev/null", "--size", "640by480"]);
    assert_eq!(code, 2);
    assert!(err.contains("not WIDTHxHEIGHT"), "{err}");
    let (code, _, err) = dinoedge(&["wire", "synth", "-o", "/dev/null", "--packet", "100"]);
    assert_eq!(code, 2);
    assert!(err.contains("below the protocol minimum"), "{err}");
    let (code, _, err) = dinoedge(&["wire", "inspect", "/nonexistent/capture"]);
    assert_eq!(code, 2);
    assert!(err.contains("opening /nonexistent/capture"), "{err}");
}

#[test]
fn link_needs_to_know_where_the_edge_is() {
    let (code, _, err) = dinoedge(&["link"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--serial PATH, --tcp ADDR or --listen ADDR"),
        "{err}"
    );
    let (code, _, err) = dinoedge(&["link", "--serial", "/nonexistent/tty", "--seconds", "0.5"]);
    // A device that cannot be opened is named and retried (it may be plugged in later); the
    // run ends at its deadline with nothing received.
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("cannot open the link") && err.contains("/nonexistent/tty"),
        "{err}"
    );
}

fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures")
}

#[test]
fn model_init_export_features_and_bench_model() {
    let dir = std::env::temp_dir().join(format!("dinoedge-cli-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let d = |f: &str| dir.join(f).to_str().unwrap().to_string();

    let (code, out, err) = dinoedge(&[
        "model",
        "init",
        "--arch",
        "vits16",
        "--seed",
        "3",
        "-o",
        &d("vits16"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("random weights"), "{out}");
    assert!(
        dir.join("vits16/config.json").exists() && dir.join("vits16/model.safetensors").exists()
    );

    let (code, out, err) = dinoedge(&[
        "model",
        "export",
        "--model",
        &d("vits16"),
        "--size",
        "64x96",
        "-o",
        &d("s.onnx"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("29 tokens") && out.contains("random weights"),
        "{out}"
    );
    assert!(std::fs::metadata(d("s.onnx")).unwrap().len() > 80_000_000);

    let model = fixtures().join("tiny_mlp");
    let input = fixtures().join("input_160x240.npy");
    let (code, out, err) = dinoedge(&[
        "features",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        &d("y.npy"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("[1, 155, 64]") && !out.contains("random weights"),
        "{out}"
    );
    let y: ndarray::ArrayD<f32> = ndarray_npy::read_npy(d("y.npy")).unwrap();
    let expected: ndarray::ArrayD<f32> =
        ndarray_npy::read_npy(model.join("expected_160x240.npy")).unwrap();
    let max = y
        .iter()
        .zip(expected.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(max <= 1e-4, "{max}");

    let (code, out, err) = dinoedge(&[
        "bench-model",
        "--model",
        model.to_str().unwrap(),
        "--size",
        "32x48",
        "--threads",
        "2",
        "--runs",
        "3",
        "--warmup",
        "1",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for key in [
        "median_ms",
        "p90_ms",
        "p99_ms",
        "fps",
        "threads",
        "size",
        "arch",
    ] {
        assert!(v.get(key).is_some(), "{key} missing: {out}");
    }
    assert_eq!(v["threads"], 2);
    assert_eq!(v["size"], "32x48");
    // The engine, named as every report names it: `auto` on this build.
    assert_eq!(v["engine_requested"], "auto", "{out}");
    assert!(
        ["cpu", "cuda"].contains(&v["engine"].as_str().unwrap()),
        "{out}"
    );
    assert_eq!(v["precision"], "fp32", "{out}");
    assert!(v["device"].as_str().unwrap().contains(':'), "{out}");
    assert_eq!(v["graph_hash"].as_str().unwrap().len(), 16, "{out}");
    // The plan's ops, counted: the CPU plan has its matmuls and nothing of a GPU's.
    let ops = v["ops"].as_object().unwrap();
    assert!(
        ops.values().map(|n| n.as_u64().unwrap()).sum::<u64>() > 10,
        "{out}"
    );
    if v["engine"] == "cpu" {
        assert!(ops.keys().all(|k| !k.starts_with("Cuda")), "{out}");
    }
    assert!(v["median_ms"].as_f64().unwrap() > 0.0);
    assert!(v["fps"].as_f64().unwrap() > 0.0);

    // Bad input: a size off the patch grid, and a missing input file, each named.
    let (code, _, err) = dinoedge(&[
        "model",
        "export",
        "--model",
        &d("vits16"),
        "--size",
        "100x96",
        "-o",
        &d("x.onnx"),
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("100x96") && err.contains("multiples of the patch size 16"),
        "{err}"
    );
    let (code, _, err) = dinoedge(&[
        "features",
        "--model",
        model.to_str().unwrap(),
        "--input",
        "/nonexistent/x.npy",
        "--output",
        &d("z.npy"),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/x.npy"), "{err}");
    // An engine this build lacks is refused before anything runs, saying how to get it.
    if cfg!(not(feature = "cuda")) {
        let (code, _, err) = dinoedge(&[
            "features",
            "--model",
            model.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            &d("c.npy"),
            "--engine",
            "cuda",
        ]);
        assert_eq!(code, 2);
        assert!(
            err.contains("cuda engine is not available") && err.contains("cuda-12060"),
            "{err}"
        );
        assert!(!std::path::Path::new(&d("c.npy")).exists());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn doctor_reports_the_machine_and_the_engine_auto_picks() {
    let (code, out, err) = dinoedge(&["doctor", "--json"]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(report["cores"].as_u64().unwrap() >= 1);
    // Without CUDA in the build or on the machine, `auto` takes the CPU; the GPU engines are
    // named with why they were not taken.
    assert_eq!(report["engine_auto"]["engine"], "cpu");
    let not_taken: Vec<&str> = report["engine_auto"]["not_taken"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e[0].as_str().unwrap())
        .collect();
    assert_eq!(not_taken, vec!["tensorrt", "cuda"]);
    let (code, out, _) = dinoedge(&["doctor"]);
    assert_eq!(code, 0);
    assert!(out.contains("auto picks cpu"), "{out}");
    assert!(out.contains("The default pipeline runs here."), "{out}");
}
