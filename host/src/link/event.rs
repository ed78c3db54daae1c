//! What the link hands its consumer, and what the consumer hands back.

use dinoedge_proto::reassembly::{Frame, Loss};
use dinoedge_proto::{ErrorReport, Event, EventKind, Hello, InferenceResult, Log};

/// A frame as the host received it.
#[derive(Debug)]
pub struct ReceivedFrame {
    /// The checked frame.
    pub frame: Box<Frame>,
    /// The session it came in.
    pub session_id: u32,
    /// When its last packet arrived, on the link's clock (µs).
    pub received_us: u64,
    /// Its capture time mapped onto the link's clock, once the clock offset is known.
    pub capture_host_us: Option<u64>,
}

/// A button, pedal or probe event from the edge, as the host received it.
#[derive(Debug, Clone)]
pub struct EdgeInput {
    /// The event, its time on the edge's clock.
    pub event: Event,
    /// The edge's session it came in (0 before a session began).
    pub session_id: u32,
    /// When it arrived, on the link's clock (µs).
    pub received_us: u64,
    /// Its time on the edge's clock mapped onto the link's, once the clock offset is known.
    pub at_host_us: Option<u64>,
}

impl EdgeInput {
    /// Its kind's name: `FreezePressed`, `FreezeReleased`, `FootSwitchPressed`,
    /// `FootSwitchReleased` or `ProbeChanged`.
    pub fn kind_name(&self) -> &'static str {
        match &self.event.kind {
            EventKind::FreezePressed => "FreezePressed",
            EventKind::FreezeReleased => "FreezeReleased",
            EventKind::FootSwitchPressed => "FootSwitchPressed",
            EventKind::FootSwitchReleased => "FootSwitchReleased",
            EventKind::ProbeChanged { .. } => "ProbeChanged",
        }
    }
}

/// A result on its way back to the edge.
#[derive(Debug, Clone)]
pub struct OutgoingResult {
    /// The session of the frame it answers: a result for an ended session is not sent (the
    /// edge's sequence numbers began anew).
    pub session_id: u32,
    /// The result, its mask left out (`mask` holds it).
    pub result: InferenceResult<'static>,
    /// The class mask, if any: width, height and the protocol's run-length bytes. Left out
    /// when the message would not fit the edge's packet size.
    pub mask: Option<(u16, u16, Vec<u8>)>,
}

/// What the link reports to its consumer.
#[derive(Debug)]
pub enum LinkEvent {
    /// A transport connection is up.
    Connected,
    /// A session began.
    SessionStarted {
        /// Its id.
        session_id: u32,
        /// The edge's `Hello`.
        hello: Box<Hello>,
    },
    /// A frame arrived intact.
    Frame(ReceivedFrame),
    /// A frame was lost.
    Lost(Loss),
    /// A button, pedal or probe event from the edge.
    EdgeEvent(EdgeInput),
    /// A log line from the edge.
    EdgeLog(Log),
    /// The edge reported a fault.
    EdgeError(ErrorReport),
    /// The connection ended; the link reopens it (unless its source has ended).
    Disconnected {
        /// Why.
        reason: String,
    },
}

impl LinkEvent {
    /// Frame bytes the event holds (what bounds the backlog's memory).
    pub fn bytes(&self) -> usize {
        match self {
            LinkEvent::Frame(f) => f.frame.data.len(),
            _ => 0,
        }
    }

    /// Connection and session events are few and must never be dropped (a consumer counts
    /// connections by them).
    pub fn is_structural(&self) -> bool {
        matches!(
            self,
            LinkEvent::Connected
                | LinkEvent::SessionStarted { .. }
                | LinkEvent::Disconnected { .. }
        )
    }
}
