//! The host's side of TensorRT, against the fake shim (`host/tensorrt/shim/fake.c`, built by
//! the tests with the system C compiler): loading and versions, building with the timing cache, the cache and
//! its refusals, the gate, run-time faults.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

use dinoedge_tensorrt::{Code, Shim, ShimError};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::runtime::Runnable;

use super::*;
use crate::backbone::numerics::GraphPrecision;
use crate::backbone::{Backbone, InputSize, ModelDir, RuntimeOptions};
use crate::engine::EngineRequest;

const SIZE: usize = 32;

/// Builds the fake shim with `defines` into `dir`.
fn fake_shim(dir: &Path, defines: &[&str]) -> PathBuf {
    dinoedge_tensorrt::build_fake_shim(dir, defines).unwrap()
}

fn tiny() -> ModelDir {
    ModelDir::tiny_random(32, 2, 7)
}

/// Frames of normalised pixels, `[3, SIZE, SIZE]` each.
fn frames(n: usize) -> Vec<Vec<f32>> {
    (0..n)
        .map(|f| {
            (0..3 * SIZE * SIZE)
                .map(|i| ((i * 31 + f * 17) % 97) as f32 / 40.0 - 1.2)
                .collect()
        })
        .collect()
}

/// A graph file for `model` with its fake's control file: the outputs the CPU computes for
/// `frames` (batch 1), plus `extra` control lines.
fn graph_with_control(dir: &Path, model: &ModelDir, frames: &[Vec<f32>], extra: &str) -> PathBuf {
    fake::write_graph_for_fake(dir, model, InputSize::new(SIZE, SIZE), frames, extra).unwrap()
}

/// What most tests start from: the fake shim, the tiny model, `n` frames, a graph whose
/// control file holds the CPU's outputs for them plus `control`, and an empty cache, all in
/// the test's own folder.
struct Fixture {
    dir: tempfile::TempDir,
    shim: Shim,
    model: ModelDir,
    frames: Vec<Vec<f32>>,
    graph: PathBuf,
    cache: EngineCache,
}

fn fixture(n: usize, control: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let shim = Shim::open(&fake_shim(dir.path(), &[])).unwrap();
    let model = tiny();
    let frames = frames(n);
    let graph = graph_with_control(dir.path(), &model, &frames, control);
    let cache = EngineCache::new(dir.path().join("cache"));
    Fixture {
        dir,
        shim,
        model,
        frames,
        graph,
        cache,
    }
}

fn request<'a>(model: &'a ModelDir, graph: &'a Path, frames: &'a [Vec<f32>]) -> BuildRequest<'a> {
    BuildRequest {
        model,
        size: InputSize::new(SIZE, SIZE),
        batch: 1,
        precision: GraphPrecision::Fp32,
        graph: Some(graph),
        trtexec: None,
        opt_level: None,
        workspace_mib: None,
        frames,
        frames_from: vec!["test".into()],
        threshold: gate::FLOAT_THRESHOLD,
        threads: 1,
        force: false,
    }
}

fn go_on(_: &dinoedge_tensorrt::Progress<'_>) -> bool {
    true
}

fn wanted(model: &ModelDir) -> Wanted {
    Wanted {
        model_fingerprint: Some(model.weights.fingerprint().to_owned()),
        graph_hash: None,
        size: [SIZE, SIZE],
        batch: 1,
        precision: "fp32".into(),
        outputs: vec!["last_hidden_state".into()],
    }
}

#[test]
fn the_shim_loads_and_says_which_tensorrt_cuda_and_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let shim = Shim::open(&fake_shim(dir.path(), &[])).unwrap();
    let v = shim.versions().unwrap();
    assert_eq!(
        v.summary(),
        "TensorRT 10.3.0 (headers 10.3.0), CUDA 12.6 (driver 12.6)"
    );
    let env = Environment::current(&shim).unwrap();
    assert_eq!(env.tensorrt, "10.3.0");
    assert_eq!(env.compute_capability, "8.7");
    assert_eq!(env.gpu, "Fake Orin");
}

