//! Frames from files, replayed at a frame rate: a folder of images, a DICOM cine (decoded by
//! `dinoedge-dicom`, re-exported here), or any list of frames.

use std::path::{Path, PathBuf};

use dinoedge_edge::port::{FramePacer, FrameSource, NewFrame, SourceInfo};
use dinoedge_proto::PixelFormat;

pub use dinoedge_dicom::{Cine, DicomError, load_dicom};

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
