//! The tract backbone against transformers' DINOv3ViTModel: fixtures from
//! `models/make_fixtures.py` (tiny GELU-MLP and SwiGLU models, square and non-square inputs).

use std::path::{Path, PathBuf};

use dinoedge::backbone::{
    AttentionOp, Backbone, GraphOptions, InputSize, ModelDir, RuntimeOptions, npy,
};
use dinoedge::engine::{EngineRequest, Precision};
use ndarray::{Array3, ArrayD, Axis, concatenate};
use ndarray_npy::read_npy;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures")
}

/// (max |a - b|, |a - b|₂ / |b|₂)
fn compare(a: &ArrayD<f32>, b: &ArrayD<f32>) -> (f32, f32) {
    assert_eq!(a.shape(), b.shape());
    let mut max = 0.0f32;
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b.iter()) {
        max = max.max((x - y).abs());
        num += f64::from(x - y).powi(2);
        den += f64::from(*y).powi(2);
    }
    (max, (num.sqrt() / den.sqrt()) as f32)
}

fn assert_parity(got: &ArrayD<f32>, expected: &ArrayD<f32>, what: &str) {
    let (max, rel) = compare(got, expected);
    assert!(
        max <= 1e-4 && rel <= 1e-5,
        "{what}: max |diff| {max:e}, relative L2 {rel:e}"
    );
}

fn run(
    variant: &str,
    size: &str,
    options: GraphOptions,
) -> (Backbone, dinoedge::backbone::Features) {
    let model = ModelDir::load(&fixtures().join(variant)).unwrap();
    assert!(!model.random_weights);
    let size: InputSize = size.parse().unwrap();
    let pixels = npy::read_pixels(&fixtures().join(format!("input_{size}.npy"))).unwrap();
    let backbone = Backbone::load(
        &model,
        size,
        &RuntimeOptions {
            batch: 1,
            threads: 1,
            engine: EngineRequest::Cpu,
            precision: Precision::Fp32,
            graph: options,
        },
    )
    .unwrap();
    let features = backbone.run(pixels.view()).unwrap();
    (backbone, features)
}

#[test]
fn matches_transformers_for_every_fixture_and_op_form() {
    let forms = [
        GraphOptions::default(),
        GraphOptions {
            fused_qkv: false,
            attention: AttentionOp::Einsum,
            ..Default::default()
        },
        // Keys padded and masked, as tract runs by default, in both product forms.
        GraphOptions {
            key_multiple: 64,
            ..Default::default()
        },
        GraphOptions {
            key_multiple: 16,
            attention: AttentionOp::Einsum,
            ..Default::default()
        },
        GraphOptions {
            attention: AttentionOp::Sdpa,
            ..Default::default()
        },
    ];
    for variant in ["tiny_mlp", "tiny_swiglu"] {
        for size in ["224x224", "160x240"] {
            let expected: ArrayD<f32> = read_npy(
                fixtures()
                    .join(variant)
                    .join(format!("expected_{size}.npy")),
            )
            .unwrap();
            for form in &forms {
                let (_, f) = run(variant, size, form.clone());
                assert_parity(
                    &f.last_hidden_state.into_dyn(),
                    &expected,
                    &format!("{variant} {size} {form:?}"),
                );
            }
        }
    }
}

#[test]
fn intermediate_blocks_are_normed_like_get_intermediate_layers() {
    for variant in ["tiny_mlp", "tiny_swiglu"] {
        let options = GraphOptions {
            intermediate_blocks: vec![0, 1],
            ..Default::default()
        };
        let (_, f) = run(variant, "224x224", options);
        let block0: ArrayD<f32> =
            read_npy(fixtures().join(variant).join("expected_block0_224x224.npy")).unwrap();
        assert_eq!(f.intermediates.len(), 2);
        assert_eq!(f.intermediates[0].0, 0);
        assert_parity(&f.intermediates[0].1.clone().into_dyn(), &block0, variant);
        // The last block normed is the last hidden state itself.
        assert_eq!(f.intermediates[1].1, f.last_hidden_state);
        assert_eq!(f.intermediate_grid(0, 0).unwrap().shape(), &[14, 14, 64]);
    }
}

#[test]
fn token_views_split_the_last_hidden_state() {
    let (_, f) = run("tiny_mlp", "160x240", GraphOptions::default());
    assert_eq!(f.grid(), (10, 15));
    assert_eq!(f.cls().shape(), &[1, 64]);
    assert_eq!(f.registers().shape(), &[1, 4, 64]);
    let grid = f.patch_grid(0).unwrap();
    assert_eq!(grid.shape(), &[10, 15, 64]);
    // Patch (r, c) is token 5 + r*Wp + c.
    assert_eq!(grid[[3, 7, 9]], f.last_hidden_state[[0, 5 + 3 * 15 + 7, 9]]);
    assert!(f.patch_grid(1).is_none());
}

#[test]
fn a_batch_gives_what_each_frame_gives_alone() {
    let model = ModelDir::load(&fixtures().join("tiny_swiglu")).unwrap();
    let size: InputSize = "160x240".parse().unwrap();
    let a = npy::read_pixels(&fixtures().join("input_160x240.npy")).unwrap();
    let b = a.mapv(|v| -0.5 * v + 0.1);
    let both = concatenate(Axis(0), &[a.view(), b.view()]).unwrap();
    let single = Backbone::load(&model, size, &RuntimeOptions::default()).unwrap();
    let pair = Backbone::load(
        &model,
        size,
        &RuntimeOptions {
            batch: 2,
            threads: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let fa = single.run(a.view()).unwrap().last_hidden_state;
    let fb = single.run(b.view()).unwrap().last_hidden_state;
    let fab = pair.run(both.view()).unwrap().last_hidden_state;
    let alone: Array3<f32> = concatenate(Axis(0), &[fa.view(), fb.view()]).unwrap();
    let (max, _) = compare(&fab.into_dyn(), &alone.into_dyn());
    assert!(max <= 1e-5, "batch vs single: {max:e}");
}
