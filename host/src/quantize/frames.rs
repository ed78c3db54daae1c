//! Calibration frames: images (a file or a folder of them), DICOM cines and recordings,
//! preprocessed exactly as the pipeline preprocesses a frame (same resampling, ROI and
//! normalisation).

use std::cell::Cell;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use dinoedge_proto::reassembly::ReassemblerConfig;
use dinoedge_proto::wire as proto_wire;

use crate::link::LinkConfig;
use crate::preprocess::{FrameRef, PreprocessConfig, Preprocessor, load_image};
use crate::proto::message::PixelFormat;
use crate::recording::{RecordKind, RecordingKey, RecordingReader};
use crate::wire_tools::inspect::{InspectEvent, inspect};

use super::QuantizeError;

/// One preprocessed frame, `[1, 3, H, W]` flattened.
#[derive(Clone, Debug)]
pub struct CalibFrame {
    /// Where it came from: a file, or `recording#seq`.
    pub name: String,
    /// Normalised pixels.
    pub pixels: Vec<f32>,
}

/// A frame that was read but could not be used, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SkippedFrame {
    /// Where it came from.
    pub name: String,
    /// Why it was skipped.
    pub reason: String,
}

/// What was gathered.
#[derive(Debug, Default)]
pub struct Gathered {
    /// Usable frames, in source order.
    pub frames: Vec<CalibFrame>,
    /// Frames that could not be preprocessed.
    pub skipped: Vec<SkippedFrame>,
}

const IMAGE_EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "bmp", "dcm"];

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

fn is_image(path: &Path) -> bool {
    has_extension(path, &IMAGE_EXTENSIONS)
}

