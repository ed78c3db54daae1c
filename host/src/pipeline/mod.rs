//! The host pipeline: frames from the link (live or a replayed recording) through
//! preprocessing, the backbone and the heads to results, sent back to the edge and handed to
//! the caller, with every frame timed and every drop counted.
//!
//! ```text
//!  link task (tokio) ─events─► ingest ─Handoff─► preprocess ─Handoff─► workers (one tract
//!  run_link, replay player     thread   (policy)   thread     (policy)   state each: backbone,
//!        ▲                                                               heads)
//!        └──────────── OutgoingResult ◄── output stage (the caller's thread) ◄──┘
//! ```
//!
//! Policy `live`: each hand-off holds one item and a newer frame replaces a waiting one (the
//! replaced frame is counted as `superseded`), so latency stays bounded. Policy `offline`: the
//! hand-offs wait for room, the link's credit shrinks, and a replay waits before feeding more:
//! every frame is processed.

pub mod analyze;
pub mod handoff;
pub mod plot;
pub mod stats;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use dinoedge_proto::reassembly::Frame;
use dinoedge_proto::{
    AlarmFlags, BoundingBox, ClassScore, InferenceResult, Latency, MAX_SEGMENTS, MAX_TOP_K,
    SegmentSummary,
};
use ndarray::Array4;
use tokio::sync::{mpsc, watch};

use crate::link::transport::Opener;
use crate::link::{LinkConfig, LinkEvent, LinkStats, OutgoingResult, Transport, run_link};
use crate::preprocess::{FrameRef, PreprocessConfig, Preprocessor, Rect};
use crate::recording::player::{Gate, ReplayEnd};
use crate::recording::{Pace, Player, RecordingError, RecordingReader};

pub use analyze::{Head, HeadOutput, Models, ModelsError, NamedHead, best};
pub use handoff::{Handoff, Overflow};
pub use stats::{Percentiles, PipelineReport, ProcessUsage, Stamps, micros_histogram};

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
#[derive(Debug, Clone)]
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
    pub record: Option<crate::recording::tap::SharedRecording>,
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
}

/// One frame's way through the pipeline, handed to the caller once its result was sent.
#[derive(Debug)]
pub struct FrameRecord {
    /// The frame, as received.
    pub frame: Box<Frame>,
    /// Its session.
    pub session_id: u32,
    /// Its timestamps.
    pub stamps: Stamps,
    /// The part of the frame the model saw.
    pub crop: Rect,
    /// Per head, in the order of [`Models::heads`]; empty when `error` is set.
    pub heads: Vec<HeadOutput>,
    /// Why it could not be processed (bad input), if so.
    pub error: Option<String>,
    /// Frames dropped by the host since the previous result.
    pub dropped_before: u64,
}

impl FrameRecord {
    /// The result as sent to the edge.
    pub fn wire_result(&self, models: &Models, config: &PipelineConfig) -> OutgoingResult {
        let s = &self.stamps;
        let us = |v: u64| v.min(u64::from(u32::MAX)) as u32;
        let [transfer, wait, pre, queue, backbone, heads, _send] = s.stages();
        let mut result = InferenceResult {
            seq: self.frame.start.seq,
            capture_us: self.frame.start.capture_us,
            latency: Latency {
                transfer_us: us(transfer.1),
                queue_us: us(wait.1 + queue.1),
                preprocess_us: us(pre.1),
                backbone_us: us(backbone.1),
                heads_us: us(heads.1),
                total_us: us(s.latency_us()),
            },
            top_k: heapless::Vec::new(),
            segments: heapless::Vec::new(),
            mask: None,
            alarms: AlarmFlags::default(),
        };
        let mut alarms = 0;
        if self.error.is_some() {
            alarms |= AlarmFlags::BAD_INPUT.0;
        }
        if self.dropped_before > 0 {
            alarms |= AlarmFlags::HOST_OVERLOADED.0;
        }
        result.alarms = AlarmFlags(alarms);
        let mut mask = None;
        for (head, out) in models.heads.iter().zip(&self.heads) {
            match (&head.head, out) {
                (Head::Classify(_), HeadOutput::Classes(p)) if result.top_k.is_empty() => {
                    for (class, score) in best(p, config.top_k.min(MAX_TOP_K)) {
                        let _ = result.top_k.push(ClassScore {
                            class: class as u16,
                            score,
                        });
                    }
                }
                (Head::Segment(_), HeadOutput::Mask(m)) if mask.is_none() => {
                    for st in m.stats(Some(0)).into_iter().take(MAX_SEGMENTS) {
                        let clamp = |v: usize| v.min(usize::from(u16::MAX)) as u16;
                        let (x, y, w, h) = st.bbox;
                        let _ = result.segments.push(SegmentSummary {
                            class: u16::from(st.class),
                            area_fraction: st.area_fraction,
                            bbox: BoundingBox {
                                x: clamp(x + self.crop.x as usize),
                                y: clamp(y + self.crop.y as usize),
                                width: clamp(w),
                                height: clamp(h),
                            },
                            centroid_x: st.centroid.0 + self.crop.x as f32,
                            centroid_y: st.centroid.1 + self.crop.y as f32,
                        });
                    }
                    let longer = m.width.max(m.height).max(1);
                    let cells = config.mask_cells.max(1);
                    let (w, h) = (
                        (m.width * cells).div_ceil(longer).max(1),
                        (m.height * cells).div_ceil(longer).max(1),
                    );
                    let small = m.resized(w, h);
                    mask = Some((w as u16, h as u16, small.to_rle()));
                }
                _ => {}
            }
        }
        OutgoingResult {
            session_id: self.session_id,
            result,
            mask,
        }
    }

