//! The session over one transport, reconnecting after loss: the host side of PROTOCOL.md §6.

use std::time::{Duration, Instant};

use dinoedge_proto::clock::ClockSample;
use dinoedge_proto::credit::grant_for;
use dinoedge_proto::io::WriteError;
use dinoedge_proto::io::{AsyncPacketReader, AsyncPacketWriter, ReadError};
use dinoedge_proto::reassembly::{Frame, Loss, Reassembled, Reassembler, ReassemblerConfig};
use dinoedge_proto::{
    ErrorCode, ErrorReport, Event, Hello, InferenceResult, Log, MIN_PACKET, Message,
    PROTOCOL_VERSION, Ping, Reject, RejectReason, RleMask, Welcome, wire,
};
use tokio::sync::{mpsc, watch};

use super::stats::LinkStats;
use super::transport::{Opener, ReadHalf, WriteHalf};

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
    /// How often timers run.
    pub tick: Duration,
    /// How often the current credit is repeated.
    pub credit_interval: Duration,
    /// How often the host sends a heartbeat.
    pub heartbeat_interval: Duration,
    /// How often the host pings the edge for its clock.
    pub ping_interval: Duration,
    /// Silence after which the link is considered lost.
    pub link_timeout: Duration,
    /// Pause before reopening a lost transport.
    pub reconnect_delay: Duration,
    /// Time zero of the link's clock (`received_us` and the like); `None`: when the link starts.
    /// A pipeline sets it to stamp its own stages on the same clock.
    pub epoch: Option<Instant>,
}

impl Default for LinkConfig {
    /// 64 KiB packets in, 1 KiB out, 4 frames in flight, PROTOCOL.md's intervals.
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
            link_timeout: Duration::from_secs(3),
            reconnect_delay: Duration::from_millis(200),
            epoch: None,
        }
    }
}

/// A frame as the host received it.
#[derive(Debug)]
pub struct ReceivedFrame {
    /// The checked frame.
    pub frame: Box<Frame>,
    /// The session it came in.
    pub session_id: u32,
    /// When its last packet arrived, host clock (µs since the link started).
    pub received_us: u64,
    /// Its capture time mapped onto the host clock, once the clock offset is known.
    pub capture_host_us: Option<u64>,
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
    EdgeEvent(Event),
    /// A log line from the edge.
    EdgeLog(Log),
    /// The edge reported a fault.
    EdgeError(ErrorReport),
    /// The connection ended; the link reopens it.
    Disconnected {
        /// Why.
        reason: String,
    },
}

/// State of one connection.
struct Conn {
    session: Option<Session>,
    reassembler: Reassembler,
    last_rx: Instant,
    last_credit: Instant,
    last_heartbeat: Instant,
    last_ping: Instant,
    last_protocol_error: Option<Instant>,
    ping_id: u32,
    /// Recent clock samples; the one with the shortest round trip wins.
    clock: Vec<ClockSample>,
}

struct Session {
    id: u32,
    /// The edge's cumulative drops in this session, as last reported.
    dropped: u32,
    results_sent: u32,
}

/// Shared across connections.
struct Shared<'a> {
    config: &'a LinkConfig,
    events: &'a mpsc::Sender<LinkEvent>,
    stats: LinkStats,
    started: Instant,
    next_session_id: u32,
    /// Events the consumer had no room for yet, oldest first; handed on before any newer one.
    backlog: std::collections::VecDeque<LinkEvent>,
}

/// Events held back for a slow consumer at most; beyond it (an edge ignoring its credit, a
/// consumer that stopped reading) frames are dropped and counted as `HostQueueFull`.
const MAX_BACKLOG: usize = 4096;

