//! A recording as a link source: the edge's bytes come back out of an in-memory stream, one
//! stream per recorded connection, at the recorded pace or as fast as the host takes them,
//! so that a replay runs the very code a live link runs.
//!
//! Where every frame must be processed, the replay waits for credit the way an edge does: it
//! reads the host's `Welcome` and `Credit`s from what the host writes back, and holds each
//! recorded `FrameStart` until the host's credit lets that frame start. Pacing, this gate and
//! the link settings a replay needs all live here.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use dinoedge_proto::Message;
use dinoedge_proto::credit::CreditWindow;
use dinoedge_proto::wire::{self, Decoder};
use tokio::io::{AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::{Notify, mpsc, watch};

use super::RecordingError;
use super::format::RecordKind;
use super::key::RecordingKey;
use super::reader::{Damage, RecordingReader};
use crate::link::{Connection, LinkConfig, OpenFuture, Source};

/// How fast a recording plays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// At the recorded times, scaled: 1.0 is as recorded, 2.0 twice as fast.
    Realtime {
        /// Speed factor, above 0.
        speed: f64,
    },
    /// As fast as the consumer takes the bytes.
    MaxSpeed,
}

/// How a replay ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayEnd {
    /// Records read.
    pub records: u64,
    /// Edge-to-host bytes fed to the link.
    pub edge_bytes: u64,
    /// Connections replayed.
    pub connections: u32,
    /// Damage in the file (skipped, the rest replayed).
    pub damage: Vec<Damage>,
    /// A read error that ended the replay early.
    pub error: Option<String>,
}

/// Whether the replay waits for the host's credit before each frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gating {
    /// Frames play as recorded (a live run drops what it cannot take).
    None,
    /// Each recorded frame waits for credit, as an edge's would: nothing is dropped.
    WaitForCredit,
}

/// A recording played back as a link source.
pub struct ReplaySource {
    path: PathBuf,
    gating: Gating,
    connections: mpsc::Receiver<(DuplexStream, Arc<CreditGate>)>,
    end: watch::Receiver<Option<ReplayEnd>>,
}

/// Bytes buffered between the player and the link.
const PIPE_BYTES: usize = 256 * 1024;

/// Largest packet looked into for its kind (the host reads nothing larger either).
const MAX_PACKET: usize = 1 << 20;

impl ReplaySource {
    /// Starts replaying the recording at `path` on the current tokio runtime; with
    /// `repeat_for`, plays it again from the start (a new connection each time) until that
    /// long has passed. The file is checked here, so that a bad one is an error, not an
    /// empty run.
    pub fn start(
        path: &Path,
        pace: Pace,
        gating: Gating,
        repeat_for: Option<Duration>,
    ) -> Result<ReplaySource, RecordingError> {
        Self::start_with(path, None, pace, gating, repeat_for)
    }

    /// [`Self::start`] for a recording that may be encrypted: `key` opens it.
    pub fn start_with(
        path: &Path,
        key: Option<RecordingKey>,
        pace: Pace,
        gating: Gating,
        repeat_for: Option<Duration>,
    ) -> Result<ReplaySource, RecordingError> {
        RecordingReader::open_with(path, key.as_ref())?;
        let (conn_tx, connections) = mpsc::channel(1);
        let (end_tx, end) = watch::channel(None);
        let file = path.to_owned();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let mut end = ReplayEnd::default();
            let mut first = true;
            loop {
                let before = end.connections;
                match RecordingReader::open_with(&file, key.as_ref()) {
                    Ok(reader) => {
                        let mut player = Player {
                            reader,
                            pace,
                            gating,
                            connections: &conn_tx,
                            end: &mut end,
                        };
                        player.play(first).await;
                    }
                    Err(e) => end.error = Some(e.to_string()),
                }
                first = false;
                let again = repeat_for.is_some_and(|d| started.elapsed() < d);
                // A pass that opened no connection has nothing to repeat.
                if !again || end.error.is_some() || conn_tx.is_closed() || end.connections == before
                {
                    break;
                }
            }
            let _ = end_tx.send(Some(end));
        });
        Ok(ReplaySource {
            path: path.to_owned(),
            gating,
            connections,
            end,
        })
    }

    /// Becomes `Some` when the whole recording has been fed.
    pub fn end(&self) -> watch::Receiver<Option<ReplayEnd>> {
        self.end.clone()
    }
}

impl Drop for ReplaySource {
    /// A connection the link never opened is closed too, so that the player waiting on its
    /// credit ends (and reports how the replay ended) instead of waiting for ever.
    fn drop(&mut self) {
        self.connections.close();
        while let Ok((_, gate)) = self.connections.try_recv() {
            gate.update(|s| s.closed = true);
        }
    }
}

