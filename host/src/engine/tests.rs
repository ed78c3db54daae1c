#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;
use crate::backbone::graph::{GraphOptions, build_graph};
use crate::backbone::{Arch, Backbone, Dinov3Config, InputSize, ModelDir, RuntimeOptions};

/// A two-block ViT small enough to prepare in a test.
fn tiny(seed: u64) -> ModelDir {
    let mut config: Dinov3Config = Arch::Vits16.config();
    config.hidden_size = 32;
    config.intermediate_size = 64;
    config.num_attention_heads = 2;
    config.num_hidden_layers = 2;
    let weights = crate::backbone::Weights::random(&config, seed);
    ModelDir {
        path: Default::default(),
        config,
        weights,
        random_weights: true,
    }
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
    let auto = prepare(EngineRequest::Auto, Graph::Built(&proto), [1, 3, 32, 32], 1).unwrap();
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
    let cpu = prepare(EngineRequest::Cpu, Graph::Built(&proto), [1, 3, 32, 32], 1).unwrap();
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
