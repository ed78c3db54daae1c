//! The host side of PROTOCOL.md §6 as a state machine that does no I/O and reads no clock.
//!
//! The runner (`super::runner`) owns the transport and the clock and calls, with `now_us` on
//! the link's clock:
//! - `on_connected` / `on_disconnected` when a transport connection opens and ends;
//! - `on_bytes` with whatever the transport read, `on_tick` on every timer tick, `on_result`
//!   for each result to send back, `set_consumer_room` with the consumer's free room;
//!
//! and then drains what the session wants done: `poll_transmit` (encoded packets to write, in
//! order), `poll_event` (events for the consumer, in order) and `poll_close` (end this
//! connection, and why). Tests drive it with a clock of their own and in-memory bytes.

mod backlog;
mod handshake;
mod outgoing;
mod receive;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use dinoedge_proto::Message;
use dinoedge_proto::clock::ClockSample;
use dinoedge_proto::credit::grant_for;
use dinoedge_proto::reassembly::Reassembler;
use dinoedge_proto::wire::{self, DecodeError, Decoder, EncodeError};

use self::backlog::Backlog;
use super::config::LinkConfig;
use super::event::{LinkEvent, OutgoingResult};
use super::stats::{FrameLoss, LinkStats};

/// How many clock samples are kept; the one with the shortest round trip wins.
const CLOCK_SAMPLES: usize = 8;

/// Out-of-session frame packets are answered with an error at most this often (µs).
const PROTOCOL_ERROR_INTERVAL_US: u64 = 1_000_000;

/// The host's link session over any number of successive connections.
#[derive(Debug)]
pub struct LinkSession {
    /// Cuts the byte stream into packets; one for the whole link, so its counters are live.
    decoder: Decoder<Vec<u8>>,
    core: Core,
}

/// Everything but the decoder, so that a decoded message (which borrows the decoder) can be
/// handled with the rest mutable.
#[derive(Debug)]
struct Core {
    config: LinkConfig,
    stats: LinkStats,
    next_session_id: u32,
    conn: Option<Conn>,
    backlog: Backlog,
    transmit: VecDeque<Vec<u8>>,
    encode_buf: Vec<u8>,
    consumer_room: usize,
    close: Option<String>,
    /// The session of the connection that ended last, with its reassembler, until the edge's
    /// next `Hello` says how far it had got in it.
    previous: Option<(u32, Reassembler)>,
}

/// State of one connection.
#[derive(Debug)]
struct Conn {
    session: Option<Session>,
    reassembler: Reassembler,
    max_packet_to_edge: usize,
    last_rx: u64,
    last_credit: u64,
    last_heartbeat: u64,
    last_ping: u64,
    last_protocol_error: Option<u64>,
    ping_id: u32,
    clock: VecDeque<ClockSample>,
}

#[derive(Debug)]
struct Session {
    id: u32,
    /// The edge's cumulative drops in this session, as last reported.
    dropped: u32,
    results_sent: u32,
}

