//! Output: the caller's thread stamps each frame as its result goes back to the edge, keeps
//! the run's statistics and hands the frame to the caller.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{Cancel, Clock, Counters};
use crate::controls::ControlsReport;
use crate::link::{LinkStats, ResultRefused, ResultSender};
use crate::pipeline::analyze::Models;
use crate::pipeline::record::{ControlRecord, FrameRecord};
use crate::pipeline::stats::{Percentiles, PipelineReport, ProcessUsage, micros_histogram};
use crate::pipeline::{LiveStatus, PipelineConfig};
use crate::telemetry::{self, TelemetryReport};

/// How often the stage wakes without a frame, to see the stop flag and the clock.
const POLL: Duration = Duration::from_millis(50);
/// How often the caller's `on_tick` runs.
const TICK: Duration = Duration::from_millis(500);
/// Latency points kept for the plot, at most.
const TIMELINE_MAX: usize = 1_000_000;

/// The output stage.
pub struct Output<'a> {
    /// Finished frames (processed or failed).
    pub input: Receiver<FrameRecord>,
    /// Results back to the edge.
    pub results: ResultSender,
    /// The link's counters, for the live status.
    pub link_stats: watch::Receiver<LinkStats>,
    /// The backbone and heads.
    pub models: &'a Models,
    /// The run's settings.
    pub config: &'a PipelineConfig,
    /// Shared counters.
    pub counters: Arc<Counters>,
    /// The clock.
    pub clock: Clock,
    /// The run's token.
    pub cancel: Cancel,
    /// The edge's button, pedal and probe events, from the ingest stage (the runner counts
    /// what comes after this stage ended).
    pub controls: &'a Receiver<ControlRecord>,
    /// The counts of the edge's controls beside a capture (`crate::controls`).
    pub edge_controls: Option<watch::Receiver<ControlsReport>>,
}

/// What the output stage measured; the runner completes the report with the link's side.
pub struct OutputTotals {
    /// The report so far.
    pub report: PipelineReport,
    /// Seconds from the stage's start to the last frame.
    pub elapsed_s: f64,
    /// CPU and memory at the start and at the end.
    pub usage: (ProcessUsage, ProcessUsage),
    /// Results that found the link ended: stale, like those the link itself could not send.
    pub results_after_link_end: u64,
}

