//! The host pipeline: frames from the link (live or a replayed recording) through
//! preprocessing, the backbone and the heads to results, sent back to the edge and handed to
//! the caller, with every frame timed and every drop counted.
//!
//! ```text
//!  link (tokio: a live source  ─events─► Ingest ─Handoff─► Preprocess ─Handoff─► EngineWorker × N
//!  or a ReplaySource)                   thread   (policy)   thread     (policy)   (backbone state
//!        ▲                                                                         each, heads)
//!        └──────────── OutgoingResult ◄── Output (the caller's thread) ◄───────────────┘
//! ```
//!
//! Policy `live`: each hand-off holds one item and a newer frame replaces a waiting one (the
//! replaced frame is counted as `superseded`), so latency stays bounded. Policy `offline`: the
//! hand-offs wait for room, the link's credit shrinks, and a replay waits before feeding more:
//! every frame is processed.

pub mod analyze;
pub mod handoff;
pub mod plot;
pub mod record;
pub mod stage;
pub mod stats;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use crate::link::{LinkConfig, LiveSource, Source, Transport};
use crate::preprocess::{FramePreprocessor, PreprocessConfig};
use crate::recording::{
    Gating, Pace, RecordingError, RecordingKey, ReplaySource, SharedRecording, TappedSource,
};

use self::stage::engine::{Degraded, EngineFault, EngineWorker};
use self::stage::ingest::Ingest;
use self::stage::output::Output;
use self::stage::preprocess::{MovedToCpu, Preprocess};
use self::stage::{Cancel, Clock, Counters, DropReason};

pub use analyze::{Head, HeadOutput, HeadRunError, Models, ModelsError, NamedHead, best};
pub use handoff::{Handoff, Overflow};
pub use record::{FrameFailure, FrameOutcome, FrameRecord, HeadResult};
pub use stats::{
    Percentiles, PipelineReport, ProcessUsage, Stamps, counts_by_name, micros_histogram,
};

/// How frames are scheduled when the backbone is busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// The latest frame wins: older waiting frames are dropped and counted.
    Live,
    /// Every frame is processed; the source waits.
    Offline,
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Policy::Live => "live",
            Policy::Offline => "offline",
        })
    }
}

/// Where frames come from.
pub enum Input {
    /// A live link.
    Link(Transport),
    /// A recording, played through the same link code.
    Replay {
        /// The file.
        path: PathBuf,
        /// How fast.
        pace: Pace,
        /// Play it again from the start until this much time has passed (memory soak tests).
        repeat_for: Option<Duration>,
    },
    /// Any other source of connections (e.g. [`crate::link::Limited`] around a live one).
    Source(Box<dyn Source>),
    /// A capture device on the host (V4L2), or recorded buffers: frames stamped at capture,
    /// no edge (`crate::capture`).
    Capture(Box<dyn crate::capture::BufferSource>),
    /// A capture on the host with the edge's link beside it serving only the controls:
    /// buttons and pedal reach the run, results reach the edge's alarm (`crate::controls`).
    CaptureWithControls {
        /// The frames.
        capture: Box<dyn crate::capture::BufferSource>,
        /// The edge's link, secured by the caller where it must be ([`edge_source`]).
        edge: Box<dyn Source>,
    },
}

/// The edge's live link on `transport`: secured with `security` (every packet sealed) where
/// given, in the clear otherwise.
pub fn edge_source(
    transport: Transport,
    security: Option<&crate::link::secure::LinkSecurity>,
) -> Result<Box<dyn Source>, crate::link::TransportError> {
    let live: Box<dyn Source> = Box::new(LiveSource::new(transport)?);
    Ok(match security {
        Some(security) => Box::new(crate::link::secure::SecureSource::new(
            live,
            security.clone(),
        )),
        None => live,
    })
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::Link(t) => write!(f, "Link({t})"),
            Input::Replay { path, pace, .. } => write!(f, "Replay({}, {pace:?})", path.display()),
            Input::Source(s) => write!(f, "Source({})", s.describe()),
            Input::Capture(c) => write!(f, "Capture({})", c.describe()),
            Input::CaptureWithControls { capture, edge } => write!(
                f,
                "CaptureWithControls({}, {})",
                capture.describe(),
                edge.describe()
            ),
        }
    }
}

