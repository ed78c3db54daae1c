#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use tract_onnx::pb;

use super::*;
use crate::backbone::graph::build_graph_with;
use crate::backbone::numerics::quant_points;
use crate::backbone::onnx::ElemType;
use crate::preprocess::resample::textured;
use crate::proto::message::PixelFormat;

/// A three-block ViT small enough to calibrate in a test, with one planted outlier channel
/// when asked.
fn tiny(outliers: bool) -> ModelDir {
    let mut model = ModelDir::tiny_random(64, 3, 7);
    if outliers {
        model.weights.plant_outlier_channels(&model.config, 1, 20.0);
    }
    model
}

const SIZE: InputSize = InputSize {
    height: 32,
    width: 48,
};

/// `n` different textured images in `dir`.
fn images(dir: &Path, n: u32) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        let (w, h) = (40 + 6 * i, 30 + 5 * (i % 4));
        let img = image::RgbImage::from_raw(w, h, textured(PixelFormat::Rgb888, w, h)).unwrap();
        img.save(dir.join(format!("frame_{i:02}.png"))).unwrap();
    }
    dir.to_path_buf()
}

fn options(precision: GraphPrecision, calib: Vec<PathBuf>) -> QuantizeOptions {
    QuantizeOptions {
        precision,
        size: SIZE,
        calib,
        calib_frames: 8,
        method: Method::Percentile(99.99),
        keep: Keep::Auto,
        target_cosine: 0.995,
        int8_attention: true,
        roi: None,
        threads: 1,
        recording_key: None,
    }
}

/// The graph of `model` at [`SIZE`] as a file would hold it.
fn build(model: &ModelDir, numerics: &Numerics) -> pb::ModelProto {
    build_graph_with(
        &model.config,
        &model.weights,
        SIZE,
        &GraphOptions::default(),
        numerics,
    )
    .unwrap()
}

fn nodes(proto: &pb::ModelProto) -> &[pb::NodeProto] {
    &proto.graph.as_ref().unwrap().node
}

fn count(proto: &pb::ModelProto, op: &str) -> usize {
    nodes(proto).iter().filter(|n| n.op_type == op).count()
}

/// The node producing each value.
fn producers(proto: &pb::ModelProto) -> HashMap<&str, &pb::NodeProto> {
    nodes(proto)
        .iter()
        .flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n)))
        .collect()
}

fn initializers(proto: &pb::ModelProto) -> HashMap<&str, &pb::TensorProto> {
    proto
        .graph
        .as_ref()
        .unwrap()
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect()
}

fn int_attr(node: &pb::NodeProto, name: &str) -> Option<i64> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}

fn int8_numerics(model: &ModelDir, keep: &[usize]) -> Numerics {
    Numerics {
        precision: GraphPrecision::Int8,
        activation_scales: quant_points(model.config.num_hidden_layers, true)
            .into_iter()
            .map(|p| (p, 0.05))
            .collect(),
        keep_blocks: keep.iter().copied().collect(),
        int8_attention: true,
        taps: false,
    }
}

