//! Feature extraction for probing: every image through preprocessing and the frozen backbone
//! once, one tract state per worker, with an on-disk cache keyed by model, size, feature kind
//! and file content.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use ndarray::{Array2, Axis};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};

use crate::backbone::Backbone;
use crate::heads::{HeadInput, cls_mean_patch, patch_features};
use crate::preprocess::{FrameRef, PreprocessConfig, Preprocessor, load_image};
use crate::proto::message::PixelFormat;

/// Why one image yielded no features.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExtractError {
    /// The image could not be read, decoded or preprocessed.
    #[error("{path}: {reason}")]
    Image {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The backbone failed on it.
    #[error("{path}: backbone: {reason}")]
    Backbone {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The features hold NaN or infinite values.
    #[error("{path}: features hold NaN or infinite values")]
    NonFinite {
        /// The file.
        path: PathBuf,
    },
}

/// One image's result, filled by whichever worker took it.
type Slot = Mutex<Option<Result<Array2<f32>, ExtractError>>>;

/// Where features come from and go.
pub struct Extractor<'a> {
    /// The backbone, prepared for batch 1 at the head's size, with the intermediate blocks the
    /// features need.
    pub backbone: &'a Backbone,
    /// The backbone's weight fingerprint (part of the cache key).
    pub fingerprint: String,
    /// Features wanted.
    pub input: HeadInput,
    /// Cache folder; `None` for no cache.
    pub cache: Option<PathBuf>,
    /// Parallel workers (one tract state each).
    pub workers: usize,
}

