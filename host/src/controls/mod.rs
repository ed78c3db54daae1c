//! The edge's controls beside a capture on the host: the video comes from a V4L2 device on
//! the Jetson (`crate::capture`), and the edge, on its usual link, serves only its buttons,
//! pedal and alarm (PROTOCOL.md §6.8).
//!
//! ```text
//!  /dev/videoN ─► capture thread ──── frames ─────┐
//!                                                 ├─► one queue ─► the pipeline's Ingest
//!  edge link (controls only: no credit) ─ events ─┘   (buttons, pedal, probe: EdgeInput)
//!        ▲
//!        └── every result, to the edge's current session ◄── the pipeline's Output
//! ```
//!
//! The edge's session runs as any other ([`crate::link::LinkSession`] with
//! [`LinkConfig::controls_only`]): the edge is welcomed with no credit and never granted any,
//! so it sends no frames (one that does has them counted and ignored), and every result of a
//! captured frame goes to whatever session the edge has, so its alarm output follows the
//! analysis. With no edge connected, results are counted as not sent; the capture and the
//! analysis go on. The capture's end ends the run.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::capture::{BufferSource, CaptureStats};
use crate::link::{
    Link, LinkConfig, LinkEvent, LinkHandle, LinkStats, OutgoingResult, ResultRefused, Source,
};

/// Events the edge's link holds for this task at most (buttons are pressed by hand).
const EDGE_EVENTS: usize = 64;

/// Results queued for the edge at most; one that finds no room is counted.
const RESULT_QUEUE: usize = 64;

/// Edge events held for a consumer with no room (a full frame queue), at most.
const PENDING_EVENTS: usize = 1024;

/// How often the report is published.
const PUBLISH: Duration = Duration::from_millis(250);

/// What the edge's controls did over a run: its link, the results it was sent and the
/// events it sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ControlsReport {
    /// The edge's link, as given (`serial /dev/ttyACM0`, `tcp listen 0.0.0.0:7000`).
    pub link: String,
    /// The edge's id, from its latest `Hello`.
    pub device: Option<String>,
    /// Whether a connection to the edge is open now.
    pub connected: bool,
    /// Connections opened.
    pub connections: u64,
    /// Sessions begun.
    pub sessions: u64,
    /// Results sent to the edge (one per captured frame while it had a session).
    pub results_sent: u64,
    /// Results not sent: no edge session at the time, no room on the edge's link, or the
    /// link stopped before writing them.
    pub results_not_sent: u64,
    /// Events by kind (`FootSwitchPressed`, ...), as received.
    pub events: BTreeMap<String, u64>,
    /// Events received but not handed to the run: after the capture had ended or the run had
    /// stopped, or while more than 1,024 waited for a full frame queue.
    pub events_undelivered: u64,
    /// Frame packets the edge sent though it was granted no credit, ignored.
    pub frame_packets_unasked: u64,
    /// Damaged packets on the edge's link.
    pub damaged_packets: u64,
}

impl ControlsReport {
    /// Takes the edge link's counters in, with `refused` results its queue had no room for.
    fn update(&mut self, link: &LinkStats, refused: u64) {
        self.results_not_sent = refused + link.results_stale;
        self.connected = link.connected;
        self.connections = link.connections;
        self.sessions = link.sessions;
        self.results_sent = link.results_sent;
        self.frame_packets_unasked = link.frame_packets_unasked;
        self.damaged_packets = link.resyncs;
    }

    /// One line for the run's summary.
    pub fn summary_line(&self) -> String {
        format!(
            "edge controls on {}{}: {} session(s), {} results sent, {} not sent (no session or no \
             room), {} event(s){}{}",
            self.link,
            self.device
                .as_ref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default(),
            self.sessions,
            self.results_sent,
            self.results_not_sent,
            self.events.values().sum::<u64>(),
            crate::pipeline::counts_by_name(&self.events),
            if self.frame_packets_unasked > 0 {
                format!(
                    "; {} frame packets sent without credit, ignored",
                    self.frame_packets_unasked
                )
            } else {
                String::new()
            },
        )
    }
}

