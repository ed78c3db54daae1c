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

#[test]
fn model_quantize_writes_a_whole_file_or_none() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |f: &str| tmp.path().join(f).to_str().unwrap().to_string();
    let model = fixtures().join("tiny_mlp");
    let model = model.to_str().unwrap();
    let frames = tmp.path().join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    for i in 0..6u32 {
        let img = image::RgbImage::from_fn(40 + i, 36, |x, y| {
            image::Rgb([(x * 6) as u8, (y * 7) as u8, ((x + y + 9 * i) * 3) as u8])
        });
        img.save(frames.join(format!("f{i}.png"))).unwrap();
    }

    let (code, out, err) = dinoedge(&[
        "model",
        "export",
        "--model",
        model,
        "--size",
        "32x32",
        "--precision",
        "fp16",
        "-o",
        &d("fp16.onnx"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("fp16"), "{out}");
    let (code, _, err) = dinoedge(&[
        "model",
        "export",
        "--model",
        model,
        "--precision",
        "int8",
        "-o",
        &d("x.onnx"),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("model quantize"), "{err}");

    // Too few frames: an error, and nothing written, not even a partial file.
    let few = tmp.path().join("few");
    std::fs::create_dir_all(&few).unwrap();
    std::fs::copy(frames.join("f0.png"), few.join("f0.png")).unwrap();
    let quantize = |calib: &std::path::Path, out: &str| {
        dinoedge(&[
            "model",
            "quantize",
            "--model",
            model,
            "--size",
            "32x32",
            "--precision",
            "int8",
            "--calib",
            calib.to_str().unwrap(),
            "--threads",
            "1",
            "--report",
            &d("report"),
            "-o",
            &d(out),
        ])
    };
    let (code, _, err) = quantize(&few, "few.onnx");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("1 usable calibration frame"), "{err}");
    assert!(!tmp.path().join("few.onnx").exists());
    assert!(!tmp.path().join("few.onnx.partial").exists());

    let (code, out, err) = quantize(&frames, "int8.onnx");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("cosine against fp32") && out.contains("int8: 100.0 %"),
        "{out}"
    );
    assert!(tmp.path().join("int8.onnx").exists());
    let report = std::fs::read_to_string(tmp.path().join("report/report.json")).unwrap();
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["precision"], "int8");
    assert_eq!(report["calibration_frames"], 5);
    assert_eq!(report["held_out_frames"], 1);
}
