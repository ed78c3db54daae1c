//! The thin tokio runner around [`LinkSession`]: it owns the source, the connection and the
//! clock, feeds the session what arrives, writes what the session wants sent, and hands its
//! events to the consumer as room allows. All protocol decisions are the session's.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::config::LinkConfig;
use super::event::{LinkEvent, OutgoingResult};
use super::session::LinkSession;
use super::source::{Connection, Source};
use super::stats::LinkStats;

/// Results queued for the link at most; one that finds no room is the caller's to count.
const RESULT_QUEUE: usize = 64;

/// Bytes asked of the transport per read.
const READ_CHUNK: usize = 64 * 1024;

/// Reads taken at most, without waiting, before the timers run on a tick.
const STALL_READS: usize = 16;

/// How long a write may wait when the link has no liveness timeout of its own.
const DEFAULT_WRITE_LIMIT: Duration = Duration::from_secs(3);

/// A running link: its events, and the handle that steers it.
pub struct Link {
    /// Frames and other events, in order. It ends once the link has stopped (told to, or its
    /// source ended) and everything it held was handed on.
    pub events: mpsc::Receiver<LinkEvent>,
    /// Results, counters, stop.
    pub handle: LinkHandle,
}

/// Steers a running link.
pub struct LinkHandle {
    results: mpsc::Sender<OutgoingResult>,
    stats: watch::Receiver<LinkStats>,
    stop: watch::Sender<bool>,
    task: JoinHandle<LinkStats>,
}

/// Why a result was not queued.
#[derive(Debug, thiserror::Error)]
pub enum ResultRefused {
    /// The link's result queue is full (a stalled link).
    #[error("the link's result queue is full")]
    Full,
    /// The link has stopped.
    #[error("the link has stopped")]
    Stopped,
}

/// Queues results for a link, from any thread.
#[derive(Clone)]
pub struct ResultSender(mpsc::Sender<OutgoingResult>);

impl ResultSender {
    /// Queues `result` without waiting.
    pub fn send(&self, result: OutgoingResult) -> Result<(), ResultRefused> {
        self.0.try_send(result).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ResultRefused::Full,
            mpsc::error::TrySendError::Closed(_) => ResultRefused::Stopped,
        })
    }
}

impl LinkHandle {
    /// The handle of a task that presents another source of frames as a link (a capture
    /// device, `crate::capture`): the same results channel, counters, stop and final counts.
    pub(crate) fn from_parts(
        results: mpsc::Sender<OutgoingResult>,
        stats: watch::Receiver<LinkStats>,
        stop: watch::Sender<bool>,
        task: JoinHandle<LinkStats>,
    ) -> Self {
        LinkHandle {
            results,
            stats,
            stop,
            task,
        }
    }

    /// A sender of results back to the edge.
    pub fn results(&self) -> ResultSender {
        ResultSender(self.results.clone())
    }

    /// The counters as last published (every tick and at each disconnection).
    pub fn stats(&self) -> LinkStats {
        self.stats.borrow().clone()
    }

    /// A watch on the counters.
    pub fn watch_stats(&self) -> watch::Receiver<LinkStats> {
        self.stats.clone()
    }

    /// Tells the link to stop; what it holds is still handed on.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Stops the link and waits for it; returns the final counters.
    pub async fn finish(self) -> Result<LinkStats, tokio::task::JoinError> {
        self.stop();
        drop(self.results);
        self.task.await
    }
}