#[test]
fn a_shim_of_another_abi_or_tensorrt_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let abi = Shim::open(&fake_shim(dir.path(), &["FAKE_ABI=2"])).unwrap_err();
    assert!(matches!(abi, ShimError::Abi { found: 2, .. }), "{abi}");
    let major = Shim::open(&fake_shim(
        dir.path(),
        &["FAKE_ABI=1", "FAKE_LIBRARY=110400"],
    ))
    .unwrap_err()
    .to_string();
    assert!(
        major.contains("compiled against TensorRT 10.3.0 but libnvinfer is 11.4.0"),
        "{major}"
    );
    let old = Shim::open(&fake_shim(
        dir.path(),
        &["FAKE_ABI=1", "FAKE_LIBRARY=100200", "FAKE_HEADERS=100200"],
    ))
    .unwrap_err()
    .to_string();
    assert!(old.contains("older than 10.3.0"), "{old}");
    let missing = Shim::open(&dir.path().join("nope.so")).unwrap_err();
    assert!(matches!(missing, ShimError::Load { .. }), "{missing}");
    assert!(missing.to_string().starts_with("TensorRT is not available"));
}

#[test]
fn a_good_engine_passes_its_gate_is_cached_and_found_and_runs_like_the_cpu() {
    let Fixture {
        dir: _dir,
        shim,
        model,
        frames,
        graph,
        cache,
    } = fixture(3, "");
    let mut phases = Vec::new();
    let outcome = build(&shim, &cache, &request(&model, &graph, &frames), &mut |p| {
        phases.push((p.phase.to_owned(), p.depth, p.step));
        true
    })
    .unwrap();
    assert!(!outcome.reused);
    let meta = &outcome.meta;
    assert!(meta.verdict.passed, "{}", meta.verdict.summary);
    assert_eq!(meta.verdict.frames, 3);
    assert!(
        meta.verdict.cosines.iter().all(|c| c.min > 0.999999),
        "{:?}",
        meta.verdict
    );
    assert_eq!(meta.outputs, vec!["last_hidden_state".to_owned()]);
    assert!(
        phases
            .iter()
            .any(|(p, d, _)| p == "Fake tactics" && *d == 1),
        "{phases:?}"
    );
    // The timing cache was kept for the next build.
    let env = Environment::current(&shim).unwrap();
    assert_eq!(cache.timing_cache(&env), b"FAKECACHE");

    // The seam finds it, and it runs as the CPU does.
    let found = find(&cache, &env, &wanted(&model)).unwrap();
    assert_eq!(found.key, meta.key);
    let (plan, device) = load(&shim, &cache, &env, &found).unwrap();
    assert!(device.starts_with("tensorrt: Fake Orin (sm_87"), "{device}");
    let runnable = runnable::TrtRunnable(plan.clone());
    let mut state = runnable.spawn().unwrap();
    let input = Tensor::from_shape(&[1, 3, SIZE, SIZE], &frames[1]).unwrap();
    let out = state.run(tvec![input.into_tvalue()]).unwrap();
    let cpu = Backbone::load(
        &model,
        InputSize::new(SIZE, SIZE),
        &RuntimeOptions {
            engine: EngineRequest::Cpu,
            ..RuntimeOptions::default()
        },
    )
    .unwrap();
    let pixels = ndarray::Array4::from_shape_vec((1, 3, SIZE, SIZE), frames[1].clone()).unwrap();
    let expected = cpu.run(pixels.view()).unwrap();
    let got = out[0].to_plain_array_view::<f32>().unwrap();
    assert_eq!(got.shape(), expected.last_hidden_state.shape());
    assert!(
        got.iter()
            .zip(expected.last_hidden_state.iter())
            .all(|(a, b)| a == b)
    );
    assert_eq!(plan.mean_gpu_ms(), Some(0.25));

    // Asking again reuses it; forcing builds again, seeded with the kept timing cache.
    let again = build(&shim, &cache, &request(&model, &graph, &frames), &mut go_on).unwrap();
    assert!(again.reused);
    let forced = BuildRequest {
        force: true,
        ..request(&model, &graph, &frames)
    };
    assert!(!build(&shim, &cache, &forced, &mut go_on).unwrap().reused);
    assert_eq!(cache.timing_cache(&env), b"FAKECACHE+");

    // The same graph file handed in with other weights is another engine, not this one reused.
    let other = ModelDir::tiny_random(32, 2, 8);
    let for_other = build(&shim, &cache, &request(&other, &graph, &frames), &mut go_on).unwrap();
    assert!(!for_other.reused);
    assert_ne!(for_other.meta.key, meta.key);
    // A stricter gate than the cached engine passed builds and gates again.
    let stricter = BuildRequest {
        threshold: 0.9999999,
        ..request(&model, &graph, &frames)
    };
    assert!(!build(&shim, &cache, &stricter, &mut go_on).unwrap().reused);

    // Another size, precision, batch or weights is not this engine.
    for other in [
        Wanted {
            size: [SIZE, 2 * SIZE],
            ..wanted(&model)
        },
        Wanted {
            precision: "fp16".into(),
            ..wanted(&model)
        },
        Wanted {
            batch: 2,
            ..wanted(&model)
        },
        Wanted {
            outputs: vec!["last_hidden_state".into(), "block_0".into()],
            ..wanted(&model)
        },
        wanted(&ModelDir::tiny_random(32, 2, 9)),
    ] {
        let e = find(&cache, &env, &other).unwrap_err();
        assert!(e.to_string().contains("none built"), "{e}");
    }
}