impl Output<'_> {
    /// Runs until every stage before it has finished; stops the input when `stop` turns true,
    /// at the configured duration or after the configured number of frames.
    pub fn run(
        self,
        stop: &AtomicBool,
        mut on_frame: impl FnMut(&FrameRecord),
        mut on_tick: impl FnMut(&LiveStatus),
    ) -> OutputTotals {
        let mut latency = micros_histogram();
        let mut stage_hists: BTreeMap<&'static str, hdrhistogram::Histogram<u64>> = BTreeMap::new();
        let mut gpu_hist = micros_histogram();
        let mut report = PipelineReport {
            policy: self.config.policy.to_string(),
            latency_from_capture: true,
            ..PipelineReport::default()
        };
        let mut failed: BTreeMap<String, u64> = BTreeMap::new();
        let usage_start = ProcessUsage::now();
        let started = Instant::now();
        let deadline = self.config.duration.map(|d| started + d);
        let mut last_tick = started;
        let mut last_rss: Option<Instant> = None;
        // Read once: a test points it at a fixture tree through the environment.
        let sysfs_root = telemetry::root();
        let mut processed_at_tick = 0u64;
        let mut results_after_link_end = 0u64;
        // Events wait here for the next frame's record.
        let mut controls: Vec<ControlRecord> = Vec::new();
        let take_controls = |report: &mut PipelineReport, into: &mut Vec<ControlRecord>| {
            for c in self.controls.try_iter() {
                *report
                    .edge_events
                    .entry(c.input.kind_name().to_owned())
                    .or_default() += 1;
                into.push(c);
            }
        };
        loop {
            if stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d) {
                self.cancel.stop();
            }
            match self.input.recv_timeout(POLL) {
                Ok(mut record) => {
                    record.dropped_before = self.counters.take_dropped_recently();
                    take_controls(&mut report, &mut controls);
                    record.controls = std::mem::take(&mut controls);
                    // Stamped as it goes out, so that the result carries its own total latency.
                    record.stamps.sent_us = self.clock.now_us();
                    let outgoing = record.wire_result(self.models, self.config);
                    // The link takes results as fast as it writes; one it has no room for (a
                    // stalled link) is counted rather than waited for.
                    match self.results.send(outgoing) {
                        Ok(()) => {}
                        Err(ResultRefused::Full) => report.results_not_queued += 1,
                        // The link has ended (a replay played out): the result answers a
                        // session that is over, as the link counts its own.
                        Err(ResultRefused::Stopped) => results_after_link_end += 1,
                    }
                    match record.failure() {
                        Some(f) => *failed.entry(f.counter()).or_default() += 1,
                        None => {
                            report.frames_processed += 1;
                            let s = &record.stamps;
                            let from_capture = s.from_capture();
                            report.latency_from_capture &= from_capture;
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
                            if let Some(gpu) = s.gpu_us {
                                let _ = gpu_hist.record(gpu.max(1));
                            }
                            if report.latency_timeline.len() < TIMELINE_MAX {
                                report
                                    .latency_timeline
                                    .push((s.sent_us as f64 / 1e6, l as f64 / 1000.0));
                            }
                        }
                    }
                    on_frame(&record);
                    if self
                        .config
                        .max_frames
                        .is_some_and(|n| report.frames_processed >= n)
                    {
                        self.cancel.stop();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if last_rss.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                last_rss = Some(Instant::now());
                report
                    .rss_timeline
                    .push((started.elapsed().as_secs_f64(), ProcessUsage::now().rss_mib));
                // The hardware on the same beat: clocks, temperatures, power, throttling.
                TelemetryReport::add_to(&mut report.telemetry, telemetry::sample(&sysfs_root));
            }
            take_controls(&mut report, &mut controls);
            if last_tick.elapsed() >= TICK {
                let link = self.link_stats.borrow().clone();
                let dt = last_tick.elapsed().as_secs_f64();
                last_tick = Instant::now();
                on_tick(&LiveStatus {
                    elapsed_s: started.elapsed().as_secs_f64(),
                    processed: report.frames_processed,
                    fps: (report.frames_processed - processed_at_tick) as f64 / dt.max(1e-9),
                    p50_ms: latency.value_at_quantile(0.5) as f64 / 1000.0,
                    p99_ms: latency.value_at_quantile(0.99) as f64 / 1000.0,
                    dropped: self.counters.dropped_total(super::DropReason::Superseded)
                        + failed.values().sum::<u64>(),
                    lost: link.lost_total(),
                    dropped_at_edge: link.dropped_at_edge,
                    received: self.counters.received_total(),
                    dropped_by_reason: {
                        let mut by = failed.clone();
                        let superseded = self.counters.dropped_total(super::DropReason::Superseded);
                        if superseded > 0 {
                            by.insert(super::DropReason::Superseded.name().to_owned(), superseded);
                        }
                        by
                    },
                    link,
                    edge_events: report.edge_events.values().sum(),
                    controls: self.edge_controls.as_ref().map(|c| c.borrow().clone()),
                });
                processed_at_tick = report.frames_processed;
            }
        }
        let elapsed_s = started.elapsed().as_secs_f64();
        // Events after the last frame are counted; they are in the link's log too.
        take_controls(&mut report, &mut controls);
        if !controls.is_empty() {
            tracing::info!(
                events = controls.len(),
                "edge events after the last frame: counted, with no frame to go with"
            );
        }
        // One more at the end, so that `last` is the hardware as the run left it even when the
        // run was shorter than the beat.
        TelemetryReport::add_to(&mut report.telemetry, telemetry::sample(&sysfs_root));
        report.dropped.extend(failed);
        report.latency = Percentiles::of(&latency);
        report.stages = stage_hists
            .iter()
            .map(|(k, h)| ((*k).to_owned(), Percentiles::of(h)))
            .collect();
        report.backbone_gpu = (!gpu_hist.is_empty()).then(|| Percentiles::of(&gpu_hist));
        OutputTotals {
            report,
            elapsed_s,
            usage: (usage_start, ProcessUsage::now()),
            results_after_link_end,
        }
    }
}
