//! Loading weights in every supported form, and every kind of bad input the backbone can meet:
//! each gives a typed error that names the file, tensor or size concerned.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use dinoedge::backbone::{
    Arch, Backbone, BackboneError, Dinov3Config, GraphOptions, InputSize, ModelDir, RuntimeOptions,
    npy,
};
use ndarray::{Array4, ArrayD};
use ndarray_npy::{read_npy, write_npy};
use prost::Message;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/fixtures")
        .join(name)
}

/// A fresh copy of a fixture model folder that a test may damage.
fn scratch_model(name: &str, tag: &str) -> crate::common::Scratch {
    let dir = crate::common::scratch("bb", tag);
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture(name).join(f), dir.join(f)).unwrap();
    }
    dir
}

/// Rewrites `model.safetensors` in `dir` through `edit`, which gets (name, dtype, shape, bytes).
fn rewrite_weights(dir: &Path, edit: impl Fn(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>)) {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut tensors);
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(
        views,
        None::<HashMap<String, String>>,
        &dir.join("model.safetensors"),
    )
    .unwrap();
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

#[test]
fn f16_and_bf16_weights_load_widened_and_run() {
    let reference = ModelDir::load(&fixture("tiny_mlp")).unwrap();
    assert_eq!(reference.weights.stored_as(), "F32");
    let expected: ArrayD<f32> = read_npy(fixture("tiny_mlp").join("expected_224x224.npy")).unwrap();
    let pixels = npy::read_pixels(&fixture("input_224x224.npy")).unwrap();
    for (dtype, tag) in [(Dtype::F16, "f16"), (Dtype::BF16, "bf16")] {
        let dir = scratch_model("tiny_mlp", tag);
        rewrite_weights(&dir, |tensors| {
            for (_, d, _, bytes) in tensors.iter_mut() {
                let narrow: Vec<u8> = f32s(bytes)
                    .into_iter()
                    .flat_map(|v| match dtype {
                        Dtype::F16 => half::f16::from_f32(v).to_le_bytes(),
                        _ => half::bf16::from_f32(v).to_le_bytes(),
                    })
                    .collect();
                *d = dtype;
                *bytes = narrow;
            }
        });
        let model = ModelDir::load(&dir).unwrap();
        assert_eq!(model.weights.stored_as(), format!("{dtype:?}"));
        let name = "layer.1.mlp.up_proj.weight";
        let wide = &model.weights.get(name).unwrap().data;
        let orig = &reference.weights.get(name).unwrap().data;
        for (w, o) in wide.iter().zip(orig) {
            let rounded = match dtype {
                Dtype::F16 => half::f16::from_f32(*o).to_f32(),
                _ => half::bf16::from_f32(*o).to_f32(),
            };
            assert_eq!(*w, rounded);
        }
        let size = InputSize::new(224, 224);
        let out = Backbone::load(&model, size, &RuntimeOptions::default())
            .unwrap()
            .run(pixels.view())
            .unwrap()
            .last_hidden_state;
        // Rounded weights, so not the f32 tolerance; still the same model.
        let max = out
            .iter()
            .zip(expected.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(max < 0.25, "{tag}: max |diff| {max}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn random_weights_are_deterministic_round_trip_and_say_so() {
    let a = ModelDir::random(Arch::Vits16, 5);
    let b = ModelDir::random(Arch::Vits16, 5);
    let c = ModelDir::random(Arch::Vits16, 6);
    let name = "layer.3.attention.q_proj.weight";
    assert_eq!(a.weights.get(name).unwrap(), b.weights.get(name).unwrap());
    assert_ne!(a.weights.get(name).unwrap(), c.weights.get(name).unwrap());
    assert_eq!(a.weights.parameter_count(), 21_596_160);
    let dir = crate::common::scratch("bb", "init");
    a.save(&dir).unwrap();
    let back = ModelDir::load(&dir).unwrap();
    assert!(back.random_weights);
    assert_eq!(back.config, Arch::Vits16.config());
    assert_eq!(
        back.weights.get(name).unwrap(),
        a.weights.get(name).unwrap()
    );
    // The folder is in the Hugging Face layout transformers reads.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(json["model_type"], "dinov3_vit");
    assert_eq!(json["architectures"][0], "DINOv3ViTModel");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn load_err(dir: &Path) -> String {
    let e = ModelDir::load(dir).unwrap_err();
    e.to_string()
}

#[test]
fn missing_extra_misshapen_mistyped_and_non_finite_tensors_are_named() {
    let dir = scratch_model("tiny_mlp", "missing");
    rewrite_weights(&dir, |t| t.retain(|(n, ..)| n != "layer.1.norm2.bias"));
    assert!(
        matches!(ModelDir::load(&dir), Err(BackboneError::MissingTensor { name, .. }) if name == "layer.1.norm2.bias")
    );

    let dir = scratch_model("tiny_mlp", "extra");
    rewrite_weights(&dir, |t| {
        t.push((
            "layer.0.attention.k_proj.bias".into(),
            Dtype::F32,
            vec![64],
            vec![0; 256],
        ));
    });
    let msg = load_err(&dir);
    assert!(msg.contains("layer.0.attention.k_proj.bias"), "{msg}");

    let dir = scratch_model("tiny_mlp", "shape");
    rewrite_weights(&dir, |t| {
        for (n, _, s, b) in t.iter_mut() {
            if n == "layer.0.attention.o_proj.weight" {
                *s = vec![32, 128];
                b.truncate(32 * 128 * 4);
            }
        }
    });
    match ModelDir::load(&dir) {
        Err(BackboneError::TensorShape {
            name,
            expected,
            found,
        }) => {
            assert_eq!(name, "layer.0.attention.o_proj.weight");
            assert_eq!(expected, vec![64, 64]);
            assert_eq!(found, vec![32, 128]);
        }
        other => panic!("{other:?}"),
    }

    let dir = scratch_model("tiny_mlp", "dtype");
    rewrite_weights(&dir, |t| {
        for (n, d, ..) in t.iter_mut() {
            if n == "norm.weight" {
                *d = Dtype::I32;
            }
        }
    });
    let msg = load_err(&dir);
    assert!(msg.contains("norm.weight") && msg.contains("I32"), "{msg}");

    let dir = scratch_model("tiny_mlp", "nan");
    rewrite_weights(&dir, |t| {
        for (n, _, _, b) in t.iter_mut() {
            if n == "embeddings.cls_token" {
                b[..4].copy_from_slice(&f32::NAN.to_le_bytes());
            }
        }
    });
    assert!(
        matches!(ModelDir::load(&dir), Err(BackboneError::NonFinite { name, count: 1 }) if name == "embeddings.cls_token")
    );
}

#[test]
fn config_and_weights_that_disagree_name_the_tensor_and_both_shapes() {
    let dir = scratch_model("tiny_mlp", "disagree");
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"intermediate_size\": 256", "\"intermediate_size\": 128");
    std::fs::write(&path, text).unwrap();
    let msg = load_err(&dir);
    assert!(
        msg.contains("layer.0.mlp.up_proj.weight")
            && msg.contains("[256, 64]")
            && msg.contains("[128, 64]"),
        "{msg}"
    );
}

#[test]
fn bad_config_files_say_what_is_wrong() {
    type Edit<'a> = &'a dyn Fn(&str) -> String;
    let cases: [(&str, Edit, &str); 4] = [
        ("json", &|_| "{ not json".to_string(), "config.json"),
        (
            "type",
            &|t| t.replace("dinov3_vit", "dinov3_convnext"),
            "model_type",
        ),
        ("act", &|t| t.replace("\"gelu\"", "\"relu\""), "hidden_act"),
        (
            "heads",
            &|t| t.replace("\"num_attention_heads\": 2", "\"num_attention_heads\": 3"),
            "num_attention_heads",
        ),
    ];
    for (tag, edit, needle) in cases {
        let dir = scratch_model("tiny_mlp", &format!("cfg-{tag}"));
        let path = dir.join("config.json");
        std::fs::write(&path, edit(&std::fs::read_to_string(&path).unwrap())).unwrap();
        let e = ModelDir::load(&dir).unwrap_err();
        assert!(matches!(e, BackboneError::Config { .. }), "{tag}: {e:?}");
        assert!(e.to_string().contains(needle), "{tag}: {e}");
    }
    let e = ModelDir::load(Path::new("/nonexistent/model")).unwrap_err();
    assert!(
        e.to_string().contains("/nonexistent/model/config.json"),
        "{e}"
    );
}

#[test]
fn truncated_and_corrupt_weight_files_are_errors_not_panics() {
    let dir = scratch_model("tiny_swiglu", "trunc");
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    for cut in [0, 7, 8, 100, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        match ModelDir::load(&dir) {
            Err(BackboneError::Safetensors { path: p, .. }) => assert_eq!(p, path),
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    let mut garbage = bytes.clone();
    for (i, b) in garbage.iter_mut().enumerate().take(64) {
        *b = (i as u8).wrapping_mul(37);
    }
    std::fs::write(&path, &garbage).unwrap();
    assert!(matches!(
        ModelDir::load(&dir),
        Err(BackboneError::Safetensors { .. })
    ));
}

#[test]
fn sizes_that_are_not_multiples_of_the_patch_are_refused() {
    let model = ModelDir::load(&fixture("tiny_mlp")).unwrap();
    for size in [
        InputSize::new(225, 224),
        InputSize::new(224, 100),
        InputSize::new(0, 16),
    ] {
        let e = Backbone::load(&model, size, &RuntimeOptions::default()).unwrap_err();
        assert!(matches!(e, BackboneError::InputSize { .. }), "{e:?}");
        assert!(
            e.to_string()
                .contains(&format!("{}x{}", size.height, size.width))
        );
    }
    assert!(
        Backbone::load(&model, InputSize::new(225, 224), &RuntimeOptions::default())
            .unwrap_err()
            .to_string()
            .contains("224x224")
    );
    // A size whose attention alone would exhaust memory is refused up front.
    let e = Backbone::load(
        &model,
        InputSize::new(4096, 4096),
        &RuntimeOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(e, BackboneError::InputSize { .. }) && e.to_string().contains("GiB"),
        "{e}"
    );
    assert!("22ax224".parse::<InputSize>().is_err());
    assert_eq!(
        "160x240".parse::<InputSize>().unwrap(),
        InputSize::new(160, 240)
    );
}

#[test]
fn wrong_input_shapes_and_npy_files_are_named() {
    let model = ModelDir::load(&fixture("tiny_mlp")).unwrap();
    let backbone =
        Backbone::load(&model, InputSize::new(32, 48), &RuntimeOptions::default()).unwrap();
    let e = backbone
        .run(Array4::zeros((1, 3, 48, 32)).view())
        .unwrap_err();
    assert!(
        matches!(e, BackboneError::InputShape { ref found, .. } if found == &[1, 3, 48, 32]),
        "{e:?}"
    );
    assert!(backbone.run(Array4::zeros((1, 3, 32, 48)).view()).is_ok());

    let dir = crate::common::scratch("bb", "npy");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("gray.npy");
    write_npy(&p, &Array4::<f32>::zeros((1, 1, 32, 32))).unwrap();
    let e = npy::read_pixels(&p).unwrap_err();
    assert!(
        e.to_string().contains("gray.npy") && e.to_string().contains("[1, 1, 32, 32]"),
        "{e}"
    );
    let p = dir.join("double.npy");
    write_npy(&p, &Array4::<f64>::zeros((1, 3, 32, 32))).unwrap();
    assert!(matches!(
        npy::read_pixels(&p),
        Err(BackboneError::Npy { .. })
    ));
    let p = dir.join("junk.npy");
    std::fs::write(&p, b"\x93NUMPY\x01\x00garbage").unwrap();
    assert!(matches!(
        npy::read_pixels(&p),
        Err(BackboneError::Npy { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn exported_onnx_has_no_control_flow_or_shape_arithmetic_and_a_symbolic_batch() {
    use tract_onnx::pb;
    use tract_onnx::prelude::*;
    let model = ModelDir::load(&fixture("tiny_swiglu")).unwrap();
    let size = InputSize::new(160, 240);
    let bytes = model.export_onnx(size, &GraphOptions::default()).unwrap();
    let proto = pb::ModelProto::decode(bytes.as_slice()).unwrap();
    let graph = proto.graph.as_ref().unwrap();
    for node in &graph.node {
        assert!(
            ![
                "If",
                "Loop",
                "Scan",
                "Shape",
                "Size",
                "Range",
                "ConstantOfShape",
                "Expand"
            ]
            .contains(&node.op_type.as_str()),
            "op {} in the graph",
            node.op_type
        );
    }
    let consumed: std::collections::HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .collect();
    for init in &graph.initializer {
        assert!(
            consumed.contains(init.name.as_str()),
            "unused constant {}",
            init.name
        );
    }
    assert_eq!(graph.input.len(), 1);
    assert_eq!(graph.input[0].name, "pixel_values");
    assert_eq!(graph.output[0].name, "last_hidden_state");
    let dims = |v: &pb::ValueInfoProto| -> Vec<String> {
        let Some(pb::type_proto::Value::TensorType(t)) = &v.r#type.as_ref().unwrap().value else {
            panic!()
        };
        t.shape
            .as_ref()
            .unwrap()
            .dim
            .iter()
            .map(|d| match &d.value {
                Some(pb::tensor_shape_proto::dimension::Value::DimValue(n)) => n.to_string(),
                Some(pb::tensor_shape_proto::dimension::Value::DimParam(s)) => s.clone(),
                None => "?".into(),
            })
            .collect()
    };
    assert_eq!(dims(&graph.input[0]), ["N", "3", "160", "240"]);
    assert_eq!(dims(&graph.output[0]), ["N", "155", "64"]);

    // The file itself runs, at a batch size chosen only when it is loaded.
    let pixels = npy::read_pixels(&fixture("input_160x240.npy")).unwrap();
    let three = ndarray::concatenate(
        ndarray::Axis(0),
        &[pixels.view(), pixels.view(), pixels.view()],
    )
    .unwrap();
    let plan = tract_onnx::onnx()
        .model_for_read(&mut bytes.as_slice())
        .unwrap()
        .with_input_fact(0, f32::fact([3, 3, 160, 240]).into())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let out = plan.run(tvec![Tensor::from(three).into_tvalue()]).unwrap();
    let out = out[0].to_plain_array_view::<f32>().unwrap().to_owned();
    let expected: ArrayD<f32> =
        read_npy(fixture("tiny_swiglu").join("expected_160x240.npy")).unwrap();
    assert_eq!(out.shape(), &[3, 155, 64]);
    for n in 0..3 {
        let max = out
            .index_axis(ndarray::Axis(0), n)
            .iter()
            .zip(expected.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(max <= 1e-4, "frame {n}: {max:e}");
    }
}

#[test]
fn presets_match_the_released_shapes() {
    let cases = [
        // By hand: 3*256*D + D (patch) + 5D (tokens) + 2D (norm), plus per block 4D (norms)
        // + 4D² + 3D (q, k, v, o; no key bias) + 2D (LayerScale) + the feed-forward.
        (Arch::Vits16, 21_596_160usize),
        (Arch::Vits16plus, 28_692_480),
        (Arch::Vitb16, 85_659_648),
    ];
    for (arch, _) in cases {
        let c: Dinov3Config = arch.config();
        c.validate().unwrap();
        assert_eq!(Arch::of(&c), Some(arch));
        assert_eq!(c.head_dim(), 64);
    }
    // Counted from the shapes, without materialising the weights.
    for (arch, params) in cases {
        let n: usize = dinoedge::backbone::expected_tensors(&arch.config())
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum();
        assert_eq!(n, params, "{arch:?}");
    }
}

#[test]
fn exports_with_external_data_load_and_match() {
    use tract_onnx::prelude::*;
    let model = ModelDir::load(&fixture("tiny_mlp")).unwrap();
    let dir = crate::common::scratch("bb", "ext");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.onnx");
    let size = InputSize::new(224, 224);
    let written = model
        .write_onnx(size, &GraphOptions::default(), &path, true)
        .unwrap();
    let graph_len = std::fs::metadata(&path).unwrap().len();
    let data_len = std::fs::metadata(dir.join("m.onnx.data")).unwrap().len();
    assert_eq!(written, graph_len + data_len);
    // The weights (over 150,000 parameters) went to the side file.
    assert!(
        graph_len < 100_000 && data_len > 600_000,
        "{graph_len} {data_len}"
    );
    let plan = tract_onnx::onnx()
        .model_for_path(&path)
        .unwrap()
        .with_input_fact(0, f32::fact([1, 3, 224, 224]).into())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let pixels = npy::read_pixels(&fixture("input_224x224.npy")).unwrap();
    let out = plan.run(tvec![Tensor::from(pixels).into_tvalue()]).unwrap();
    let out = out[0].to_plain_array_view::<f32>().unwrap().to_owned();
    let expected: ArrayD<f32> = read_npy(fixture("tiny_mlp").join("expected_224x224.npy")).unwrap();
    let max = out
        .iter()
        .zip(expected.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(max <= 1e-4, "{max:e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