#[test]
fn int8_puts_quantise_dequantise_pairs_on_both_inputs_of_each_matmul_and_the_patch_conv() {
    let model = tiny(false);
    let numerics = int8_numerics(&model, &[1]);
    let proto = build(&model, &numerics);
    assert_eq!(proto.opset_import[0].version, onnx::OPSET);
    let from = producers(&proto);
    let inits = initializers(&proto);
    let dq_fed = |v: &str| from.get(v).is_some_and(|n| n.op_type == "DequantizeLinear");
    let matmuls: Vec<&pb::NodeProto> = nodes(&proto)
        .iter()
        .filter(|n| n.op_type == "MatMul")
        .collect();
    // Per block: the fused qkv, q·k, softmax·v, the output projection and two MLP layers.
    assert_eq!(matmuls.len(), 3 * 6);
    let both = matmuls
        .iter()
        .filter(|n| n.input.iter().all(|i| dq_fed(i)))
        .count();
    let neither = matmuls
        .iter()
        .filter(|n| n.input.iter().all(|i| !dq_fed(i)))
        .count();
    assert_eq!(
        (both, neither),
        (2 * 6, 6),
        "two blocks in INT8, block 1 kept"
    );
    let conv = nodes(&proto).iter().find(|n| n.op_type == "Conv").unwrap();
    assert!(dq_fed(&conv.input[0]) && dq_fed(&conv.input[1]));
    // One QuantizeLinear per activation: the patch input and 8 per INT8 block.
    assert_eq!(count(&proto, "QuantizeLinear"), 1 + 2 * 8);
    // Weights: the patch conv and 4 projections per INT8 block, per channel.
    assert_eq!(count(&proto, "DequantizeLinear"), (1 + 2 * 8) + (1 + 2 * 4));
    for n in nodes(&proto) {
        match n.op_type.as_str() {
            "QuantizeLinear" => {
                // Symmetric: an INT8 zero point of 0, and a per-tensor scale.
                let zero = inits[n.input[2].as_str()];
                assert_eq!(zero.data_type, pb::tensor_proto::DataType::Int8 as i32);
                assert_eq!(zero.raw_data, vec![0u8]);
                assert!(inits[n.input[1].as_str()].dims.is_empty());
            }
            "DequantizeLinear" if inits.contains_key(n.input[0].as_str()) => {
                let weight = inits[n.input[0].as_str()];
                let scales = inits[n.input[1].as_str()];
                let axis = int_attr(n, "axis").unwrap();
                assert_eq!(weight.data_type, pb::tensor_proto::DataType::Int8 as i32);
                assert_eq!(scales.dims, vec![weight.dims[axis as usize]]);
                assert_eq!(axis, if weight.dims.len() == 4 { 0 } else { 1 });
                let zeros = inits[n.input[2].as_str()];
                assert!(zeros.raw_data.iter().all(|&z| z == 0));
            }
            _ => {}
        }
    }
}

#[test]
fn fp16_casts_only_at_the_fp32_islands() {
    let model = tiny(false);
    let numerics = Numerics {
        precision: GraphPrecision::Fp16,
        ..Numerics::default()
    };
    let proto = build(&model, &numerics);
    let from = producers(&proto);
    let inits = initializers(&proto);
    let blocks = model.config.num_hidden_layers;
    // In and out of the patch embedding, and per block: into each of the two projections
    // after a LayerNorm, q and k into and out of RoPE, the scores into the softmax and its
    // output out, and the two projections back into the residual stream.
    assert_eq!(count(&proto, "Cast"), 2 + 10 * blocks);
    for n in nodes(&proto) {
        if n.op_type == "Cast" {
            let feeder = from.get(n.input[0].as_str());
            assert!(
                feeder.is_none_or(|f| f.op_type != "Cast"),
                "a Cast straight after a Cast: {n:?}"
            );
        }
        if n.op_type == "Softmax" {
            let feeder = from[n.input[0].as_str()];
            assert_eq!(feeder.op_type, "Cast");
            assert_eq!(int_attr(feeder, "to"), Some(ElemType::F32.code()));
        }
        if matches!(n.op_type.as_str(), "MatMul" | "Conv") {
            for i in &n.input {
                if let Some(t) = inits.get(i.as_str()) {
                    assert_eq!(
                        i64::from(t.data_type),
                        ElemType::F16.code(),
                        "{} weight {i}",
                        n.op_type
                    );
                }
            }
        }
        if n.op_type == "LayerNormalization" {
            let scale = inits[n.input[1].as_str()];
            assert_eq!(i64::from(scale.data_type), ElemType::F32.code());
        }
    }
    // LayerScale stays an FP32 multiply, twice per block.
    let layer_scales = nodes(&proto)
        .iter()
        .filter(|n| n.op_type == "Mul" && n.input.iter().any(|i| i.starts_with("layer_scale")))
        .count();
    assert_eq!(layer_scales, 2 * blocks);
}

