//! `dinoedge run` and `dinoedge replay`: the pipeline on a live link or a recording, results
//! as JSON lines, optional overlays, a live status line and a summary.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use dinoedge::backbone::{Arch, InputSize, ModelDir};
use dinoedge::heads::{HeadFiles, Task};
use dinoedge::link::Transport;
use dinoedge::pipeline::{
    self, FrameRecord, HeadOutput, Input, LiveStatus, Models, PipelineConfig, PipelineReport,
    Policy,
};
use dinoedge::recording::Pace;

use super::engine::EngineArgs;
use super::model::weights_note;
use dinoedge::engine::{EngineSetup, GpuFaultPolicy};

/// The policy, as the command line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyArg {
    /// The latest frame wins; older waiting frames are dropped and counted.
    Live,
    /// Every frame is processed; the source waits.
    Offline,
}

/// The model, the heads and how they run: shared by run, replay and bench.
#[derive(Debug, Args, Clone)]
pub struct ModelArgs {
    /// Model folder (Hugging Face layout); default: the random-weight ViT-S/16 of
    /// `model init --arch vits16 --seed 0`, made in memory, with two random demonstration
    /// heads (3 classes; 2-class segmentation) unless --head is given.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Head folders (from `probe fit`); any number, classification or segmentation.
    #[arg(long = "head", num_args = 1..)]
    pub heads: Vec<PathBuf>,
    /// Model input size HxW; default: the heads' size, else 224x224.
    #[arg(long)]
    pub size: Option<InputSize>,
    /// Backbone workers, each with its own tract state; default: 1 for live, 2 for offline.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Threads per worker; default: the cores divided among the workers.
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// What a GPU fault that leaves the GPU unusable does: `exit` ends dinoedge with exit code
    /// 75 so that its service manager restarts it (frames in flight are reported lost); `cpu`
    /// carries on with the CPU engine, prepared at the start, and flags every later result
    /// DEGRADED.
    #[arg(long, value_enum, default_value_t = GpuFaultPolicy::Exit)]
    pub on_gpu_fault: GpuFaultPolicy,
    #[command(flatten)]
    pub region: super::RoiArg,
}

impl ModelArgs {
    /// Workers and threads per worker for `policy` on this machine.
    pub fn layout(&self, policy: Policy) -> (usize, usize) {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = self.workers.unwrap_or(match policy {
            Policy::Live => 1,
            Policy::Offline => cores.min(2),
        });
        let threads = self.threads.unwrap_or((cores / workers.max(1)).max(1));
        (workers.max(1), threads)
    }

    /// Loads (or makes) the model and heads.
    pub fn load(&self, threads: usize) -> anyhow::Result<Models> {
        let setup = EngineSetup {
            request: self.engine.engine,
            precision: self.engine.precision,
            threads,
            on_gpu_fault: self.on_gpu_fault,
        };
        let (model, path) = match &self.model {
            Some(dir) => (
                ModelDir::load(dir)
                    .with_context(|| format!("loading the model {}", dir.display()))?,
                dir.clone(),
            ),
            None => (
                ModelDir::random(Arch::Vits16, 0),
                PathBuf::from("(built-in ViT-S/16, seed 0)"),
            ),
        };
        if self.model.is_none() && self.heads.is_empty() {
            // The demonstration: random heads on the random backbone, so that every stage runs.
            let size = self.size.unwrap_or(InputSize::new(224, 224));
            let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect();
            let heads = vec![
                (
                    PathBuf::from("demo-classify"),
                    HeadFiles::random(&model, Task::Classify, names(&["a", "b", "c"]), size, 1),
                ),
                (
                    PathBuf::from("demo-segment"),
                    HeadFiles::random(
                        &model,
                        Task::Segment,
                        names(&["background", "region"]),
                        size,
                        2,
                    ),
                ),
            ];
            return Models::from_files(&model, &path, Some(size), heads, &setup)
                .context("preparing the backbone and heads");
        }
        Models::load(&model, &path, self.size, &self.heads, &setup)
            .context("preparing the backbone and heads")
    }
}