/// How a run goes.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Scheduling when busy.
    pub policy: Policy,
    /// Backbone workers, each with its own tract state.
    pub workers: usize,
    /// Region of interest and normalisation (the size comes from the backbone).
    pub roi: Option<crate::preprocess::Roi>,
    /// Classes per classification result sent to the edge.
    pub top_k: usize,
    /// Side of the mask sent to the edge, in cells, along the longer axis.
    pub mask_cells: usize,
    /// The link's settings.
    pub link: LinkConfig,
    /// Stop after this many frames were processed.
    pub max_frames: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Measure latency from capture when the edge clock is known. Off for replays: their
    /// clock exchanges are the recorded host's, whose clock is not the replaying host's, so
    /// latency runs from each frame's arrival at the host.
    pub capture_clock: bool,
    /// Record the link's bytes here (a live link only).
    pub record: Option<SharedRecording>,
    /// The key of an encrypted recording being replayed ([`Input::Replay`]).
    pub recording_key: Option<RecordingKey>,
    /// Keys and limits of a secure live link: [`Input::Link`] is secured with them (`None`
    /// runs it in the clear). A caller passing [`Input::Source`] secures its source itself
    /// (`link::secure::SecureSource`) and passes the same security here for the report.
    pub link_security: Option<crate::link::secure::LinkSecurity>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            policy: Policy::Live,
            workers: 1,
            roi: None,
            top_k: 3,
            mask_cells: 32,
            link: LinkConfig::default(),
            max_frames: None,
            duration: None,
            capture_clock: true,
            record: None,
            recording_key: None,
            link_security: None,
        }
    }
}

/// Why a run could not go on.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The link could not be opened.
    #[error(transparent)]
    Transport(#[from] crate::link::TransportError),
    /// The recording could not be read.
    #[error(transparent)]
    Recording(#[from] RecordingError),
    /// A backbone state could not be made.
    #[error(transparent)]
    Backbone(#[from] crate::backbone::BackboneError),
    /// A thread or the async runtime failed.
    #[error("pipeline: {0}")]
    Runtime(String),
    /// The GPU faulted in a way that leaves it unusable in this process, and the run was not
    /// allowed to fall back to the CPU: the process should end (with
    /// [`crate::engine::GPU_FAULT_EXIT_CODE`]) and be restarted.
    #[error(
        "GPU fault on frame {seq}: {message}; {in_flight} frame(s) in flight lost; restart \
         dinoedge (or allow --on-gpu-fault cpu) to go on"
    )]
    GpuFault {
        /// The engine's error.
        message: String,
        /// The frame it failed on.
        seq: u32,
        /// Frames received but not processed when the run ended.
        in_flight: u64,
    },
}

/// What a live display shows.
#[derive(Debug, Clone, Default)]
pub struct LiveStatus {
    /// Seconds since the start.
    pub elapsed_s: f64,
    /// Frames processed.
    pub processed: u64,
    /// Frames per second over the last interval.
    pub fps: f64,
    /// Latency median and 99th percentile so far, ms.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Dropped by the host.
    pub dropped: u64,
    /// Lost on the link.
    pub lost: u64,
    /// Dropped at the edge.
    pub dropped_at_edge: u64,
    /// Frames that came out of the link.
    pub received: u64,
    /// Dropped by the host, by reason.
    pub dropped_by_reason: std::collections::BTreeMap<String, u64>,
    /// The link's counters as of now.
    pub link: crate::link::LinkStats,
    /// The edge's button, pedal and probe events so far.
    pub edge_events: u64,
    /// The edge's controls beside a capture, as of now.
    pub controls: Option<crate::controls::ControlsReport>,
}

