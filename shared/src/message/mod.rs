//! The message table: every packet on the link is one [`Message`].
//!
//! The postcard variant index of [`Message`] is the message's wire id, so variants are
//! append-only: adding one at the end is compatible, reordering or changing one is a new
//! [`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION).

mod control;
mod frame;
mod handshake;
mod mask;
mod outcome;
mod secure;

pub use control::{
    Credit, ErrorCode, ErrorReport, Event, EventKind, Heartbeat, Log, LogLevel, Ping, Pong,
};
pub use frame::{
    FrameChunk, FrameEnd, FrameMeta, FrameStart, KeyValue, PixelFormat, SweepPosition,
};
pub use handshake::{
    Capabilities, Hello, PreviousSession, Reject, RejectReason, Roi, Sensor, Version, Welcome,
    hello_version,
};
pub use mask::{MAX_MASK_CELLS, MaskError, RleMask, RleRun, RleRuns, encode_rle};
pub use outcome::{AlarmFlags, BoundingBox, ClassScore, InferenceResult, Latency, SegmentSummary};
pub use secure::{AuthRefusal, KEY_ID_LEN, Sealed, SecureHello, SecureReject, SecureWelcome};

use serde::{Deserialize, Serialize};

/// Most key/value pairs a frame's metadata may carry.
pub const MAX_META_ENTRIES: usize = 8;
/// Longest metadata key, in UTF-8 bytes.
pub const MAX_META_KEY: usize = 16;
/// Longest metadata value, in UTF-8 bytes.
pub const MAX_META_VALUE: usize = 32;
/// Longest device, probe or scope identifier, in UTF-8 bytes.
pub const MAX_ID: usize = 24;
/// Longest text of a [`Log`] message, in UTF-8 bytes.
pub const MAX_LOG_TEXT: usize = 96;
/// Longest detail text of an [`ErrorReport`], in UTF-8 bytes.
pub const MAX_ERROR_DETAIL: usize = 64;
/// Most classes in a result's top-k list.
pub const MAX_TOP_K: usize = 8;
/// Most classes in a result's segmentation summary.
pub const MAX_SEGMENTS: usize = 16;

/// One packet of the dinoedge protocol.
///
/// The comment on each variant gives its direction: edge → host, host → edge, or both.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Message<'a> {
    /// Wire id 0, edge → host: the first packet of a session.
    Hello(Hello),
    /// Wire id 1, host → edge: the host accepts the edge and sets the session's terms.
    Welcome(Welcome),
    /// Wire id 2, host → edge: the host cannot speak with this edge.
    Reject(Reject),
    /// Wire id 3, edge → host: a frame begins.
    FrameStart(FrameStart),
    /// Wire id 4, edge → host: a piece of a frame's pixel data.
    FrameChunk(#[serde(borrow)] FrameChunk<'a>),
    /// Wire id 5, edge → host: a frame ends; carries the frame CRC when the start did not.
    FrameEnd(FrameEnd),
    /// Wire id 6, host → edge: how many frames the edge may have started.
    Credit(Credit),
    /// Wire id 7, host → edge: what the host found in one frame.
    Result(#[serde(borrow)] InferenceResult<'a>),
    /// Wire id 8, both: liveness and cumulative counters.
    Heartbeat(Heartbeat),
    /// Wire id 9, both: asks the peer for its clock.
    Ping(Ping),
    /// Wire id 10, both: answers a [`Ping`] with the responder's clock.
    Pong(Pong),
    /// Wire id 11, edge → host: a button, pedal or probe event.
    Event(Event),
    /// Wire id 12, both: a bounded line of text for the peer's log.
    Log(Log),
    /// Wire id 13, both: the sender met a fault.
    Error(ErrorReport),
    /// Wire id 14, edge → host: opens a secure link (version 3).
    SecureHello(#[serde(borrow)] SecureHello<'a>),
    /// Wire id 15, host → edge: completes the secure handshake.
    SecureWelcome(#[serde(borrow)] SecureWelcome<'a>),
    /// Wire id 16, host → edge: refuses the secure handshake, in the clear.
    SecureReject(SecureReject),
    /// Wire id 17, both: any other message, encrypted under the session keys.
    Sealed(#[serde(borrow)] Sealed<'a>),
}

/// The kind of a [`Message`], without its contents: for counters and error reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[allow(missing_docs)] // each kind is named after the Message variant it stands for
pub enum MessageKind {
    Hello,
    Welcome,
    Reject,
    FrameStart,
    FrameChunk,
    FrameEnd,
    Credit,
    Result,
    Heartbeat,
    Ping,
    Pong,
    Event,
    Log,
    Error,
    SecureHello,
    SecureWelcome,
    SecureReject,
    Sealed,
}

impl MessageKind {
    /// Every kind, in wire-id order.
    pub const ALL: [MessageKind; 18] = [
        MessageKind::Hello,
        MessageKind::Welcome,
        MessageKind::Reject,
        MessageKind::FrameStart,
        MessageKind::FrameChunk,
        MessageKind::FrameEnd,
        MessageKind::Credit,
        MessageKind::Result,
        MessageKind::Heartbeat,
        MessageKind::Ping,
        MessageKind::Pong,
        MessageKind::Event,
        MessageKind::Log,
        MessageKind::Error,
        MessageKind::SecureHello,
        MessageKind::SecureWelcome,
        MessageKind::SecureReject,
        MessageKind::Sealed,
    ];

    /// The wire id: the postcard variant index that starts every packet.
    pub const fn wire_id(self) -> u8 {
        self as u8
    }

    /// The kind for a wire id, if there is one.
    pub fn from_wire_id(id: u8) -> Option<Self> {
        Self::ALL.get(usize::from(id)).copied()
    }
}

impl Message<'_> {
    /// The kind of this message.
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Hello(_) => MessageKind::Hello,
            Message::Welcome(_) => MessageKind::Welcome,
            Message::Reject(_) => MessageKind::Reject,
            Message::FrameStart(_) => MessageKind::FrameStart,
            Message::FrameChunk(_) => MessageKind::FrameChunk,
            Message::FrameEnd(_) => MessageKind::FrameEnd,
            Message::Credit(_) => MessageKind::Credit,
            Message::Result(_) => MessageKind::Result,
            Message::Heartbeat(_) => MessageKind::Heartbeat,
            Message::Ping(_) => MessageKind::Ping,
            Message::Pong(_) => MessageKind::Pong,
            Message::Event(_) => MessageKind::Event,
            Message::Log(_) => MessageKind::Log,
            Message::Error(_) => MessageKind::Error,
            Message::SecureHello(_) => MessageKind::SecureHello,
            Message::SecureWelcome(_) => MessageKind::SecureWelcome,
            Message::SecureReject(_) => MessageKind::SecureReject,
            Message::Sealed(_) => MessageKind::Sealed,
        }
    }
}

/// Serialises `&[u8]` as one length-prefixed block rather than byte by byte (same wire
/// format, one memcpy instead of a call per byte); deserialises it borrowed, without a copy.
pub(crate) mod borrowed_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<&'de [u8], D::Error> {
        <&'de [u8]>::deserialize(d)
    }
}