/// Where results go.
#[derive(Debug, Args, Clone)]
pub struct OutputArgs {
    /// Write one JSON object per frame here ("-" for standard output).
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// Write an overlay PNG per frame here (the frame with the first segmentation head's mask).
    #[arg(long)]
    pub overlays: Option<PathBuf>,
}

/// Rotation and retention of the recording and results files, and the disk-space guard
/// (`dinoedge::storage`). Any rotation or retention flag makes the set numbered:
/// `session.rec` becomes `session.000001.rec`, `session.000002.rec`, ...
#[derive(Debug, Args, Clone, Default)]
pub struct StorageArgs {
    /// Begin a new recording file before the current one grows past this size (e.g. 1GiB).
    #[arg(long, value_name = "SIZE", value_parser = dinoedge::storage::parse_size)]
    pub record_rotate_size: Option<u64>,
    /// Begin a new recording file once the current one is this old (e.g. 1h, 30m, 1d).
    #[arg(long, value_name = "AGE", value_parser = dinoedge::storage::parse_age)]
    pub record_rotate_age: Option<Duration>,
    /// Keep at most this many recording files, the one being written included; the oldest
    /// finished ones are deleted.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub record_keep_files: Option<u64>,
    /// Keep at most this many bytes of recording files in all (e.g. 50GiB); the oldest finished
    /// ones are deleted, never the one being written.
    #[arg(long, value_name = "SIZE", value_parser = dinoedge::storage::parse_size)]
    pub record_keep_size: Option<u64>,
    /// Begin a new results file before the current one grows past this size.
    #[arg(long, value_name = "SIZE", value_parser = dinoedge::storage::parse_size)]
    pub results_rotate_size: Option<u64>,
    /// Begin a new results file once the current one is this old.
    #[arg(long, value_name = "AGE", value_parser = dinoedge::storage::parse_age)]
    pub results_rotate_age: Option<Duration>,
    /// Keep at most this many results files, the one being written included.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub results_keep_files: Option<u64>,
    /// Keep at most this many bytes of results files in all.
    #[arg(long, value_name = "SIZE", value_parser = dinoedge::storage::parse_size)]
    pub results_keep_size: Option<u64>,
    /// Stop recording, results and overlays cleanly (the file finished, the stop logged and in
    /// the report) before their filesystem has less than this free: a size (0 turns the guard
    /// off) or a share of the filesystem (e.g. 5%). Results still go to the edge and the view.
    #[arg(long, value_name = "SIZE|PCT", default_value = "1GiB")]
    pub min_free: dinoedge::storage::MinFree,
}

impl StorageArgs {
    fn config(
        &self,
        rotate_size: Option<u64>,
        rotate_age: Option<Duration>,
        keep_files: Option<u64>,
        keep_size: Option<u64>,
    ) -> dinoedge::storage::StorageConfig {
        use dinoedge::storage::{Policy, Retention, Rotation};
        let policy = Policy {
            rotation: Rotation {
                max_bytes: rotate_size,
                max_age: rotate_age,
            },
            retention: Retention {
                max_files: keep_files.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
                max_bytes: keep_size,
            },
        };
        dinoedge::storage::StorageConfig::new(policy, self.min_free)
    }

    /// The recording's rotation, retention and guard.
    pub fn recording(&self) -> dinoedge::storage::StorageConfig {
        self.config(
            self.record_rotate_size,
            self.record_rotate_age,
            self.record_keep_files,
            self.record_keep_size,
        )
    }