/// Runs the pipeline on `input` until the input ends (a replay), `stop` turns true, or a
/// configured limit; calls `on_frame` for every frame once its result was sent, and `on_tick`
/// twice a second. Blocks the calling thread, which runs the output stage.
pub fn run(
    models: &Models,
    config: &PipelineConfig,
    input: Input,
    stop: &AtomicBool,
    on_frame: impl FnMut(&FrameRecord),
    on_tick: impl FnMut(&LiveStatus),
) -> Result<PipelineReport, PipelineError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| PipelineError::Runtime(format!("starting the async runtime: {e}")))?;
    let epoch = Instant::now();
    let clock = Clock::new(epoch);
    let workers = config.workers.max(1);
    let (overflow, q1_cap, q2_cap) = match config.policy {
        Policy::Live => (Overflow::ReplaceOldest, 1, 1),
        Policy::Offline => (Overflow::Wait, 2, workers),
    };
    let q1: Arc<Handoff<stage::Job>> = Arc::new(Handoff::new(q1_cap, overflow));
    let q2: Arc<Handoff<stage::Job>> = Arc::new(Handoff::new(q2_cap, overflow));
    let cancel = Cancel::new(q1.clone(), vec![q1.clone(), q2.clone()]);
    let counters = Arc::new(Counters::default());

    // Every worker's state first: an error here must not leave anything running.
    let mut states = Vec::with_capacity(workers);
    for _ in 0..workers {
        states.push(models.backbone.state()?);
    }

    // The source: a live transport (recorded, if asked), a replay that waits for credit
    // where every frame must be processed, or a capture device, which is a link of its own.
    enum Feed {
        Link(Box<dyn Source>),
        Capture(Box<dyn crate::capture::BufferSource>),
        Controls(Box<dyn crate::capture::BufferSource>, Box<dyn Source>),
    }
    let (feed, replay_end) = match input {
        Input::Capture(buffers) => (Feed::Capture(buffers), None),
        Input::CaptureWithControls { capture, edge } => (Feed::Controls(capture, edge), None),
        Input::Source(source) => (Feed::Link(source), None),
        Input::Link(transport) => {
            // Sealing sits below the tap, so a recording holds the clear protocol.
            let live = edge_source(transport, config.link_security.as_ref())?;
            let source: Box<dyn Source> = match &config.record {
                Some(rec) => Box::new(TappedSource::new(live, rec.clone())),
                None => live,
            };
            (Feed::Link(source), None)
        }
        Input::Replay {
            path,
            pace,
            repeat_for,
        } => {
            let gating = match config.policy {
                Policy::Live => Gating::None,
                Policy::Offline => Gating::WaitForCredit,
            };
            let replay = {
                let _guard = runtime.enter();
                ReplaySource::start_with(
                    &path,
                    config.recording_key.clone(),
                    pace,
                    gating,
                    repeat_for,
                )?
            };
            let end = replay.end();
            (Feed::Link(Box::new(replay)), Some(end))
        }
    };
    let window = config.link.credit_window.max(1) as usize;
    let (link, capture_stats, controls) = {
        let _guard = runtime.enter();
        match feed {
            Feed::Link(source) => (
                crate::link::spawn(source, config.link.clone(), epoch, window),
                None,
                None,
            ),
            Feed::Capture(buffers) => {
                let capture = crate::capture::spawn(buffers, epoch, window);
                (capture.link, Some(capture.stats), None)
            }
            Feed::Controls(buffers, edge) => {
                let c = crate::controls::spawn(buffers, edge, config.link.clone(), epoch, window);
                (c.link, Some(c.capture), Some(c.controls))
            }
        }
    };
    let link_handle = link.handle;

    // Bounded: a slow output stage (overlays, a slow disk) holds the workers back, and the
    // policy's hand-offs decide what waits, instead of a queue growing without end.
    let (out_tx, out_rx) = std_mpsc::sync_channel(workers * 2 + 2);
    let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name)
            .spawn(f)
            .map_err(|e| PipelineError::Runtime(e.to_string()))
    };
    let mut threads = Vec::new();
    let (controls_tx, controls_rx) = std_mpsc::channel();
    let ingest = Ingest {
        controls: controls_tx,
        events: link.events,
        next: q1.clone(),
        counters: counters.clone(),
        capture_clock: config.capture_clock,
        cancel: cancel.clone(),
    };
    let handle = runtime.handle().clone();
    threads.push((
        "ingest",
        spawn("ingest".into(), Box::new(move || ingest.run(&handle)))?,
    ));
    // Next to a GPU engine, frames are preprocessed on the GPU too.
    let (preprocessor, not_on_gpu) = FramePreprocessor::new(
        PreprocessConfig {
            roi: config.roi,
            ..PreprocessConfig::new(models.backbone.size())
        },
        models.backbone.engine().engine != crate::engine::EngineKind::Cpu,
    );
    if let Some(why) = not_on_gpu {
        tracing::warn!("{why}");
    }
    let preprocess_device = preprocessor.device();
    let moved_to_cpu: Arc<Mutex<Option<MovedToCpu>>> = Arc::default();
    let preprocess = Preprocess {
        input: q1.clone(),
        next: q2.clone(),
        failed: out_tx.clone(),
        preprocessor,
        moved_to_cpu: moved_to_cpu.clone(),
        counters: counters.clone(),
        clock,
        cancel: cancel.clone(),
    };
    threads.push((
        "preprocess",
        spawn("preprocess".into(), Box::new(move || preprocess.run()))?,
    ));
    let engine_error: Arc<Mutex<Option<EngineFault>>> = Arc::default();
    let degraded: Arc<Mutex<Option<Degraded>>> = Arc::default();
    for (i, state) in states.into_iter().enumerate() {
        let worker = EngineWorker {
            input: q2.clone(),
            output: out_tx.clone(),
            state,
            models: models.clone(),
            fallback: models.fallback.clone(),
            error: engine_error.clone(),
            degraded: degraded.clone(),
            clock,
            cancel: cancel.clone(),
        };
        threads.push((
            "engine",
            spawn(format!("engine-{i}"), Box::new(move || worker.run()))?,
        ));
    }
    drop(out_tx);

    let totals = Output {
        input: out_rx,
        results: link_handle.results(),
        link_stats: link_handle.watch_stats(),
        models,
        config,
        counters: counters.clone(),
        clock,
        cancel: cancel.clone(),
        controls: &controls_rx,
        edge_controls: controls.clone(),
    }
    .run(stop, on_frame, on_tick);

    // Every stage has finished (or failed): the input stops too, whatever it was doing.
    cancel.abort();
    let mut panicked = None;
    for (name, thread) in threads {
        if thread.join().is_err() {
            panicked.get_or_insert(name);
        }
    }
    let mut link_stats = runtime
        .block_on(link_handle.finish())
        .map_err(|e| PipelineError::Runtime(format!("the link task failed: {e}")))?;
    link_stats.results_stale += totals.results_after_link_end;
    if let Some(name) = panicked {
        return Err(PipelineError::Runtime(format!(
            "the {name} thread panicked"
        )));
    }
    let mut report = totals.report;
    // Events the ingest stage handed on after the output stage had ended (a stopped run):
    // counted, with no frame to go with.
    for late in controls_rx.try_iter() {
        *report
            .edge_events
            .entry(late.input.kind_name().to_owned())
            .or_default() += 1;
    }
    if let Some(fault) = engine_error.lock().ok().and_then(|w| w.clone()) {
        if !fault.poisoned {
            return Err(PipelineError::Runtime(format!(
                "backbone: {}",
                fault.message
            )));
        }
        let settled = report.frames_processed
            + report.dropped.values().sum::<u64>()
            + counters.dropped_total(DropReason::Superseded);
        return Err(PipelineError::GpuFault {
            message: fault.message,
            seq: fault.seq,
            in_flight: counters.received_total().saturating_sub(settled),
        });
    }
    report.engine = Some(models.backbone.engine().clone());
    report.degraded = degraded.lock().ok().and_then(|d| d.clone());
    report.preprocess_device = preprocess_device.to_owned();
    report.preprocess_moved_to_cpu = moved_to_cpu.lock().ok().and_then(|m| m.clone());
    let elapsed = totals.elapsed_s.max(1e-9);
    report.elapsed_s = totals.elapsed_s;
    report.frames_received = counters.received_total();
    report.fps = report.frames_processed as f64 / elapsed;
    for reason in [DropReason::Superseded, DropReason::Stopped] {
        let n = counters.dropped_total(reason);
        if n > 0 {
            report.dropped.insert(reason.name().to_owned(), n);
        }
    }
    report.lost = link_stats.frames_lost.clone();
    report.dropped_at_edge = link_stats.dropped_at_edge;
    report.results_sent = link_stats.results_sent;
    let (start, end) = totals.usage;
    report.cpu_cores_busy = (end.cpu_s - start.cpu_s) / elapsed;
    report.peak_rss_mib = end.peak_rss_mib;
    report.link = link_stats;
    report.security = config.link_security.as_ref().map(|s| s.snapshot());
    report.capture = capture_stats.map(|s| s.borrow().clone());
    report.controls = controls.map(|c| c.borrow().clone());
    if let Some(end) = replay_end.and_then(|r| r.borrow().clone()) {
        report.recording_damage = end.damage.iter().map(|d| d.to_string()).collect();
        if let Some(e) = end.error {
            report.recording_damage.push(format!("read error: {e}"));
        }
    }
    Ok(report)
}
