//! Loading the echo cine shipped in tests/data (pydicom's 30-frame ultrasound loop).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::path::Path;

use dinoedge_dicom::{DicomError, load_dicom};

fn echo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/echo_cine.dcm")
}

#[test]
fn the_echo_cine_loads_as_30_gray_frames_at_30_fps() {
    let cine = load_dicom(&echo()).unwrap();
    assert_eq!((cine.width, cine.height), (320, 240));
    assert_eq!(cine.frames.len(), 30);
    assert_eq!(cine.fps_milli, Some(30_000));
    assert!(cine.frames.iter().all(|f| f.len() == 320 * 240));
    // A real loop: frames differ from one another, and show an image (not all black or white).
    assert_ne!(cine.frames[0], cine.frames[1]);
    let mean = cine.frames[0].iter().map(|&b| f64::from(b)).sum::<f64>() / (320.0 * 240.0);
    assert!((5.0..200.0).contains(&mean), "mean luminance {mean}");
}

#[test]
fn a_file_that_is_not_dicom_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("not.dcm");
    std::fs::write(&bogus, b"this is not a DICOM file at all").unwrap();
    let err = load_dicom(&bogus).unwrap_err();
    assert!(matches!(err, DicomError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("not.dcm"), "{err}");
}

/// Against pydicom + Pillow's decoding of frame 0 (luminance by the same weights), dumped as
/// raw bytes by hand (see the closing note of the simulator's issue):
/// `DINOEDGE_ECHO_Y0=/tmp/y0.raw cargo test -p dinoedge-dicom -- --ignored`.
#[test]
#[ignore = "needs a reference dump in DINOEDGE_ECHO_Y0"]
fn frame_0_matches_a_reference_decoder() {
    let reference =
        std::env::var("DINOEDGE_ECHO_Y0").expect("DINOEDGE_ECHO_Y0 names the reference dump");
    let reference = std::fs::read(reference).unwrap();
    let cine = load_dicom(&echo()).unwrap();
    let diff: Vec<i32> = cine.frames[0]
        .iter()
        .zip(&reference)
        .map(|(&a, &b)| (i32::from(a) - i32::from(b)).abs())
        .collect();
    let mean = diff.iter().sum::<i32>() as f64 / diff.len() as f64;
    let max = diff.iter().max().copied().unwrap_or(0);
    println!("frame 0 against the reference: mean |diff| {mean:.3}, max {max}");
    assert!(mean < 1.0 && max <= 8, "mean {mean}, max {max}");
}
