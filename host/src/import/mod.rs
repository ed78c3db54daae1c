//! Turning a DICOM cine, an image folder or a video into a recording, as an edge would have
//! sent it over a link: `Hello`, then per frame a `FrameStart`, its chunks and (every second) a
//! `Heartbeat`, with the host's `Welcome`, credits and clock pings answered by `Pong`s, all on a
//! clock that advances at the source's frame rate and the link's byte rate. Every source is
//! then bench-tested the same way, through the same replay.

mod video;

use std::path::{Path, PathBuf};

use dinoedge_proto::chunk::Chunks;
use dinoedge_proto::credit::grant_for;
use dinoedge_proto::wire::{self, FrameCrc};
use dinoedge_proto::{
    Capabilities, FrameMeta, FrameStart, Heartbeat, Hello, MAX_ID, Message, PROTOCOL_VERSION, Ping,
    PixelFormat, Pong, Sensor, Version, Welcome,
};

use crate::recording::{RecordKind, RecordingError, RecordingKey, RecordingWriter};

pub use video::{VideoError, VideoFrames};

/// One frame of a source. Its `Debug` shows the pixels' length, never the pixels: they may be
/// a patient's image.
#[derive(Clone, PartialEq, Eq)]
pub struct SourceFrame {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
    /// Pixel layout.
    pub format: PixelFormat,
    /// The pixels.
    pub data: Vec<u8>,
    /// A label to keep beside the recording (e.g. the image's class folder).
    pub label: Option<String>,
}

impl std::fmt::Debug for SourceFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceFrame")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("format", &self.format)
            .field("data_len", &self.data.len())
            .field("label", &self.label)
            .finish()
    }
}

impl SourceFrame {
    /// The frame as Gray8 (BT.601 luminance of RGB); Gray8 frames stay as they are.
    pub fn to_gray(self) -> SourceFrame {
        if self.format != PixelFormat::Rgb888 {
            return self;
        }
        let data = self
            .data
            .chunks_exact(3)
            .map(|p| {
                let y = 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]);
                y.round().clamp(0.0, 255.0) as u8
            })
            .collect();
        SourceFrame {
            format: PixelFormat::Gray8,
            data,
            ..self
        }
    }
}

/// How the imported stream is timed and framed.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportConfig {
    /// Frames per second of the source.
    pub fps: f64,
    /// Largest packet the simulated edge sends.
    pub packet: usize,
    /// The link's byte rate, for the time each frame takes to arrive.
    pub link_bytes_per_s: f64,
    /// The device id in the `Hello`.
    pub device_id: String,
    /// The edge clock minus the host clock, µs (the edge booted earlier than the host).
    pub edge_clock_offset_us: u64,
}

impl Default for ImportConfig {
    /// 30 fps, 64 KiB packets, 40 MB/s (USB 2.0 high speed, in practice).
    fn default() -> Self {
        ImportConfig {
            fps: 30.0,
            packet: 64 * 1024,
            link_bytes_per_s: 40e6,
            device_id: "import".into(),
            edge_clock_offset_us: 5_000_000,
        }
    }
}

