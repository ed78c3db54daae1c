#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;
use crate::backbone::graph::{GraphOptions, build_graph};
use crate::backbone::{Backbone, InputSize, ModelDir, RuntimeOptions};

/// A two-block ViT small enough to prepare in a test.
fn tiny(seed: u64) -> ModelDir {
    ModelDir::tiny_random(32, 2, seed)
}

fn graph(model: &ModelDir, size: InputSize, batch: usize) -> ModelProto {
    build_graph(
        &model.config,
        &model.weights,
        size,
        &GraphOptions {
            batch: Some(batch),
            ..GraphOptions::default()
        },
    )
    .unwrap()
}

#[test]
fn the_hash_names_the_graph_weights_size_and_batch() {
    let size = InputSize::new(32, 32);
    let a = graph_hash(&graph(&tiny(1), size, 1));
    assert_eq!(a.len(), 16);
    assert!(a.chars().all(|c| c.is_ascii_hexdigit()), "{a}");
    assert_eq!(a, graph_hash(&graph(&tiny(1), size, 1)), "deterministic");
    assert_ne!(a, graph_hash(&graph(&tiny(2), size, 1)), "other weights");
    assert_ne!(
        a,
        graph_hash(&graph(&tiny(1), InputSize::new(32, 48), 1)),
        "other size"
    );
    assert_ne!(a, graph_hash(&graph(&tiny(1), size, 2)), "other batch");
}

#[test]
fn auto_says_why_it_passed_over_each_engine_before_the_one_it_took() {
    let model = tiny(1);
    let size = InputSize::new(32, 32);
    let proto = graph(&model, size, 1);
    let auto = prepare(
        EngineRequest::Auto,
        Graph::Built(&proto),
        &Identity::default(),
        [1, 3, 32, 32],
        1,
        Precision::Fp32,
    )
    .unwrap();
    let info = &auto.info;
    assert_eq!(info.requested, EngineRequest::Auto);
    assert_eq!(info.precision, Precision::Fp32);
    assert_eq!(info.graph_hash, graph_hash(&proto));
    assert_eq!(info.not_taken[0].engine, "tensorrt");
    assert!(!info.not_taken[0].reason.is_empty());
    // The engine `doctor` predicts is the one taken, unless preparing on it failed, which
    // then says so.
    let (predicted, _) = auto_choice();
    if info.engine != predicted {
        assert!(
            info.not_taken
                .iter()
                .any(|n| n.engine == predicted.name() && n.reason.contains("prepare")),
            "{info:?}"
        );
    }
    if info.engine == EngineKind::Cpu {
        let cuda = info.not_taken.iter().find(|n| n.engine == "cuda").unwrap();
        assert!(!cuda.reason.is_empty());
    }
    assert!(
        info.device.starts_with(info.engine.name()),
        "{}",
        info.device
    );
    let lines = info.not_taken_lines();
    assert!(lines[0].starts_with("tensorrt not taken: "), "{lines:?}");

    // An explicit request passes nothing over.
    let cpu = prepare(
        EngineRequest::Cpu,
        Graph::Built(&proto),
        &Identity::default(),
        [1, 3, 32, 32],
        1,
        Precision::Fp32,
    )
    .unwrap();
    assert_eq!(cpu.info.engine, EngineKind::Cpu);
    assert!(cpu.info.not_taken.is_empty());
    assert!(cpu.info.summary().starts_with("cpu fp32 on cpu: "));
}