#[test]
fn a_wrong_engine_is_refused_by_its_gate_kept_with_the_verdict_and_never_found() {
    let Fixture {
        dir: _dir,
        shim,
        model,
        frames,
        graph,
        cache,
    } = fixture(2, "noise=0.5\n");
    let outcome = build(&shim, &cache, &request(&model, &graph, &frames), &mut go_on).unwrap();
    let v = &outcome.meta.verdict;
    assert!(!v.passed);
    assert!(
        v.summary.starts_with("refused: last_hidden_state"),
        "{}",
        v.summary
    );
    // On disk with its verdict, so `engine list` and `doctor` can say why.
    let listed = cache.list().unwrap();
    assert!(matches!(&listed[..], [Listed::Entry(m)] if !m.verdict.passed));
    let env = Environment::current(&shim).unwrap();
    let e = find(&cache, &env, &wanted(&model)).unwrap_err().to_string();
    assert!(
        e.contains("the gate refused") && e.contains("cosine"),
        "{e}"
    );
    // A refused engine is built again on the next request, not reused.
    assert!(
        !build(&shim, &cache, &request(&model, &graph, &frames), &mut go_on)
            .unwrap()
            .reused
    );
}

#[test]
fn truncated_corrupt_and_foreign_engines_are_refused_with_the_reason() {
    let Fixture {
        dir: _dir,
        shim,
        model,
        frames,
        graph,
        cache,
    } = fixture(1, "");
    let outcome = build(&shim, &cache, &request(&model, &graph, &frames), &mut go_on).unwrap();
    let env = Environment::current(&shim).unwrap();
    let bytes = std::fs::read(&outcome.path).unwrap();

    std::fs::write(&outcome.path, &bytes[..bytes.len() / 2]).unwrap();
    let e = cache
        .engine_bytes(&outcome.meta, &env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("truncated"), "{e}");
    let e = find(&cache, &env, &wanted(&model))
        .and_then(|m| load(&shim, &cache, &env, &m).map(|_| ()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("truncated"), "{e}");

    let mut flipped = bytes.clone();
    flipped[10] ^= 0x40;
    std::fs::write(&outcome.path, &flipped).unwrap();
    let e = cache
        .engine_bytes(&outcome.meta, &env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("corrupt"), "{e}");
    // Even past the cache's own check, TensorRT (here the fake) refuses bad bytes by code.
    let e = shim.load_engine(&flipped).unwrap_err();
    assert_eq!(e.code(), Some(Code::Deserialize), "{e}");

    std::fs::write(&outcome.path, &bytes).unwrap();
    let thor = Environment {
        gpu: "Thor".into(),
        compute_capability: "11.0".into(),
        ..env.clone()
    };
    let e = cache
        .engine_bytes(&outcome.meta, &thor)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("built for TensorRT 10.3.0, CUDA 12.6, Fake Orin (sm_87, 16 SMs)"),
        "{e}"
    );
    let e = find(&cache, &thor, &wanted(&model))
        .unwrap_err()
        .to_string();
    assert!(e.contains("foreign"), "{e}");

    // A file in the cache that is not an entry is listed as unreadable, not trusted.
    let junk = "0123456789abcdef0123";
    std::fs::write(cache.dir().join(format!("{junk}.json")), b"{").unwrap();
    // Files that are not named as entries are not the cache's: never listed, never removed.
    std::fs::write(cache.dir().join("config.json"), b"{}").unwrap();
    assert!(cache.list().unwrap().iter().any(
        |l| matches!(l, Listed::Unreadable { reason, .. } if reason.contains("not an engine entry"))
    ));
    // An entry whose JSON names another key than its file is not trusted either.
    let mut renamed = outcome.meta.clone();
    renamed.key = "ffffffffffffffffffff".into();
    std::fs::write(
        cache.dir().join(format!("{}.json", outcome.meta.key)),
        serde_json::to_vec(&renamed).unwrap(),
    )
    .unwrap();
    assert!(cache.meta(&outcome.meta.key).is_err());
    let mut removed = cache
        .remove_where(|l| matches!(l, Listed::Unreadable { .. }))
        .unwrap();
    removed.sort();
    let mut expected = vec![junk.to_owned(), outcome.meta.key.clone()];
    expected.sort();
    assert_eq!(removed, expected);
    assert!(cache.dir().join("config.json").exists());
    assert!(!outcome.path.exists());
}