impl Shared<'_> {
    fn now_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    /// Hands an event to the consumer without ever blocking the link and in order: what finds
    /// no room waits in the backlog (bounded by [`MAX_BACKLOG`]) and goes first next time.
    fn emit(&mut self, event: LinkEvent) {
        self.flush_backlog();
        if !self.backlog.is_empty() {
            self.hold(event);
            return;
        }
        match self.events.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(event)) => self.count_unheard(&event),
            Err(mpsc::error::TrySendError::Full(event)) => self.hold(event),
        }
    }

    /// A frame the consumer stopped listening for is lost, and counted as such.
    fn count_unheard(&mut self, event: &LinkEvent) {
        if let LinkEvent::Frame(_) = event {
            *self
                .stats
                .frames_lost
                .entry("HostStopped".into())
                .or_default() += 1;
        }
    }

    fn hold(&mut self, event: LinkEvent) {
        // Connection and session events are few and must never be lost (a consumer waits
        // for a `Disconnected`); frames, logs and edge events are bounded.
        let structural = matches!(
            event,
            LinkEvent::Connected
                | LinkEvent::SessionStarted { .. }
                | LinkEvent::Disconnected { .. }
        );
        if self.backlog.len() < MAX_BACKLOG || structural {
            self.backlog.push_back(event);
        } else if let LinkEvent::Frame(f) = event {
            *self
                .stats
                .frames_lost
                .entry("HostQueueFull".into())
                .or_default() += 1;
            tracing::warn!(seq = f.frame.start.seq, "consumer far behind; frame lost");
        }
    }

    /// Hands on what the consumer now has room for.
    fn flush_backlog(&mut self) {
        while let Some(event) = self.backlog.pop_front() {
            match self.events.try_send(event) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(event)) => {
                    self.backlog.push_front(event);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(event)) => {
                    self.count_unheard(&event);
                    for event in std::mem::take(&mut self.backlog) {
                        self.count_unheard(&event);
                    }
                    return;
                }
            }
        }
    }

    /// The credit bound: the consumer's free room, up to the window, beyond the next frame
    /// not yet told.
    fn credit(&self, reassembler: &Reassembler) -> Message<'static> {
        let free = self.events.capacity().saturating_sub(self.backlog.len());
        let room = (free as u32).min(self.config.credit_window);
        Message::Credit(grant_for(reassembler.next_untold().unwrap_or(0), room))
    }
}

/// Runs the link until `stop` turns true: opens the transport, serves it, reopens it after
/// loss. Frames and other events go to `events`; counters are published on `stats` as they
/// change. Returns the final counters.
/// `results`, if given, carries results back to the edge.
pub async fn run_link(
    mut opener: Opener,
    config: LinkConfig,
    events: mpsc::Sender<LinkEvent>,
    mut results: Option<mpsc::Receiver<OutgoingResult>>,
    stats: watch::Sender<LinkStats>,
    mut stop: watch::Receiver<bool>,
) -> LinkStats {
    let mut shared = Shared {
        config: &config,
        events: &events,
        stats: LinkStats::default(),
        started: config.epoch.unwrap_or_else(Instant::now),
        next_session_id: session_id_seed(),
        backlog: Default::default(),
    };
    let mut last_open_warning = None;
    let replaying = matches!(opener.transport(), super::Transport::Replay(_));
    // Between connections the consumer still gets what waits in the backlog (the end of the
    // last connection's frames, its `Disconnected`), on the same tick as in a connection.
    let mut flush = tokio::time::interval(config.tick);
    while !*stop.borrow() {
        let opened = {
            let open = opener.open();
            tokio::pin!(open);
            loop {
                tokio::select! {
                    opened = &mut open => break Some(opened),
                    _ = flush.tick() => shared.flush_backlog(),
                    _ = stop.changed() => break None,
                }
            }
        };
        let Some(opened) = opened else { break };
        match opened {
            Ok((r, w)) => {
                shared.stats.connections += 1;
                // A replay opens a connection per recorded one (per loop, too): not news.
                if replaying {
                    tracing::debug!(transport = %opener.transport(), "connected");
                } else {
                    tracing::info!(transport = %opener.transport(), "connected");
                }
                shared.emit(LinkEvent::Connected);
                let reason = serve(r, w, &mut shared, &mut results, &stats, &mut stop).await;
                if replaying {
                    tracing::debug!(%reason, "connection ended");
                } else {
                    tracing::info!(%reason, "connection ended");
                }
                opener.note_closed(&reason);
                shared.emit(LinkEvent::Disconnected { reason });
                stats.send_replace(shared.stats.clone());
            }
            Err(e) => {
                // Said at once and then every 5 s: the device may be plugged in later.
                if last_open_warning.is_none_or(|t: Instant| t.elapsed() > Duration::from_secs(5)) {
                    tracing::warn!(error = %e, "cannot open the link; retrying");
                    last_open_warning = Some(Instant::now());
                }
            }
        }
        let pause = tokio::time::sleep(config.reconnect_delay);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                _ = &mut pause => break,
                _ = flush.tick() => shared.flush_backlog(),
                _ = stop.changed() => break,
            }
        }
    }
    // Results that found no session to go to are counted, not silently dropped.
    if let Some(rx) = &mut results {
        while rx.try_recv().is_ok() {
            shared.stats.results_stale += 1;
        }
    }
    // What the consumer has not taken yet is still delivered, waiting for room now.
    let mut backlog = std::mem::take(&mut shared.backlog).into_iter();
    for event in backlog.by_ref() {
        if let Err(mpsc::error::SendError(event)) = events.send(event).await {
            shared.count_unheard(&event);
            break;
        }
    }
    for event in backlog {
        shared.count_unheard(&event);
    }
    shared.stats
}

