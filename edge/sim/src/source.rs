//! Frames from files, replayed at a frame rate: a folder of images, or any list of frames.

use std::path::{Path, PathBuf};

use dinoedge_edge::port::{FramePacer, FrameSource, NewFrame, SourceInfo};
use dinoedge_proto::PixelFormat;

/// Why frames could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read or decoded.
    #[error("{path}: {source}")]
    Image {
        /// The file.
        path: PathBuf,
        /// Why.
        source: image::ImageError,
    },
    /// The folder could not be listed.
    #[error("listing {path}: {source}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The folder holds no images.
    #[error("{0}: no PNG or JPEG images")]
    Empty(PathBuf),
    /// The images differ in size.
    #[error("{path} is {got_w}x{got_h}, the first image {want_w}x{want_h}")]
    SizeMismatch {
        /// The odd one out.
        path: PathBuf,
        /// Its width.
        got_w: u32,
        /// Its height.
        got_h: u32,
        /// The first image's width.
        want_w: u32,
        /// The first image's height.
        want_h: u32,
    },
    /// An image is larger than a frame may be.
    #[error("{path}: {w}x{h} is larger than 65535 pixels a side")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Width.
        w: u32,
        /// Height.
        h: u32,
    },
}

/// Loads every PNG and JPEG in `dir` (sorted by name) as Gray8 frames of one size.
pub fn load_image_folder(dir: &Path) -> Result<(u16, u16, Vec<Vec<u8>>), LoadError> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| LoadError::Folder {
            path: dir.to_owned(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
        })
        .collect();
    paths.sort();
    let mut frames = Vec::with_capacity(paths.len());
    let mut size = None;
    for path in &paths {
        let img = image::open(path)
            .map_err(|source| LoadError::Image {
                path: path.clone(),
                source,
            })?
            .into_luma8();
        let (w, h) = img.dimensions();
        match size {
            None => size = Some((w, h)),
            Some((want_w, want_h)) if (w, h) != (want_w, want_h) => {
                return Err(LoadError::SizeMismatch {
                    path: path.clone(),
                    got_w: w,
                    got_h: h,
                    want_w,
                    want_h,
                });
            }
            Some(_) => {}
        }
        frames.push(img.into_raw());
    }
    let (w, h) = size.ok_or_else(|| LoadError::Empty(dir.to_owned()))?;
    let too_large = || LoadError::TooLarge {
        path: dir.to_owned(),
        w,
        h,
    };
    Ok((
        u16::try_from(w).map_err(|_| too_large())?,
        u16::try_from(h).map_err(|_| too_large())?,
        frames,
    ))
}

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
    /// The pixel layout is not one this simulator sends.
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
        let gray = match (samples, photometric.as_str()) {
            (1, _) => data,
            (3, "RGB") => data
                .chunks_exact(3)
                .map(|p| {
                    ((77 * u32::from(p[0]) + 150 * u32::from(p[1]) + 29 * u32::from(p[2]) + 128)
                        >> 8) as u8
                })
                .collect(),
            // YCbCr: the luminance is the first sample.
            (3, pi) if pi.starts_with("YBR") => data.chunks_exact(3).map(|p| p[0]).collect(),
            (n, pi) => return Err(unsupported(format!("{n} samples per pixel, {pi}"))),
        };
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

/// Replays a list of frames at a frame rate, looping or once.
#[derive(Debug)]
pub struct FrameList {
    info: SourceInfo,
    frames: Vec<Vec<u8>>,
    looped: bool,
    /// Index of the next frame to capture.
    next: usize,
    /// The current frame and the bytes of it read so far.
    current: Option<(usize, usize)>,
    pacer: FramePacer,
    /// Frames captured (read or skipped).
    pub captured: u64,
}

impl FrameList {
    /// Frames of one geometry (each `width * height` bytes for Gray8), captured at `fps_milli`
    /// (0: as fast as they are taken).
    pub fn new(
        width: u16,
        height: u16,
        frames: Vec<Vec<u8>>,
        fps_milli: u32,
        looped: bool,
    ) -> Self {
        FrameList {
            info: SourceInfo {
                width,
                height,
                format: PixelFormat::Gray8,
                fps_milli,
            },
            frames,
            looped,
            next: 0,
            current: None,
            pacer: FramePacer::default(),
            captured: 0,
        }
    }

    /// Whether a non-looping list has given every frame.
    pub fn exhausted(&self) -> bool {
        !self.looped && self.next >= self.frames.len() && self.current.is_none()
    }
}

impl FrameSource for FrameList {
    type Error = std::convert::Infallible;

    fn info(&self) -> SourceInfo {
        self.info
    }

    fn poll_frame(&mut self, now_us: u64) -> Result<Option<NewFrame>, Self::Error> {
        if self.current.is_some() || self.frames.is_empty() || self.exhausted() {
            return Ok(None);
        }
        if !self.pacer.due(now_us, self.info.fps_milli) {
            return Ok(None);
        }
        if self.next >= self.frames.len() {
            self.next = 0;
        }
        self.current = Some((self.next, 0));
        self.next += 1;
        self.captured += 1;
        Ok(Some(NewFrame {
            capture_us: Some(now_us),
            ..NewFrame::default()
        }))
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let Some((index, offset)) = self.current else {
            return Ok(0);
        };
        let frame = self
            .frames
            .get(index)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let rest = frame.get(offset..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.current = (offset + n < frame.len()).then_some((index, offset + n));
        Ok(n)
    }

    fn skip(&mut self) -> Result<(), Self::Error> {
        self.current = None;
        Ok(())
    }
}