    /// The results file's rotation, retention and guard.
    pub fn results(&self) -> dinoedge::storage::StorageConfig {
        self.config(
            self.results_rotate_size,
            self.results_rotate_age,
            self.results_keep_files,
            self.results_keep_size,
        )
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Take every setting from this TOML file (`/etc/dinoedge/dinoedge.toml` for the service;
    /// unknown keys refused); nothing else may be given with it.
    #[arg(long, exclusive = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Serial device of the edge.
    #[arg(long, conflicts_with_all = ["tcp", "listen", "replay"])]
    serial: Option<PathBuf>,
    /// Baud rate for --serial.
    #[arg(long, default_value_t = 115_200)]
    baud: u32,
    /// Connect to an edge listening at this TCP address.
    #[arg(long, conflicts_with_all = ["listen", "replay"])]
    tcp: Option<SocketAddr>,
    /// Listen at this TCP address for the edge to connect.
    #[arg(long, conflicts_with = "replay")]
    listen: Option<SocketAddr>,
    /// Replay a recording instead of a live link.
    #[arg(long)]
    replay: Option<PathBuf>,
    #[command(flatten)]
    v4l2: V4l2Args,
    #[command(flatten)]
    pace: PaceArgs,
    /// Scheduling when the backbone is busy.
    #[arg(long, value_enum, default_value = "live")]
    policy: PolicyArg,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// Also record the link's bytes to this file (a live link only).
    #[arg(long, conflicts_with = "replay")]
    record: Option<PathBuf>,
    /// Key file of the recording: --record writes it encrypted, --replay reads it.
    #[arg(long, value_name = "FILE")]
    recording_key: Option<PathBuf>,
    // Boxed: the command enum stays small (clippy's large_enum_variant).
    #[command(flatten)]
    storage: Box<StorageArgs>,
    /// Stop after this many frames were processed.
    #[arg(long)]
    frames: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    seconds: Option<f64>,
    #[command(flatten)]
    security: super::keys::LinkSecurityArgs,
    /// Write the run's report (counters, latency, and a secure link's audit trail) as JSON here.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    #[command(flatten)]
    view: super::view::ViewArgs,
}

/// A V4L2 capture device on the host as the source of frames, instead of the edge's link.
#[derive(Debug, Args, Clone, Default)]
pub struct V4l2Args {
    /// Capture frames from this V4L2 device (a USB UVC grabber, an HDMI capture card, a CSI
    /// camera), stamped at capture, instead of from the edge. With --serial, --tcp or
    /// --listen too, the edge on that link serves its controls (buttons, pedal, alarm: it
    /// sends no frames, and gets every result); alone, results go to --results and the view.
    #[arg(
        id = "v4l2",
        long = "v4l2",
        value_name = "DEVICE",
        conflicts_with_all = ["replay", "record"]
    )]
    device: Option<PathBuf>,
    /// Pixel format to capture in: yuyv, uyvy, nv12, grey, rgb24, bgr24 or mjpeg (default: the
    /// device's own, if one of these).
    #[arg(long, value_name = "FORMAT", requires = "v4l2")]
    v4l2_format: Option<dinoedge::capture::CaptureFormat>,
    /// Frame size to capture at, WIDTHxHEIGHT (default: the device's own).
    #[arg(long, value_name = "WxH", requires = "v4l2")]
    v4l2_size: Option<dinoedge::capture::FrameSize>,
    /// Frames per second to capture at (default: the device's own).
    #[arg(long, value_name = "N", requires = "v4l2", value_parser = clap::value_parser!(u32).range(1..=1000))]
    v4l2_fps: Option<u32>,
}

impl V4l2Args {
    /// The device, opened and set up (before the model loads: a wrong device fails at once).
    fn open(&self) -> anyhow::Result<dinoedge::capture::Device> {
        let Some(path) = &self.device else {
            bail!("--v4l2 DEVICE is needed");
        };
        let request = dinoedge::capture::DeviceRequest {
            format: self.v4l2_format,
            size: self.v4l2_size,
            fps: self.v4l2_fps,
            ..dinoedge::capture::DeviceRequest::default()
        };
        Ok(dinoedge::capture::Device::open(path, &request)?)
    }
}

/// `dinoedge replay FILE`: the same as `run --replay FILE`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The recording.
    file: PathBuf,
    #[command(flatten)]
    pace: PaceArgs,
    /// Scheduling when the backbone is busy.
    #[arg(long, value_enum, default_value = "offline")]
    policy: PolicyArg,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// Stop after this many frames were processed.
    #[arg(long)]
    frames: Option<u64>,
    /// Key file of an encrypted recording.
    #[arg(long, value_name = "FILE")]
    recording_key: Option<PathBuf>,
    #[command(flatten)]
    view: super::view::ViewArgs,
}

