//! Ingest: the link's events become jobs for the first hand-off.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{AbortOnPanic, Cancel, Counters, DropReason, Job};
use crate::link::LinkEvent;
use crate::pipeline::handoff::Handoff;
use crate::pipeline::record::ControlRecord;
use crate::pipeline::stats::Stamps;
use crate::preprocess::Rect;

/// How often a waiting ingest looks at the cancellation token.
const POLL: Duration = Duration::from_millis(50);

/// The ingest stage.
pub struct Ingest {
    /// The link's events; they end when the link has stopped.
    pub events: mpsc::Receiver<LinkEvent>,
    /// Where jobs go.
    pub next: Arc<Handoff<Job>>,
    /// Shared counters.
    pub counters: Arc<Counters>,
    /// Take capture times from the edge's clock (off for replays).
    pub capture_clock: bool,
    /// The run's token.
    pub cancel: Cancel,
    /// Where the edge's button, pedal and probe events go (to the output stage, which hands
    /// each on with the next frame's record).
    pub controls: std::sync::mpsc::Sender<ControlRecord>,
}

impl Ingest {
    /// Runs until the link's events end or the run stops; blocks (call it on its own thread).
    pub fn run(mut self, runtime: &tokio::runtime::Handle) {
        let _guard = AbortOnPanic(self.cancel.clone());
        let mut newest: Option<u32> = None;
        while !self.cancel.is_stopped() {
            let event =
                runtime.block_on(async { tokio::time::timeout(POLL, self.events.recv()).await });
            match event {
                Err(_) => continue,
                Ok(None) => break,
                Ok(Some(LinkEvent::EdgeEvent(input))) => {
                    // Whatever the output stage no longer takes, the runner counts.
                    let _ = self.controls.send(ControlRecord {
                        input,
                        after_seq: newest,
                    });
                }
                Ok(Some(LinkEvent::Frame(f))) => {
                    self.counters.received();
                    newest = Some(f.frame.start.seq);
                    let start = &f.frame.start;
                    let job = Job {
                        crop: Rect {
                            x: 0,
                            y: 0,
                            width: u32::from(start.width),
                            height: u32::from(start.height),
                        },
                        stamps: Stamps {
                            capture_us: f.capture_host_us.filter(|_| self.capture_clock),
                            received_us: f.received_us,
                            ..Stamps::default()
                        },
                        frame: f.frame,
                        session_id: f.session_id,
                        pixels: None,
                    };
                    match self.next.push(job) {
                        Ok(Some(_replaced)) => self.counters.dropped(DropReason::Superseded),
                        Ok(None) => {}
                        Err(_) => {
                            self.counters.dropped(DropReason::Stopped);
                            break;
                        }
                    }
                }
                Ok(Some(_)) => {}
            }
        }
        self.next.close();
        // Frames the link already handed over are counted, not dropped unseen; the link
        // counts what it could no longer hand over (`HostStopped`).
        self.events.close();
        while let Ok(event) = self.events.try_recv() {
            match event {
                LinkEvent::Frame(_) => {
                    self.counters.received();
                    self.counters.dropped(DropReason::Stopped);
                }
                LinkEvent::EdgeEvent(input) => {
                    let _ = self.controls.send(ControlRecord {
                        input,
                        after_seq: newest,
                    });
                }
                _ => {}
            }
        }
    }
}