/// Session ids differ across host restarts, so that an edge can tell a new host.
fn session_id_seed() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ d.as_secs() as u32)
        .unwrap_or(1);
    nanos.max(1)
}

/// Serves one connection until it ends; returns why it ended.
async fn serve(
    r: ReadHalf,
    w: WriteHalf,
    shared: &mut Shared<'_>,
    results: &mut Option<mpsc::Receiver<OutgoingResult>>,
    stats_tx: &watch::Sender<LinkStats>,
    stop: &mut watch::Receiver<bool>,
) -> String {
    let config = shared.config;
    let mut reader = AsyncPacketReader::new(r, config.max_packet_to_host);
    let mut writer = AsyncPacketWriter::new(w, config.max_packet_to_edge);
    let now = Instant::now();
    let mut conn = Conn {
        session: None,
        reassembler: Reassembler::new(config.reassembly),
        last_rx: now,
        last_credit: now,
        last_heartbeat: now,
        last_ping: now,
        last_protocol_error: None,
        ping_id: 0,
        clock: Vec::new(),
    };
    // A new connection may be a rebooted edge whose clock began anew: the old offset is void.
    shared.stats.clock_offset_us = None;
    shared.stats.clock_rtt_us = None;
    let mut tick = tokio::time::interval(config.tick);
    let base = shared.stats.clone();
    let reason = loop {
        tokio::select! {
            read = reader.next_message() => match read {
                Ok(Some(msg)) => {
                    conn.last_rx = Instant::now();
                    if let Err(e) = handle(&msg, &mut conn, &mut writer, shared).await {
                        break format!("write error: {e}");
                    }
                }
                Ok(None) => break "the edge closed the link".to_owned(),
                Err(ReadError::Decode(e)) => tracing::debug!(error = %e, "damaged packet"),
                Err(ReadError::Truncated { pending }) => {
                    break format!("the link ended inside a packet ({pending} bytes)");
                }
                Err(e) => break format!("read error: {e}"),
            },
            _ = tick.tick() => {
                shared.flush_backlog();
                if conn.last_rx.elapsed() > config.link_timeout {
                    break format!("nothing from the edge for {:?}", config.link_timeout);
                }
                if let Err(e) = timers(&mut conn, &mut writer, shared).await {
                    break format!("write error: {e}");
                }
                let mut live = shared.stats.clone();
                live.add_decoder_since(&base, reader.stats());
                stats_tx.send_replace(live);
            }
            result = next_result(results) => match result {
                Some(result) => {
                    if let Err(e) = send_result(&result, &mut conn, &mut writer, shared).await {
                        break format!("write error: {e}");
                    }
                }
                None => *results = None,
            },
            _ = stop.changed() => break "stopped".to_owned(),
        }
    };
    settle(&mut conn, shared, |r, out| r.flush(&mut |o| out.push(o)));
    shared.stats.add_decoder(reader.stats());
    reason
}

