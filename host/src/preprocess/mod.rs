//! Preprocessing: a frame as the edge sent it (Gray8, Rgb888, Rgb565, Yuyv422) to the backbone's
//! normalised NCHW f32 input.
//!
//! Steps: convert the region of interest to RGB888 (black outside a circle or sector), resize it
//! to the model size with antialiased bilinear filtering (fast_image_resize; the filter widens
//! with the downscale factor, as in torchvision's `antialias=True`), then scale to [0, 1] and
//! normalise with the ImageNet mean and std, as transformers' DINOv3 image processor does.

mod convert;
mod device;
pub mod resample;
mod roi;

use std::path::Path;

use dinoedge_proto::message::PixelFormat;
use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use ndarray::Array4;

use crate::backbone::InputSize;
pub use convert::Rect;
pub use device::FramePreprocessor;
pub use roi::Roi;

/// ImageNet mean, per RGB channel, of pixels scaled to [0, 1].
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet standard deviation, per RGB channel.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// A frame's pixels as they arrived, borrowed.
#[derive(Clone, Copy, Debug)]
pub struct FrameRef<'a> {
    /// Pixel layout.
    pub format: PixelFormat,
    /// Columns.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// Rows top to bottom, no padding.
    pub data: &'a [u8],
}

/// Why a frame could not be preprocessed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PreprocessError {
    /// The frame's byte count does not fit its declared format and size.
    #[error("{format:?} frame {width}x{height} needs {expected} bytes, got {found}")]
    DataLength {
        /// Declared format.
        format: PixelFormat,
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// Bytes the format and size need (0 when the size is impossible, e.g. odd YUYV width).
        expected: usize,
        /// Bytes given.
        found: usize,
    },
    /// The region of interest does not overlap the frame (or is degenerate).
    #[error("region of interest {roi} lies outside the {width}x{height} frame")]
    RoiOutside {
        /// The region.
        roi: String,
        /// Frame width.
        width: u32,
        /// Frame height.
        height: u32,
    },
    /// The output buffer has the wrong length.
    #[error("output buffer holds {found} values, expected {expected} (3 x {size})")]
    OutputLength {
        /// Values needed.
        expected: usize,
        /// Values given.
        found: usize,
        /// Model input size.
        size: InputSize,
    },
    /// An image file could not be read or decoded.
    #[error("{path}: {reason}")]
    Image {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The resizer refused the images (a bug if it happens: sizes are checked before).
    #[error("resize: {0}")]
    Resize(String),
}

/// What the preprocessor produces.
#[derive(Clone, Debug, PartialEq)]
pub struct PreprocessConfig {
    /// Model input size.
    pub size: InputSize,
    /// Region of interest; the whole frame when `None`.
    pub roi: Option<Roi>,
    /// Per-channel mean of [0, 1] pixels.
    pub mean: [f32; 3],
    /// Per-channel standard deviation.
    pub std: [f32; 3],
}

