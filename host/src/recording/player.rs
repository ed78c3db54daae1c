//! Replaying a recording into the link: the edge's bytes come back out of an in-memory
//! stream, one stream per recorded connection, at the recorded pace or as fast as the
//! consumer takes them, so that a replay runs the very code a live link runs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio::sync::{mpsc, watch};

use super::format::RecordKind;
use super::reader::{Damage, RecordingReader};

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

/// Whether the consumer has room for more: a replay whose every frame must be processed waits
/// for it before feeding the next record.
pub type Gate = Arc<dyn Fn() -> bool + Send + Sync>;

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

/// A replay in progress: hands out one stream per recorded connection.
#[derive(Debug)]
pub struct Player {
    connections: mpsc::Receiver<DuplexStream>,
    end: watch::Receiver<Option<ReplayEnd>>,
}

/// Bytes buffered between the player and the link.
const PIPE_BYTES: usize = 256 * 1024;

impl Player {
    /// Starts replaying the recording at `path` on the current tokio runtime; with
    /// `repeat_for`, plays it again from the start (a new connection each time) until that
    /// long has passed.
    pub fn start_file(
        path: PathBuf,
        pace: Pace,
        gate: Option<Gate>,
        repeat_for: Option<Duration>,
    ) -> Player {
        let (conn_tx, connections) = mpsc::channel(1);
        let (end_tx, end) = watch::channel(None);
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let mut end = ReplayEnd::default();
            let mut first = true;
            loop {
                let before = end.connections;
                match RecordingReader::open(&path) {
                    Ok(reader) => {
                        play(reader, pace, gate.clone(), &conn_tx, &mut end, first).await;
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
        Player { connections, end }
    }

    /// The next recorded connection's stream of edge bytes, or `None` when the recording is
    /// played out.
    pub async fn next_connection(&mut self) -> Option<DuplexStream> {
        self.connections.recv().await
    }

    /// Becomes `Some` when the whole recording has been fed.
    pub fn end(&self) -> watch::Receiver<Option<ReplayEnd>> {
        self.end.clone()
    }
}

/// Plays one pass of a recording, adding to `end`.
async fn play(
    mut reader: RecordingReader,
    pace: Pace,
    gate: Option<Gate>,
    connections: &mpsc::Sender<DuplexStream>,
    end: &mut ReplayEnd,
    first_pass: bool,
) {
    let mut current: Option<DuplexStream> = None;
    // Recorded time `origin_t` plays at `origin`; waiting on the gate moves `origin` on, so the
    // records after a wait keep their spacing.
    let mut origin: Option<(tokio::time::Instant, u64)> = None;
    loop {
        let record = match reader.next_record() {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => {
                end.error = Some(e.to_string());
                break;
            }
        };
        end.records += 1;
        match record.kind {
            RecordKind::Connected => {
                current = None;
            }
            RecordKind::Disconnected => {
                current = None;
                continue;
            }
            RecordKind::HostToEdge | RecordKind::Note => continue,
            RecordKind::EdgeToHost => {}
        }
        if let Pace::Realtime { speed } = pace {
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
        if let Some(gate) = &gate {
            let waited_from = tokio::time::Instant::now();
            while !gate() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            if let Some((at, _)) = &mut origin {
                *at += waited_from.elapsed();
            }
        }
        if record.kind == RecordKind::Connected {
            continue;
        }
        if current.is_none() {
            let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
            if connections.send(theirs).await.is_err() {
                break;
            }
            end.connections += 1;
            current = Some(ours);
        }
        if let Some(stream) = &mut current {
            if stream.write_all(&record.payload).await.is_err() {
                // The link dropped this connection (e.g. it timed out); what follows goes to
                // the connection it opens next, as a live edge's bytes would.
                current = None;
                continue;
            }
            end.edge_bytes += record.payload.len() as u64;
        }
    }
    // Let the link read what is buffered, then see the end of the connection.
    if let Some(mut stream) = current.take() {
        let _ = stream.shutdown().await;
    }
    // Each pass meets the same damage: it is reported once.
    if first_pass {
        end.damage.extend_from_slice(reader.damage());
    }
}