#[test]
fn fp16_matches_the_transformers_reference_within_its_tolerance() {
    use ndarray_npy::ReadNpyExt;
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures");
    let model = ModelDir::load(&fixtures.join("tiny_mlp")).unwrap();
    let read = |name: &str| {
        let f = std::fs::File::open(fixtures.join(name)).unwrap();
        ndarray::ArrayD::<f32>::read_npy(f).unwrap()
    };
    let input = read("input_224x224.npy");
    let expected = read("tiny_mlp/expected_224x224.npy");
    let run = measure::Runner {
        model: &model,
        size: InputSize::new(224, 224),
        threads: 1,
    };
    let fp16 = Numerics {
        precision: GraphPrecision::Fp16,
        ..Numerics::default()
    };
    let frames = vec![input.iter().copied().collect::<Vec<f32>>()];
    let reference = vec![expected.iter().copied().collect::<Vec<f32>>()];
    let got = run.outputs(&fp16, &frames).unwrap();
    let c = Cosine::between(
        &reference,
        &got,
        model.config.hidden_size,
        model.config.prefix_tokens(),
    );
    // FP16 keeps 11 significant bits: every token within 0.9995 of transformers' FP32, and
    // no value further than 0.05 off (outputs are LayerNorm-ed, of order 1).
    assert!(c.cls_min >= 0.9995 && c.patch_min >= 0.9995, "{c:?}");
    let worst = reference[0]
        .iter()
        .zip(&got[0])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 0.05, "largest difference {worst}");
    // And the FP32 graph is exact to far tighter, so the difference is FP16's.
    let fp32 = run.outputs(&Numerics::fp32(), &frames).unwrap();
    let c32 = Cosine::between(&reference, &fp32, 64, model.config.prefix_tokens());
    assert!(c32.patch_min > 0.99999, "{c32:?}");
}

#[test]
fn the_same_inputs_give_the_same_file_and_the_outlier_model_meets_its_target() {
    let tmp = tempfile::tempdir().unwrap();
    let frames = images(&tmp.path().join("frames"), 10);
    let model = tiny(true);
    let opts = options(GraphPrecision::Int8, vec![frames]);
    let a = quantize(&model, &opts).unwrap();
    let b = quantize(&model, &opts).unwrap();
    assert_eq!(onnx::to_bytes(&a.proto), onnx::to_bytes(&b.proto));
    let r = &a.report;
    assert_eq!((r.calibration_frames, r.held_out_frames), (8, 2));
    let cosine = r.cosine.unwrap();
    assert!(cosine.worst() >= 0.995, "{r:#?}");
    assert!(r.int8_share.unwrap().share > 0.0);
    // The planted channel is what calibration sees: the first projection's input reaches far
    // beyond that of the same model without it.
    let plain = quantize(&tiny(false), &opts).unwrap();
    let qkv = "block0.qkv";
    assert!(
        r.activation_scales[qkv] > 1.8 * plain.report.activation_scales[qkv],
        "{} vs {}",
        r.activation_scales[qkv],
        plain.report.activation_scales[qkv]
    );
}

#[test]
fn a_target_out_of_reach_names_the_best_reached_and_the_blocks_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let frames = images(&tmp.path().join("frames"), 6);
    let opts = QuantizeOptions {
        target_cosine: 1.0,
        ..options(GraphPrecision::Int8, vec![frames])
    };
    match quantize(&tiny(false), &opts) {
        Err(QuantizeError::TargetNotMet { best, kept, .. }) => {
            assert!(best < 1.0 && best > 0.9, "{best}");
            assert!(!kept.is_empty());
        }
        other => panic!("{:?}", other.map(|q| q.report)),
    }
}