/// What an import wrote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportReport {
    /// Frames written.
    pub frames: u32,
    /// Pixel bytes.
    pub frame_bytes: u64,
    /// Link bytes (edge to host).
    pub wire_bytes: u64,
    /// Length of the stream, seconds.
    pub duration_s: f64,
    /// Per frame (by sequence number) its label, where the source has labels.
    pub labels: Vec<(u32, String)>,
    /// Frame sizes seen, in order of first appearance.
    pub sizes: Vec<(u16, u16, PixelFormat)>,
}

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The source yielded no frame.
    #[error("{0}: no frames")]
    Empty(PathBuf),
    /// A DICOM file could not be read.
    #[error(transparent)]
    Dicom(#[from] dinoedge_dicom::DicomError),
    /// An image could not be read, or a folder listed.
    #[error("{path}: {reason}")]
    Image {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A frame is larger than the protocol carries.
    #[error("{path}: a {width}x{height} frame does not fit the protocol's 16-bit sizes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Width.
        width: u32,
        /// Height.
        height: u32,
    },
    /// The video could not be decoded.
    #[error(transparent)]
    Video(#[from] VideoError),
    /// The frame rate or packet size is not usable.
    #[error("{0}")]
    Config(String),
    /// A packet could not be encoded.
    #[error("encoding a packet: {0}")]
    Encode(#[from] wire::EncodeError),
    /// The recording could not be written.
    #[error(transparent)]
    Recording(#[from] RecordingError),
    /// An output (the recording or its labels) exists: an import never overwrites a file.
    #[error("{path} exists; an import never overwrites a file: choose another output")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// An output other than the recording (its labels) could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Where the labels of an import into `recording` go: `FILE.labels.csv` beside it, where
/// `bench` finds them by itself.
pub fn labels_path(recording: &Path) -> PathBuf {
    let mut name = recording.as_os_str().to_owned();
    name.push(".labels.csv");
    PathBuf::from(name)
}

/// Imports `frames` into a new recording at `out` (mode 0600; encrypted with `key` if given),
/// and their labels, if the source has any, into [`labels_path`] beside it. An output that
/// exists is refused before anything is written, and a failed import leaves no file behind:
/// nothing half-made can be taken for a recording, and nothing existing is touched.
pub fn import_file(
    frames: impl IntoIterator<Item = Result<SourceFrame, ImportError>>,
    source: &str,
    config: &ImportConfig,
    out: &Path,
    key: Option<&RecordingKey>,
) -> Result<ImportReport, ImportError> {
    let labels = labels_path(out);
    // `symlink_metadata`: a dangling link is an existing name too.
    if let Some(path) = [out, labels.as_path()]
        .into_iter()
        .find(|p| p.symlink_metadata().is_ok())
    {
        return Err(ImportError::Exists {
            path: path.to_owned(),
        });
    }
    let mut writer = RecordingWriter::create_with(out, key).map_err(|e| match e {
        RecordingError::Exists { path } => ImportError::Exists { path },
        e => ImportError::Recording(e),
    })?;
    // From here on `out` is this import's own file: on failure it is removed.
    let written = import(frames, source, config, &mut writer)
        .and_then(|report| writer.finish().map(|()| report).map_err(ImportError::from));
    let report = match written {
        Ok(report) => report,
        Err(e) => {
            let _ = std::fs::remove_file(out);
            return Err(e);
        }
    };
    if !report.labels.is_empty()
        && let Err(e) = write_labels(&labels, &report.labels)
    {
        let _ = std::fs::remove_file(out);
        return Err(e);
    }
    Ok(report)
}

/// Writes `labels` as CSV `seq,label` into a new file at `path`, mode 0600.
fn write_labels(path: &Path, labels: &[(u32, String)]) -> Result<(), ImportError> {
    use std::io::Write;
    let mut csv = String::from("seq,label\n");
    for (seq, label) in labels {
        csv.push_str(&format!("{seq},{label}\n"));
    }
    let mut file = crate::files::create_private(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => ImportError::Exists {
            path: path.to_owned(),
        },
        _ => ImportError::Write {
            path: path.to_owned(),
            source: e,
        },
    })?;
    if let Err(e) = file
        .write_all(csv.as_bytes())
        .and_then(|()| file.sync_all())
    {
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(ImportError::Write {
            path: path.to_owned(),
            source: e,
        });
    }
    Ok(())
}

/// A DICOM cine's frames (Gray8) and its frame rate, if the file states one.
pub fn dicom_frames(path: &Path) -> Result<(Vec<SourceFrame>, Option<f64>), ImportError> {
    let cine = dinoedge_dicom::load_dicom(path)?;
    let fps = cine.fps_milli.map(|m| f64::from(m) / 1000.0);
    let frames = cine
        .frames
        .into_iter()
        .map(|data| SourceFrame {
            width: cine.width,
            height: cine.height,
            format: PixelFormat::Gray8,
            data,
            label: None,
        })
        .collect();
    Ok((frames, fps))
}

/// The images of a folder in name order (PNG, JPEG, BMP, TIFF), as Rgb888 frames; with
/// sub-folders instead, each sub-folder is a class and its name each frame's label.
pub fn image_frames(
    dir: &Path,
) -> Result<impl Iterator<Item = Result<SourceFrame, ImportError>>, ImportError> {
    let list = |d: &Path| -> Result<Vec<PathBuf>, ImportError> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(d)
            .map_err(|e| ImportError::Image {
                path: d.to_owned(),
                reason: e.to_string(),
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        paths.sort();
        Ok(paths)
    };
    let is_image = |p: &PathBuf| {
        p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
            matches!(
                e.to_ascii_lowercase().as_str(),
                "png" | "jpg" | "jpeg" | "bmp" | "tif" | "tiff"
            )
        })
    };
    let entries = list(dir)?;
    let mut items: Vec<(PathBuf, Option<String>)> = entries
        .iter()
        .filter(|p| is_image(p))
        .map(|p| (p.clone(), None))
        .collect();
    if items.is_empty() {
        for sub in entries.iter().filter(|p| p.is_dir()) {
            let class = sub
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            items.extend(
                list(sub)?
                    .into_iter()
                    .filter(is_image)
                    .map(|p| (p, Some(class.clone()))),
            );
        }
    }
    if items.is_empty() {
        return Err(ImportError::Empty(dir.to_owned()));
    }
    Ok(items.into_iter().map(|(path, label)| {
        let (w, h, rgb) = crate::preprocess::load_image(&path).map_err(|e| ImportError::Image {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let (Ok(width), Ok(height)) = (u16::try_from(w), u16::try_from(h)) else {
            return Err(ImportError::TooLarge {
                path,
                width: w,
                height: h,
            });
        };
        Ok(SourceFrame {
            width,
            height,
            format: PixelFormat::Rgb888,
            data: rgb,
            label,
        })
    }))
}

/// Writes `frames` into `out` as an edge at `config.fps` would have sent them, with `source`
/// named in the recording's opening note.
pub fn import(
    frames: impl IntoIterator<Item = Result<SourceFrame, ImportError>>,
    source: &str,
    config: &ImportConfig,
    out: &mut RecordingWriter,
) -> Result<ImportReport, ImportError> {
    if !(config.fps.is_finite() && config.fps > 0.0) {
        return Err(ImportError::Config(format!(
            "frame rate {} is not a positive number",
            config.fps
        )));
    }
    if config.packet < dinoedge_proto::MIN_PACKET {
        return Err(ImportError::Config(format!(
            "packet size {} is below the protocol minimum of {}",
            config.packet,
            dinoedge_proto::MIN_PACKET
        )));
    }
    let mut stream = Stream::new(config, out);
    let note = serde_json::json!({
        "tool": "dinoedge import",
        "version": env!("CARGO_PKG_VERSION"),
        "source": source,
        "fps": config.fps,
    });
    stream
        .out
        .write_at(RecordKind::Note, 0, note.to_string().as_bytes())?;
    stream.out.write_at(
        RecordKind::Connected,
        0,
        format!("import of {source}").as_bytes(),
    )?;
    let interval_us = 1e6 / config.fps;
    // The first frame is captured a little after the handshake.
    let first_capture_us = 50_000.0;
    let mut report = ImportReport::default();
    let mut next_ping_us = 0u64;
    let mut next_beat_us = 1_000_000u64;
    for (i, frame) in frames.into_iter().enumerate() {
        let frame = frame?;
        let seq = i as u32;
        let capture_us = (first_capture_us + i as f64 * interval_us) as u64;
        stream.clock_us = stream.clock_us.max(capture_us);
        if i == 0 {
            stream.handshake(&frame, config)?;
            stream.clock_us = stream.clock_us.max(capture_us);
        }
        while next_ping_us <= capture_us {
            stream.ping(next_ping_us.max(stream.clock_us))?;
            next_ping_us += 500_000;
        }
        if next_beat_us <= capture_us {
            let beat = Heartbeat {
                now_us: capture_us + config.edge_clock_offset_us,
                frames_sent: seq,
                ..Heartbeat::default()
            };
            stream.edge(&Message::Heartbeat(beat))?;
            next_beat_us += 1_000_000;
        }
        stream.frame(seq, capture_us, &frame)?;
        if !report
            .sizes
            .contains(&(frame.width, frame.height, frame.format))
        {
            report.sizes.push((frame.width, frame.height, frame.format));
        }
        if let Some(label) = frame.label {
            report.labels.push((seq, label));
        }
        report.frames += 1;
        report.frame_bytes += frame.data.len() as u64;
    }
    if report.frames == 0 {
        return Err(ImportError::Empty(PathBuf::from(source)));
    }
    let end = stream.clock_us + 10_000;
    stream
        .out
        .write_at(RecordKind::Disconnected, end, b"end of the imported source")?;
    report.wire_bytes = stream.wire_bytes;
    report.duration_s = end as f64 / 1e6;
    Ok(report)
}

/// The simulated link: packets in both directions on one clock.
struct Stream<'a> {
    out: &'a mut RecordingWriter,
    buf: Vec<u8>,
    packet: usize,
    /// The host clock, µs: when the next edge byte arrives.
    clock_us: u64,
    bytes_per_us: f64,
    offset_us: u64,
    ping_id: u32,
    wire_bytes: u64,
}

impl<'a> Stream<'a> {
    fn new(config: &ImportConfig, out: &'a mut RecordingWriter) -> Self {
        Stream {
            out,
            buf: vec![0; wire::encode_buffer_len(config.packet.max(dinoedge_proto::MIN_PACKET))],
            packet: config.packet,
            clock_us: 0,
            bytes_per_us: (config.link_bytes_per_s / 1e6).max(1e-3),
            offset_us: config.edge_clock_offset_us,
            ping_id: 0,
            wire_bytes: 0,
        }
    }

    /// An edge packet, arriving once its bytes have crossed the link.
    fn edge(&mut self, msg: &Message<'_>) -> Result<(), ImportError> {
        let bytes = wire::encode_limited(msg, self.packet, &mut self.buf)?;
        self.clock_us += (bytes.len() as f64 / self.bytes_per_us).ceil() as u64;
        self.wire_bytes += bytes.len() as u64;
        self.out
            .write_at(RecordKind::EdgeToHost, self.clock_us, bytes)?;
        Ok(())
    }

    /// A host packet at `t_us`.
    fn host(&mut self, msg: &Message<'_>, t_us: u64) -> Result<(), ImportError> {
        let bytes = wire::encode_limited(msg, dinoedge_proto::MIN_PACKET, &mut self.buf)?;
        self.out.write_at(RecordKind::HostToEdge, t_us, bytes)?;
        Ok(())
    }

    fn handshake(&mut self, first: &SourceFrame, config: &ImportConfig) -> Result<(), ImportError> {
        let mut device_id = heapless::String::<MAX_ID>::new();
        for c in config.device_id.chars() {
            if device_id.push(c).is_err() {
                break;
            }
        }
        let hello = Hello {
            protocol_version: PROTOCOL_VERSION,
            device_id,
            firmware_version: Version {
                major: 0,
                minor: 0,
                patch: 0,
            },
            sensor: Sensor {
                width: first.width,
                height: first.height,
                format: first.format,
                fps_milli: (config.fps * 1000.0).round() as u32,
            },
            max_packet_tx: self.packet as u32,
            max_packet_rx: dinoedge_proto::MIN_PACKET as u32,
            capabilities: Capabilities::MASK,
            previous: None,
        };
        self.clock_us = 1000;
        self.edge(&Message::Hello(hello))?;
        let welcome = Welcome {
            protocol_version: PROTOCOL_VERSION,
            session_id: 1,
            max_packet_to_host: self.packet as u32,
            max_packet_to_edge: dinoedge_proto::MIN_PACKET as u32,
            initial_credits: 4,
            roi: None,
            fps_milli: None,
        };
        self.host(&Message::Welcome(welcome), self.clock_us + 200)?;
        Ok(())
    }

    /// The host pings at `t_us`; the edge answers 100 µs later on its clock.
    fn ping(&mut self, t_us: u64) -> Result<(), ImportError> {
        self.ping_id = self.ping_id.wrapping_add(1);
        self.host(
            &Message::Ping(Ping {
                id: self.ping_id,
                sent_us: t_us,
            }),
            t_us,
        )?;
        self.clock_us = self.clock_us.max(t_us + 100);
        let pong = Pong {
            id: self.ping_id,
            ping_sent_us: t_us,
            received_us: t_us + 100 + self.offset_us,
        };
        self.edge(&Message::Pong(pong))
    }

    fn frame(&mut self, seq: u32, capture_us: u64, frame: &SourceFrame) -> Result<(), ImportError> {
        let mut crc = FrameCrc::new();
        crc.update(&frame.data);
        let start = FrameStart {
            seq,
            capture_us: capture_us + self.offset_us,
            width: frame.width,
            height: frame.height,
            format: frame.format,
            total_len: frame.data.len() as u32,
            frame_crc: Some(crc.value()),
            dropped_at_source: 0,
            meta: FrameMeta::default(),
        };
        self.edge(&Message::FrameStart(start))?;
        for chunk in Chunks::new(seq, &frame.data, wire::chunk_capacity(self.packet)) {
            self.edge(&Message::FrameChunk(chunk))?;
        }
        let credit = grant_for(seq.wrapping_add(1), 4);
        self.host(&Message::Credit(credit), self.clock_us + 50)?;
        Ok(())
    }
}