/// Starts the link on the current tokio runtime: opens connections from `source` one after
/// another until told to stop or the source ends. `epoch` is time zero of the link's clock
/// (frames' `received_us`); `consumer_capacity` is how many events the consumer's queue
/// holds, from which credit is granted.
pub fn spawn(
    source: Box<dyn Source>,
    mut config: LinkConfig,
    epoch: Instant,
    consumer_capacity: usize,
) -> Link {
    source.configure(&mut config);
    let (events_tx, events) = mpsc::channel(consumer_capacity.max(1));
    let (results_tx, results_rx) = mpsc::channel(RESULT_QUEUE);
    let (stats_tx, stats_rx) = watch::channel(LinkStats::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let runner = Runner {
        session: LinkSession::new(config, session_id_seed()),
        events: events_tx,
        results: Some(results_rx),
        stats: stats_tx,
        stop: stop_rx,
        epoch,
    };
    let task = tokio::spawn(runner.run(source));
    Link {
        events,
        handle: LinkHandle {
            results: results_tx,
            stats: stats_rx,
            stop: stop_tx,
            task,
        },
    }
}

struct Runner {
    session: LinkSession,
    events: mpsc::Sender<LinkEvent>,
    results: Option<mpsc::Receiver<OutgoingResult>>,
    stats: watch::Sender<LinkStats>,
    stop: watch::Receiver<bool>,
    epoch: Instant,
}

impl Runner {
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    async fn run(mut self, mut source: Box<dyn Source>) -> LinkStats {
        let config = self.session.config().clone();
        let live = source.is_live();
        let mut tick = tokio::time::interval(config.tick);
        let mut last_open_warning: Option<Instant> = None;
        while !self.stopping() {
            let opened = {
                let open = source.open();
                tokio::pin!(open);
                loop {
                    tokio::select! {
                        opened = &mut open => break Some(opened),
                        _ = tick.tick() => self.deliver(),
                        _ = self.stop.changed() => break None,
                    }
                }
            };
            match opened {
                None | Some(Ok(None)) => break,
                Some(Ok(Some(connection))) => {
                    if live {
                        tracing::info!(source = %source.describe(), "connected");
                    } else {
                        tracing::debug!(source = %source.describe(), "connected");
                    }
                    self.session.on_connected(self.now_us());
                    let reason = self.serve(connection, &mut tick).await;
                    if live {
                        tracing::info!(%reason, "connection ended");
                    } else {
                        tracing::debug!(%reason, "connection ended");
                    }
                    source.closed(&reason);
                    self.session.on_disconnected(self.now_us(), &reason);
                    self.deliver();
                    self.stats.send_replace(self.session.stats());
                }
                Some(Err(e)) => {
                    // Said at once and then every 5 s: the device may be plugged in later.
                    if last_open_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
                        tracing::warn!(error = %e, "cannot open the link; retrying");
                        last_open_warning = Some(Instant::now());
                    }
                }
            }
            if config.reconnect_delay.is_zero() {
                continue;
            }
            let pause = tokio::time::sleep(config.reconnect_delay);
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    _ = &mut pause => break,
                    _ = tick.tick() => self.deliver(),
                    _ = self.stop.changed() => break,
                }
            }
        }
        self.wind_down().await
    }

    /// Serves one connection until it ends; returns why it ended.
    async fn serve(&mut self, connection: Connection, tick: &mut tokio::time::Interval) -> String {
        let Connection {
            mut read,
            mut write,
            ..
        } = connection;
        let write_limit = self
            .session
            .config()
            .link_timeout
            .unwrap_or(DEFAULT_WRITE_LIMIT);
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            self.deliver();
            let ended = tokio::select! {
                read = read.read(&mut buf) => self.took(read, &buf),
                _ = tick.tick() => {
                    // Bytes that arrived while this runner could not run (a busy machine)
                    // are taken before the timers: a frame whose bytes are here must not time
                    // out for want of reading them.
                    let mut ended = None;
                    for _ in 0..STALL_READS {
                        match tokio::time::timeout(Duration::ZERO, read.read(&mut buf)).await {
                            Ok(read) => {
                                ended = self.took(read, &buf);
                                if ended.is_some() {
                                    break;
                                }
                            }
                            Err(_) => break,
                        }
                    }
                    self.refresh_room();
                    let now = self.now_us();
                    self.session.on_tick(now);
                    self.stats.send_replace(self.session.stats());
                    ended
                }
                result = next_result(&mut self.results) => {
                    match result {
                        Some(result) => {
                            self.refresh_room();
                            let now = self.now_us();
                            self.session.on_result(now, &result);
                        }
                        None => self.results = None,
                    }
                    None
                }
                _ = self.stop.changed() => Some("stopped".to_owned()),
            };
            if let Some(reason) = ended {
                return reason;
            }
            let mut wrote = false;
            while let Some(packet) = self.session.poll_transmit() {
                wrote = true;
                // An edge that stops reading must not hold the link hostage.
                match tokio::time::timeout(write_limit, write.write_all(&packet)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return format!("write error: {e}"),
                    Err(_) => return "the edge stopped reading".to_owned(),
                }
            }
            // A layer that buffers (the secure link's sealing) sends what it holds.
            if wrote {
                match tokio::time::timeout(write_limit, write.flush()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return format!("write error: {e}"),
                    Err(_) => return "the edge stopped reading".to_owned(),
                }
            }
            if let Some(reason) = self.session.poll_close() {
                return reason;
            }
        }
    }

    /// Takes what a read gave; `Some` when the connection ended, and why.
    fn took(&mut self, read: std::io::Result<usize>, buf: &[u8]) -> Option<String> {
        match read {
            Ok(0) => Some(self.session.end_of_stream_reason()),
            Ok(n) => {
                self.refresh_room();
                let now = self.now_us();
                self.session.on_bytes(now, buf.get(..n).unwrap_or_default());
                None
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => None,
            Err(e) => Some(format!("read error: {e}")),
        }
    }

    /// Tells the session the consumer's room as it is now: credit is granted from it.
    fn refresh_room(&mut self) {
        self.session.set_consumer_room(self.events.capacity());
    }

    /// Hands the consumer what it has room for, and tells the session how much room is left.
    fn deliver(&mut self) {
        while let Ok(permit) = self.events.try_reserve() {
            match self.session.poll_event() {
                Some(event) => permit.send(event),
                None => break,
            }
        }
        if self.events.is_closed() {
            self.count_unheard();
        }
        self.refresh_room();
    }

    /// The consumer stopped listening: what the session still holds is counted, not handed on.
    fn count_unheard(&mut self) {
        while let Some(event) = self.session.poll_event() {
            self.session.on_unheard(&event);
        }
    }

    /// Counts what can no longer be sent, and hands on what the consumer has not taken yet,
    /// waiting for room now.
    async fn wind_down(mut self) -> LinkStats {
        let mut abandoned = 0;
        if let Some(rx) = &mut self.results {
            rx.close();
            while rx.try_recv().is_ok() {
                abandoned += 1;
            }
        }
        self.session.on_results_abandoned(abandoned);
        while let Some(event) = self.session.poll_event() {
            if let Err(mpsc::error::SendError(event)) = self.events.send(event).await {
                self.session.on_unheard(&event);
                self.count_unheard();
            }
        }
        let stats = self.session.stats();
        self.stats.send_replace(stats.clone());
        stats
    }
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

/// Session ids differ across host restarts, so that an edge can tell a new host.
fn session_id_seed() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ d.as_secs() as u32)
        .unwrap_or(1);
    nanos.max(1)
}
