//! The live view: a single page served by the binary that shows the latest frame with its
//! overlay, the classes, latency and stage times, a latency chart, frames per second, drops,
//! losses, link state and the engine in use; `/metrics` for Prometheus and `/healthz`.
//!
//! ```text
//!  pipeline output thread ── LiveView::frame (cheap: JSON, tallies, the newest frame kept)
//!        │                        │
//!        │                  encoder thread: overlay + JPEG, at most one in flight, the
//!        │                  newest frame wins ─► one Bytes for every viewer
//!        └ LiveView::status ──────┴─► watch (latest wins) ─► each viewer's event stream
//!  server thread (own tokio runtime): Host check ─► (off loopback: TLS, token ─► cookie)
//!        ─► /  /events (Origin check)  /frame.jpg  /metrics  /healthz
//! ```
//!
//! The view never waits for a viewer: updates go into a `watch`, which keeps only the newest,
//! and a viewer whose connection stops taking bytes is dropped after a while.

pub mod auth;
pub mod metrics;
mod server;
#[cfg(test)]
mod tests;
pub mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

use crate::heads::ClassMask;
use crate::pipeline::analyze::HeadOutput;
use crate::pipeline::{FrameRecord, LiveStatus, Models};
use crate::preprocess::Rect;

pub use metrics::Metrics;
pub use tls::CertSource;

/// Why the view could not start.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// The address could not be bound.
    #[error("the live view cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Beyond loopback the view needs an access token.
    #[error(
        "the live view on {0} is reachable from the network: it needs --http-token FILE (a \
         secret readable by the service user only; `dinoedge keys view-token -o FILE` makes \
         one). Bind it to 127.0.0.1 to watch on this machine only"
    )]
    NeedsToken(SocketAddr),
    /// The token file was refused.
    #[error(transparent)]
    Token(#[from] auth::TokenError),
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The server thread could not start.
    #[error("the live view's server could not start: {0}")]
    Start(std::io::Error),
}

/// How the view is served.
#[derive(Debug, Clone)]
pub struct ViewConfig {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Names browsers may use for it (`Host`), besides the address itself and, on loopback,
    /// `localhost`.
    pub hosts: Vec<String>,
    /// The access token's file: required off loopback.
    pub token_file: Option<std::path::PathBuf>,
    /// The TLS certificate: required off loopback (a self-signed one by default).
    pub cert: CertSource,
    /// Serve `/metrics` and `/healthz` without the token (they carry no images).
    pub open_metrics: bool,
    /// A viewer whose connection takes no bytes for this long is dropped.
    pub stall_timeout: Duration,
}

impl ViewConfig {
    /// Defaults for `addr`: no extra names, a self-signed certificate kept in `state_dir`,
    /// metrics behind the token, stalled viewers dropped after 10 s.
    pub fn new(addr: SocketAddr, state_dir: std::path::PathBuf) -> Self {
        ViewConfig {
            addr,
            hosts: Vec::new(),
            token_file: None,
            cert: CertSource::SelfSigned { dir: state_dir },
            open_metrics: false,
            stall_timeout: Duration::from_secs(10),
        }
    }
}

/// What the page shows that does not change during a run.
#[derive(Debug, Clone)]
pub struct ViewInfo {
    /// The model, e.g. "ViT-S/16 at 224x224".
    pub model: String,
    /// The engine, e.g. "cpu fp32".
    pub engine: String,
    /// Whether the weights are random (the page says so).
    pub random_weights: bool,
    /// "connected"/"waiting" from the link, or "replay".
    pub replay: bool,
}