#[test]
fn parser_refusals_out_of_memory_and_cancelled_builds_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let shim = Shim::open(&fake_shim(dir.path(), &[])).unwrap();
    let model = tiny();
    let frames = frames(1);
    let cache = EngineCache::new(dir.path().join("cache"));
    for (control, code, text) in [
        ("build=parse_error\n", Code::Parse, "UNSUPPORTED_NODE"),
        (
            "build=out_of_memory\n",
            Code::OutOfMemory,
            "out of GPU memory",
        ),
    ] {
        let graph = graph_with_control(dir.path(), &model, &frames, control);
        let e = build(&shim, &cache, &request(&model, &graph, &frames), &mut go_on).unwrap_err();
        let TensorrtError::Shim(ShimError::Call {
            code: c, message, ..
        }) = &e
        else {
            panic!("{e:?}")
        };
        assert_eq!(*c, code);
        assert!(message.contains(text), "{message}");
    }
    let graph = graph_with_control(dir.path(), &model, &frames, "");
    let e = build(
        &shim,
        &cache,
        &request(&model, &graph, &frames),
        &mut |_| false,
    )
    .unwrap_err();
    assert!(
        matches!(&e, TensorrtError::Shim(s) if s.code() == Some(Code::Cancelled)),
        "{e:?}"
    );
    assert!(
        cache.list().unwrap().is_empty(),
        "nothing stored from failed builds"
    );

    // A graph of another precision than asked, and an INT8 engine without its graph.
    let fp16 = BuildRequest {
        precision: GraphPrecision::Fp16,
        ..request(&model, &graph, &frames)
    };
    let e = build(&shim, &cache, &fp16, &mut go_on)
        .unwrap_err()
        .to_string();
    assert!(e.contains("is a fp32 graph"), "{e}");
    let int8 = BuildRequest {
        precision: GraphPrecision::Int8,
        graph: None,
        ..request(&model, &graph, &frames)
    };
    let e = build(&shim, &cache, &int8, &mut go_on)
        .unwrap_err()
        .to_string();
    assert!(e.contains("model quantize"), "{e}");
    let none = BuildRequest {
        frames: &[],
        ..request(&model, &graph, &frames)
    };
    assert!(matches!(
        build(&shim, &cache, &none, &mut go_on),
        Err(TensorrtError::Gate(_))
    ));
}

#[test]
fn a_cache_folder_that_cannot_be_written_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let shim = Shim::open(&fake_shim(dir.path(), &[])).unwrap();
    let model = tiny();
    let frames = frames(1);
    let graph = graph_with_control(dir.path(), &model, &frames, "");
    // A file where the cache folder should be: no permission bits needed (tests may run as root).
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, b"").unwrap();
    let cache = EngineCache::new(blocker.join("cache"));
    let e = build(&shim, &cache, &request(&model, &graph, &frames), &mut go_on).unwrap_err();
    assert!(
        matches!(&e, TensorrtError::Cache { path, .. } if path.starts_with(&blocker)),
        "{e:?}"
    );
}