impl From<ReplayArgs> for RunArgs {
    fn from(a: ReplayArgs) -> Self {
        RunArgs {
            config: None,
            serial: None,
            baud: 115_200,
            tcp: None,
            listen: None,
            replay: Some(a.file),
            v4l2: V4l2Args::default(),
            pace: a.pace,
            policy: a.policy,
            model: a.model,
            output: a.output,
            record: None,
            recording_key: a.recording_key,
            storage: Box::default(),
            frames: a.frames,
            seconds: None,
            security: super::keys::LinkSecurityArgs::default(),
            report: None,
            view: a.view,
        }
    }
}

/// The policy from the command line.
pub fn policy(p: PolicyArg) -> Policy {
    match p {
        PolicyArg::Live => Policy::Live,
        PolicyArg::Offline => Policy::Offline,
    }
}

/// How a replay is paced: shared by run, replay and bench.
#[derive(Debug, Args, Clone, Copy)]
pub struct PaceArgs {
    /// Replay at the recorded pace (the default for --policy live).
    #[arg(long, conflicts_with = "max_speed")]
    realtime: bool,
    /// Replay as fast as the pipeline goes (the default for --policy offline).
    #[arg(long)]
    max_speed: bool,
    /// Replay speed factor with --realtime.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
}

impl PaceArgs {
    /// The replay pace: explicit, else at the recorded pace for live and at full speed offline.
    pub fn pace(&self, policy: Policy) -> anyhow::Result<Pace> {
        let speed = self.speed;
        if !(speed.is_finite() && speed > 0.0) {
            bail!("--speed {speed} must be a positive number");
        }
        Ok(
            if self.realtime || (!self.max_speed && policy == Policy::Live) {
                Pace::Realtime { speed }
            } else {
                Pace::MaxSpeed
            },
        )
    }
}

/// Stops the run on Ctrl-C (a second Ctrl-C exits at once).
pub fn ctrl_c_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\nstopping (Ctrl-C again to quit at once)");
                f.store(true, Ordering::Relaxed);
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
    });
    flag
}

/// Writes results and overlays as frames come. Neither overwrites an existing file, and both
/// are readable by their owner only (results describe a patient's images; overlays are them).
pub struct Writers {
    results: Option<Box<dyn Write>>,
    overlays: Option<PathBuf>,
    /// The first write error: results must not be lost silently.
    pub error: Option<anyhow::Error>,
    /// The results file's rotation and guard, where `run` asked for them.
    results_storage: Option<dinoedge::storage::SharedSetReport>,
    /// The disk-space guard on the overlay folder, where `run` asked for it.
    overlay_guard: Option<dinoedge::storage::FolderGuard>,
}

impl Writers {
    /// Opens what `args` asks for; refuses, before any frame is processed, a results file
    /// that exists or an overlay folder that already holds overlays.
    pub fn open(args: &OutputArgs) -> anyhow::Result<Self> {
        Self::open_with(args, None)
    }

