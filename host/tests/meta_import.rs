//! `dinoedge model import --meta`: Meta's own checkpoint layout (fixtures written by
//! `models/make_meta_fixture.py` with the names and shapes of Meta's model code) imports to
//! exactly the weights transformers' DINOv3 converter makes from the same file, and every way a
//! checkpoint can fail to fit is a typed error naming the tensor.

use std::path::{Path, PathBuf};

use crate::common::{dinoedge, s};
use dinoedge::backbone::meta::{read_checkpoint, to_weights};
use dinoedge::backbone::{
    Backbone, BackboneError, Dinov3Config, InputSize, ModelDir, RuntimeOptions, npy,
};
use dinoedge::engine::EngineRequest;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/fixtures")
        .join(name)
}

#[test]
fn meta_checkpoints_import_to_exactly_the_converters_weights_and_outputs() {
    for name in ["meta_tiny_mlp", "meta_tiny_swiglu"] {
        let dir = tempfile::tempdir().unwrap();
        let fx = fixture(name);
        let out = dir.path().join("model");
        let (code, stdout, stderr) = dinoedge(&[
            "model",
            "import",
            "--meta",
            &s(&fx.join("checkpoint.pth")),
            "--config",
            &s(&fx.join("config.json")),
            "-o",
            &s(&out),
        ]);
        assert_eq!(code, 0, "{name}: {stdout}\n{stderr}");
        let imported = ModelDir::load(&out).unwrap();
        let expected = ModelDir::load(&fx.join("expected")).unwrap();
        assert!(!imported.random_weights);
        let names: Vec<String> = dinoedge::backbone::expected_tensors(&expected.config)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        for n in &names {
            let (a, b) = (
                imported.weights.get(n).unwrap(),
                expected.weights.get(n).unwrap(),
            );
            assert_eq!(a.shape, b.shape, "{name}: {n}");
            assert!(
                a.data
                    .iter()
                    .zip(&b.data)
                    .all(|(x, y)| x.to_bits() == y.to_bits()),
                "{name}: {n} differs from transformers' conversion"
            );
        }
        assert_eq!(
            imported.weights.fingerprint(),
            expected.weights.fingerprint(),
            "{name}"
        );
        // And the imported model computes what transformers computes with the converted weights.
        let pixels = npy::read_pixels(&fixture("input_224x224.npy")).unwrap();
        let backbone = Backbone::load(
            &imported,
            InputSize::new(224, 224),
            &RuntimeOptions {
                engine: EngineRequest::Cpu,
                ..RuntimeOptions::default()
            },
        )
        .unwrap();
        let got = backbone.run(pixels.view()).unwrap().last_hidden_state;
        let want: ndarray::Array3<f32> =
            ndarray_npy::read_npy(fx.join("expected/last_hidden_state_224x224.npy")).unwrap();
        assert_eq!(got.shape(), want.shape(), "{name}");
        let worst = got
            .iter()
            .zip(want.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst < 1e-4,
            "{name}: max |diff| {worst} against transformers"
        );
    }
}

fn config(name: &str) -> Dinov3Config {
    Dinov3Config::from_file(&fixture(name).join("config.json")).unwrap()
}

#[test]
fn missing_misshapen_unknown_and_unmaskable_tensors_are_named_errors() {
    let path = fixture("meta_tiny_mlp/checkpoint.pth");
    let cfg = config("meta_tiny_mlp");
    let base = read_checkpoint(&path).unwrap();
    assert!(to_weights(base.clone(), &cfg).is_ok());

    let mut missing = base.clone();
    missing.remove("blocks.1.ls2.gamma");
    match to_weights(missing, &cfg).unwrap_err() {
        BackboneError::MissingTensor { name, .. } => {
            assert!(name.starts_with("blocks.1.ls2.gamma"), "{name}")
        }
        e => panic!("{e}"),
    }
    let mut missing_qkv = base.clone();
    missing_qkv.remove("blocks.0.attn.qkv.weight");
    assert!(matches!(
        to_weights(missing_qkv, &cfg).unwrap_err(),
        BackboneError::MissingTensor { name, .. } if name == "blocks.0.attn.qkv.weight"
    ));

    let mut misshapen = base.clone();
    let norm = misshapen.get_mut("norm.weight").unwrap();
    norm.shape = vec![norm.shape[0] / 2, 2];
    match to_weights(misshapen, &cfg).unwrap_err() {
        BackboneError::TensorShape { name, found, .. } => {
            assert!(name.starts_with("norm.weight"), "{name}");
            assert_eq!(found.len(), 2);
        }
        e => panic!("{e}"),
    }

    let mut unknown = base.clone();
    let extra = unknown["norm.bias"].clone();
    unknown.insert("blocks.0.attn.extra_proj.weight".into(), extra.clone());
    unknown.insert("cls_norm.weight".into(), extra);
    match to_weights(unknown, &cfg).unwrap_err() {
        BackboneError::UnexpectedTensors { names } => assert_eq!(
            names,
            vec![
                "blocks.0.attn.extra_proj.weight".to_owned(),
                "cls_norm.weight".to_owned()
            ]
        ),
        e => panic!("{e}"),
    }

    // Without its mask the stored key bias (nonzero in the fixture) would count: refused.
    let mut unmasked = base.clone();
    unmasked.remove("blocks.0.attn.qkv.bias_mask");
    let e = to_weights(unmasked, &cfg).unwrap_err().to_string();
    assert!(
        e.contains("blocks.0.attn.qkv.bias") && e.contains("key"),
        "{e}"
    );

    // A configuration without a value bias cannot drop the checkpoint's (nonzero) one.
    let mut no_value_bias = cfg.clone();
    no_value_bias.value_bias = false;
    let e = to_weights(base.clone(), &no_value_bias)
        .unwrap_err()
        .to_string();
    assert!(e.contains("value third"), "{e}");

    // A configuration whose RoPE does not match the checkpoint's periods.
    let mut other_rope = cfg.clone();
    other_rope.rope_theta *= 2.0;
    let e = to_weights(base.clone(), &other_rope)
        .unwrap_err()
        .to_string();
    assert!(e.contains("rope_embed.periods"), "{e}");

    // The SwiGLU checkpoint is not an MLP model.
    let swiglu = read_checkpoint(&fixture("meta_tiny_swiglu/checkpoint.pth")).unwrap();
    assert!(to_weights(swiglu, &cfg).is_err());
}

#[test]
fn unreadable_checkpoints_and_wrong_architectures_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("meta_tiny_mlp/checkpoint.pth")).unwrap();
    for (i, len) in [0, 100, bytes.len() / 2, bytes.len() - 10]
        .into_iter()
        .enumerate()
    {
        let cut = dir.path().join(format!("cut{i}.pth"));
        std::fs::write(&cut, &bytes[..len]).unwrap();
        let e = dinoedge::backbone::meta::import(&cut, &config("meta_tiny_mlp"));
        assert!(e.is_err(), "a checkpoint cut to {len} bytes was accepted");
    }
    let (code, _, err) = dinoedge(&[
        "model",
        "import",
        "--meta",
        &s(&fixture("meta_tiny_mlp/checkpoint.pth")),
        "--arch",
        "vits16",
        "-o",
        &s(&dir.path().join("out")),
    ]);
    assert_eq!(code, 2);
    // Its ViT-S/16 configuration does not fit the tiny checkpoint: the first misfit is named.
    assert!(
        err.contains("rope_embed.periods has shape [8], expected [16]"),
        "{err}"
    );
    assert!(!dir.path().join("out").join("model.safetensors").exists());
}