/// The next result to send, or never when there is no result channel.
async fn next_result(
    results: &mut Option<mpsc::Receiver<OutgoingResult>>,
) -> Option<OutgoingResult> {
    match results {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Sends a result to the edge with a fresh credit (answering a frame frees room); a result
/// for an ended session is counted and dropped, a mask too large for the edge's packets is
/// left out and counted.
async fn send_result(
    out: &OutgoingResult,
    conn: &mut Conn,
    writer: &mut AsyncPacketWriter<WriteHalf>,
    shared: &mut Shared<'_>,
) -> Result<(), WriteError> {
    let Some(session) = conn.session.as_mut().filter(|s| s.id == out.session_id) else {
        shared.stats.results_stale += 1;
        return Ok(());
    };
    let mut msg = out.result.clone();
    msg.mask = out.mask.as_ref().map(|(width, height, runs)| RleMask {
        width: *width,
        height: *height,
        runs,
    });
    // An edge that stops reading must not hold the link (and its timeout) hostage.
    let limit = shared.config.link_timeout;
    let stalled = || WriteError::Io(std::io::Error::other("the edge stopped reading"));
    match tokio::time::timeout(limit, writer.send(&Message::Result(msg.clone()))).await {
        Ok(Ok(_)) => {}
        Ok(Err(WriteError::Encode(_))) if msg.mask.is_some() => {
            msg.mask = None;
            shared.stats.results_mask_left_out += 1;
            tokio::time::timeout(limit, writer.send(&Message::Result(msg)))
                .await
                .map_err(|_| stalled())??;
        }
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(stalled()),
    }
    session.results_sent = session.results_sent.wrapping_add(1);
    shared.stats.results_sent += 1;
    writer.send(&shared.credit(&conn.reassembler)).await?;
    conn.last_credit = Instant::now();
    Ok(())
}

async fn handle(
    msg: &Message<'_>,
    conn: &mut Conn,
    writer: &mut AsyncPacketWriter<WriteHalf>,
    shared: &mut Shared<'_>,
) -> Result<(), WriteError> {
    let now_us = shared.now_us();
    match msg {
        Message::Hello(hello) => return welcome(hello, conn, writer, shared).await,
        Message::FrameStart(_) | Message::FrameChunk(_) | Message::FrameEnd(_) => {
            let Some(session) = &mut conn.session else {
                shared.stats.out_of_session += 1;
                // A restarted host: tell the edge at once, at most once a second.
                if conn
                    .last_protocol_error
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(1))
                {
                    conn.last_protocol_error = Some(Instant::now());
                    let detail =
                        heapless::String::try_from("no session: send Hello").unwrap_or_default();
                    writer
                        .send(&Message::Error(ErrorReport {
                            code: ErrorCode::Protocol,
                            detail,
                        }))
                        .await?;
                }
                return Ok(());
            };
            if let Message::FrameStart(start) = msg {
                note_dropped(session, start.dropped_at_source, &mut shared.stats);
            }
            if settle(conn, shared, |r, out| {
                r.on_message(msg, now_us, &mut |o| out.push(o))
            }) > 0
            {
                writer.send(&shared.credit(&conn.reassembler)).await?;
                conn.last_credit = Instant::now();
            }
        }
        Message::Heartbeat(beat) => {
            if let Some(session) = &mut conn.session {
                note_dropped(session, beat.dropped_at_source, &mut shared.stats);
            }
        }
        Message::Ping(ping) => {
            let pong = Message::Pong(dinoedge_proto::Pong {
                id: ping.id,
                ping_sent_us: ping.sent_us,
                received_us: now_us,
            });
            writer.send(&pong).await?;
        }
        Message::Pong(pong) => {
            if let Some(sample) = ClockSample::from_pong(pong, now_us) {
                if conn.clock.len() == 8 {
                    conn.clock.remove(0);
                }
                conn.clock.push(sample);
                if let Some(best) = conn.clock.iter().min_by_key(|s| s.rtt_us) {
                    shared.stats.clock_offset_us = Some(best.offset_us);
                    shared.stats.clock_rtt_us = Some(best.rtt_us);
                }
            }
        }
        Message::Event(event) => shared.emit(LinkEvent::EdgeEvent(event.clone())),
        Message::Log(log) => {
            tracing::info!(level = ?log.level, text = %log.text, "edge log");
            shared.emit(LinkEvent::EdgeLog(log.clone()));
        }
        Message::Error(report) => {
            tracing::warn!(code = ?report.code, detail = %report.detail, "edge error");
            shared.emit(LinkEvent::EdgeError(report.clone()));
        }
        // Host-to-edge messages coming back are ignored (a loopback or a confused peer).
        Message::Welcome(_) | Message::Reject(_) | Message::Credit(_) | Message::Result(_) => {}
    }
    Ok(())
}

/// Answers a `Hello`: a new session, or a `Reject`.
async fn welcome(
    hello: &Hello,
    conn: &mut Conn,
    writer: &mut AsyncPacketWriter<WriteHalf>,
    shared: &mut Shared<'_>,
) -> Result<(), WriteError> {
    let reject = |reason| {
        Message::Reject(Reject {
            reason,
            supported_min: PROTOCOL_VERSION,
            supported_max: PROTOCOL_VERSION,
        })
    };
    if hello.protocol_version != PROTOCOL_VERSION {
        tracing::warn!(
            version = hello.protocol_version,
            "edge speaks another protocol version"
        );
        return writer
            .send(&reject(RejectReason::UnsupportedVersion))
            .await
            .map(|_| ());
    }
    let to_host = (hello.max_packet_tx as usize).min(shared.config.max_packet_to_host);
    let to_edge = (hello.max_packet_rx as usize).min(shared.config.max_packet_to_edge);
    if to_host < MIN_PACKET || to_edge < MIN_PACKET {
        return writer
            .send(&reject(RejectReason::PacketTooSmall))
            .await
            .map(|_| ());
    }
    let implied = hello
        .sensor
        .format
        .frame_len(hello.sensor.width, hello.sensor.height);
    if implied.is_none_or(|len| len > shared.config.reassembly.max_frame_len) {
        return writer
            .send(&reject(RejectReason::UnsupportedFormat))
            .await
            .map(|_| ());
    }
    // A Hello in a session means the edge restarted: the old session's partial frame is lost.
    settle(conn, shared, |r, out| r.reset(&mut |o| out.push(o)));
    conn.reassembler.set_config(ReassemblerConfig {
        max_chunk_len: wire::chunk_capacity(to_host) as u32,
        ..shared.config.reassembly
    });
    let session_id = shared.next_session_id;
    shared.next_session_id = shared.next_session_id.wrapping_add(1).max(1);
    let credits = (shared.events.capacity() as u32).min(shared.config.credit_window);
    writer
        .send(&Message::Welcome(Welcome {
            protocol_version: PROTOCOL_VERSION,
            session_id,
            max_packet_to_host: to_host as u32,
            max_packet_to_edge: to_edge as u32,
            initial_credits: credits,
            roi: None,
            fps_milli: None,
        }))
        .await?;
    conn.session = Some(Session {
        id: session_id,
        dropped: 0,
        results_sent: 0,
    });
    conn.last_credit = Instant::now();
    // The clock offset is wanted before the first frame's capture time is mapped.
    conn.ping_id = conn.ping_id.wrapping_add(1);
    writer
        .send(&Message::Ping(Ping {
            id: conn.ping_id,
            sent_us: shared.now_us(),
        }))
        .await?;
    conn.last_ping = Instant::now();
    shared.stats.sessions += 1;
    tracing::debug!(session_id, device = %hello.device_id, "session begins");
    shared.emit(LinkEvent::SessionStarted {
        session_id,
        hello: Box::new(hello.clone()),
    });
    Ok(())
}

/// Runs the periodic duties: credit, heartbeat, ping, reassembly timeout.
async fn timers(
    conn: &mut Conn,
    writer: &mut AsyncPacketWriter<WriteHalf>,
    shared: &mut Shared<'_>,
) -> Result<(), WriteError> {
    let config = shared.config;
    let now_us = shared.now_us();
    let had_outcomes = settle(conn, shared, |r, out| r.poll(now_us, &mut |o| out.push(o))) > 0;
    let Some(session) = &conn.session else {
        return Ok(());
    };
    if had_outcomes || conn.last_credit.elapsed() >= config.credit_interval {
        writer.send(&shared.credit(&conn.reassembler)).await?;
        conn.last_credit = Instant::now();
    }
    if conn.last_heartbeat.elapsed() >= config.heartbeat_interval {
        writer
            .send(&Message::Heartbeat(dinoedge_proto::Heartbeat {
                now_us,
                frames_sent: session.results_sent,
                dropped_at_source: 0,
                packets_received: shared.stats.packets as u32,
                packets_rejected: shared.stats.resyncs as u32,
            }))
            .await?;
        conn.last_heartbeat = Instant::now();
    }
    if conn.last_ping.elapsed() >= config.ping_interval {
        conn.ping_id = conn.ping_id.wrapping_add(1);
        writer
            .send(&Message::Ping(Ping {
                id: conn.ping_id,
                sent_us: now_us,
            }))
            .await?;
        conn.last_ping = Instant::now();
    }
    Ok(())
}

/// Runs `f` on the connection's reassembler and hands every frame it settles (delivered or
/// lost) to the consumer; returns how many. The outcomes are gathered first because handing
/// them on needs the connection too.
fn settle(
    conn: &mut Conn,
    shared: &mut Shared<'_>,
    f: impl FnOnce(&mut Reassembler, &mut Vec<Reassembled>),
) -> usize {
    let mut outcomes = Vec::new();
    f(&mut conn.reassembler, &mut outcomes);
    let settled = outcomes.len();
    for o in outcomes {
        deliver(o, conn, shared);
    }
    settled
}

/// Counts a reassembly outcome and hands it on.
fn deliver(outcome: Reassembled, conn: &Conn, shared: &mut Shared<'_>) {
    let session_id = conn.session.as_ref().map_or(0, |s| s.id);
    match outcome {
        Reassembled::Frame(frame) => {
            shared.stats.frames_received += 1;
            shared.stats.frame_bytes += frame.data.len() as u64;
            let capture_host_us = shared.stats.clock_offset_us.and_then(|offset| {
                u64::try_from(i128::from(frame.start.capture_us) - i128::from(offset)).ok()
            });
            let received_us = frame.last_us;
            shared.emit(LinkEvent::Frame(ReceivedFrame {
                frame,
                session_id,
                received_us,
                capture_host_us,
            }));
        }
        Reassembled::Lost(loss) => {
            *shared
                .stats
                .frames_lost
                .entry(loss.reason.name().to_owned())
                .or_default() += u64::from(loss.frames());
            tracing::debug!(seq = loss.seq, reason = ?loss.reason, "frame lost");
            shared.emit(LinkEvent::Lost(loss));
        }
    }
}

/// Takes the edge's cumulative drop count for this session into the run's total.
fn note_dropped(session: &mut Session, reported: u32, stats: &mut LinkStats) {
    if reported > session.dropped {
        stats.dropped_at_edge += u64::from(reported - session.dropped);
        session.dropped = reported;
    }
}
