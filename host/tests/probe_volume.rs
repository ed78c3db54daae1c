//! A DICOM cine as a volume: its features are the mean of its slices' features.

use std::path::Path;

use dinoedge::backbone::{Backbone, GraphOptions, InputSize, ModelDir, RuntimeOptions};
use dinoedge::heads::{HeadInput, cls_mean_patch};
use dinoedge::preprocess::{FrameRef, PreprocessConfig, Preprocessor};
use dinoedge::probe::extract::Extractor;
use dinoedge::proto::message::PixelFormat;

#[test]
fn a_dicom_cine_is_classified_from_the_mean_of_its_slices() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let model = ModelDir::load(&root.join("models/fixtures/tiny_mlp")).unwrap();
    let size = InputSize::new(32, 48);
    let backbone = Backbone::load(
        &model,
        size,
        &RuntimeOptions {
            graph: GraphOptions::default(),
            ..Default::default()
        },
    )
    .unwrap();
    let cine_path = root.join("tests/data/echo_cine.dcm");
    let extractor = Extractor {
        backbone: &backbone,
        fingerprint: model.weights.fingerprint().to_string(),
        input: HeadInput::ClsMeanPatch,
        cache: None,
        workers: 1,
    };
    let got = extractor
        .run(std::slice::from_ref(&cine_path), &|| {})
        .pop()
        .unwrap()
        .unwrap();
    assert_eq!(got.shape(), &[1, 128]);

    // By hand: every slice through the same preprocessing and backbone, then the mean.
    let cine = dinoedge_dicom::load_dicom(&cine_path).unwrap();
    assert_eq!(cine.frames.len(), 30);
    let mut pre = Preprocessor::new(PreprocessConfig::new(size));
    let mut sum = ndarray::Array1::<f64>::zeros(128);
    for f in &cine.frames {
        let x = pre
            .run(FrameRef {
                format: PixelFormat::Gray8,
                width: u32::from(cine.width),
                height: u32::from(cine.height),
                data: f,
            })
            .unwrap();
        let feats = backbone.run(x.view()).unwrap();
        sum += &cls_mean_patch(&feats, 0).unwrap().mapv(f64::from);
    }
    let mean = sum.mapv(|v| (v / 30.0) as f32);
    let max = got
        .row(0)
        .iter()
        .zip(mean.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(max < 1e-5, "{max}");

    // Segmentation features of a volume are refused, by file.
    let seg = Extractor {
        input: HeadInput::Patch { blocks: vec![] },
        ..extractor
    };
    let err = seg.run(&[cine_path], &|| {}).pop().unwrap().unwrap_err();
    assert!(
        err.to_string().contains("echo_cine.dcm") && err.to_string().contains("not segmented"),
        "{err}"
    );
}