/// A capture with the edge's controls beside it.
pub struct Controlled {
    /// Frames and the edge's events, as one link's; results go to the edge.
    pub link: Link,
    /// The capture's counts.
    pub capture: watch::Receiver<CaptureStats>,
    /// The controls' counts, published as they change and final once the link has finished.
    pub controls: watch::Receiver<ControlsReport>,
}

/// Starts capturing from `buffers` and serving the edge's controls from `edge`, on the
/// current tokio runtime. `config` is the edge link's (made controls-only here); `capacity`
/// is how many frames wait for the pipeline at most.
pub fn spawn(
    buffers: Box<dyn BufferSource>,
    edge: Box<dyn Source>,
    config: LinkConfig,
    epoch: Instant,
    capacity: usize,
) -> Controlled {
    let (events_tx, events) = mpsc::channel(capacity.max(1));
    let (capture, capture_stats) = crate::capture::spawn_into(buffers, epoch, events_tx.clone());
    let report = ControlsReport {
        link: edge.describe(),
        ..ControlsReport::default()
    };
    let edge = crate::link::spawn(
        edge,
        LinkConfig {
            controls_only: true,
            ..config
        },
        epoch,
        EDGE_EVENTS,
    );
    let (results_tx, results_rx) = mpsc::channel(RESULT_QUEUE);
    let (report_tx, report_rx) = watch::channel(report);
    let (stop_tx, stop_rx) = watch::channel(false);
    let link_stats = capture.watch_stats();
    let task = tokio::spawn(
        Serve {
            capture,
            capture_stats: capture_stats.clone(),
            edge,
            events: Some(events_tx),
            pending: VecDeque::new(),
            capturing: true,
            results: results_rx,
            stop: stop_rx,
            report: report_tx,
            refused: 0,
        }
        .run(),
    );
    Controlled {
        link: Link {
            events,
            handle: LinkHandle::from_parts(results_tx, link_stats, stop_tx, task),
        },
        capture: capture_stats,
        controls: report_rx,
    }
}

/// The task between the capture, the edge and the pipeline.
struct Serve {
    capture: LinkHandle,
    capture_stats: watch::Receiver<CaptureStats>,
    edge: Link,
    /// The queue the capture thread shares; dropped once the capture ended, so that the
    /// pipeline's input ends with it.
    events: Option<mpsc::Sender<LinkEvent>>,
    /// Edge events waiting for room in that queue.
    pending: VecDeque<LinkEvent>,
    /// Whether the capture thread still runs; events that come after it ended have no frame
    /// to go with.
    capturing: bool,
    results: mpsc::Receiver<OutgoingResult>,
    stop: watch::Receiver<bool>,
    report: watch::Sender<ControlsReport>,
    /// Results the edge's link had no room for.
    refused: u64,
}

