//! Engine workers: each runs the backbone on its own state, then the heads.

use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};

use super::{AbortOnPanic, Cancel, Clock, Job};
use crate::backbone::BackboneState;
use crate::pipeline::analyze::Models;
use crate::pipeline::handoff::Handoff;
use crate::pipeline::record::{FrameFailure, FrameOutcome, FrameRecord, HeadResult};

/// One engine worker.
pub struct EngineWorker {
    /// Preprocessed frames.
    pub input: Arc<Handoff<Job>>,
    /// Results for the output stage.
    pub output: SyncSender<FrameRecord>,
    /// Its own backbone state.
    pub state: BackboneState,
    /// The backbone and heads.
    pub models: Models,
    /// The first engine failure of the run (it ends the run).
    pub error: Arc<Mutex<Option<String>>>,
    /// The clock.
    pub clock: Clock,
    /// The run's token.
    pub cancel: Cancel,
}

impl EngineWorker {
    /// Runs until its input closes and drains, or the engine fails; blocks.
    pub fn run(mut self) {
        let _guard = AbortOnPanic(self.cancel.clone());
        while let Some(mut job) = self.input.pop() {
            let Some(pixels) = job.pixels.take() else {
                continue;
            };
            job.stamps.inference_start_us = self.clock.now_us();
            let features = match self.state.run(pixels.view()) {
                Ok(f) => f,
                Err(e) => {
                    // The input shape is fixed by the preprocessor: a failure here is the
                    // engine's, and ends the run.
                    if let Ok(mut w) = self.error.lock() {
                        w.get_or_insert(e.to_string());
                    }
                    self.cancel.abort();
                    break;
                }
            };
            job.stamps.inferred_us = self.clock.now_us();
            let crop = job.crop;
            let heads = self
                .models
                .run_heads(&features, crop.width as usize, crop.height as usize);
            let outcome = match heads {
                Ok(heads) => FrameOutcome::Processed(
                    heads
                        .into_iter()
                        .map(|o| HeadResult::new(o, crop))
                        .collect(),
                ),
                Err(e) => FrameOutcome::Failed(FrameFailure::Head(e.to_string())),
            };
            job.stamps.heads_done_us = self.clock.now_us();
            let _ = self.output.send(FrameRecord {
                frame: job.frame,
                session_id: job.session_id,
                stamps: job.stamps,
                crop,
                outcome,
                dropped_before: 0,
            });
        }
    }
}