impl Source for ReplaySource {
    fn open(&mut self) -> OpenFuture<'_> {
        Box::pin(async move {
            Ok(self.connections.recv().await.map(|(stream, gate)| {
                let (read, _) = tokio::io::split(stream);
                Connection {
                    read: Box::pin(read),
                    write: Box::pin(CreditSink::new(gate)),
                    peer: None,
                }
            }))
        })
    }

    fn describe(&self) -> String {
        format!("replay of {}", self.path.display())
    }

    fn configure(&self, config: &mut LinkConfig) {
        // No device to wait for between recorded connections.
        config.reconnect_delay = Duration::ZERO;
        if self.gating == Gating::WaitForCredit {
            // The replay falls silent while it waits for the host's credit: that silence is
            // the host's own doing, not a lost edge. Each recorded connection ends by itself.
            config.link_timeout = None;
        }
    }

    fn is_live(&self) -> bool {
        false
    }
}

/// What the replay knows of the host's credit in the current connection.
#[derive(Debug, Default)]
struct GateState {
    /// The credit of the session the host welcomed; `None` outside a session.
    window: Option<CreditWindow>,
    /// A `Hello` went out and its answer has not come back yet.
    hello_pending: bool,
    /// The host dropped the connection: nothing more will be granted.
    closed: bool,
    /// The sequence number that follows the last frame fed in this session.
    next_seq: u32,
}

/// The credit the host granted, shared between the connection's write half (which reads the
/// host's messages) and the player (which waits on it).
#[derive(Debug, Default)]
struct CreditGate {
    state: Mutex<GateState>,
    changed: Notify,
}