    /// [`Self::open`], with the results file rotated and kept as `storage` says and results
    /// and overlays stopped cleanly before the disk fills.
    pub fn open_with(args: &OutputArgs, storage: Option<&StorageArgs>) -> anyhow::Result<Self> {
        let mut results_storage = None;
        let results: Option<Box<dyn Write>> = match (&args.results, storage) {
            (None, _) => None,
            (Some(p), _) if p.as_os_str() == "-" => Some(Box::new(std::io::stdout())),
            (Some(p), Some(storage)) => {
                let lines =
                    dinoedge::storage::RotatingLines::create("results", p, &storage.results())?;
                results_storage = Some(lines.report());
                Some(Box::new(lines))
            }
            (Some(p), None) => Some(Box::new(std::io::BufWriter::new(create_output(p)?))),
        };
        let overlay_guard = match (&args.overlays, storage) {
            (Some(dir), Some(storage)) => Some(dinoedge::storage::FolderGuard::new(
                "overlays",
                dir,
                storage.min_free,
                dinoedge::storage::StorageConfig::new(Default::default(), storage.min_free).space,
                std::time::Instant::now(),
            )),
            _ => None,
        };
        if let Some(dir) = &args.overlays {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let listing =
                std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
            if let Some(existing) = listing
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| is_overlay_name(p))
            {
                bail!(
                    "{} exists; overlays are never overwritten: choose an empty folder for --overlays",
                    existing.display()
                );
            }
        }
        Ok(Writers {
            results,
            overlays: args.overlays.clone(),
            error: None,
            results_storage,
            overlay_guard,
        })
    }

    /// What the results file's rotation and guard did, and whether overlays stopped.
    pub fn storage(
        &self,
    ) -> (
        Option<dinoedge::storage::SetReport>,
        Option<dinoedge::storage::Stopped>,
    ) {
        (
            self.results_storage
                .as_ref()
                .map(dinoedge::storage::snapshot),
            self.overlay_guard
                .as_ref()
                .and_then(|g| g.stopped().cloned()),
        )
    }

    /// Writes one frame's result line and overlay.
    pub fn frame(&mut self, record: &FrameRecord, models: &Models) {
        if self.error.is_some() {
            return;
        }
        if let Some(w) = &mut self.results
            && let Err(e) = writeln!(w, "{}", record.to_json(models))
        {
            self.error = Some(anyhow::Error::new(e).context("writing results"));
        }
        // At most the frame in RGB: what the guard makes room for before the PNG is made.
        let start = &record.frame.start;
        let largest = u64::from(start.width) * u64::from(start.height) * 3;
        if let Some(dir) = &self.overlays
            && record.failure().is_none()
            && self
                .overlay_guard
                .as_mut()
                .is_none_or(|g| g.allow(largest, dir, std::time::Instant::now()))
        {
            if let Err(e) = write_overlay(dir, record) {
                self.error = Some(e);
            } else if let Some(g) = &mut self.overlay_guard {
                g.wrote(largest);
            }
        }
    }

    /// Flushes the results.
    pub fn finish(mut self) -> anyhow::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if let Some(w) = &mut self.results {
            w.flush().context("writing results")?;
        }
        Ok(())
    }
}

/// Creates an output file that does not exist yet, mode 0600 from the start.
fn create_output(path: &Path) -> anyhow::Result<std::fs::File> {
    dinoedge::files::create_private(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "{} exists; results and overlays are never overwritten: choose another file or folder",
                path.display()
            )
        } else {
            anyhow::Error::new(e).context(format!("creating {}", path.display()))
        }
    })
}

/// Whether `path` is named as [`write_overlay`] names overlays: `SSSSSSSS-QQQQQQ.png`.
fn is_overlay_name(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let Some((session, seq)) = name
        .strip_suffix(".png")
        .and_then(|stem| stem.split_once('-'))
    else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(session) && digits(seq)
}

/// The frame in RGB with the first mask blended over the part the model saw.
fn write_overlay(dir: &Path, record: &FrameRecord) -> anyhow::Result<()> {
    let start = &record.frame.start;
    let (w, h) = (u32::from(start.width), u32::from(start.height));
    let rgb = dinoedge::preprocess::frame_rgb(start.format, w, h, &record.frame.data)
        .context("converting a frame for its overlay")?;
    let mut image = image::RgbImage::from_raw(w, h, rgb).context("frame size")?;
    if let Some(mask) = record.outputs().find_map(|o| match o {
        HeadOutput::Mask(m) => Some(m),
        _ => None,
    }) {
        let crop = record.crop;
        let view =
            image::imageops::crop_imm(&image, crop.x, crop.y, crop.width, crop.height).to_image();
        if let Some(blended) = mask.overlay(view.as_raw(), 0.45) {
            image::imageops::replace(&mut image, &blended, i64::from(crop.x), i64::from(crop.y));
        }
    }
    let path = dir.join(format!("{:08}-{:06}.png", record.session_id, start.seq));
    let mut png = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut png, image::ImageFormat::Png)
        .with_context(|| format!("encoding {}", path.display()))?;
    create_output(&path)?
        .write_all(png.get_ref())
        .with_context(|| format!("writing {}", path.display()))
}