#[test]
fn bad_calibration_sets_are_typed_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny(false);
    let int8 = |calib: Vec<PathBuf>| quantize(&model, &options(GraphPrecision::Int8, calib));
    assert!(matches!(int8(vec![]), Err(QuantizeError::NoCalibration)));
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert!(matches!(
        int8(vec![empty]),
        Err(QuantizeError::Source { .. })
    ));
    assert!(matches!(
        int8(vec![tmp.path().join("missing")]),
        Err(QuantizeError::Source { .. })
    ));
    // Three good frames and one that is not an image: too few, and the bad one counted.
    let few = images(&tmp.path().join("few"), 3);
    std::fs::write(few.join("broken.png"), b"not a png").unwrap();
    match int8(vec![few.clone()]) {
        Err(
            e @ QuantizeError::TooFewFrames {
                found: 3,
                skipped: 1,
            },
        ) => {
            assert!(e.to_string().contains("at least 5"), "{e}");
        }
        other => panic!("{:?}", other.map(|q| q.report)),
    }
    // A file that is neither an image nor a recording.
    let junk = tmp.path().join("junk.bin");
    std::fs::write(&junk, b"junk").unwrap();
    assert!(matches!(
        int8(vec![junk]),
        Err(QuantizeError::Source { .. })
    ));
    // Blocks that do not exist.
    let opts = QuantizeOptions {
        keep: Keep::Blocks(BTreeSet::from([3])),
        ..options(GraphPrecision::Int8, vec![few])
    };
    assert!(matches!(
        quantize(&model, &opts),
        Err(QuantizeError::Options(_))
    ));
}

#[test]
fn unreadable_frames_are_skipped_and_named() {
    let tmp = tempfile::tempdir().unwrap();
    let frames = images(&tmp.path().join("frames"), 6);
    std::fs::write(frames.join("zz_broken.png"), b"not a png").unwrap();
    let q = quantize(
        &tiny(false),
        &QuantizeOptions {
            keep: Keep::Blocks(BTreeSet::new()),
            ..options(GraphPrecision::Int8, vec![frames])
        },
    )
    .unwrap();
    let skipped = &q.report.skipped_frames;
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].name.ends_with("zz_broken.png"), "{skipped:?}");
    assert_eq!(q.report.kept_by, "given");
}

#[test]
fn recordings_are_calibration_sources_frame_by_frame() {
    use crate::recording::{RecordKind, RecordingWriter};
    use crate::wire_tools::{SynthConfig, synthesize};
    let tmp = tempfile::tempdir().unwrap();
    let mut line = Vec::new();
    synthesize(
        &SynthConfig {
            frames: 7,
            width: 64,
            height: 48,
            format: PixelFormat::Gray8,
            packet: 1024,
            ..SynthConfig::default()
        },
        &mut line,
    )
    .unwrap();
    let path = tmp.path().join("session.rec");
    let mut w = RecordingWriter::create(&path).unwrap();
    // In two records, split mid-packet, as a link delivers bytes.
    let (a, b) = line.split_at(line.len() / 3);
    w.write(RecordKind::EdgeToHost, a).unwrap();
    w.write(RecordKind::HostToEdge, b"credit").unwrap();
    w.write(RecordKind::EdgeToHost, b).unwrap();
    w.finish().unwrap();
    let pre = PreprocessConfig::new(SIZE);
    let got = frames::gather(std::slice::from_ref(&path), &pre, 100).unwrap();
    assert_eq!(got.frames.len(), 7);
    assert!(got.skipped.is_empty());
    assert!(
        got.frames[6].name.ends_with("session.rec#6"),
        "{}",
        got.frames[6].name
    );
    assert_eq!(got.frames[0].pixels.len(), 3 * SIZE.height * SIZE.width);
    // A limit stops reading early.
    let some = frames::gather(&[path], &pre, 3).unwrap();
    assert_eq!(some.frames.len(), 3);

    // The same bytes in an encrypted recording: its key reads them, no key names the key id.
    let key = crate::recording::RecordingKey::from_bytes([5; 32]);
    let sealed = tmp.path().join("sealed.rec");
    let mut w = RecordingWriter::create_with(&sealed, Some(&key)).unwrap();
    w.write(RecordKind::EdgeToHost, &line).unwrap();
    w.finish().unwrap();
    let got = frames::gather_with(std::slice::from_ref(&sealed), &pre, 100, Some(&key)).unwrap();
    assert_eq!(got.frames.len(), 7);
    match frames::gather(std::slice::from_ref(&sealed), &pre, 100) {
        Err(QuantizeError::Source { reason, .. }) => {
            assert!(reason.contains(&key.id().to_string()), "{reason}");
            assert!(reason.contains("--recording-key"), "{reason}");
        }
        other => panic!(
            "expected a source error, got {:?}",
            other.map(|g| g.frames.len())
        ),
    }
}