    /// The result as one JSON object (one line of a results file).
    pub fn to_json(&self, models: &Models) -> serde_json::Value {
        let s = &self.stamps;
        let stages: serde_json::Map<String, serde_json::Value> = s
            .stages()
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::json!(*v as f64 / 1000.0)))
            .collect();
        let mut heads = serde_json::Map::new();
        for (head, out) in models.heads.iter().zip(&self.heads) {
            let classes = head.classes();
            let name = |i: usize| classes.get(i).cloned().unwrap_or_else(|| i.to_string());
            let value = match out {
                HeadOutput::Classes(p) => serde_json::json!({
                    "top": best(p, p.len().min(5)).into_iter()
                        .map(|(c, p)| serde_json::json!({"class": name(c), "p": p}))
                        .collect::<Vec<_>>(),
                }),
                HeadOutput::Mask(m) => serde_json::json!({
                    "mask_size": [m.width, m.height],
                    "segments": m.stats(Some(0)).into_iter().map(|st| serde_json::json!({
                        "class": name(usize::from(st.class)),
                        "area_fraction": st.area_fraction,
                        "bbox": [st.bbox.0 + self.crop.x as usize, st.bbox.1 + self.crop.y as usize,
                                 st.bbox.2, st.bbox.3],
                        "centroid": [st.centroid.0 + self.crop.x as f32,
                                     st.centroid.1 + self.crop.y as f32],
                    })).collect::<Vec<_>>(),
                }),
            };
            heads.insert(head.name.clone(), value);
        }
        let start = &self.frame.start;
        serde_json::json!({
            "seq": start.seq,
            "session": self.session_id,
            "capture_us": start.capture_us,
            "size": [start.width, start.height],
            "format": format!("{:?}", start.format),
            "latency_ms": s.latency_us() as f64 / 1000.0,
            "latency_from": if s.from_capture() { "capture" } else { "received" },
            "stages_ms": stages,
            "heads": heads,
            "error": self.error,
            "dropped_before": self.dropped_before,
            "random_weights": models.backbone.random_weights(),
        })
    }
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
}

/// A frame between stages.
struct Job {
    frame: Box<Frame>,
    session_id: u32,
    stamps: Stamps,
    pixels: Option<Array4<f32>>,
    crop: Rect,
}

/// Counters the stages share.
#[derive(Default)]
struct Shared {
    received: AtomicU64,
    superseded: AtomicU64,
    /// Dropped since the last result went out.
    dropped_recently: AtomicU64,
    /// Received but not processed because the run was stopping.
    stopped: AtomicU64,
}