/// The status line.
pub fn status_line(s: &LiveStatus) -> String {
    format!(
        "{:.1} s | {} frames | {:.1} fps | latency p50 {:.1} ms p99 {:.1} ms | dropped {} | lost {} | dropped at edge {}",
        s.elapsed_s, s.processed, s.fps, s.p50_ms, s.p99_ms, s.dropped, s.lost, s.dropped_at_edge
    )
}

/// The end-of-run summary for people.
pub fn summary(report: &PipelineReport, models: &Models) -> String {
    let l = &report.latency;
    let mut out = format!(
        "{} frames received, {} processed in {:.1} s: {:.2} frames/s ({} policy, {}{})\n\
         latency ms (from {}): p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}\n\
         dropped by the host {}{}, lost on the link {}{}, dropped at the edge {}\n\
         engine: {}",
        report.frames_received,
        report.frames_processed,
        report.elapsed_s,
        report.fps,
        report.policy,
        models.backbone.config().arch_name(),
        weights_note(models.backbone.weights_label()),
        if report.latency_from_capture {
            "capture"
        } else {
            "arrival at the host"
        },
        l.p50_ms,
        l.p90_ms,
        l.p99_ms,
        l.p999_ms,
        l.max_ms,
        report.dropped_total(),
        pipeline::counts_by_name(&report.dropped),
        report.lost_total(),
        pipeline::counts_by_name(&report.lost),
        report.dropped_at_edge,
        models.backbone.engine().summary(),
    );
    for line in models.backbone.engine().not_taken_lines() {
        out.push_str(&format!("\n  {line}"));
    }
    if let Some(d) = &report.degraded {
        out.push_str(&format!(
            "\nDEGRADED: on the CPU from frame {} (session {}) after a GPU fault: {}",
            d.from_seq, d.session_id, d.reason
        ));
    }
    for d in &report.recording_damage {
        out.push_str(&format!("\nrecording: {d}"));
    }
    if let Some(security) = &report.security {
        out.push('\n');
        out.push_str(&security_summary(security));
    }
    if let Some(telemetry) = &report.telemetry {
        out.push('\n');
        out.push_str(&telemetry.summary_line());
    }
    if let Some(capture) = &report.capture {
        out.push('\n');
        out.push_str(&capture.summary_line());
    }
    match &report.controls {
        Some(controls) => {
            out.push('\n');
            out.push_str(&controls.summary_line());
        }
        None if !report.edge_events.is_empty() => {
            out.push_str(&format!(
                "\nedge events: {}{}",
                report.edge_events.values().sum::<u64>(),
                pipeline::counts_by_name(&report.edge_events)
            ));
        }
        None => {}
    }
    if let Some(storage) = report.storage.as_ref().filter(|s| !s.is_quiet()) {
        for line in storage.summary_lines() {
            out.push_str(&format!("\n{line}"));
        }
    }
    out
}

/// One line on a secure link: handshakes accepted and refused (by reason), packets dropped
/// for failing authentication.
pub fn security_summary(s: &dinoedge::link::secure::SecurityReport) -> String {
    let refused: std::collections::BTreeMap<String, u64> = s
        .handshakes_refused
        .iter()
        .map(|(k, v)| ((*k).to_owned(), *v))
        .collect();
    format!(
        "secure link: {} handshake(s) accepted, {} refused{}; packets dropped: {} forged, {} \
         replayed, {} in the clear, {} damaged",
        s.handshakes_accepted,
        s.refused_total(),
        pipeline::counts_by_name(&refused),
        s.packets_forged,
        s.packets_replayed,
        s.packets_clear_refused,
        s.packets_damaged,
    )
}