impl LinkSession {
    /// A session with no connection yet. `first_session_id` numbers the first session (the
    /// runner seeds it so that ids differ across host restarts); 0 is never used.
    pub fn new(config: LinkConfig, first_session_id: u32) -> Self {
        let decoder = Decoder::new(vec![0u8; wire::max_wire_len(config.max_packet_to_host)]);
        let encode_buf = vec![0u8; wire::encode_buffer_len(config.max_packet_to_edge)];
        LinkSession {
            decoder,
            core: Core {
                backlog: Backlog::new(config.backlog_events, config.backlog_bytes),
                config,
                stats: LinkStats::default(),
                next_session_id: first_session_id.max(1),
                conn: None,
                transmit: VecDeque::new(),
                encode_buf,
                consumer_room: 0,
                close: None,
                previous: None,
            },
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LinkConfig {
        &self.core.config
    }

    /// The counters so far, the current connection's bytes and packets included.
    pub fn stats(&self) -> LinkStats {
        let mut stats = self.core.stats.clone();
        stats.set_decoder(self.decoder.stats());
        stats
    }

    /// Whether a connection is open.
    pub fn is_connected(&self) -> bool {
        self.core.conn.is_some()
    }

    /// The consumer's free room, in events: credit is granted from it.
    pub fn set_consumer_room(&mut self, room: usize) {
        self.core.consumer_room = room;
    }

    /// A transport connection opened.
    pub fn on_connected(&mut self, now_us: u64) {
        if self.core.conn.is_some() {
            self.on_disconnected(now_us, "replaced by a new connection");
        }
        self.decoder.reset();
        let core = &mut self.core;
        core.close = None;
        core.stats.connections += 1;
        core.stats.connected = true;
        // A new connection may be a rebooted edge whose clock began anew: the old offset is
        // void.
        core.stats.clock_offset_us = None;
        core.stats.clock_rtt_us = None;
        core.conn = Some(Conn {
            session: None,
            reassembler: Reassembler::new(core.config.reassembly),
            max_packet_to_edge: core.config.max_packet_to_edge,
            last_rx: now_us,
            last_credit: now_us,
            last_heartbeat: now_us,
            last_ping: now_us,
            last_protocol_error: None,
            ping_id: 0,
            clock: VecDeque::new(),
        });
        core.emit(LinkEvent::Connected);
    }

    /// Bytes the transport read.
    pub fn on_bytes(&mut self, now_us: u64, mut bytes: &[u8]) {
        if self.core.conn.is_none() {
            return;
        }
        while let Some(outcome) = self.decoder.push(&mut bytes) {
            match outcome {
                Ok(_) => {}
                Err(DecodeError::OtherVersionHello { version }) => {
                    self.core.refuse_version(now_us, version);
                    continue;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "damaged packet");
                    continue;
                }
            }
            match self.decoder.message() {
                Ok(msg) => self.core.on_message(now_us, &msg),
                Err(e) => tracing::debug!(error = %e, "undecodable packet"),
            }
        }
    }

    /// A message, as if its packet had just been read (what `on_bytes` does per packet).
    pub fn on_message(&mut self, now_us: u64, msg: &Message<'_>) {
        if self.core.conn.is_some() {
            self.core.on_message(now_us, msg);
        }
    }

    /// Why the stream ended, given that the transport reported its end now.
    pub fn end_of_stream_reason(&self) -> String {
        match self.decoder.pending() {
            0 => "the edge closed the link".to_owned(),
            pending => format!("the link ended inside a packet ({pending} bytes)"),
        }
    }

    /// Runs the timers: reassembly timeout, credit, heartbeat, ping, liveness.
    pub fn on_tick(&mut self, now_us: u64) {
        let packets = self.decoder.stats().packets;
        let rejected = self.decoder.stats().rejected();
        self.core.on_tick(now_us, packets, rejected);
    }

    /// Queues a result for the edge with a fresh credit (answering a frame frees room). A
    /// result for an ended session is counted and dropped; a mask too large for the edge's
    /// packets is left out and counted.
    pub fn on_result(&mut self, now_us: u64, out: &OutgoingResult) {
        self.core.on_result(now_us, out);
    }

    /// The connection ended: its partial frame is lost, the consumer is told.
    pub fn on_disconnected(&mut self, _now_us: u64, reason: &str) {
        let core = &mut self.core;
        if core.conn.is_none() {
            return;
        }
        core.stats.connected = false;
        core.settle(|r, out| r.flush(&mut |o| out.push(o)));
        if let Some(conn) = core.conn.take()
            && let Some(session) = conn.session
        {
            core.previous = Some((session.id, conn.reassembler));
        }
        core.close = None;
        // Packets queued for a connection that is gone are not sent to the next one.
        core.transmit.clear();
        core.emit(LinkEvent::Disconnected {
            reason: reason.to_owned(),
        });
    }

    /// The link stops: results that can no longer be sent are counted.
    pub fn on_results_abandoned(&mut self, count: u64) {
        self.core.stats.results_stale += count;
    }

    /// An event the consumer can no longer take: a frame is counted lost (`HostStopped`).
    pub fn on_unheard(&mut self, event: &LinkEvent) {
        if let LinkEvent::Frame(_) = event {
            self.core.stats.count_loss(FrameLoss::HostStopped, 1);
        }
    }

    /// The next packet to write, encoded for the wire.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.core.transmit.pop_front()
    }

    /// The next event for the consumer.
    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.core.backlog.pop()
    }

    /// Events waiting for the consumer.
    pub fn pending_events(&self) -> usize {
        self.core.backlog.len()
    }

    /// Frame bytes waiting for the consumer.
    pub fn pending_bytes(&self) -> usize {
        self.core.backlog.bytes()
    }

    /// Set when the session wants the connection closed (the edge went silent), with why.
    pub fn poll_close(&mut self) -> Option<String> {
        self.core.close.take()
    }
}

impl Core {
    /// Queues `msg` for the wire, limited to the edge's packet size.
    fn send(&mut self, msg: &Message<'_>) -> Result<(), EncodeError> {
        let limit = self
            .conn
            .as_ref()
            .map_or(self.config.max_packet_to_edge, |c| c.max_packet_to_edge);
        let bytes = wire::encode_limited(msg, limit, &mut self.encode_buf)?;
        self.transmit.push_back(bytes.to_vec());
        Ok(())
    }

    /// Queues a message that always fits (the host's own small control messages).
    fn send_control(&mut self, msg: &Message<'_>) {
        if let Err(e) = self.send(msg) {
            tracing::error!(error = %e, "a control message does not fit the link");
        }
    }

    /// Hands an event to the consumer in order; what breaks the backlog's bounds (an edge
    /// ignoring its credit, a consumer that stopped reading) is dropped and counted.
    fn emit(&mut self, event: LinkEvent) {
        if let Err(LinkEvent::Frame(f)) = self.backlog.push(event) {
            self.stats.count_loss(FrameLoss::HostQueueFull, 1);
            tracing::warn!(seq = f.frame.start.seq, "consumer far behind; frame lost");
        }
    }

    /// Frames the edge may have in flight: the consumer's free room (less what already waits
    /// for it), up to the credit window.
    fn credit_room(&self) -> u32 {
        if self.config.controls_only {
            return 0;
        }
        let free = self.consumer_room.saturating_sub(self.backlog.len());
        u32::try_from(free)
            .unwrap_or(u32::MAX)
            .min(self.config.credit_window)
    }

    /// The credit bound: [`credit_room`](Self::credit_room) beyond the next frame not yet
    /// told.
    fn credit(&self, reassembler: &Reassembler) -> Message<'static> {
        Message::Credit(grant_for(
            reassembler.next_untold().unwrap_or(0),
            self.credit_room(),
        ))
    }

    fn send_credit(&mut self, now_us: u64) {
        // An edge that serves only its controls is never granted a frame.
        if self.config.controls_only {
            return;
        }
        let Some(conn) = &self.conn else { return };
        let credit = self.credit(&conn.reassembler);
        self.send_control(&credit);
        if let Some(conn) = &mut self.conn {
            conn.last_credit = now_us;
        }
    }
}