#[test]
fn an_imported_engine_for_another_input_is_refused_and_a_gpu_fault_names_its_cuda_error() {
    let Fixture {
        dir: _dir,
        shim,
        model,
        frames,
        graph,
        cache,
    } = fixture(2, "run=fail_after:1\n");
    let outcome = build(&shim, &cache, &request(&model, &graph, &frames), &mut go_on).unwrap();
    // The gate's second frame hit the fault: refused, with the CUDA error in the reason.
    let v = &outcome.meta.verdict;
    assert!(!v.passed, "{v:?}");
    let engine_file = outcome.path.clone();

    // The same engine imported as trtexec's, for a model at another size: its input does not fit.
    let other = ModelDir::tiny_random(32, 2, 7);
    let imported = BuildRequest {
        size: InputSize::new(SIZE, 2 * SIZE),
        trtexec: Some(&engine_file),
        frames: &[],
        ..request(&other, &graph, &frames)
    };
    assert!(matches!(
        build(&shim, &cache, &imported, &mut go_on),
        Err(TensorrtError::Gate(_))
    ));
    let wide_frames: Vec<Vec<f32>> = vec![vec![0.0; 3 * SIZE * 2 * SIZE]];
    let imported = BuildRequest {
        frames: &wide_frames,
        ..imported
    };
    let e = build(&shim, &cache, &imported, &mut go_on)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[1, 3, 32, 64]"), "{e}");

    // Run directly: the first run works, the second fails with the poisoning error's name.
    let engine = shim
        .load_engine(&std::fs::read(&engine_file).unwrap())
        .unwrap();
    let (plan, _) = TrtPlan::new(engine, &["last_hidden_state".to_owned()]).unwrap();
    let runnable = runnable::TrtRunnable(std::sync::Arc::new(plan));
    let mut state = runnable.spawn().unwrap();
    let input = || {
        Tensor::from_shape(&[1, 3, SIZE, SIZE], &frames[0])
            .unwrap()
            .into_tvalue()
    };
    state.run(tvec![input()]).unwrap();
    let e = format!("{:#}", state.run(tvec![input()]).unwrap_err());
    assert!(crate::engine::fault::is_poisoning(&e), "{e}");
    // A wrong input is refused before anything runs.
    let wrong = Tensor::from_shape(&[1, 3, SIZE, SIZE + 16], &wide_frames[0][..3 * SIZE * 48])
        .unwrap()
        .into_tvalue();
    let e = format!("{:#}", state.run(tvec![wrong]).unwrap_err());
    assert!(e.contains("the engine takes"), "{e}");
}

#[test]
fn the_runtime_takes_the_newest_engine_that_loads_and_says_when_none_does() {
    let Fixture {
        dir: _dir,
        shim,
        model,
        frames,
        graph,
        cache,
    } = fixture(1, "");
    let older = build(&shim, &cache, &request(&model, &graph, &frames), &mut go_on).unwrap();
    let newer_request = BuildRequest {
        opt_level: Some(1),
        ..request(&model, &graph, &frames)
    };
    let newer = build(&shim, &cache, &newer_request, &mut go_on).unwrap();
    assert_ne!(older.meta.key, newer.meta.key);
    let mut meta = newer.meta.clone();
    meta.created_unix = older.meta.created_unix + 10;
    cache.store_meta(&meta).unwrap();

    let (_, _, built_from) = prepare_from(&shim, &cache, &wanted(&model)).unwrap();
    assert_eq!(built_from, meta.graph_hash);
    // The newest damaged: the older one runs instead.
    std::fs::write(&newer.path, b"damaged").unwrap();
    let (_, device, _) = prepare_from(&shim, &cache, &wanted(&model)).unwrap();
    assert!(device.ends_with(&older.meta.key), "{device}");
    // Both damaged: an error naming both failures.
    std::fs::write(&older.path, b"damaged").unwrap();
    let e = prepare_from(&shim, &cache, &wanted(&model))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("failed to load") && e.matches("truncated").count() == 2,
        "{e}"
    );
}