impl PreprocessConfig {
    /// The whole frame, ImageNet statistics, at `size`.
    pub fn new(size: InputSize) -> Self {
        PreprocessConfig {
            size,
            roi: None,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }
}

impl PreprocessConfig {
    /// (scale, offset) per channel, taking a 0-255 pixel value to its normalised value:
    /// `value * scale + offset`.
    pub fn affine(&self) -> [(f32, f32); 3] {
        std::array::from_fn(|c| {
            let s = 1.0 / (255.0 * self.std[c]);
            (s, -self.mean[c] / self.std[c])
        })
    }
}

/// Turns frames into normalised NCHW f32, reusing its buffers from frame to frame.
pub struct Preprocessor {
    config: PreprocessConfig,
    resizer: Resizer,
    rgb: Vec<u8>,
    resized: Vec<u8>,
    /// (scale, offset) per channel: value = byte * scale + offset.
    affine: [(f32, f32); 3],
}

impl std::fmt::Debug for Preprocessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preprocessor")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Preprocessor {
    /// A preprocessor for one model size and region of interest.
    pub fn new(config: PreprocessConfig) -> Self {
        let affine = config.affine();
        Preprocessor {
            resized: vec![0; config.size.height * config.size.width * 3],
            config,
            resizer: Resizer::new(),
            rgb: Vec::new(),
            affine,
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &PreprocessConfig {
        &self.config
    }

    /// Writes one frame as `[3, H, W]` into `out` (one item of a batch).
    pub fn run_into(&mut self, frame: FrameRef, out: &mut [f32]) -> Result<(), PreprocessError> {
        let (h, w) = (self.config.size.height, self.config.size.width);
        check_output(self.config.size, out.len())?;
        let rect = checked_rect(self.config.roi.as_ref(), frame)?;
        convert::to_rgb(frame.format, frame.width, frame.data, rect, &mut self.rgb);
        if let Some(roi) = self.config.roi.filter(Roi::masks) {
            for (i, px) in self.rgb.chunks_exact_mut(3).enumerate() {
                let (x, y) = (
                    rect.x + (i as u32 % rect.width),
                    rect.y + (i as u32 / rect.width),
                );
                if !roi.contains(x, y) {
                    px.fill(0);
                }
            }
        }
        let src = ImageRef::new(rect.width, rect.height, &self.rgb, PixelType::U8x3)
            .map_err(|e| PreprocessError::Resize(e.to_string()))?;
        let mut dst = Image::from_slice_u8(w as u32, h as u32, &mut self.resized, PixelType::U8x3)
            .map_err(|e| PreprocessError::Resize(e.to_string()))?;
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
        self.resizer
            .resize(&src, &mut dst, &options)
            .map_err(|e| PreprocessError::Resize(e.to_string()))?;
        let plane = h * w;
        let (r, rest) = out.split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        let [(sr, or), (sg, og), (sb, ob)] = self.affine;
        for (i, px) in self.resized.chunks_exact(3).enumerate() {
            r[i] = f32::from(px[0]) * sr + or;
            g[i] = f32::from(px[1]) * sg + og;
            b[i] = f32::from(px[2]) * sb + ob;
        }
        Ok(())
    }

    /// One frame as a `[1, 3, H, W]` array.
    pub fn run(&mut self, frame: FrameRef) -> Result<Array4<f32>, PreprocessError> {
        let (h, w) = (self.config.size.height, self.config.size.width);
        let mut out = Array4::zeros((1, 3, h, w));
        // A fresh standard-layout array is contiguous.
        let slice = out
            .as_slice_mut()
            .ok_or_else(|| PreprocessError::Resize("non-contiguous output".into()))?;
        self.run_into(frame, slice)?;
        Ok(out)
    }
}

/// The output length for one `[3, H, W]` item, or the error naming the mismatch.
pub(crate) fn check_output(size: InputSize, found: usize) -> Result<(), PreprocessError> {
    let expected = 3 * size.height * size.width;
    if found != expected {
        return Err(PreprocessError::OutputLength {
            expected,
            found,
            size,
        });
    }
    Ok(())
}

/// Checks the frame's length and returns the rectangle to crop: the region's bounds, or the
/// whole frame without one.
pub(crate) fn checked_rect(roi: Option<&Roi>, frame: FrameRef) -> Result<Rect, PreprocessError> {
    check_len(frame.format, frame.width, frame.height, frame.data)?;
    match roi {
        None => Ok(Rect {
            x: 0,
            y: 0,
            width: frame.width,
            height: frame.height,
        }),
        Some(roi) => {
            roi.bounds(frame.width, frame.height)
                .ok_or_else(|| PreprocessError::RoiOutside {
                    roi: roi.to_string(),
                    width: frame.width,
                    height: frame.height,
                })
        }
    }
}

/// Whether `data` holds exactly one `format` frame of `width` x `height`.
fn check_len(
    format: PixelFormat,
    width: u32,
    height: u32,
    data: &[u8],
) -> Result<(), PreprocessError> {
    let expected = u16::try_from(width)
        .ok()
        .zip(u16::try_from(height).ok())
        .and_then(|(w, h)| format.frame_len(w, h))
        .map_or(0, |n| n as usize);
    if expected == 0 || data.len() != expected {
        return Err(PreprocessError::DataLength {
            format,
            width,
            height,
            expected,
            found: data.len(),
        });
    }
    Ok(())
}

/// A whole frame as RGB888 (e.g. to draw on), after checking its length.
pub fn frame_rgb(
    format: PixelFormat,
    width: u32,
    height: u32,
    data: &[u8],
) -> Result<Vec<u8>, PreprocessError> {
    check_len(format, width, height, data)?;
    let mut rgb = Vec::new();
    let all = Rect {
        x: 0,
        y: 0,
        width,
        height,
    };
    convert::to_rgb(format, width, data, all, &mut rgb);
    Ok(rgb)
}

/// An image file (PNG, JPEG) decoded to RGB888: `(width, height, bytes)`.
pub fn load_image(path: &Path) -> Result<(u32, u32, Vec<u8>), PreprocessError> {
    let img = image::open(path).map_err(|e| PreprocessError::Image {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let rgb = img.into_rgb8();
    Ok((rgb.width(), rgb.height(), rgb.into_raw()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn uniform_frames_normalise_to_the_imagenet_formula() {
        let mut p = Preprocessor::new(PreprocessConfig::new(InputSize::new(32, 48)));
        let data = vec![200u8; 100 * 70];
        let x = p
            .run(FrameRef {
                format: PixelFormat::Gray8,
                width: 100,
                height: 70,
                data: &data,
            })
            .unwrap();
        assert_eq!(x.shape(), &[1, 3, 32, 48]);
        for c in 0..3 {
            let want = (200.0 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
            assert!(
                x.index_axis(ndarray::Axis(1), c)
                    .iter()
                    .all(|v| (v - want).abs() < 1e-5)
            );
        }
    }

    #[test]
    fn circle_roi_blacks_out_the_corners_and_crops() {
        let mut cfg = PreprocessConfig::new(InputSize::new(16, 16));
        cfg.roi = Some("circle:50,40,30".parse().unwrap());
        let mut p = Preprocessor::new(cfg);
        let data = vec![255u8; 100 * 80 * 3];
        let x = p
            .run(FrameRef {
                format: PixelFormat::Rgb888,
                width: 100,
                height: 80,
                data: &data,
            })
            .unwrap();
        let black = -IMAGENET_MEAN[0] / IMAGENET_STD[0];
        let white = (1.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0];
        assert!(
            (x[[0, 0, 0, 0]] - black).abs() < 0.05,
            "corner {}",
            x[[0, 0, 0, 0]]
        );
        assert!(
            (x[[0, 0, 8, 8]] - white).abs() < 1e-4,
            "centre {}",
            x[[0, 0, 8, 8]]
        );
    }

    #[test]
    fn wrong_lengths_and_regions_are_errors() {
        let mut p = Preprocessor::new(PreprocessConfig::new(InputSize::new(16, 16)));
        let short = vec![0u8; 10];
        let e = p
            .run(FrameRef {
                format: PixelFormat::Rgb565,
                width: 4,
                height: 4,
                data: &short,
            })
            .unwrap_err();
        assert_eq!(
            e,
            PreprocessError::DataLength {
                format: PixelFormat::Rgb565,
                width: 4,
                height: 4,
                expected: 32,
                found: 10
            }
        );
        let odd = vec![0u8; 3 * 2 * 2];
        assert!(matches!(
            p.run(FrameRef {
                format: PixelFormat::Yuyv422,
                width: 3,
                height: 2,
                data: &odd
            }),
            Err(PreprocessError::DataLength { expected: 0, .. })
        ));
        let mut cfg = PreprocessConfig::new(InputSize::new(16, 16));
        cfg.roi = Some("rect:0,0,50,50".parse().unwrap());
        let mut p = Preprocessor::new(cfg);
        let data = vec![0u8; 40 * 40];
        let e = p
            .run(FrameRef {
                format: PixelFormat::Gray8,
                width: 40,
                height: 40,
                data: &data,
            })
            .unwrap_err();
        assert!(
            e.to_string().contains("rect:0,0,50,50") && e.to_string().contains("40x40"),
            "{e}"
        );
        let mut buf = vec![0.0; 5];
        assert!(matches!(
            p.run_into(
                FrameRef {
                    format: PixelFormat::Gray8,
                    width: 40,
                    height: 40,
                    data: &data
                },
                &mut buf
            ),
            Err(PreprocessError::OutputLength { .. })
        ));
    }
}
