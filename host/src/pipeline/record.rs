//! One frame's way through the pipeline, as handed to the caller: processed with every
//! head's output, or failed with a reason; never both.

use dinoedge_proto::reassembly::Frame;
use dinoedge_proto::{
    AlarmFlags, BoundingBox, ClassScore, InferenceResult, Latency, MAX_SEGMENTS, MAX_TOP_K,
    SegmentSummary,
};

use super::PipelineConfig;
use super::analyze::{Head, HeadOutput, Models, best};
use super::stats::Stamps;
use crate::heads::SegmentStats;
use crate::link::{EdgeInput, OutgoingResult};
use crate::preprocess::Rect;

/// Why a frame the host took in produced no result from the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameFailure {
    /// The frame could not be preprocessed (bad input from the edge).
    BadInput(String),
    /// A head could not produce its output for this frame.
    Head(String),
}

impl FrameFailure {
    /// The counter this failure is reported under, e.g. `bad_input: <first line>`.
    pub fn counter(&self) -> String {
        let (kind, text) = match self {
            FrameFailure::BadInput(e) => ("bad_input", e),
            FrameFailure::Head(e) => ("head_failed", e),
        };
        let first = text.lines().next().unwrap_or(text);
        format!("{kind}: {}", first.chars().take(120).collect::<String>())
    }
}

impl std::fmt::Display for FrameFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameFailure::BadInput(e) => write!(f, "bad input: {e}"),
            FrameFailure::Head(e) => write!(f, "head failed: {e}"),
        }
    }
}

/// One head's output for a frame, with what the caller needs of it computed once.
#[derive(Debug, Clone)]
pub struct HeadResult {
    /// What the head gave.
    pub output: HeadOutput,
    /// For a mask: each foreground class's area, box and centroid, in frame pixels (the
    /// crop's offset added). Empty for a classifier.
    pub segments: Vec<SegmentStats>,
}

impl HeadResult {
    /// Wraps `output`, computing a mask's segment statistics in frame pixels.
    pub fn new(output: HeadOutput, crop: Rect) -> Self {
        let segments = match &output {
            HeadOutput::Mask(m) => m
                .stats(Some(0))
                .into_iter()
                .map(|mut st| {
                    st.bbox.0 += crop.x as usize;
                    st.bbox.1 += crop.y as usize;
                    st.centroid.0 += crop.x as f32;
                    st.centroid.1 += crop.y as f32;
                    st
                })
                .collect(),
            HeadOutput::Classes(_) => Vec::new(),
        };
        HeadResult { output, segments }
    }
}

/// What became of a frame.
#[derive(Debug, Clone)]
pub enum FrameOutcome {
    /// The model ran: one result per head, in the order of [`Models::heads`].
    Processed(Vec<HeadResult>),
    /// It could not be processed, and why.
    Failed(FrameFailure),
}

/// A button, pedal or probe event from the edge, as the run hands it on: with the newest
/// frame the host had taken in when it came, and the frame whose record carries it.
#[derive(Debug, Clone)]
pub struct ControlRecord {
    /// The event as received.
    pub input: EdgeInput,
    /// The `seq` of the newest frame taken in before it; none before the first.
    pub after_seq: Option<u32>,
}

impl ControlRecord {
    /// As one JSON object, in a frame's result line.
    pub fn to_json(&self) -> serde_json::Value {
        let probe = match &self.input.event.kind {
            dinoedge_proto::EventKind::ProbeChanged { probe_id } => Some(probe_id.to_string()),
            _ => None,
        };
        serde_json::json!({
            "kind": self.input.kind_name(),
            "probe_id": probe,
            "session": self.input.session_id,
            "edge_us": self.input.event.at_us,
            "at_us": self.input.at_host_us,
            "received_us": self.input.received_us,
            "after_seq": self.after_seq,
        })
    }
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
    /// Processed, or failed.
    pub outcome: FrameOutcome,
    /// Frames dropped by the host since the previous result.
    pub dropped_before: u64,
    /// Run on the CPU fallback after a GPU fault (the result carries `DEGRADED`).
    pub degraded: bool,
    /// The edge's button, pedal and probe events since the previous record went out, in
    /// order.
    pub controls: Vec<ControlRecord>,
}