impl CreditGate {
    fn update(&self, f: impl FnOnce(&mut GateState)) {
        let mut state = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut state);
        drop(state);
        self.changed.notify_waiters();
    }

    fn read<T>(&self, f: impl FnOnce(&GateState) -> T) -> T {
        match self.state.lock() {
            Ok(s) => f(&s),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    /// Waits until the next frame may start, or the connection is gone. The next frame is
    /// counted from what the replay fed, not from the recorded sequence number: after a gap
    /// in a damaged recording the host cannot grant credit for a frame it has not heard of,
    /// and learns of the gap from the very `FrameStart` that waits.
    async fn wait_for_frame(&self) {
        loop {
            let changed = self.changed.notified();
            let ready = self.read(|s| {
                s.closed || (!s.hello_pending && s.window.is_none_or(|w| w.may_start(s.next_seq)))
            });
            if ready {
                return;
            }
            changed.await;
        }
    }
}

/// The write half of a replayed connection: reads the host's messages for their credit.
struct CreditSink {
    gate: Arc<CreditGate>,
    decoder: Decoder<Vec<u8>>,
}

impl CreditSink {
    fn new(gate: Arc<CreditGate>) -> Self {
        CreditSink {
            gate,
            decoder: Decoder::new(vec![0u8; wire::max_wire_len(MAX_PACKET)]),
        }
    }
}

impl AsyncWrite for CreditSink {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut input = buf;
        let this = &mut *self;
        while let Some(outcome) = this.decoder.push(&mut input) {
            if outcome.is_err() {
                continue;
            }
            match this.decoder.message() {
                Ok(Message::Welcome(w)) => this.gate.update(|s| {
                    s.window = Some(CreditWindow::new(w.initial_credits));
                    s.hello_pending = false;
                    s.next_seq = 0;
                }),
                Ok(Message::Reject(_)) => this.gate.update(|s| {
                    s.window = None;
                    s.hello_pending = false;
                }),
                Ok(Message::Credit(c)) => this.gate.update(|s| {
                    if let Some(w) = &mut s.window {
                        w.grant(c);
                    }
                }),
                _ => {}
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Drop for CreditSink {
    fn drop(&mut self) {
        self.gate.update(|s| s.closed = true);
    }
}

/// The connection being fed.
struct Feeding {
    stream: DuplexStream,
    gate: Arc<CreditGate>,
    /// The edge's bytes since the last packet delimiter.
    partial: Vec<u8>,
}

/// One pass over a recording.
struct Player<'a> {
    reader: RecordingReader,
    pace: Pace,
    gating: Gating,
    connections: &'a mpsc::Sender<(DuplexStream, Arc<CreditGate>)>,
    end: &'a mut ReplayEnd,
}

impl Player<'_> {
    /// Plays the recording, adding to `end`.
    async fn play(&mut self, first_pass: bool) {
        let mut current: Option<Feeding> = None;
        // Recorded time `origin_t` plays at `origin`; waiting for credit moves `origin` on, so
        // the records after a wait keep their spacing.
        let mut origin: Option<(tokio::time::Instant, u64)> = None;
        let mut packet_decoder = Decoder::new(vec![0u8; wire::max_wire_len(MAX_PACKET)]);
        loop {
            let record = match self.reader.next_record() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    self.end.error = Some(e.to_string());
                    break;
                }
            };
            self.end.records += 1;
            match record.kind {
                RecordKind::Connected | RecordKind::Disconnected => {
                    if let Some(feeding) = current.take() {
                        finish(feeding).await;
                    }
                    continue;
                }
                RecordKind::HostToEdge | RecordKind::Note => continue,
                RecordKind::EdgeToHost => {}
            }
            if let Pace::Realtime { speed } = self.pace {
                let (at, t0) = *origin.get_or_insert((tokio::time::Instant::now(), record.t_us));
                let offset = record.t_us.saturating_sub(t0) as f64 / speed.max(1e-9);
                // A time too far out to sleep until (a damaged clock) plays at once.
                if let Some(when) = Duration::try_from_secs_f64(offset / 1e6)
                    .ok()
                    .and_then(|d| at.checked_add(d))
                {
                    tokio::time::sleep_until(when).await;
                }
            }
            if current.is_none() {
                let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
                let gate = Arc::new(CreditGate::default());
                if self.connections.send((theirs, gate.clone())).await.is_err() {
                    break;
                }
                self.end.connections += 1;
                packet_decoder.reset();
                current = Some(Feeding {
                    stream: ours,
                    gate,
                    partial: Vec::new(),
                });
            }
            let Some(feeding) = &mut current else {
                continue;
            };
            let waited_from = tokio::time::Instant::now();
            let fed = self
                .feed(feeding, &record.payload, &mut packet_decoder)
                .await;
            if self.gating == Gating::WaitForCredit
                && let Some((at, _)) = &mut origin
            {
                *at += waited_from.elapsed();
            }
            if !fed {
                // The link dropped this connection (e.g. it timed out); what follows goes to
                // the connection it opens next, as a live edge's bytes would.
                current = None;
                continue;
            }
            self.end.edge_bytes += record.payload.len() as u64;
        }
        // Let the link read what is buffered, then see the end of the connection.
        if let Some(feeding) = current.take() {
            finish(feeding).await;
        }
        // Each pass meets the same damage: it is reported once.
        if first_pass {
            self.end.damage.extend_from_slice(self.reader.damage());
        }
    }

    /// Feeds one record's bytes, packet by packet, holding a `FrameStart` until the host's
    /// credit lets its frame start; false when the link dropped the connection.
    async fn feed(
        &self,
        feeding: &mut Feeding,
        payload: &[u8],
        decoder: &mut Decoder<Vec<u8>>,
    ) -> bool {
        let mut rest = payload;
        while !rest.is_empty() {
            let Some(end) = memchr::memchr(wire::DELIMITER, rest) else {
                feeding.partial.extend_from_slice(rest);
                // No packet is this long: bytes without a delimiter are passed on as they are
                // (the link counts them as damage) instead of being held without bound.
                if feeding.partial.len() > wire::max_wire_len(MAX_PACKET) {
                    let junk = std::mem::take(&mut feeding.partial);
                    return feeding.stream.write_all(&junk).await.is_ok();
                }
                return true;
            };
            let (head, tail) = rest.split_at(end + 1);
            rest = tail;
            feeding.partial.extend_from_slice(head);
            let packet = std::mem::take(&mut feeding.partial);
            if self.gating == Gating::WaitForCredit {
                let mut input = packet.as_slice();
                if let Some(Ok(_)) = decoder.push(&mut input) {
                    match decoder.message() {
                        Ok(Message::Hello(_)) => feeding.gate.update(|s| {
                            s.window = None;
                            s.hello_pending = true;
                        }),
                        Ok(Message::FrameStart(start)) => {
                            feeding.gate.wait_for_frame().await;
                            let next = start.seq.wrapping_add(1);
                            feeding.gate.update(|s| s.next_seq = next);
                        }
                        _ => {}
                    }
                }
            }
            if feeding.stream.write_all(&packet).await.is_err() {
                return false;
            }
        }
        true
    }
}

/// Ends a fed connection: what is buffered is read, then the link sees its end.
async fn finish(mut feeding: Feeding) {
    if !feeding.partial.is_empty() {
        let _ = feeding.stream.write_all(&feeding.partial).await;
    }
    let _ = feeding.stream.shutdown().await;
}
