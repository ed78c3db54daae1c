//! `dinoedge import`: a DICOM cine, an image folder or a video becomes a recording, as the
//! edge would have sent it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use dinoedge::import::{
    ImportConfig, SourceFrame, VideoFrames, dicom_frames, image_frames, import,
};
use dinoedge::recording::RecordingWriter;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A DICOM file (e.g. an ultrasound cine).
    #[arg(long, conflicts_with_all = ["images", "video"])]
    dicom: Option<PathBuf>,
    /// A folder of images in name order, or of class sub-folders (labels are written beside
    /// the recording as FILE.labels.csv).
    #[arg(long, conflicts_with = "video")]
    images: Option<PathBuf>,
    /// A video file (decoded by ffmpeg, which must be on PATH).
    #[arg(long)]
    video: Option<PathBuf>,
    /// Frames per second; default: the file's own rate, else 30.
    #[arg(long)]
    fps: Option<f64>,
    /// Largest packet the simulated edge sends, bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    packet: usize,
    /// The link's speed in MB/s, for the time each frame takes to arrive.
    #[arg(long, default_value_t = 40.0)]
    link_mbps: f64,
    /// Send images and video as Gray8 (luminance, BT.601) instead of Rgb888, as a
    /// greyscale ultrasound scanner would.
    #[arg(long)]
    gray: bool,
    /// The recording to write.
    #[arg(short, long)]
    output: PathBuf,
}

/// Where labels of an import are written.
pub fn labels_path(recording: &std::path::Path) -> PathBuf {
    let mut name = recording.as_os_str().to_owned();
    name.push(".labels.csv");
    PathBuf::from(name)
}

pub fn run(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let mut config = ImportConfig {
        packet: args.packet,
        link_bytes_per_s: args.link_mbps * 1e6,
        ..ImportConfig::default()
    };
    let (source, frames): (String, Box<dyn Iterator<Item = _>>) =
        match (&args.dicom, &args.images, &args.video) {
            (Some(path), None, None) => {
                let (frames, fps) = dicom_frames(path)?;
                config.fps = args.fps.or(fps).unwrap_or(30.0);
                (
                    path.display().to_string(),
                    Box::new(frames.into_iter().map(Ok)),
                )
            }
            (None, Some(dir), None) => {
                config.fps = args.fps.unwrap_or(30.0);
                (dir.display().to_string(), Box::new(image_frames(dir)?))
            }
            (None, None, Some(path)) => {
                let video = VideoFrames::open(path)?;
                config.fps = args.fps.or(video.fps).unwrap_or(30.0);
                (path.display().to_string(), Box::new(video))
            }
            _ => bail!("say what to import: --dicom FILE, --images DIR or --video FILE"),
        };
    let gray = args.gray;
    let frames: Box<dyn Iterator<Item = Result<SourceFrame, _>>> = Box::new(
        frames.map(move |f: Result<SourceFrame, _>| f.map(|f| if gray { f.to_gray() } else { f })),
    );
    let mut writer = RecordingWriter::create(&args.output)?;
    let report = import(frames, &source, &config, &mut writer);
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            // Nothing half-made is left to be mistaken for a recording.
            drop(writer);
            let _ = std::fs::remove_file(&args.output);
            return Err(e).with_context(|| format!("importing {source}"));
        }
    };
    writer.finish()?;
    if !report.labels.is_empty() {
        let path = labels_path(&args.output);
        let mut csv = String::from("seq,label\n");
        for (seq, label) in &report.labels {
            csv.push_str(&format!("{seq},{label}\n"));
        }
        std::fs::write(&path, csv).with_context(|| format!("writing {}", path.display()))?;
        eprintln!(
            "labels of {} frames in {}",
            report.labels.len(),
            path.display()
        );
    }
    let sizes: Vec<String> = report
        .sizes
        .iter()
        .map(|(w, h, f)| format!("{w}x{h} {f:?}"))
        .collect();
    println!(
        "{}: {} frames ({}) at {:.2} fps, {:.1} s, {} link bytes",
        args.output.display(),
        report.frames,
        sizes.join(", "),
        config.fps,
        report.duration_s,
        report.wire_bytes
    );
    Ok(ExitCode::SUCCESS)
}
