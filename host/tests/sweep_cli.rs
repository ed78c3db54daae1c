//! `dinoedge sweep` end to end on a small synthetic dataset with the two tiny fixture backbones
//! at two sizes: the table, sweep.json (validation scores, latencies, the front, the choice, the
//! test split scored for the chosen and the best only), the plot, resuming, a sweep of other
//! data refused, and measuring latency again without the data.

use crate::common::{dinoedge, fixture_model, grey, read_json, s, square};

#[test]
fn a_sweep_chooses_on_validation_scores_the_test_once_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (class, level) in [("bright", 200u8), ("dark", 20)] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        for i in 0..12 {
            grey(
                &data.join(class).join(format!("p{i:02}_{class}.png")),
                level,
                i,
            );
        }
    }
    let out = dir.path().join("sweep");
    let cache = dir.path().join("cache");
    let models = format!(
        "{},{}",
        fixture_model("tiny_mlp"),
        fixture_model("tiny_swiglu")
    );
    let args_with_sizes = |sizes: &str, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "sweep",
            "--task",
            "classify",
            "--data",
            &s(&data),
            "--group-by",
            r"^(p\d+)_",
            "--test-fraction",
            "0.3",
            "--models",
            &models,
            "--sizes",
            sizes,
            "--engine",
            "cpu",
            "--runs",
            "3",
            "--bootstrap",
            "200",
            "--cache",
            &s(&cache),
            "--out",
            &s(&out),
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    let args = |extra: &[&str]| args_with_sizes("32,32x48", extra);
    let run = |a: &[String]| {
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        dinoedge(&refs)
    };
    let (code, stdout, stderr) = run(&args(&[]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("chosen: "), "{stdout}");
    assert!(stdout.contains("sweep --latency-only"), "{stdout}");
    assert!(stdout.contains("weights"), "{stdout}");

    let sweep = read_json(&out.join("sweep.json"));
    let results = sweep["results"].as_array().unwrap();
    assert_eq!(results.len(), 4, "two models at two sizes");
    for r in results {
        let v = r["val_score"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{r}");
        let (m, p) = (
            r["latency_median_ms"].as_f64().unwrap(),
            r["latency_p99_ms"].as_f64().unwrap(),
        );
        assert!(m > 0.0 && p >= m, "{r}");
        assert!(
            r["latency_device"].as_str().unwrap().starts_with("cpu"),
            "{r}"
        );
        assert!(
            out.join(r["head"].as_str().unwrap())
                .join("head.json")
                .exists()
        );
    }
    let choice = &sweep["choice"];
    let (chosen, best) = (
        choice["chosen"].as_u64().unwrap() as usize,
        choice["best"].as_u64().unwrap() as usize,
    );
    // The choice follows from the validation scores and latencies alone.
    let score = |i: usize| results[i]["val_score"].as_f64().unwrap();
    let latency = |i: usize| results[i]["latency_median_ms"].as_f64().unwrap();
    let top = (0..4).map(score).fold(f64::MIN, f64::max);
    assert_eq!(score(best), top);
    assert!(score(chosen) >= top - 0.01);
    for i in (0..4).filter(|&i| score(i) >= top - 0.01) {
        assert!(latency(chosen) <= latency(i));
    }
    // The test split is scored for the chosen and the best only, with an interval around it.
    for (i, r) in results.iter().enumerate() {
        let scored = !r["test"].is_null();
        assert_eq!(scored, i == chosen || i == best, "{r}");
        if scored {
            let t = &r["test"];
            let (v, lo, hi) = (
                t["score"].as_f64().unwrap(),
                t["ci_low"].as_f64().unwrap(),
                t["ci_high"].as_f64().unwrap(),
            );
            assert!(lo <= v + 1e-9 && v <= hi + 1e-9, "{t}");
            assert_eq!(t["resamples"], 200);
        }
    }
    let front = sweep["pareto"].as_array().unwrap();
    assert!(front[chosen].as_bool().unwrap() || score(chosen) < top);
    let png = std::fs::read(out.join("sweep.png")).unwrap();
    assert_eq!(&png[..4], b"\x89PNG");

    // Again: nothing measured twice, the same file.
    let before = std::fs::read_to_string(out.join("sweep.json")).unwrap();
    let (code, stdout, _) = run(&args(&[]));
    assert_eq!(code, 0);
    assert_eq!(stdout.matches("done before, kept").count(), 4, "{stdout}");
    assert_eq!(
        std::fs::read_to_string(out.join("sweep.json")).unwrap(),
        before
    );

    // A wider tolerance chooses again, on validation alone: the fastest configuration, whose
    // test score is then measured too.
    let (code, stdout, stderr) = run(&args(&["--tolerance", "0.99"]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let wide = read_json(&out.join("sweep.json"));
    let fastest = (0..4)
        .min_by(|&a, &b| latency(a).total_cmp(&latency(b)))
        .unwrap();
    assert_eq!(wide["choice"]["chosen"].as_u64().unwrap() as usize, fastest);
    assert!(!wide["results"][fastest]["test"].is_null());
    assert_eq!(wide["choice"]["best"].as_u64().unwrap() as usize, best);

    // Other options are another sweep: refused, not mixed in.
    let (code, _, stderr) = run(&args(&["--seed", "3"]));
    assert_eq!(code, 2);
    assert!(stderr.contains("holds a sweep of other data"), "{stderr}");

    // Sizes no longer asked for are left out of the choice and of the file.
    let (code, stdout, stderr) = run(&args_with_sizes("32", &[]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("2 configuration(s) of an earlier run"),
        "{stdout}"
    );
    let narrowed = read_json(&out.join("sweep.json"));
    assert_eq!(narrowed["results"].as_array().unwrap().len(), 2);

    // Latency again, without the data (as on the target device), choosing again.
    let (code, stdout, stderr) = dinoedge(&[
        "sweep",
        "--task",
        "classify",
        "--models",
        &models,
        "--latency-only",
        "--runs",
        "2",
        "--out",
        &s(&out),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let again = read_json(&out.join("sweep.json"));
    assert_eq!(again["results"].as_array().unwrap().len(), 2);
    assert!(!again["choice"].is_null());
}

#[test]
fn a_sweep_without_a_test_split_or_results_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("a")).unwrap();
    grey(&data.join("a").join("x.png"), 30, 1);
    let out = dir.path().join("sweep");
    let (code, _, err) = dinoedge(&[
        "sweep",
        "--task",
        "classify",
        "--data",
        &s(&data),
        "--models",
        &fixture_model("tiny_mlp"),
        "--out",
        &s(&out),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("--test-fraction"), "{err}");
    let (code, _, err) = dinoedge(&[
        "sweep",
        "--task",
        "classify",
        "--models",
        &fixture_model("tiny_mlp"),
        "--latency-only",
        "--out",
        &s(&out),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("no sweep to measure again"), "{err}");
}

#[test]
fn a_segmentation_sweep_scores_the_test_split_by_dice() {
    let dir = tempfile::tempdir().unwrap();
    let (images, masks) = (dir.path().join("images"), dir.path().join("masks"));
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&masks).unwrap();
    for i in 0..10 {
        square(&images, &masks, i);
    }
    let out = dir.path().join("sweep");
    let (code, stdout, stderr) = dinoedge(&[
        "sweep",
        "--task",
        "segment",
        "--data",
        &s(&images),
        "--masks",
        &s(&masks),
        "--classes",
        "background,square",
        "--test-fraction",
        "0.3",
        "--models",
        &fixture_model("tiny_mlp"),
        "--sizes",
        "64",
        "--engine",
        "cpu",
        "--runs",
        "2",
        "--bootstrap",
        "100",
        "--cache",
        &s(&dir.path().join("cache")),
        "--out",
        &s(&out),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let sweep = read_json(&out.join("sweep.json"));
    let r = &sweep["results"][0];
    assert_eq!(r["test"]["name"], "mean foreground Dice", "{r}");
    let dice = r["test"]["score"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&dice), "{r}");
    assert_eq!(sweep["choice"]["chosen"], 0);
}