#[test]
fn the_sweep_keeps_the_most_helpful_blocks_until_the_target_is_met() {
    let tmp = tempfile::tempdir().unwrap();
    let frames = images(&tmp.path().join("frames"), 10);
    let model = tiny(false);
    let keeping = |blocks: &[usize]| {
        let q = quantize(
            &model,
            &QuantizeOptions {
                keep: Keep::Blocks(blocks.iter().copied().collect()),
                ..options(GraphPrecision::Int8, vec![frames.clone()])
            },
        )
        .unwrap();
        (
            q.report.cosine.unwrap().worst(),
            q.report.int8_share.unwrap().share,
        )
    };
    let (floor, share_none) = keeping(&[]);
    let (best_block, best) = (0..model.config.num_hidden_layers)
        .map(|b| (b, keeping(&[b]).0))
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
        .unwrap();
    assert!(best > floor, "keeping a block helps: {best} vs {floor}");
    // A target between INT8 everywhere and the most helpful block kept alone: the sweep keeps
    // exactly that block.
    let target = (floor + best) / 2.0;
    let auto = quantize(
        &model,
        &QuantizeOptions {
            target_cosine: target,
            ..options(GraphPrecision::Int8, vec![frames.clone()])
        },
    )
    .unwrap();
    let r = &auto.report;
    assert_eq!(r.kept_by, "auto");
    assert_eq!(r.kept_blocks, vec![best_block], "{r:#?}");
    assert!(r.cosine.unwrap().worst() >= target, "{r:#?}");
    assert_eq!(r.sensitivity.len(), model.config.num_hidden_layers);
    assert_eq!(r.sweep.len(), 2);
    // Fewer multiply-adds in INT8 than with nothing kept.
    assert!(r.int8_share.unwrap().share < share_none);
}

#[test]
fn a_dicom_cine_gives_its_frames() {
    let cine = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/echo_cine.dcm");
    let pre = PreprocessConfig::new(SIZE);
    let got = frames::gather(std::slice::from_ref(&cine), &pre, 12).unwrap();
    assert_eq!(got.frames.len(), 12);
    assert!(got.frames[11].name.ends_with("echo_cine.dcm#11"));
    // Successive frames of a beating heart differ.
    assert_ne!(got.frames[0].pixels, got.frames[6].pixels);
}

#[test]
fn large_graphs_put_their_weights_beside_the_file() {
    use tract_onnx::prelude::*;
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny(false);
    let proto = build(&model, &int8_numerics(&model, &[]));
    let path = tmp.path().join("big.onnx");
    let written = onnx::write_model(&proto, &path, 1).unwrap();
    let data = tmp.path().join("big.onnx.data");
    let (graph_len, data_len) = (
        std::fs::metadata(&path).unwrap().len(),
        std::fs::metadata(&data).unwrap().len(),
    );
    assert_eq!(written, graph_len + data_len);
    assert!(data_len > graph_len, "{data_len} vs {graph_len}");
    assert!(!tmp.path().join("big.onnx.partial").exists());
    // A reader finds the weights through the file's external-data entries.
    let loaded = tract_onnx::onnx()
        .model_for_path(&path)
        .unwrap()
        .with_input_fact(0, f32::fact([1, 3, SIZE.height, SIZE.width]).into())
        .unwrap()
        .into_optimized();
    assert!(loaded.is_ok(), "{:?}", loaded.err());
}

#[test]
fn calibration_frame_counts_out_of_range_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let frames = images(&tmp.path().join("frames"), 6);
    for n in [0, 3, MAX_CALIBRATION_FRAMES + 1, usize::MAX] {
        let opts = QuantizeOptions {
            calib_frames: n,
            ..options(GraphPrecision::Int8, vec![frames.clone()])
        };
        match quantize(&tiny(false), &opts) {
            Err(QuantizeError::Options(m)) => assert!(m.contains("--calib-frames"), "{m}"),
            other => panic!("{n}: {:?}", other.map(|q| q.report)),
        }
    }
}