impl FrameRecord {
    /// The heads' results; empty when the frame failed.
    pub fn heads(&self) -> &[HeadResult] {
        match &self.outcome {
            FrameOutcome::Processed(heads) => heads,
            FrameOutcome::Failed(_) => &[],
        }
    }

    /// The heads' outputs, in the order of [`Models::heads`]; none when the frame failed.
    pub fn outputs(&self) -> impl Iterator<Item = &HeadOutput> {
        self.heads().iter().map(|h| &h.output)
    }

    /// Why the frame failed, if it did.
    pub fn failure(&self) -> Option<&FrameFailure> {
        match &self.outcome {
            FrameOutcome::Failed(f) => Some(f),
            FrameOutcome::Processed(_) => None,
        }
    }

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
        if let Some(FrameFailure::BadInput(_)) = self.failure() {
            alarms |= AlarmFlags::BAD_INPUT.0;
        }
        if self.dropped_before > 0 {
            alarms |= AlarmFlags::HOST_OVERLOADED.0;
        }
        if self.degraded {
            alarms |= AlarmFlags::DEGRADED.0;
        }
        result.alarms = AlarmFlags(alarms);
        let mut mask = None;
        for (head, out) in models.heads.iter().zip(self.heads()) {
            match (&head.head, &out.output) {
                (Head::Classify(_), HeadOutput::Classes(p)) if result.top_k.is_empty() => {
                    for (class, score) in best(p, config.top_k.min(MAX_TOP_K)) {
                        let _ = result.top_k.push(ClassScore {
                            class: class as u16,
                            score,
                        });
                    }
                }
                (Head::Segment(_), HeadOutput::Mask(m)) if mask.is_none() => {
                    let clamp = |v: usize| v.min(usize::from(u16::MAX)) as u16;
                    for st in out.segments.iter().take(MAX_SEGMENTS) {
                        let (x, y, w, h) = st.bbox;
                        let _ = result.segments.push(SegmentSummary {
                            class: u16::from(st.class),
                            area_fraction: st.area_fraction,
                            bbox: BoundingBox {
                                x: clamp(x),
                                y: clamp(y),
                                width: clamp(w),
                                height: clamp(h),
                            },
                            centroid_x: st.centroid.0,
                            centroid_y: st.centroid.1,
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
        for (head, out) in models.heads.iter().zip(self.heads()) {
            let classes = head.classes();
            let name = |i: usize| classes.get(i).cloned().unwrap_or_else(|| i.to_string());
            let value = match &out.output {
                HeadOutput::Classes(p) => serde_json::json!({
                    "top": best(p, p.len().min(5)).into_iter()
                        .map(|(c, p)| serde_json::json!({"class": name(c), "p": p}))
                        .collect::<Vec<_>>(),
                }),
                HeadOutput::Mask(m) => serde_json::json!({
                    "mask_size": [m.width, m.height],
                    "segments": out.segments.iter().map(|st| serde_json::json!({
                        "class": name(usize::from(st.class)),
                        "area_fraction": st.area_fraction,
                        "bbox": [st.bbox.0, st.bbox.1, st.bbox.2, st.bbox.3],
                        "centroid": [st.centroid.0, st.centroid.1],
                    })).collect::<Vec<_>>(),
                }),
            };
            heads.insert(head.name.clone(), value);
        }
        let start = &self.frame.start;
        let engine = models.backbone.engine();
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
            "error": self.failure().map(|f| f.to_string()),
            "dropped_before": self.dropped_before,
            "degraded": self.degraded,
            "controls": self.controls.iter().map(ControlRecord::to_json).collect::<Vec<_>>(),
            "random_weights": models.backbone.random_weights(),
            "weights": models.backbone.weights_label(),
            "engine": if self.degraded { "cpu" } else { engine.engine.name() },
            "precision": engine.precision,
            "graph_hash": engine.graph_hash,
        })
    }
}