/// Runs the pipeline on `input` until the input ends (a replay), `stop` turns true, or a
/// configured limit; calls `on_frame` for every frame once its result was sent, and `on_tick`
/// twice a second. Blocks the calling thread, which runs the output stage.
pub fn run(
    models: &Models,
    config: &PipelineConfig,
    input: Input,
    stop: &AtomicBool,
    mut on_frame: impl FnMut(&FrameRecord),
    mut on_tick: impl FnMut(&LiveStatus),
) -> Result<PipelineReport, PipelineError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| PipelineError::Runtime(format!("starting the async runtime: {e}")))?;
    let epoch = Instant::now();
    let now_us = move || epoch.elapsed().as_micros() as u64;
    let workers = config.workers.max(1);
    let (overflow, q1_cap, q2_cap) = match config.policy {
        Policy::Live => (Overflow::ReplaceOldest, 1, 1),
        Policy::Offline => (Overflow::Wait, 2, workers),
    };
    let q1: Arc<Handoff<Job>> = Arc::new(Handoff::new(q1_cap, overflow));
    let q2: Arc<Handoff<Job>> = Arc::new(Handoff::new(q2_cap, overflow));
    let shared = Arc::new(Shared::default());
    let window = config.link.credit_window.max(1) as usize;
    let (events_tx, mut events_rx) = mpsc::channel::<LinkEvent>(window);
    let (results_tx, results_rx) = mpsc::channel::<OutgoingResult>(64);
    let (stats_tx, stats_rx) = watch::channel(LinkStats::default());
    let (stop_link_tx, stop_link_rx) = watch::channel(false);
    let mut link_config = config.link.clone();
    link_config.epoch = Some(epoch);

    // The source: a link, or a player feeding the link's code.
    let mut replay_end: Option<watch::Receiver<Option<ReplayEnd>>> = None;
    let opener = match &input {
        Input::Link(transport) => {
            let mut opener = runtime.block_on(Opener::new(transport.clone()))?;
            if let Some(rec) = &config.record {
                opener.record_into(rec.clone());
            }
            opener
        }
        Input::Replay {
            path,
            pace,
            repeat_for,
        } => {
            // Checked here, so that a bad file is an error rather than an empty run.
            RecordingReader::open(path)?;
            let gate: Option<Gate> = match config.policy {
                Policy::Live => None,
                Policy::Offline => {
                    let weak = events_tx.downgrade();
                    let q1 = q1.clone();
                    Some(Arc::new(move || {
                        weak.upgrade().is_some_and(|tx| tx.capacity() > 0) && q1.len() < q1_cap
                    }))
                }
            };
            // No device to wait for between recorded connections.
            link_config.reconnect_delay = Duration::ZERO;
            if gate.is_some() {
                // Time stands still while the replay waits for the pipeline.
                link_config.link_timeout = Duration::from_secs(24 * 3600);
                link_config.reassembly.timeout_us = 24 * 3600 * 1_000_000;
            }
            let player = {
                let _guard = runtime.enter();
                Player::start_file(path.clone(), *pace, gate, *repeat_for)
            };
            replay_end = Some(player.end());
            Opener::replay(path.clone(), player)
        }
    };
    let link = runtime.spawn(run_link(
        opener,
        link_config,
        events_tx,
        Some(results_rx),
        stats_tx,
        stop_link_rx,
    ));

    // Every worker's state first: an error here must not leave threads running.
    let mut states = Vec::with_capacity(workers);
    for _ in 0..workers {
        states.push(models.backbone.state()?);
    }

    // Ingest: link events to frames for the first hand-off. It stops when told (the caller's
    // flag, seen by the output stage), at the deadline, or at the end of a replay.
    let ingest_stop = Arc::new(AtomicBool::new(false));
    let ingest = {
        let q1 = q1.clone();
        let shared = shared.clone();
        let handle = runtime.handle().clone();
        let replay_end = replay_end.clone();
        let capture_clock = config.capture_clock;
        let stop_flag = ingest_stop.clone();
        let deadline = config.duration.map(|d| Instant::now() + d);
        std::thread::Builder::new()
            .name("ingest".into())
            .spawn(move || {
                let mut disconnects = 0u32;
                // A replay is over once it has been fed whole and every connection it opened
                // has ended (so every frame in it has come out of the link).
                let replay_over = |disconnects: u32| {
                    replay_end.as_ref().is_some_and(|r| {
                        r.borrow()
                            .as_ref()
                            .is_some_and(|e| disconnects >= e.connections)
                    })
                };
                loop {
                    if replay_over(disconnects) {
                        break;
                    }
                    if stop_flag.load(Ordering::Relaxed)
                        || deadline.is_some_and(|d| Instant::now() >= d)
                    {
                        break;
                    }
                    let event = handle.block_on(async {
                        tokio::time::timeout(Duration::from_millis(100), events_rx.recv()).await
                    });
                    let event = match event {
                        Err(_) => continue,
                        Ok(None) => break,
                        Ok(Some(e)) => e,
                    };
                    match event {
                        LinkEvent::Frame(f) => {
                            shared.received.fetch_add(1, Ordering::Relaxed);
                            let received_us = f.received_us;
                            let job = Job {
                                crop: Rect {
                                    x: 0,
                                    y: 0,
                                    width: u32::from(f.frame.start.width),
                                    height: u32::from(f.frame.start.height),
                                },
                                frame: f.frame,
                                session_id: f.session_id,
                                stamps: Stamps {
                                    capture_us: f.capture_host_us.filter(|_| capture_clock),
                                    received_us,
                                    ..Stamps::default()
                                },
                                pixels: None,
                            };
                            match q1.push(job) {
                                Ok(Some(_old)) => {
                                    shared.superseded.fetch_add(1, Ordering::Relaxed);
                                    shared.dropped_recently.fetch_add(1, Ordering::Relaxed);
                                }
                                Ok(None) => {}
                                Err(_) => {
                                    shared.stopped.fetch_add(1, Ordering::Relaxed);
                                    break;
                                }
                            }
                        }
                        LinkEvent::Disconnected { .. } => disconnects += 1,
                        _ => {}
                    }
                }
                q1.close();
                // Frames the link already handed over are counted, not dropped unseen; the
                // link counts what it could no longer hand over (`HostStopped`).
                events_rx.close();
                while let Ok(event) = events_rx.try_recv() {
                    if let LinkEvent::Frame(_) = event {
                        shared.received.fetch_add(1, Ordering::Relaxed);
                        shared.stopped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .map_err(|e| PipelineError::Runtime(e.to_string()))?
    };

    // Output channel from the stages to this thread.
    // Bounded: a slow output stage (overlays, a slow disk) holds the workers back, and the
    // policy's hand-offs decide what waits, instead of a queue growing without end.
    let (out_tx, out_rx) = std_mpsc::sync_channel::<FrameRecord>(workers * 2 + 2);

    // Preprocessing: one thread, overlapping the backbone's work on earlier frames.
    let preprocess = {
        let (q1, q2, shared, out_tx) = (q1.clone(), q2.clone(), shared.clone(), out_tx.clone());
        let mut pre = Preprocessor::new(PreprocessConfig {
            roi: config.roi,
            ..PreprocessConfig::new(models.backbone.size())
        });
        let roi = config.roi;
        std::thread::Builder::new()
            .name("preprocess".into())
            .spawn(move || {
                let _guard = CloseOnPanic(vec![q1.clone(), q2.clone()]);
                while let Some(mut job) = q1.pop() {
                    job.stamps.preprocess_start_us = now_us();
                    let start = &job.frame.start;
                    let frame = FrameRef {
                        format: start.format,
                        width: u32::from(start.width),
                        height: u32::from(start.height),
                        data: &job.frame.data,
                    };
                    if let Some(rect) = roi.and_then(|r| r.bounds(frame.width, frame.height)) {
                        job.crop = rect;
                    }
                    match pre.run(frame) {
                        Ok(pixels) => {
                            job.pixels = Some(pixels);
                            job.stamps.preprocessed_us = now_us();
                            match q2.push(job) {
                                Ok(Some(_old)) => {
                                    shared.superseded.fetch_add(1, Ordering::Relaxed);
                                    shared.dropped_recently.fetch_add(1, Ordering::Relaxed);
                                }
                                Ok(None) => {}
                                Err(_) => {
                                    // The workers are gone: nothing more can be processed.
                                    q1.close();
                                    break;
                                }
                            }
                        }
                        Err(e) => {
                            let t = now_us();
                            job.stamps.preprocessed_us = t;
                            job.stamps.inference_start_us = t;
                            job.stamps.inferred_us = t;
                            job.stamps.heads_done_us = t;
                            let _ = out_tx.send(FrameRecord {
                                frame: job.frame,
                                session_id: job.session_id,
                                stamps: job.stamps,
                                crop: job.crop,
                                heads: Vec::new(),
                                error: Some(e.to_string()),
                                dropped_before: 0,
                            });
                        }
                    }
                }
                q2.close();
            })
            .map_err(|e| PipelineError::Runtime(e.to_string()))?
    };

    // Workers: one tract state each.
    let mut worker_threads = Vec::new();
    let worker_error: Arc<Mutex<Option<String>>> = Arc::default();
    for (i, mut state) in states.into_iter().enumerate() {
        let (q1, q2, out_tx, models, worker_error) = (
            q1.clone(),
            q2.clone(),
            out_tx.clone(),
            models.clone(),
            worker_error.clone(),
        );
        worker_threads.push(
            std::thread::Builder::new()
                .name(format!("backbone-{i}"))
                .spawn(move || {
                    let _guard = CloseOnPanic(vec![q1.clone(), q2.clone()]);
                    while let Some(mut job) = q2.pop() {
                        let Some(pixels) = job.pixels.take() else {
                            continue;
                        };
                        job.stamps.inference_start_us = now_us();
                        let features = match state.run(pixels.view()) {
                            Ok(f) => f,
                            Err(e) => {
                                // The input shape is fixed by the preprocessor: a failure
                                // here is the runtime's, and ends the run.
                                if let Ok(mut w) = worker_error.lock() {
                                    w.get_or_insert(e.to_string());
                                }
                                break;
                            }
                        };
                        job.stamps.inferred_us = now_us();
                        let (heads, error) = match models.run_heads(
                            &features,
                            job.crop.width as usize,
                            job.crop.height as usize,
                        ) {
                            Ok(heads) => (heads, None),
                            Err(e) => (Vec::new(), Some(e.to_string())),
                        };
                        job.stamps.heads_done_us = now_us();
                        let _ = out_tx.send(FrameRecord {
                            frame: job.frame,
                            session_id: job.session_id,
                            stamps: job.stamps,
                            crop: job.crop,
                            heads,
                            error,
                            dropped_before: 0,
                        });
                    }
                    // A worker that stopped must not leave the others' producers waiting.
                    if worker_error.lock().map(|w| w.is_some()).unwrap_or(true) {
                        q2.close();
                        q1.close();
                    }
                })
                .map_err(|e| PipelineError::Runtime(e.to_string()))?,
        );
    }
    drop(out_tx);

    // The output stage, here.
    let mut latency = micros_histogram();
    let mut stage_hists: BTreeMap<&'static str, hdrhistogram::Histogram<u64>> = BTreeMap::new();
    let mut report = PipelineReport {
        policy: config.policy.to_string(),
        latency_from_capture: true,
        ..PipelineReport::default()
    };
    let mut bad_input: BTreeMap<String, u64> = BTreeMap::new();
    let usage_start = ProcessUsage::now();
    let started = Instant::now();
    let mut last_tick = Instant::now();
    let mut last_rss = Instant::now() - Duration::from_secs(2);
    let mut processed_at_tick = 0u64;
    let mut stopping = false;
    loop {
        if stop.load(Ordering::Relaxed) {
            ingest_stop.store(true, Ordering::Relaxed);
        }
        match out_rx.recv_timeout(Duration::from_millis(50)) {
            Ok(mut record) => {
                record.dropped_before = shared.dropped_recently.swap(0, Ordering::Relaxed);
                // Stamped as it goes out, so that the result carries its own total latency.
                record.stamps.sent_us = now_us();
                let outgoing = record.wire_result(models, config);
                // The link takes results as fast as it writes; one it has no room for (a
                // stalled link) is counted rather than waited for.
                if results_tx.try_send(outgoing).is_err() {
                    report.results_not_queued += 1;
                }
                if let Some(e) = &record.error {
                    let reason = format!("bad_input: {}", short_reason(e));
                    *bad_input.entry(reason).or_default() += 1;
                } else {
                    report.frames_processed += 1;
                    let s = &record.stamps;
                    let from_capture = s.from_capture();
                    if !from_capture {
                        report.latency_from_capture = false;
                    }
                    let l = s.latency_us();
                    let _ = latency.record(l.max(1));
                    for (name, v) in s.stages() {
                        // Transfer is only known where capture is.
                        if name == "transfer" && !from_capture {
                            continue;
                        }
                        let _ = stage_hists
                            .entry(name)
                            .or_insert_with(micros_histogram)
                            .record(v.max(1));
                    }
                    if report.latency_timeline.len() < 1_000_000 {
                        report
                            .latency_timeline
                            .push((s.sent_us as f64 / 1e6, l as f64 / 1000.0));
                    }
                }
                on_frame(&record);
                if config
                    .max_frames
                    .is_some_and(|n| report.frames_processed >= n)
                    && !stopping
                {
                    stopping = true;
                    ingest_stop.store(true, Ordering::Relaxed);
                    q1.close();
                }
            }
            Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if last_rss.elapsed() >= Duration::from_secs(1) {
            last_rss = Instant::now();
            report
                .rss_timeline
                .push((started.elapsed().as_secs_f64(), ProcessUsage::now().rss_mib));
        }
        if last_tick.elapsed() >= Duration::from_millis(500) {
            let link_now = stats_rx.borrow().clone();
            let dt = last_tick.elapsed().as_secs_f64();
            last_tick = Instant::now();
            on_tick(&LiveStatus {
                elapsed_s: started.elapsed().as_secs_f64(),
                processed: report.frames_processed,
                fps: (report.frames_processed - processed_at_tick) as f64 / dt.max(1e-9),
                p50_ms: latency.value_at_quantile(0.5) as f64 / 1000.0,
                p99_ms: latency.value_at_quantile(0.99) as f64 / 1000.0,
                dropped: shared.superseded.load(Ordering::Relaxed)
                    + bad_input.values().sum::<u64>(),
                lost: link_now.lost_total(),
                dropped_at_edge: link_now.dropped_at_edge,
            });
            processed_at_tick = report.frames_processed;
        }
    }
    // Every stage has finished (or failed): the input stops too, whatever it was doing.
    ingest_stop.store(true, Ordering::Relaxed);
    q1.close();
    q2.close();
    let elapsed = started.elapsed().as_secs_f64();
    let usage_end = ProcessUsage::now();
    let join = |h: std::thread::JoinHandle<()>, name: &str| {
        h.join()
            .map_err(|_| PipelineError::Runtime(format!("the {name} thread panicked")))
    };
    join(ingest, "ingest")?;
    join(preprocess, "preprocess")?;
    for w in worker_threads {
        join(w, "backbone")?;
    }
    let _ = stop_link_tx.send(true);
    drop(results_tx);
    let link_stats = runtime
        .block_on(link)
        .map_err(|e| PipelineError::Runtime(format!("the link task failed: {e}")))?;
    if let Some(e) = worker_error.lock().ok().and_then(|w| w.clone()) {
        return Err(PipelineError::Runtime(format!("backbone: {e}")));
    }
    report.elapsed_s = elapsed;
    report.frames_received = shared.received.load(Ordering::Relaxed);
    report.fps = report.frames_processed as f64 / elapsed.max(1e-9);
    let superseded = shared.superseded.load(Ordering::Relaxed);
    if superseded > 0 {
        report.dropped.insert("superseded".into(), superseded);
    }
    let stopped = shared.stopped.load(Ordering::Relaxed);
    if stopped > 0 {
        report.dropped.insert("stopped".into(), stopped);
    }
    report.dropped.extend(bad_input);
    report.lost = link_stats.frames_lost.clone();
    report.dropped_at_edge = link_stats.dropped_at_edge;
    report.results_sent = link_stats.results_sent;
    report.latency = Percentiles::of(&latency);
    report.stages = stage_hists
        .iter()
        .map(|(k, h)| ((*k).to_owned(), Percentiles::of(h)))
        .collect();
    report.cpu_cores_busy = (usage_end.cpu_s - usage_start.cpu_s) / elapsed.max(1e-9);
    report.peak_rss_mib = usage_end.peak_rss_mib;
    report.link = link_stats;
    if let Some(end) = replay_end.and_then(|r| r.borrow().clone()) {
        report.recording_damage = end.damage.iter().map(|d| d.to_string()).collect();
        if let Some(e) = end.error {
            report.recording_damage.push(format!("read error: {e}"));
        }
    }
    Ok(report)
}

/// Closes hand-offs when a stage's thread panics, so that the stages around it end instead of
/// waiting for it forever (the panic is then reported when the thread is joined).
struct CloseOnPanic(Vec<Arc<Handoff<Job>>>);

impl Drop for CloseOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for h in &self.0 {
                h.close();
            }
        }
    }
}

/// An error's first line, short enough to name a counter.
fn short_reason(e: &str) -> String {
    let first = e.lines().next().unwrap_or(e);
    first.chars().take(120).collect()
}