#[cfg(not(feature = "cuda"))]
#[test]
fn asking_for_cuda_in_a_build_without_it_is_an_error_saying_how_to_get_it() {
    let model = tiny(1);
    let err = Backbone::load(
        &model,
        InputSize::new(32, 32),
        &RuntimeOptions {
            engine: EngineRequest::Cuda,
            ..RuntimeOptions::default()
        },
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            crate::backbone::BackboneError::Engine(EngineError::Unavailable {
                engine: EngineKind::Cuda,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(
        text.contains("cuda-12060") && text.contains("cuda-13000"),
        "{text}"
    );
}

#[test]
fn the_engine_taken_runs_the_same_features_as_the_cpu_and_warms_up() {
    let model = tiny(3);
    let size = InputSize::new(32, 48);
    let load = |engine| {
        Backbone::load(
            &model,
            size,
            &RuntimeOptions {
                engine,
                ..RuntimeOptions::default()
            },
        )
        .unwrap()
    };
    let (auto, cpu) = (load(EngineRequest::Auto), load(EngineRequest::Cpu));
    auto.warm_up().unwrap();
    assert_eq!(auto.engine().graph_hash, cpu.engine().graph_hash);
    let pixels = ndarray::Array4::from_shape_fn((1, 3, 32, 48), |(_, c, y, x)| {
        ((c * 7 + y * 3 + x) as f32 * 0.1).sin()
    });
    let (a, b) = (
        auto.run(pixels.view()).unwrap(),
        cpu.run(pixels.view()).unwrap(),
    );
    let worst = a
        .last_hidden_state
        .iter()
        .zip(b.last_hidden_state.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    // The same engine on this machine gives the same numbers; a GPU within float rounding.
    assert!(worst < 1e-3, "max abs diff {worst}");
}

#[test]
fn fp16_keeps_the_normalisations_in_fp32_and_stays_close_to_fp32() {
    let model = tiny(4);
    let size = InputSize::new(32, 48);
    let load = |precision| {
        Backbone::load(
            &model,
            size,
            &RuntimeOptions {
                engine: EngineRequest::Cpu,
                precision,
                ..RuntimeOptions::default()
            },
        )
        .unwrap()
    };
    let (full, half) = (load(Precision::Fp32), load(Precision::Fp16));
    assert_eq!(half.engine().precision, Precision::Fp16);
    assert!(half.engine().summary().starts_with("cpu fp16 on "));
    // The same graph, in another precision: the hash names the graph, not its typing.
    assert_eq!(half.engine().graph_hash, full.engine().graph_hash);
    // What engines are handed: halves, with the normalisations and softmax still in fp32.
    let proto = graph(&model, size, 1);
    let typed = Graph::Built(&proto)
        .typed_model([1, 3, 32, 48], Precision::Fp16)
        .unwrap();
    let mut halves = 0;
    for node in &typed.nodes {
        let dt = typed
            .outlet_fact(OutletId::new(node.id, 0))
            .unwrap()
            .datum_type;
        if stays_fp32(&node.op.name()) {
            assert_eq!(dt, DatumType::F32, "{} {}", node.name, node.op.name());
        }
        halves += usize::from(dt == DatumType::F16 && node.op.name() == "EinSum");
    }
    assert!(halves >= 4, "{halves} matmuls in fp16");
    let pixels = ndarray::Array4::from_shape_fn((1, 3, 32, 48), |(_, c, y, x)| {
        ((c * 5 + y * 3 + x) as f32 * 0.07).cos() * 1.5
    });
    let (a, b) = (
        full.run(pixels.view()).unwrap(),
        half.run(pixels.view()).unwrap(),
    );
    assert_eq!(a.last_hidden_state.shape(), b.last_hidden_state.shape());
    let cosine = |x: ndarray::ArrayView1<f32>, y: ndarray::ArrayView1<f32>| {
        x.dot(&y) / (x.dot(&x).sqrt() * y.dot(&y).sqrt())
    };
    for t in 0..a.last_hidden_state.shape()[1] {
        let c = cosine(
            a.last_hidden_state.slice(ndarray::s![0, t, ..]),
            b.last_hidden_state.slice(ndarray::s![0, t, ..]),
        );
        assert!(c > 0.999, "token {t}: cosine {c}");
    }
}

#[test]
fn only_normalisations_and_softmax_stay_in_fp32() {
    for op in [
        "Softmax",
        "RmsNorm",
        "LayerNorm",
        "Reduce<Sum>",
        "Reduce<MeanOfSquares>",
    ] {
        assert!(stays_fp32(op), "{op}");
    }
    for op in ["EinSum", "Add", "Mul", "GeluExact", "Conv", "Gather"] {
        assert!(!stays_fp32(op), "{op}");
    }
}

#[test]
fn a_graph_file_hash_covers_its_external_weights() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    let size = InputSize::new(32, 32);
    tiny(1)
        .write_onnx(size, &GraphOptions::default(), &path, true)
        .unwrap();
    let first = hash::file_hash(&path).unwrap();
    assert_eq!(first, hash::file_hash(&path).unwrap());
    tiny(2)
        .write_onnx(size, &GraphOptions::default(), &path, true)
        .unwrap();
    assert_ne!(
        first,
        hash::file_hash(&path).unwrap(),
        "other weights in the .data file beside an identical graph"
    );
}
