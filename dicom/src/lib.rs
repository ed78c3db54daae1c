//! DICOM cines (e.g. an ultrasound loop) decoded to Gray8 frames: one small crate so that the
//! edge simulator (which sends them) and the host (which imports and probes them) share one
//! decoder without the host depending on the simulator.

use std::path::{Path, PathBuf};

/// Why a DICOM file could not be turned into frames.
#[derive(Debug, thiserror::Error)]
pub enum DicomError {
    /// The file could not be read or parsed.
    #[error("{path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the DICOM reader said.
        message: String,
    },
    /// The pixel data could not be decoded.
    #[error("{path}: decoding pixel data: {message}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        message: String,
    },
    /// The pixel layout is not one that becomes Gray8 frames.
    #[error("{path}: {what}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What is unsupported.
        what: String,
    },
}

/// A DICOM cine loaded as Gray8 frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cine {
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// Frame rate from Frame Time (0018,1063) or Cine Rate (0018,0040), thousandths of a
    /// frame per second, if the file says.
    pub fps_milli: Option<u32>,
    /// The frames, luminance only.
    pub frames: Vec<Vec<u8>>,
}

/// Loads a multi-frame DICOM (e.g. an ultrasound cine) as Gray8 frames: monochrome as it is,
/// colour as its luminance (BT.601).
pub fn load_dicom(path: &Path) -> Result<Cine, DicomError> {
    use dicom_pixeldata::PixelDecoder;
    let read = |message: String| DicomError::Read {
        path: path.to_owned(),
        message,
    };
    let decode = |message: String| DicomError::Decode {
        path: path.to_owned(),
        message,
    };
    let unsupported = |what: String| DicomError::Unsupported {
        path: path.to_owned(),
        what,
    };
    let obj = dicom_object::open_file(path).map_err(|e| read(e.to_string()))?;
    let fps_milli = frame_rate_milli(&obj);
    let pixels = obj.decode_pixel_data().map_err(|e| decode(e.to_string()))?;
    let (width, height) = (pixels.columns(), pixels.rows());
    let width = u16::try_from(width).map_err(|_| unsupported(format!("{width} columns")))?;
    let height = u16::try_from(height).map_err(|_| unsupported(format!("{height} rows")))?;
    let samples = usize::from(pixels.samples_per_pixel());
    let photometric = pixels.photometric_interpretation().to_string();
    let mut frames = Vec::new();
    for i in 0..pixels.number_of_frames() {
        let data: Vec<u8> = pixels.to_vec_frame(i).map_err(|e| decode(e.to_string()))?;
        let gray = luminance(samples, &photometric, data).map_err(unsupported)?;
        if gray.len() != usize::from(width) * usize::from(height) {
            return Err(decode(format!(
                "frame {i} has {} pixels, expected {width}x{height}",
                gray.len()
            )));
        }
        frames.push(gray);
    }
    if frames.is_empty() {
        return Err(unsupported("no frames".into()));
    }
    Ok(Cine {
        width,
        height,
        fps_milli,
        frames,
    })
}

/// One decoded frame of `samples` interleaved samples per pixel as Gray8: monochrome as it is,
/// RGB by BT.601 weights, YCbCr as its first sample; the error says what layout is refused.
fn luminance(samples: usize, photometric: &str, data: Vec<u8>) -> Result<Vec<u8>, String> {
    match (samples, photometric) {
        (1, _) => Ok(data),
        (3, "RGB") => Ok(data
            .chunks_exact(3)
            .map(|p| match *p {
                [r, g, b] => {
                    ((77 * u32::from(r) + 150 * u32::from(g) + 29 * u32::from(b) + 128) >> 8) as u8
                }
                _ => 0,
            })
            .collect()),
        (3, pi) if pi.starts_with("YBR") => Ok(data
            .chunks_exact(3)
            .filter_map(|p| p.first().copied())
            .collect()),
        (n, pi) => Err(format!("{n} samples per pixel, {pi}")),
    }
}

/// The cine's frame rate, from Frame Time (ms per frame) or Cine Rate (frames per second).
fn frame_rate_milli(obj: &dicom_object::DefaultDicomObject) -> Option<u32> {
    use dicom_object::Tag;
    let number = |tag: Tag| -> Option<f64> {
        let text = obj.element(tag).ok()?.to_str().ok()?;
        text.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v > 0.0)
    };
    if let Some(ms) = number(Tag(0x0018, 0x1063)) {
        return Some((1_000_000.0 / ms).round() as u32);
    }
    number(Tag(0x0018, 0x0040)).map(|fps| (fps * 1000.0).round() as u32)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn luminance_by_layout() {
        assert_eq!(luminance(1, "MONOCHROME2", vec![1, 2]).unwrap(), vec![1, 2]);
        assert_eq!(
            luminance(3, "RGB", vec![255, 255, 255, 0, 0, 0, 255, 0, 0]).unwrap(),
            vec![255, 0, 77]
        );
        assert_eq!(
            luminance(3, "YBR_FULL_422", vec![9, 1, 2, 7, 3, 4]).unwrap(),
            vec![9, 7]
        );
        let refused = luminance(4, "ARGB", vec![0; 4]).unwrap_err();
        assert!(refused.contains("4 samples per pixel, ARGB"), "{refused}");
    }
}