impl Serve {
    async fn run(mut self) -> LinkStats {
        let to_edge = self.edge.handle.results();
        let mut publish = tokio::time::interval(PUBLISH);
        let mut results_open = true;
        let mut stopping = false;
        let mut edge_open = true;
        // Until the capture has ended, the events it left waiting were handed on, and the
        // pipeline has sent its last result.
        while self.capturing || self.events.is_some() || results_open {
            tokio::select! {
                changed = self.capture_stats.changed(), if self.capturing => {
                    // The capture thread owns the sender: an error is its end.
                    if changed.is_err() {
                        self.capturing = false;
                        self.let_go_when_handed_on();
                    }
                }
                changed = self.stop.changed(), if !stopping => {
                    if changed.is_err() || *self.stop.borrow() {
                        stopping = true;
                        self.capture.stop();
                    }
                }
                event = self.edge.events.recv(), if edge_open => match event {
                    Some(event) => self.on_edge_event(event),
                    None => edge_open = false,
                },
                permit = reserve(self.events.clone()), if !self.pending.is_empty() => {
                    match (permit, self.pending.pop_front()) {
                        (Some(permit), Some(event)) => {
                            permit.send(event);
                        }
                        (None, Some(_)) => {
                            // The pipeline stopped reading: nothing waiting will be taken.
                            let left = 1 + self.pending.len() as u64;
                            self.pending.clear();
                            self.events = None;
                            self.undelivered(left);
                        }
                        _ => {}
                    }
                    self.let_go_when_handed_on();
                }
                result = self.results.recv(), if results_open => match result {
                    Some(result) => {
                        if let Err(refused) = to_edge.send(result) {
                            if matches!(refused, ResultRefused::Full) {
                                tracing::debug!("the edge's result queue is full");
                            }
                            self.refused += 1;
                        }
                    }
                    None => results_open = false,
                },
                _ = publish.tick() => self.publish(),
            }
        }
        // The edge's link hands over what it holds as it stops: it must not wait for room
        // here, where nobody reads any more.
        self.edge.events.close();
        while let Ok(event) = self.edge.events.try_recv() {
            if let LinkEvent::EdgeEvent(input) = event {
                let kind = input.kind_name().to_owned();
                self.report.send_modify(|r| {
                    *r.events.entry(kind).or_default() += 1;
                    r.events_undelivered += 1;
                });
            }
        }
        let edge = match self.edge.handle.finish().await {
            Ok(stats) => stats,
            Err(e) => {
                tracing::error!(error = %e, "the edge's link task failed");
                LinkStats::default()
            }
        };
        let refused = self.refused;
        self.report.send_modify(|r| r.update(&edge, refused));
        match self.capture.finish().await {
            Ok(stats) => stats,
            Err(e) => {
                tracing::error!(error = %e, "the capture's task failed");
                self.capture_stats.borrow().link_view()
            }
        }
    }

    /// What the edge's link reports: its events go on to the pipeline; sessions are logged
    /// and named in the report.
    fn on_edge_event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::EdgeEvent(input) => {
                let kind = input.kind_name().to_owned();
                self.report
                    .send_modify(|r| *r.events.entry(kind).or_default() += 1);
                if !self.capturing || self.pending.len() >= PENDING_EVENTS {
                    self.undelivered(1);
                } else {
                    self.pending.push_back(LinkEvent::EdgeEvent(input));
                }
            }
            LinkEvent::SessionStarted { session_id, hello } => {
                tracing::info!(
                    device = %hello.device_id,
                    session_id,
                    "the edge serves its controls"
                );
                let device = hello.device_id.to_string();
                self.report.send_modify(|r| r.device = Some(device));
            }
            LinkEvent::Disconnected { reason } => {
                tracing::warn!(%reason, "the edge's controls are gone; results are not sent");
            }
            // Logs and errors were logged by the link; an edge serving its controls sends no
            // frames that reach here.
            LinkEvent::Connected
            | LinkEvent::EdgeLog(_)
            | LinkEvent::EdgeError(_)
            | LinkEvent::Frame(_)
            | LinkEvent::Lost(_) => {}
        }
        self.publish();
    }

    /// Once the capture has ended and no event waits any more, the queue is let go, so that
    /// the pipeline's input ends (the capture thread has let go of its end already).
    fn let_go_when_handed_on(&mut self) {
        if !self.capturing && self.pending.is_empty() {
            self.events = None;
        }
    }

    fn undelivered(&mut self, n: u64) {
        if n > 0 {
            self.report.send_modify(|r| r.events_undelivered += n);
        }
    }

    fn publish(&mut self) {
        let stats = self.edge.handle.stats();
        let refused = self.refused;
        self.report.send_if_modified(|r| {
            let before = r.clone();
            r.update(&stats, refused);
            *r != before
        });
    }
}

/// Room for one event in `events`; never ready when there is no queue, `None` when the
/// pipeline stopped reading it.
async fn reserve(events: Option<mpsc::Sender<LinkEvent>>) -> Option<mpsc::OwnedPermit<LinkEvent>> {
    match events {
        Some(events) => events.reserve_owned().await.ok(),
        None => std::future::pending().await,
    }
}
