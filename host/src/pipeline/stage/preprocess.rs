//! Preprocessing: one thread, overlapping the engine's work on earlier frames.

use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};

use super::{AbortOnPanic, Cancel, Clock, Counters, DropReason, Job};
use crate::pipeline::handoff::Handoff;
use crate::pipeline::record::{FrameFailure, FrameOutcome, FrameRecord};
use crate::preprocess::{FramePreprocessor, FrameRef};

/// Since when GPU preprocessing has been on the CPU, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MovedToCpu {
    /// The first frame preprocessed on the CPU.
    pub from_seq: u32,
    /// The GPU's error.
    pub reason: String,
}

/// The preprocessing stage.
pub struct Preprocess {
    /// Frames to preprocess.
    pub input: Arc<Handoff<Job>>,
    /// Preprocessed frames for the engine workers.
    pub next: Arc<Handoff<Job>>,
    /// Frames that failed go straight to the output stage.
    pub failed: SyncSender<FrameRecord>,
    /// The preprocessor (size, region of interest, normalisation), on the CPU or the GPU; its
    /// region of interest gives the crop the model sees.
    pub preprocessor: FramePreprocessor,
    /// Set when GPU preprocessing failed and moved to the CPU.
    pub moved_to_cpu: Arc<Mutex<Option<MovedToCpu>>>,
    /// Shared counters.
    pub counters: Arc<Counters>,
    /// The clock.
    pub clock: Clock,
    /// The run's token.
    pub cancel: Cancel,
}

impl Preprocess {
    /// Runs until its input closes and drains; blocks.
    pub fn run(mut self) {
        let _guard = AbortOnPanic(self.cancel.clone());
        while let Some(mut job) = self.input.pop() {
            job.stamps.preprocess_start_us = self.clock.now_us();
            let start = &job.frame.start;
            let frame = FrameRef {
                format: start.format,
                width: u32::from(start.width),
                height: u32::from(start.height),
                data: &job.frame.data,
            };
            let roi = self.preprocessor.config().roi;
            if let Some(rect) = roi.and_then(|r| r.bounds(frame.width, frame.height)) {
                job.crop = rect;
            }
            let (result, moved) = self.preprocessor.run(frame);
            if let Some(reason) = moved {
                tracing::error!("{reason}");
                if let Ok(mut m) = self.moved_to_cpu.lock() {
                    m.get_or_insert(MovedToCpu {
                        from_seq: start.seq,
                        reason,
                    });
                }
            }
            match result {
                Ok(pixels) => {
                    job.pixels = Some(pixels);
                    job.stamps.preprocessed_us = self.clock.now_us();
                    match self.next.push(job) {
                        Ok(Some(_replaced)) => self.counters.dropped(DropReason::Superseded),
                        Ok(None) => {}
                        Err(_) => {
                            // The workers are gone: nothing more can be processed.
                            self.counters.dropped(DropReason::Stopped);
                            self.cancel.abort();
                            break;
                        }
                    }
                }
                Err(e) => {
                    let t = self.clock.now_us();
                    job.stamps.preprocessed_us = t;
                    job.stamps.inference_start_us = t;
                    job.stamps.inferred_us = t;
                    job.stamps.heads_done_us = t;
                    let _ = self.failed.send(FrameRecord {
                        frame: job.frame,
                        session_id: job.session_id,
                        stamps: job.stamps,
                        crop: job.crop,
                        outcome: FrameOutcome::Failed(FrameFailure::BadInput(e.to_string())),
                        dropped_before: 0,
                        degraded: false,
                        controls: Vec::new(),
                    });
                }
            }
        }
        self.next.close();
    }
}
