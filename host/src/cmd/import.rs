//! `dinoedge import`: a DICOM cine, an image folder or a video becomes a recording, as the
//! edge would have sent it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use dinoedge::import::{
    ImportConfig, SourceFrame, VideoFrames, dicom_frames, image_frames, import_file, labels_path,
};

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
    /// The recording to write (never overwritten; readable by its owner only).
    #[arg(short, long)]
    output: PathBuf,
    /// Encrypt the recording with the key in this file.
    #[arg(long, value_name = "FILE")]
    recording_key: Option<PathBuf>,
}

pub fn run(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let key = super::record::recording_key(args.recording_key.as_deref())?;
    // Refused before the source is decoded (which can take long); `import_file` checks again
    // as it creates the file, so that nothing existing is ever written to.
    for path in [args.output.clone(), labels_path(&args.output)] {
        if path.symlink_metadata().is_ok() {
            return Err(dinoedge::import::ImportError::Exists { path }.into());
        }
    }
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
    let report = import_file(frames, &source, &config, &args.output, key.as_ref())
        .with_context(|| format!("importing {source}"))?;
    if !report.labels.is_empty() {
        eprintln!(
            "labels of {} frames in {}",
            report.labels.len(),
            labels_path(&args.output).display()
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