/// The command line a config file stands for, parsed as if typed.
#[derive(Debug, clap::Parser)]
#[command(no_binary_name = true, name = "dinoedge run")]
struct RunLine {
    #[command(flatten)]
    args: RunArgs,
}

impl RunArgs {
    /// What `doctor --config` checks of the service these settings describe: its serial or
    /// V4L2 device, the folders its results, overlays and recording go to, the guard's threshold.
    pub fn doctor_targets(&self, targets: &mut dinoedge::doctor::checks::Targets) {
        use dinoedge::doctor::checks::{DeviceKind, folder_of};
        if let Some(serial) = &self.serial {
            targets.add_device(DeviceKind::Serial, serial);
        }
        if let Some(video) = &self.v4l2.device {
            targets.add_device(DeviceKind::Video, video);
        }
        if let Some(results) = self
            .output
            .results
            .as_ref()
            .filter(|r| r.as_os_str() != "-")
        {
            targets.add_folder("results", folder_of(results));
        }
        if let Some(overlays) = &self.output.overlays {
            // `run` creates the overlay folder itself: its parent must take it.
            let dir = if overlays.is_dir() {
                overlays.clone()
            } else {
                folder_of(overlays)
            };
            targets.add_folder("overlays", dir);
        }
        if let Some(record) = &self.record {
            targets.add_folder("recordings", folder_of(record));
        }
        targets.min_free = self.storage.min_free;
    }
}

