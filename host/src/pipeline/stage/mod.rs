//! The pipeline's stages, each a struct with the queues it reads and writes and a `run` that
//! a thread of its own calls: ingest (link events to jobs), preprocess, engine workers
//! (backbone and heads) and output (results back to the edge, statistics, the caller).

pub mod engine;
pub mod ingest;
pub mod output;
pub mod preprocess;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use dinoedge_proto::reassembly::Frame;
use ndarray::Array4;

use super::handoff::Handoff;
use super::stats::Stamps;
use crate::preprocess::Rect;

/// A frame between stages.
#[derive(Debug)]
pub struct Job {
    /// The frame.
    pub frame: Box<Frame>,
    /// Its session.
    pub session_id: u32,
    /// Its timestamps so far.
    pub stamps: Stamps,
    /// The part of the frame the model sees.
    pub crop: Rect,
    /// The model's input, once preprocessed.
    pub pixels: Option<Array4<f32>>,
}

/// The pipeline's clock: microseconds since the run began, shared with the link.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    /// A clock whose zero is `epoch`.
    pub fn new(epoch: Instant) -> Self {
        Clock { epoch }
    }

    /// Now.
    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }
}

/// Why the host did not process a frame it received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// A newer frame replaced it while it waited (policy `live`).
    Superseded,
    /// The run stopped before it was processed.
    Stopped,
}

impl DropReason {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Superseded => "superseded",
            DropReason::Stopped => "stopped",
        }
    }
}

/// Counters the stages share.
#[derive(Debug, Default)]
pub struct Counters {
    received: AtomicU64,
    superseded: AtomicU64,
    stopped: AtomicU64,
    /// Dropped since the last result went out.
    dropped_recently: AtomicU64,
}

impl Counters {
    /// A frame came in.
    pub fn received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    /// A frame was dropped.
    pub fn dropped(&self, reason: DropReason) {
        match reason {
            DropReason::Superseded => {
                self.superseded.fetch_add(1, Ordering::Relaxed);
                self.dropped_recently.fetch_add(1, Ordering::Relaxed);
            }
            DropReason::Stopped => {
                self.stopped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Frames received so far.
    pub fn received_total(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Frames dropped for `reason` so far.
    pub fn dropped_total(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::Superseded => self.superseded.load(Ordering::Relaxed),
            DropReason::Stopped => self.stopped.load(Ordering::Relaxed),
        }
    }

    /// Frames dropped since the last call (the next result's `HOST_OVERLOADED`).
    pub fn take_dropped_recently(&self) -> u64 {
        self.dropped_recently.swap(0, Ordering::Relaxed)
    }
}

/// The run's one cancellation token. `stop` ends the input (what was taken in is still
/// processed); `abort` also closes every hand-off, so no stage waits for one that failed.
#[derive(Clone)]
pub struct Cancel {
    stopped: Arc<AtomicBool>,
    input: Arc<Handoff<Job>>,
    handoffs: Vec<Arc<Handoff<Job>>>,
}

impl Cancel {
    /// A token over the input hand-off and all others.
    pub fn new(input: Arc<Handoff<Job>>, handoffs: Vec<Arc<Handoff<Job>>>) -> Self {
        Cancel {
            stopped: Arc::default(),
            input,
            handoffs,
        }
    }

    /// Stops taking frames in.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.input.close();
    }

    /// Stops everything: every hand-off closes.
    pub fn abort(&self) {
        self.stop();
        for h in &self.handoffs {
            h.close();
        }
    }

    /// Whether the input has been told to stop.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }
}

/// Aborts the run when a stage's thread panics, so that the stages around it end instead of
/// waiting for it forever (the panic is then reported when the thread is joined).
pub struct AbortOnPanic(pub Cancel);

impl Drop for AbortOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.abort();
        }
    }
}

#[cfg(test)]
mod tests;