impl Extractor<'_> {
    fn cache_path(&self, bytes: &[u8]) -> Option<PathBuf> {
        let dir = self.cache.as_ref()?;
        let mut h = crc32fast::Hasher::new();
        h.update(bytes);
        let size = self.backbone.size();
        let kind = match &self.input {
            HeadInput::ClsMeanPatch => "clsmean".to_string(),
            HeadInput::Patch { blocks } => format!(
                "patch{}",
                blocks.iter().map(|b| format!("-{b}")).collect::<String>()
            ),
        };
        let fp = self.fingerprint.replace(':', "");
        // Features in another precision differ: never taken for FP32 ones (or the reverse).
        let kind = match self.backbone.engine().precision {
            crate::engine::Precision::Fp32 => kind,
            other => format!("{kind}-{other}"),
        };
        Some(dir.join(format!(
            "{fp}-{size}-{kind}-{:08x}-{}.npy",
            h.finalize(),
            bytes.len()
        )))
    }

    /// The shape of one image's features: one row for `[CLS ; mean patch]` (a volume's mean
    /// too), a row per patch otherwise.
    fn shape(&self) -> (usize, usize) {
        let config = self.backbone.config();
        let width = self.input.width(config.hidden_size);
        match &self.input {
            HeadInput::ClsMeanPatch => (1, width),
            HeadInput::Patch { .. } => {
                let size = self.backbone.size();
                let patch = config.patch_size.max(1);
                ((size.height / patch) * (size.width / patch), width)
            }
        }
    }

    fn one(
        &self,
        path: &Path,
        pre: &mut Preprocessor,
        state: &mut crate::backbone::BackboneState,
    ) -> Result<Array2<f32>, ExtractError> {
        let bytes = std::fs::read(path).map_err(|e| ExtractError::Image {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let cached = self.cache_path(&bytes);
        // A cached array of another shape, or holding NaN, is not these features (a stale or
        // damaged file): it is computed again and rewritten rather than handed on.
        if let Some(c) = &cached
            && let Ok(f) = std::fs::File::open(c)
            && let Ok(a) = Array2::<f32>::read_npy(std::io::BufReader::new(f))
            && a.dim() == self.shape()
            && a.iter().all(|v| v.is_finite())
        {
            return Ok(a);
        }
        let image_err = |reason: String| ExtractError::Image {
            path: path.to_path_buf(),
            reason,
        };
        let is_dicom = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("dcm"));
        // A DICOM cine is a volume: its classification features are the mean over slices.
        let frames: Vec<(PixelFormat, u32, u32, Vec<u8>)> = if is_dicom {
            if self.input != HeadInput::ClsMeanPatch {
                return Err(image_err(
                    "a DICOM volume can be classified, not segmented (no per-slice masks)".into(),
                ));
            }
            let cine = dinoedge_dicom::load_dicom(path).map_err(|e| image_err(e.to_string()))?;
            let (w, h) = (u32::from(cine.width), u32::from(cine.height));
            cine.frames
                .into_iter()
                .map(|f| (PixelFormat::Gray8, w, h, f))
                .collect()
        } else {
            let (w, h, rgb) = load_image(path).map_err(|e| image_err(e.to_string()))?;
            vec![(PixelFormat::Rgb888, w, h, rgb)]
        };
        let mut slices = Vec::with_capacity(frames.len());
        for (format, width, height, data) in &frames {
            let x = pre
                .run(FrameRef {
                    format: *format,
                    width: *width,
                    height: *height,
                    data,
                })
                .map_err(|e| image_err(e.to_string()))?;
            let f = state.run(x.view()).map_err(|e| ExtractError::Backbone {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            let one = match &self.input {
                HeadInput::ClsMeanPatch => cls_mean_patch(&f, 0).map(|v| v.insert_axis(Axis(0))),
                HeadInput::Patch { blocks } => patch_features(&f, 0, blocks),
            }
            .map_err(|e| ExtractError::Backbone {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            slices.push(one);
        }
        let out = match slices.len() {
            0 => return Err(image_err("no frames".into())),
            1 => slices.swap_remove(0),
            _ => crate::heads::volume::mean_features(slices.iter().map(|s| s.row(0)))
                .map(|m| m.insert_axis(Axis(0)))
                .ok_or_else(|| image_err("slices of different feature sizes".into()))?,
        };
        if out.iter().any(|v| !v.is_finite()) {
            return Err(ExtractError::NonFinite {
                path: path.to_path_buf(),
            });
        }
        // A cache that cannot be written only costs time later.
        if let Some(c) = cached
            && std::fs::create_dir_all(c.parent().unwrap_or(Path::new("."))).is_ok()
            && let Ok(file) = std::fs::File::create(&c)
        {
            let _ = out.write_npy(std::io::BufWriter::new(file));
        }
        Ok(out)
    }

    /// Features of every path, in order; `on_done` is called once per image (for progress).
    pub fn run(
        &self,
        paths: &[PathBuf],
        on_done: &(dyn Fn() + Sync),
    ) -> Vec<Result<Array2<f32>, ExtractError>> {
        let next = AtomicUsize::new(0);
        let results: Vec<Slot> = paths.iter().map(|_| Mutex::new(None)).collect();
        std::thread::scope(|scope| {
            for _ in 0..self.workers.max(1) {
                scope.spawn(|| {
                    let mut pre = Preprocessor::new(PreprocessConfig::new(self.backbone.size()));
                    let mut state = match self.backbone.state() {
                        Ok(s) => s,
                        Err(e) => {
                            // Every image this worker would take gets the error.
                            while let Some(i) = Some(next.fetch_add(1, Ordering::Relaxed))
                                .filter(|&i| i < paths.len())
                            {
                                if let (Some(slot), Some(p)) = (results.get(i), paths.get(i))
                                    && let Ok(mut s) = slot.lock()
                                {
                                    *s = Some(Err(ExtractError::Backbone {
                                        path: p.clone(),
                                        reason: e.to_string(),
                                    }));
                                }
                                on_done();
                            }
                            return;
                        }
                    };
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let (Some(path), Some(slot)) = (paths.get(i), results.get(i)) else {
                            break;
                        };
                        let r = self.one(path, &mut pre, &mut state);
                        if let Ok(mut s) = slot.lock() {
                            *s = Some(r);
                        }
                        on_done();
                    }
                });
            }
        });
        results
            .into_iter()
            .zip(paths)
            .map(|(m, p)| {
                m.into_inner().ok().flatten().unwrap_or_else(|| {
                    Err(ExtractError::Backbone {
                        path: p.clone(),
                        reason: "worker stopped".into(),
                    })
                })
            })
            .collect()
    }
}