/// A running view; dropping it stops the server.
pub struct LiveView {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    server: Option<std::thread::JoinHandle<()>>,
    encoder: Option<std::thread::JoinHandle<()>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

/// The newest frame to encode.
struct Pending {
    json: serde_json::Value,
    format: dinoedge_proto::PixelFormat,
    width: u32,
    height: u32,
    data: Vec<u8>,
    crop: Rect,
    mask: Option<ClassMask>,
}

/// What the page's event stream and the endpoints read.
struct State {
    started: Instant,
    frame: Option<serde_json::Value>,
    status: serde_json::Value,
    link: serde_json::Value,
    metrics: Metrics,
}

/// Shared by the pipeline's callbacks, the encoder and the server.
pub(crate) struct Shared {
    info: ViewInfo,
    pending: Mutex<Option<Pending>>,
    wake: Condvar,
    /// The newest JPEG and its number.
    jpeg: RwLock<Option<(u64, Bytes)>>,
    state: Mutex<State>,
    updates: watch::Sender<Arc<String>>,
    viewers: AtomicU64,
    encoded: AtomicU64,
    stopping: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Shared {
    /// The event stream's next message, from the state as it is.
    fn publish(&self) {
        let jpeg = self
            .jpeg
            .read()
            .ok()
            .and_then(|j| j.as_ref().map(|(n, _)| *n));
        let text = {
            let state = lock(&self.state);
            serde_json::json!({
                "jpeg": jpeg.map(|n| format!("/frame.jpg?n={n}")),
                "frame": state.frame,
                "status": state.status,
                "link": state.link,
                "model": self.info.model,
                "engine": self.info.engine,
                "random_weights": self.info.random_weights,
                "t": state.started.elapsed().as_secs_f64(),
            })
            .to_string()
        };
        self.updates.send_replace(Arc::new(text));
    }

    /// `/metrics`, with the process's CPU and memory as of now.
    pub(crate) fn metrics_text(&self) -> String {
        let mut m = lock(&self.state).metrics.clone();
        m.viewers = self.viewers.load(Ordering::Relaxed);
        m.view_frames_encoded = self.encoded.load(Ordering::Relaxed);
        let usage = crate::pipeline::stats::ProcessUsage::now();
        m.cpu_seconds = usage.cpu_s;
        m.resident_bytes = usage.rss_mib * 1024.0 * 1024.0;
        m.render()
    }
}

impl LiveView {
    /// Binds `config.addr` and starts the server and the frame encoder on threads of their
    /// own; logs where to open it.
    pub fn start(config: ViewConfig, info: ViewInfo) -> Result<LiveView, ViewError> {
        let access = server::Access::from_config(&config)?;
        let listener =
            std::net::TcpListener::bind(config.addr).map_err(|source| ViewError::Bind {
                addr: config.addr,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| ViewError::Bind {
            addr: config.addr,
            source,
        })?;
        listener.set_nonblocking(true).map_err(ViewError::Start)?;
        let mut metrics = Metrics::default();
        metrics.info.insert("model".into(), info.model.clone());
        metrics.info.insert("engine".into(), info.engine.clone());
        metrics
            .info
            .insert("random_weights".into(), info.random_weights.to_string());
        let link_state = if info.replay { "replay" } else { "waiting" };
        let shared = Arc::new(Shared {
            info,
            pending: Mutex::new(None),
            wake: Condvar::new(),
            jpeg: RwLock::new(None),
            state: Mutex::new(State {
                started: Instant::now(),
                frame: None,
                status: serde_json::Value::Null,
                link: serde_json::json!({ "state": link_state }),
                metrics,
            }),
            updates: watch::channel(Arc::new(String::from("{}"))).0,
            viewers: AtomicU64::new(0),
            encoded: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
        });
        shared.publish();
        let encoder = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("view-encoder".into())
                .spawn(move || encode_loop(&shared))
                .map_err(ViewError::Start)?
        };
        let (shutdown, stopped) = tokio::sync::oneshot::channel();
        let server = server::spawn(
            listener,
            local_addr,
            access,
            shared.clone(),
            config,
            stopped,
        )
        .map_err(ViewError::Start)?;
        Ok(LiveView {
            shared,
            local_addr,
            server: Some(server),
            encoder: Some(encoder),
            shutdown: Some(shutdown),
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A processed frame: its result goes out with the next update; while someone watches, its
    /// image replaces any not yet encoded (the newest wins). Cheap: called on the pipeline's
    /// output thread.
    pub fn frame(&self, record: &FrameRecord, models: &Models) {
        let json = record.to_json(models);
        {
            let mut state = lock(&self.shared.state);
            let s = &record.stamps;
            state
                .metrics
                .latency
                .observe(s.latency_us() as f64 / 1000.0);
            for (stage, us) in s.stages() {
                state
                    .metrics
                    .stages
                    .entry(stage.to_owned())
                    .or_default()
                    .observe(us as f64 / 1000.0);
            }
        }
        if self.shared.viewers.load(Ordering::Relaxed) == 0 {
            // Nobody watches: the result is kept for the next update (the status's, twice a
            // second), and the frame is neither copied nor encoded.
            lock(&self.shared.state).frame = Some(json);
            return;
        }
        let start = &record.frame.start;
        let pending = Pending {
            json,
            format: start.format,
            width: u32::from(start.width),
            height: u32::from(start.height),
            data: record.frame.data.clone(),
            crop: record.crop,
            mask: record.outputs().find_map(|o| match o {
                HeadOutput::Mask(m) => Some(m.clone()),
                HeadOutput::Classes(_) => None,
            }),
        };
        // The encoder holds the lock only to take what waits: never long.
        *lock(&self.shared.pending) = Some(pending);
        self.shared.wake.notify_one();
    }

    /// The pipeline's status (twice a second): counters, rates, the link.
    pub fn status(&self, s: &LiveStatus) {
        {
            let mut state = lock(&self.shared.state);
            let link = &s.link;
            state.status = serde_json::json!({
                "elapsed_s": s.elapsed_s,
                "processed": s.processed,
                "received": s.received,
                "fps": s.fps,
                "p50_ms": s.p50_ms,
                "p99_ms": s.p99_ms,
                "dropped": s.dropped_by_reason,
                "lost": link.frames_lost,
                "dropped_at_edge": s.dropped_at_edge,
            });
            if !self.shared.info.replay {
                state.link = serde_json::json!({
                    "state": if link.connected { "connected" } else { "waiting" },
                    "clock_offset_us": link.clock_offset_us,
                    "rtt_us": link.clock_rtt_us,
                });
            } else {
                state.link = serde_json::json!({ "state": "replay" });
            }
            let m = &mut state.metrics;
            m.frames_received = s.received;
            m.frames_processed = s.processed;
            m.frames_dropped = s.dropped_by_reason.clone();
            m.frames_lost = link.frames_lost.clone();
            m.frames_dropped_at_edge = s.dropped_at_edge;
            m.clock_offset_us = link.clock_offset_us;
            m.link = [
                ("connections", link.connections),
                ("sessions", link.sessions),
                ("bytes", link.bytes),
                ("packets", link.packets),
                ("resyncs", link.resyncs),
                ("crc_errors", link.crc_errors),
                ("results_sent", link.results_sent),
                ("results_stale", link.results_stale),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        }
        self.shared.publish();
    }

    /// Viewers on the event stream now.
    pub fn viewers(&self) -> u64 {
        self.shared.viewers.load(Ordering::Relaxed)
    }
}

impl Drop for LiveView {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        self.shared.wake.notify_all();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.encoder.take() {
            let _ = t.join();
        }
        if let Some(t) = self.server.take() {
            let _ = t.join();
        }
    }
}

/// Frames encoded at most this often: more than a viewer's eye (or a bench network) takes
/// would cost the pipeline CPU for nothing.
const ENCODE_INTERVAL: Duration = Duration::from_millis(100);

/// Encodes the newest frame whenever there is one, one at a time, off the pipeline's threads,
/// at most every [`ENCODE_INTERVAL`], and only while someone watches.
fn encode_loop(shared: &Shared) {
    let mut last_encode: Option<Instant> = None;
    loop {
        let pending = {
            let mut slot = lock(&shared.pending);
            loop {
                if shared.stopping.load(Ordering::Relaxed) {
                    return;
                }
                // Too soon after the last encode: wait out the interval, then take whatever
                // is newest by then.
                let wait = last_encode
                    .map(|t| ENCODE_INTERVAL.saturating_sub(t.elapsed()))
                    .unwrap_or_default();
                if !wait.is_zero() {
                    slot = match shared.wake.wait_timeout(slot, wait) {
                        Ok((g, _)) => g,
                        Err(poisoned) => poisoned.into_inner().0,
                    };
                    continue;
                }
                if let Some(p) = slot.take() {
                    break p;
                }
                slot = match shared.wake.wait(slot) {
                    Ok(g) => g,
                    Err(poisoned) => poisoned.into_inner(),
                };
            }
        };
        if shared.viewers.load(Ordering::Relaxed) == 0 {
            // Nobody watches: the result goes out, the image is not made.
            lock(&shared.state).frame = Some(pending.json);
            shared.publish();
            continue;
        }
        last_encode = Some(Instant::now());
        match encode(&pending) {
            Ok(jpeg) => {
                let n = shared.encoded.fetch_add(1, Ordering::Relaxed) + 1;
                if let Ok(mut slot) = shared.jpeg.write() {
                    *slot = Some((n, Bytes::from(jpeg)));
                }
            }
            Err(e) => tracing::debug!(error = %e, "a frame for the view could not be encoded"),
        }
        lock(&shared.state).frame = Some(pending.json);
        shared.publish();
    }
}

/// The frame as JPEG, the segmentation mask blended over the model's view of it.
fn encode(p: &Pending) -> Result<Vec<u8>, String> {
    let rgb = crate::preprocess::frame_rgb(p.format, p.width, p.height, &p.data)
        .map_err(|e| e.to_string())?;
    let mut image =
        image::RgbImage::from_raw(p.width, p.height, rgb).ok_or("frame size".to_owned())?;
    if let Some(mask) = &p.mask {
        let c = p.crop;
        let view = image::imageops::crop_imm(&image, c.x, c.y, c.width, c.height).to_image();
        if let Some(blended) = mask.overlay(view.as_raw(), 0.45) {
            image::imageops::replace(&mut image, &blended, i64::from(c.x), i64::from(c.y));
        }
    }
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .encode_image(&image)
        .map_err(|e| e.to_string())?;
    Ok(out)
}
