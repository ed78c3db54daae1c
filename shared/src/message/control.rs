//! Flow control, liveness, time, events and diagnostics.

use serde::{Deserialize, Serialize};

use super::{MAX_ERROR_DETAIL, MAX_ID, MAX_LOG_TEXT};

/// Host → edge: the edge may start every frame whose `seq` comes before `until_seq`
/// (in wrapping u32 order; see [`crate::credit`]).
///
/// Credit is cumulative, so a lost `Credit` costs nothing once the next one arrives.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Credit {
    /// One past the last frame sequence number the edge may start.
    pub until_seq: u32,
}

/// Both directions: the sender is alive; cumulative counters since the session began.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Heartbeat {
    /// The sender's clock, in microseconds.
    pub now_us: u64,
    /// Frames started (edge) or results sent (host).
    pub frames_sent: u32,
    /// Frames the edge dropped at the source for lack of credit (0 from the host).
    pub dropped_at_source: u32,
    /// Packets the sender received intact.
    pub packets_received: u32,
    /// Packets the sender received and had to discard (CRC, framing, malformed).
    pub packets_rejected: u32,
}

/// Both directions: asks the peer to answer with a [`Pong`].
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Ping {
    /// Chosen by the sender, echoed in the [`Pong`].
    pub id: u32,
    /// The sender's clock when it sent the ping, in microseconds.
    pub sent_us: u64,
}

/// Both directions: the answer to a [`Ping`].
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Pong {
    /// The ping's id.
    pub id: u32,
    /// The ping's `sent_us`, echoed.
    pub ping_sent_us: u64,
    /// The responder's clock when it received the ping, in microseconds.
    pub received_us: u64,
}

/// What happened at the edge.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum EventKind {
    /// The freeze button went down.
    FreezePressed,
    /// The freeze button came up.
    FreezeReleased,
    /// The foot switch went down.
    FootSwitchPressed,
    /// The foot switch came up.
    FootSwitchReleased,
    /// Another probe or scope was connected.
    ProbeChanged {
        /// The new probe or scope id.
        probe_id: heapless::String<MAX_ID>,
    },
}

/// Edge → host: a button, pedal or probe event.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Event {
    /// When, on the edge clock, in microseconds.
    pub at_us: u64,
    /// What.
    pub kind: EventKind,
}

/// Severity of a [`Log`] line.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[allow(missing_docs)] // the usual levels
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Both directions: one line for the peer's log.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Log {
    /// Severity.
    pub level: LogLevel,
    /// The text, at most [`MAX_LOG_TEXT`] bytes of UTF-8.
    pub text: heapless::String<MAX_LOG_TEXT>,
}

/// What kind of fault an [`ErrorReport`] is about.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ErrorCode {
    /// The peer broke the protocol (e.g. a frame before the handshake).
    Protocol,
    /// The sensor or frame grabber failed.
    Sensor,
    /// A buffer overflowed and data was lost.
    Overflow,
    /// A request cannot be honoured (e.g. an ROI outside the sensor).
    Unsupported,
    /// Anything else inside the sender.
    Internal,
}

/// Both directions: the sender met a fault.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ErrorReport {
    /// What kind of fault.
    pub code: ErrorCode,
    /// Human-readable detail, at most [`MAX_ERROR_DETAIL`] bytes of UTF-8.
    pub detail: heapless::String<MAX_ERROR_DETAIL>,
}
