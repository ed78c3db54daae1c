//! What a run measures: latency and stage times in HDR histograms, drops and losses with
//! their reasons, throughput, CPU use and memory.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::link::LinkStats;

/// Microsecond timestamps of one frame on the link's clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stamps {
    /// Capture, from the edge clock mapped onto the host's (when the offset is known).
    pub capture_us: Option<u64>,
    /// Its last byte arrived.
    pub received_us: u64,
    /// Preprocessing began.
    pub preprocess_start_us: u64,
    /// Preprocessed.
    pub preprocessed_us: u64,
    /// The backbone began.
    pub inference_start_us: u64,
    /// The backbone finished.
    pub inferred_us: u64,
    /// The engine's own GPU time for the frame's run, from CUDA events (TensorRT), µs.
    pub gpu_us: Option<u64>,
    /// The heads finished.
    pub heads_done_us: u64,
    /// The result was handed to the link.
    pub sent_us: u64,
}

impl Stamps {
    /// Where latency is measured from: the capture when known, else the arrival.
    pub fn origin_us(&self) -> u64 {
        self.capture().unwrap_or(self.received_us)
    }

    /// The capture time, where it is known and plausible (not after the arrival).
    pub fn capture(&self) -> Option<u64> {
        self.capture_us.filter(|&c| c <= self.received_us)
    }

    /// Whether latency runs from the capture.
    pub fn from_capture(&self) -> bool {
        self.capture().is_some()
    }

    /// Capture (or arrival) to result sent.
    pub fn latency_us(&self) -> u64 {
        self.sent_us.saturating_sub(self.origin_us())
    }

    /// The time of each stage, named as reports name them.
    pub fn stages(&self) -> [(&'static str, u64); 7] {
        let d = |a: u64, b: u64| b.saturating_sub(a);
        [
            (
                "transfer",
                self.capture().map_or(0, |c| d(c, self.received_us)),
            ),
            ("wait", d(self.received_us, self.preprocess_start_us)),
            (
                "preprocess",
                d(self.preprocess_start_us, self.preprocessed_us),
            ),
            ("queue", d(self.preprocessed_us, self.inference_start_us)),
            ("backbone", d(self.inference_start_us, self.inferred_us)),
            ("heads", d(self.inferred_us, self.heads_done_us)),
            ("send", d(self.heads_done_us, self.sent_us)),
        ]
    }
}

/// A histogram of microseconds, 1 µs to 10 minutes at 3 significant digits.
#[allow(clippy::expect_used)] // constant bounds, valid for hdrhistogram; no input reaches here
pub fn micros_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid constant histogram bounds")
}

/// Percentiles of one histogram, milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Percentiles {
    /// Reads a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// Process CPU time and memory, from the operating system.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ProcessUsage {
    /// User plus system CPU seconds so far.
    pub cpu_s: f64,
    /// Peak resident memory so far, MiB.
    pub peak_rss_mib: f64,
    /// Resident memory now, MiB (Linux; 0 elsewhere).
    pub rss_mib: f64,
}

impl ProcessUsage {
    /// Now.
    pub fn now() -> Self {
        use nix::sys::resource::{UsageWho, getrusage};
        let (cpu_s, peak_rss_mib) = match getrusage(UsageWho::RUSAGE_SELF) {
            Ok(u) => {
                let t =
                    |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
                // Linux reports kibibytes.
                (
                    t(u.user_time()) + t(u.system_time()),
                    u.max_rss() as f64 / 1024.0,
                )
            }
            Err(_) => (0.0, 0.0),
        };
        ProcessUsage {
            cpu_s,
            peak_rss_mib,
            rss_mib: current_rss_mib().unwrap_or(0.0),
        }
    }
}

/// Resident memory from `/proc/self/statm` (pages; 4 KiB on the targets we run on).
fn current_rss_mib() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096.0 / (1024.0 * 1024.0))
}

