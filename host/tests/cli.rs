//! The `dinoedge` binary as users run it.

use crate::common::dinoedge;

#[test]
fn synth_then_inspect() {
    let dir = crate::common::scratch("cli", "wire");
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
    let (code, _, err) = dinoedge(&[
        "link",
        "--serial",
        "/nonexistent/tty",
        "--link-cleartext",
        "--seconds",
        "0.5",
    ]);
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
    let dir = crate::common::scratch("cli", "model");
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

// ---- Patient data: nothing overwritten, owner-only files, encrypted recordings ----

fn file_mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// A small recording of 3 Gray8 frames, encrypted with `key` if given.
fn small_recording(path: &std::path::Path, key: Option<&dinoedge::recording::RecordingKey>) {
    let frames = (0..3).map(|i| Ok(crate::common::gray_frame(64, 48, i)));
    let config = dinoedge::import::ImportConfig {
        fps: 200.0,
        packet: 2048,
        ..dinoedge::import::ImportConfig::default()
    };
    let report = dinoedge::import::import_file(frames, "test", &config, path, key).unwrap();
    assert_eq!(report.frames, 3);
}

/// `replay FILE` on the tiny fixture model with `extra` arguments.
fn replay(file: &std::path::Path, extra: &[&str]) -> (i32, String, String) {
    let model = fixtures().join("tiny_mlp");
    let mut args = vec![
        "replay",
        file.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--size",
        "64x64",
    ];
    args.extend_from_slice(extra);
    dinoedge(&args)
}

#[test]
fn import_refuses_to_overwrite_and_writes_owner_only_recordings() {
    let tmp = tempfile::tempdir().unwrap();
    let dcm = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/echo_cine.dcm");
    let taken = tmp.path().join("taken.rec");
    std::fs::write(&taken, b"an earlier session").unwrap();
    let (code, _, err) = dinoedge(&["import", "--dicom", dcm, "-o", taken.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("{} exists", taken.display())),
        "{err}"
    );
    assert_eq!(std::fs::read(&taken).unwrap(), b"an earlier session");
    let fresh = tmp.path().join("fresh.rec");
    let (code, out, err) = dinoedge(&["import", "--dicom", dcm, "-o", fresh.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("30 frames"), "{out}");
    assert_eq!(file_mode(&fresh), 0o600);
    // Importing again to the same name is refused too, and the first import stays whole.
    let before = std::fs::read(&fresh).unwrap();
    let (code, _, err) = dinoedge(&["import", "--dicom", dcm, "-o", fresh.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(std::fs::read(&fresh).unwrap(), before);
}

#[test]
fn replay_refuses_to_overwrite_results_or_overlays() {
    let tmp = tempfile::tempdir().unwrap();
    let rec = tmp.path().join("session.rec");
    small_recording(&rec, None);
    let results = tmp.path().join("results.jsonl");
    std::fs::write(&results, b"{\"earlier\":true}\n").unwrap();
    let (code, _, err) = replay(&rec, &["--results", results.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("{} exists", results.display())),
        "{err}"
    );
    assert_eq!(std::fs::read(&results).unwrap(), b"{\"earlier\":true}\n");
    let overlays = tmp.path().join("overlays");
    std::fs::create_dir_all(&overlays).unwrap();
    let old = overlays.join("00000001-000000.png");
    std::fs::write(&old, b"an earlier overlay").unwrap();
    let fresh_results = tmp.path().join("fresh.jsonl");
    let (code, _, err) = replay(
        &rec,
        &[
            "--results",
            fresh_results.to_str().unwrap(),
            "--overlays",
            overlays.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("{} exists", old.display())), "{err}");
    assert_eq!(std::fs::read(&old).unwrap(), b"an earlier overlay");
    // Into new places: written, owner only.
    let new_overlays = tmp.path().join("new-overlays");
    let new_results = tmp.path().join("new.jsonl");
    let (code, _, err) = replay(
        &rec,
        &[
            "--results",
            new_results.to_str().unwrap(),
            "--overlays",
            new_overlays.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(&new_results)
            .unwrap()
            .lines()
            .count(),
        3
    );
    assert_eq!(file_mode(&new_results), 0o600);
    let pngs: Vec<_> = std::fs::read_dir(&new_overlays)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(pngs.len(), 3, "{pngs:?}");
    for png in &pngs {
        assert_eq!(file_mode(png), 0o600, "{}", png.display());
        image::open(png).unwrap();
    }
}

#[test]
fn encrypted_recordings_replay_and_bench_with_their_key_only() {
    let tmp = tempfile::tempdir().unwrap();
    let key_file = tmp.path().join("recording.key");
    let key = dinoedge::recording::create_key_file(&key_file).unwrap();
    let key_arg = key_file.to_str().unwrap();
    let rec = tmp.path().join("sealed.rec");
    small_recording(&rec, Some(&key));
    // Without the key: refused, naming the file, the key id and what to pass.
    let (code, _, err) = replay(&rec, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "{} is encrypted with key id {}",
            rec.display(),
            key.id()
        )),
        "{err}"
    );
    assert!(err.contains("--recording-key FILE"), "{err}");
    // With another key: refused too.
    let other = tmp.path().join("other.key");
    dinoedge::recording::create_key_file(&other).unwrap();
    let (code, _, err) = replay(&rec, &["--recording-key", other.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not with the given key"), "{err}");
    // With it: every frame, through replay, run --replay and bench.
    let results = tmp.path().join("replay.jsonl");
    let (code, _, err) = replay(
        &rec,
        &[
            "--recording-key",
            key_arg,
            "--results",
            results.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(&results).unwrap().lines().count(),
        3
    );
    let model = fixtures().join("tiny_mlp");
    let model = model.to_str().unwrap();
    let run_results = tmp.path().join("run.jsonl");
    let (code, _, err) = dinoedge(&[
        "run",
        "--replay",
        rec.to_str().unwrap(),
        "--recording-key",
        key_arg,
        "--policy",
        "offline",
        "--model",
        model,
        "--size",
        "64x64",
        "--results",
        run_results.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(&run_results)
            .unwrap()
            .lines()
            .count(),
        3
    );
    let bench_out = tmp.path().join("bench");
    let (code, out, err) = dinoedge(&[
        "bench",
        rec.to_str().unwrap(),
        "--recording-key",
        key_arg,
        "--model",
        model,
        "--size",
        "64x64",
        "--out",
        bench_out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        crate::common::read_json(&bench_out.join("report.json"))["frames_processed"],
        3
    );
    // A key file others can read is refused, with the fix.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = replay(&rec, &["--recording-key", key_arg]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("chmod 600 {key_arg}")), "{err}");
}
