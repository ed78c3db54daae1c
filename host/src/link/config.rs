//! How the host runs the link: packet sizes, credit, timers, memory bounds.

use std::time::Duration;

use dinoedge_proto::MIN_PACKET;
use dinoedge_proto::reassembly::ReassemblerConfig;

/// How the host runs the link.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    /// Largest packet the edge may send (capped by what it announces).
    pub max_packet_to_host: usize,
    /// Largest packet the host sends (capped by what the edge announces).
    pub max_packet_to_edge: usize,
    /// Most frames in flight: the credit window, further limited by the consumer's free room.
    pub credit_window: u32,
    /// Reassembly limits (the chunk limit is set from the negotiated packet size).
    pub reassembly: ReassemblerConfig,
    /// How often the runner ticks the session's timers.
    pub tick: Duration,
    /// How often the current credit is repeated.
    pub credit_interval: Duration,
    /// How often the host sends a heartbeat.
    pub heartbeat_interval: Duration,
    /// How often the host pings the edge for its clock.
    pub ping_interval: Duration,
    /// Silence after which the link is considered lost; `None` for a source that ends its
    /// connections itself and may stay silent while it waits for credit (a replay).
    pub link_timeout: Option<Duration>,
    /// Pause before reopening a lost transport.
    pub reconnect_delay: Duration,
    /// Events held for a consumer that has no room for them, at most (a consumer that keeps up
    /// never needs more than the credit window; an edge ignoring its credit is cut off here).
    pub backlog_events: usize,
    /// Frame bytes held for such a consumer, at most (frames can be tens of MiB each).
    pub backlog_bytes: usize,
    /// Take no frames from the edge: it serves only its controls (buttons, pedal, alarm)
    /// while the frames come from a capture on the host (PROTOCOL.md §6.8). The edge gets no
    /// credit, frame packets are counted and ignored, and results go to its current session.
    pub controls_only: bool,
}

impl Default for LinkConfig {
    /// 64 KiB packets in, 1 KiB out, 4 frames in flight, PROTOCOL.md's intervals, a backlog of
    /// at most 4,096 events and 256 MiB; frames taken.
    fn default() -> Self {
        LinkConfig {
            max_packet_to_host: 64 * 1024,
            max_packet_to_edge: MIN_PACKET,
            credit_window: 4,
            reassembly: ReassemblerConfig::default(),
            tick: Duration::from_millis(20),
            credit_interval: Duration::from_millis(250),
            heartbeat_interval: Duration::from_secs(1),
            ping_interval: Duration::from_millis(500),
            link_timeout: Some(Duration::from_secs(3)),
            reconnect_delay: Duration::from_millis(200),
            backlog_events: 4096,
            backlog_bytes: 256 * 1024 * 1024,
            controls_only: false,
        }
    }
}