/// Image files under `dir`, depth first, in name order (so the same folder gives the same frames
/// on every machine).
fn images_under(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), QuantizeError> {
    let io = |e: std::io::Error| QuantizeError::Source {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            images_under(&path, out)?;
        } else if is_image(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads frames from `sources` (image files, folders of images, recordings), preprocessing
/// each with `config`, until `limit` frames are usable.
pub fn gather(
    sources: &[PathBuf],
    config: &PreprocessConfig,
    limit: usize,
) -> Result<Gathered, QuantizeError> {
    gather_with(sources, config, limit, None)
}

/// [`gather`], with `key` for the encrypted recordings among `sources`.
pub fn gather_with(
    sources: &[PathBuf],
    config: &PreprocessConfig,
    limit: usize,
    key: Option<&RecordingKey>,
) -> Result<Gathered, QuantizeError> {
    let mut pre = Preprocessor::new(config.clone());
    let mut out = Gathered::default();
    for source in sources {
        if out.frames.len() >= limit {
            break;
        }
        if !source.exists() {
            return Err(QuantizeError::Source {
                path: source.clone(),
                reason: "no such file or folder".into(),
            });
        }
        if source.is_dir() {
            let mut files = Vec::new();
            images_under(source, &mut files)?;
            if files.is_empty() {
                return Err(QuantizeError::Source {
                    path: source.clone(),
                    reason: format!("holds no images ({})", IMAGE_EXTENSIONS.join(", ")),
                });
            }
            for file in files {
                if out.frames.len() >= limit {
                    break;
                }
                add_image(&file, &mut pre, &mut out, limit);
            }
        } else if is_image(source) {
            add_image(source, &mut pre, &mut out, limit);
        } else {
            add_recording(source, key, &mut pre, &mut out, limit)?;
        }
    }
    Ok(out)
}

fn add_image(path: &Path, pre: &mut Preprocessor, out: &mut Gathered, limit: usize) {
    let name = path.display().to_string();
    if has_extension(path, &["dcm"]) {
        // A DICOM cine: each of its frames, as the edge simulator would send them.
        match dinoedge_dicom::load_dicom(path) {
            Ok(cine) => {
                for (i, frame) in cine.frames.iter().enumerate() {
                    if out.frames.len() >= limit {
                        break;
                    }
                    let result = pre.run(FrameRef {
                        format: PixelFormat::Gray8,
                        width: u32::from(cine.width),
                        height: u32::from(cine.height),
                        data: frame,
                    });
                    push(format!("{name}#{i}"), result, out);
                }
            }
            Err(e) => out.skipped.push(SkippedFrame {
                name,
                reason: e.to_string(),
            }),
        }
        return;
    }
    let result = load_image(path).and_then(|(width, height, rgb)| {
        pre.run(FrameRef {
            format: PixelFormat::Rgb888,
            width,
            height,
            data: &rgb,
        })
    });
    push(name, result, out);
}

fn push(
    name: String,
    result: Result<ndarray::Array4<f32>, crate::preprocess::PreprocessError>,
    out: &mut Gathered,
) {
    match result {
        Ok(pixels) => out.frames.push(CalibFrame {
            name,
            pixels: pixels.into_iter().collect(),
        }),
        Err(e) => out.skipped.push(SkippedFrame {
            name,
            reason: e.to_string(),
        }),
    }
}

/// The link bytes of a recording (what the edge sent), record after record, ending early once
/// `done` is set.
struct EdgeBytes {
    reader: RecordingReader,
    pending: Vec<u8>,
    at: usize,
    done: Rc<Cell<bool>>,
    error: Option<String>,
}

impl Read for EdgeBytes {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at >= self.pending.len() {
            if self.done.get() {
                return Ok(0);
            }
            match self.reader.next_record() {
                Ok(Some(r)) if r.kind == RecordKind::EdgeToHost => {
                    self.pending = r.payload;
                    self.at = 0;
                }
                Ok(Some(_)) => {}
                Ok(None) => return Ok(0),
                Err(e) => {
                    self.error = Some(e.to_string());
                    return Ok(0);
                }
            }
        }
        let rest = self.pending.get(self.at..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.at += n;
        Ok(n)
    }
}

fn add_recording(
    path: &Path,
    key: Option<&RecordingKey>,
    pre: &mut Preprocessor,
    out: &mut Gathered,
    limit: usize,
) -> Result<(), QuantizeError> {
    let source_error = |reason: String| QuantizeError::Source {
        path: path.to_path_buf(),
        reason,
    };
    let reader = RecordingReader::open_with(path, key).map_err(|e| match e {
        // A recording, but sealed: say which key it needs, not that it is no recording.
        crate::recording::RecordingError::KeyRequired { .. }
        | crate::recording::RecordingError::WrongKey { .. } => source_error(e.to_string()),
        _ => source_error(format!(
            "neither an image ({}) nor a readable recording: {e}",
            IMAGE_EXTENSIONS.join(", ")
        )),
    })?;
    let done = Rc::new(Cell::new(out.frames.len() >= limit));
    let mut bytes = EdgeBytes {
        reader,
        pending: Vec::new(),
        at: 0,
        done: done.clone(),
        error: None,
    };
    let link = LinkConfig::default();
    let config = ReassemblerConfig {
        max_chunk_len: proto_wire::chunk_capacity(link.max_packet_to_host) as u32,
        ..link.reassembly
    };
    let base = path.display().to_string();
    let mut frames_seen = 0usize;
    inspect(&mut bytes, link.max_packet_to_host, config, &mut |event| {
        if let InspectEvent::Frame(frame) = event {
            frames_seen += 1;
            if done.get() {
                return;
            }
            let name = format!("{base}#{}", frame.start.seq);
            let result = pre.run(FrameRef {
                format: frame.start.format,
                width: u32::from(frame.start.width),
                height: u32::from(frame.start.height),
                data: &frame.data,
            });
            push(name, result, out);
            done.set(out.frames.len() >= limit);
        }
    })
    .map_err(|e| source_error(e.to_string()))?;
    if let Some(e) = bytes.error {
        return Err(source_error(e));
    }
    if frames_seen == 0 {
        return Err(source_error("the recording holds no complete frame".into()));
    }
    Ok(())
}
