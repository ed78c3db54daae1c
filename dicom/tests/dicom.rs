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

// The pixels themselves are checked against pydicom's decoding in host/tests/references.rs,
// from fixtures committed under models/fixtures/reference/.