/// `run --config FILE`: the file's settings as `run`'s flags; a value the flag refuses is
/// reported with its config key.
pub fn from_config(path: &Path) -> anyhow::Result<RunArgs> {
    let config = super::config::load(path)?;
    let argv = config.to_args();
    let line = <RunLine as clap::Parser>::try_parse_from(argv.iter().skip(1)).map_err(|e| {
        let rendered = e.to_string();
        // clap's first line says what is wrong; its usage hints are about flags, not keys.
        let text = rendered
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_owned();
        // The longest flag the message names: `--v4l2` is in `--v4l2-format`, `--record` in
        // `--recording-key`.
        let key = argv
            .iter()
            .filter(|a| a.starts_with("--") && text.contains(a.as_str()))
            .filter_map(|a| super::config::key_of_flag(a).map(|key| (a.len(), key)))
            .max_by_key(|(len, _)| *len)
            .map(|(_, key)| key);
        match key {
            Some(key) => anyhow::anyhow!(
                "the config {} is refused: key {key}: {}",
                path.display(),
                text.trim()
            ),
            None => anyhow::anyhow!("the config {} is refused: {}", path.display(), text.trim()),
        }
    })?;
    Ok(line.args)
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    if let Some(path) = &args.config {
        return run(from_config(path)?);
    }
    let policy = policy(args.policy);
    let transport = match (&args.serial, args.tcp, args.listen) {
        (Some(path), None, None) => Some(Transport::Serial {
            path: path.clone(),
            baud: args.baud,
        }),
        (None, Some(addr), None) => Some(Transport::TcpConnect(addr)),
        (None, None, Some(addr)) => Some(Transport::TcpListen(addr)),
        _ => None,
    };
    let link_security = match &transport {
        Some(transport) => args.security.resolve(transport)?,
        None => None,
    };
    let input = match (transport, &args.replay, args.v4l2.device.is_some()) {
        (Some(transport), None, false) => Input::Link(transport),
        (None, Some(path), false) => Input::Replay {
            path: path.clone(),
            pace: args.pace.pace(policy)?,
            repeat_for: None,
        },
        (None, None, true) => Input::Capture(Box::new(args.v4l2.open()?)),
        // The capture brings the frames, the edge its buttons, pedal and alarm.
        (Some(transport), None, true) => Input::CaptureWithControls {
            capture: Box::new(args.v4l2.open()?),
            edge: pipeline::edge_source(transport, link_security.as_ref())?,
        },
        _ => bail!(
            "say where frames come from: --serial PATH, --tcp ADDR, --listen ADDR, --replay FILE \
             or --v4l2 DEVICE (with one of the first three for the edge's controls)"
        ),
    };
    if let Some(path) = &args.report
        && path.exists()
    {
        bail!("{} exists; choose another --report file", path.display());
    }
    let (workers, threads) = args.model.layout(policy);
    // Under systemd: READY=1 once the pipeline runs, WATCHDOG=1 while frames make progress.
    let service = dinoedge::service::Service::from_env();
    service.loading();
    let models = args.model.load(threads)?;
    let view = args
        .view
        .start(&models, matches!(&input, Input::Replay { .. }))?;
    let duration = args
        .seconds
        .map(|s| Duration::try_from_secs_f64(s).with_context(|| format!("--seconds {s}")))
        .transpose()?;
    let key = super::record::recording_key(args.recording_key.as_deref())?;
    let recording = match &args.record {
        Some(path) => Some(Arc::new(std::sync::Mutex::new(
            dinoedge::recording::RecordingWriter::create_rotating(
                path,
                key.as_ref(),
                &args.storage.recording(),
            )?,
        ))),
        None => None,
    };
    let recording_storage = recording
        .as_ref()
        .and_then(|r| r.lock().ok().and_then(|w| w.storage_report()));
    let config = PipelineConfig {
        policy,
        workers,
        roi: args.model.region.roi,
        max_frames: args.frames,
        duration,
        capture_clock: !matches!(&input, Input::Replay { .. }),
        record: recording.clone(),
        recording_key: key,
        link_security,
        ..PipelineConfig::default()
    };
    let stop = ctrl_c_flag();
    let mut writers = Writers::open_with(&args.output, Some(&*args.storage))?;
    let live = std::io::stderr().is_terminal();
    eprintln!(
        "{}: {} at {} with {} heads, {} worker(s) x {} thread(s), {} policy{}",
        match &input {
            Input::Link(t) => t.to_string(),
            Input::Replay { path, .. } => format!("replay of {}", path.display()),
            Input::Source(source) => source.describe(),
            Input::Capture(capture) => capture.describe(),
            Input::CaptureWithControls { capture, edge } => format!(
                "{}, with the edge's controls on {}",
                capture.describe(),
                edge.describe()
            ),
        },
        models.backbone.config().arch_name(),
        models.backbone.size(),
        models.heads.len(),
        workers,
        threads,
        policy,
        weights_note(models.backbone.weights_label())
    );
    let mut report = pipeline::run(
        &models,
        &config,
        input,
        &stop,
        |record| {
            service.running();
            writers.frame(record, &models);
            if let Some(view) = &view {
                view.frame(record, &models);
            }
        },
        |status| {
            service.tick(status);
            if live {
                eprint!("\r\x1b[K{}", status_line(status));
                let _ = std::io::stderr().flush();
            }
            if let Some(view) = &view {
                view.status(status);
            }
        },
    )?;
    service.stopping();
    if live {
        eprintln!();
    }
    let (results_storage, overlays_stopped) = writers.storage();
    writers.finish()?;
    // The config holds the other handle on the recording.
    drop(config);
    if let Some(rec) = recording
        && let Ok(rec) = Arc::try_unwrap(rec)
    {
        let rec = rec.into_inner().unwrap_or_else(|p| p.into_inner());
        rec.finish()?;
    }
    let storage = dinoedge::storage::StorageReport {
        recording: recording_storage.map(|r| dinoedge::storage::snapshot(&r)),
        results: results_storage,
        overlays_stopped,
    };
    if storage != dinoedge::storage::StorageReport::default() {
        report.storage = Some(storage);
    }
    eprintln!("{}", summary(&report, &models));
    if let Some(path) = &args.report {
        let json = serde_json::to_vec_pretty(&report).context("the run's report")?;
        dinoedge::files::write_whole(path, &json)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(
        if report.lost_total() == 0
            && report.recording_damage.is_empty()
            && report.capture.as_ref().is_none_or(|c| c.error.is_none())
        {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        },
    )
}