/// Everything a run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PipelineReport {
    /// The engine that ran the backbone: which, its precision, device and graph hash, and the
    /// engines `auto` passed over with why (flattened: `engine`, `precision`, `device`, ...).
    #[serde(flatten)]
    pub engine: Option<crate::engine::EngineInfo>,
    /// Since which frame the run has been on the CPU fallback after a GPU fault, and why
    /// (`null` when it never was).
    pub degraded: Option<crate::pipeline::stage::engine::Degraded>,
    /// Where frames were preprocessed: `cpu`, or `gpu` next to a GPU engine.
    pub preprocess_device: String,
    /// Since which frame GPU preprocessing has been on the CPU after a GPU error, and why.
    pub preprocess_moved_to_cpu: Option<crate::pipeline::stage::preprocess::MovedToCpu>,
    /// The policy.
    pub policy: String,
    /// Wall time, seconds.
    pub elapsed_s: f64,
    /// Frames that came out of the link.
    pub frames_received: u64,
    /// Frames that went through the backbone and heads.
    pub frames_processed: u64,
    /// Processed frames per second of wall time.
    pub fps: f64,
    /// Frames dropped by the host, by reason (`superseded`: a newer frame took its place while
    /// the backbone was busy, under the live policy; `bad_input: ...`: could not be
    /// preprocessed).
    pub dropped: BTreeMap<String, u64>,
    /// Frames lost on the link, by reason.
    pub lost: BTreeMap<String, u64>,
    /// Frames the edge dropped for lack of credit.
    pub dropped_at_edge: u64,
    /// Results sent to the edge.
    pub results_sent: u64,
    /// Results the link had no room for (a stalled link), not sent.
    pub results_not_queued: u64,
    /// Latency percentiles (capture, or arrival when the edge clock is unknown, to result sent).
    pub latency: Percentiles,
    /// Whether latency was measured from capture for every frame.
    pub latency_from_capture: bool,
    /// Time per stage.
    pub stages: BTreeMap<String, Percentiles>,
    /// The backbone's GPU time per frame from CUDA events, part of the `backbone` stage (only
    /// where the engine measures it: TensorRT).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backbone_gpu: Option<Percentiles>,
    /// CPU seconds used per wall second (2.0 = two cores busy).
    pub cpu_cores_busy: f64,
    /// Peak resident memory, MiB.
    pub peak_rss_mib: f64,
    /// Resident memory over time: (seconds, MiB), one sample a second.
    pub rss_timeline: Vec<(f64, f64)>,
    /// Per processed frame, (seconds since the start, latency ms), for plots.
    pub latency_timeline: Vec<(f64, f64)>,
    /// The link's own counters.
    #[serde(skip)]
    pub link: LinkStats,
    /// Damage found in a replayed recording.
    pub recording_damage: Vec<String>,
    /// The secure link's audit trail and counters (a live secure link only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security: Option<crate::link::secure::SecurityReport>,
    /// Power mode, clocks, temperatures, power rails and throttling over the run, sampled once
    /// a second (only where the machine exposes any of them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<crate::telemetry::TelemetryReport>,
    /// A V4L2 capture's counts (a run on `--v4l2` only): buffers, frames, losses by reason,
    /// frames the driver skipped, how frames were stamped, and why the capture ended early.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture: Option<crate::capture::CaptureStats>,
    /// The edge's button, pedal and probe events, by kind (only when it sent any): each is
    /// in the result line of the frame that went out after it.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub edge_events: BTreeMap<String, u64>,
    /// The edge's controls beside a capture (a run on `--v4l2` with the edge's link): its
    /// sessions, the results it was sent and the events it sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub controls: Option<crate::controls::ControlsReport>,
    /// Rotation, retention and the disk-space guard of the recording and results files (a
    /// `run` that writes them); filled in by the caller that owns those files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<crate::storage::StorageReport>,
}

impl PipelineReport {
    /// All frames the host dropped.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }

    /// All frames lost on the link.
    pub fn lost_total(&self) -> u64 {
        self.lost.values().sum()
    }
}

/// Counts by name for a summary line: ` (name n, name n)`, or nothing when there are none.
pub fn counts_by_name(counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!(" ({})", parts.join(", "))
}
