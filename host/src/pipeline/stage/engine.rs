//! Engine workers: each runs the backbone on its own state, then the heads. A GPU fault either
//! ends the run (recorded as a [`EngineFault`]) or, where a CPU fallback was prepared, moves
//! the worker to the CPU for the rest of the run, the failed frame included.

use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};

use super::{AbortOnPanic, Cancel, Clock, Job};
use crate::backbone::{Backbone, BackboneState, Features};
use crate::engine::fault::is_poisoning;
use crate::pipeline::analyze::Models;
use crate::pipeline::handoff::Handoff;
use crate::pipeline::record::{FrameFailure, FrameOutcome, FrameRecord, HeadResult};

/// The engine failure that ended a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineFault {
    /// The engine's error, whole.
    pub message: String,
    /// Whether it poisoned the GPU context (nothing more can run on it in this process).
    pub poisoned: bool,
    /// The frame it failed on.
    pub seq: u32,
}

/// Since when a run has been on the CPU fallback, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Degraded {
    /// The first frame run on the CPU.
    pub from_seq: u32,
    /// Its session.
    pub session_id: u32,
    /// The GPU error that caused it.
    pub reason: String,
}

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
    /// The CPU backbone to move to on a GPU fault, where the configuration allows it.
    pub fallback: Option<Backbone>,
    /// The first engine failure of the run (it ends the run).
    pub error: Arc<Mutex<Option<EngineFault>>>,
    /// Set by the first worker to move to the CPU.
    pub degraded: Arc<Mutex<Option<Degraded>>>,
    /// The clock.
    pub clock: Clock,
    /// The run's token.
    pub cancel: Cancel,
}

impl EngineWorker {
    /// Runs until its input closes and drains, or the engine fails; blocks.
    pub fn run(mut self) {
        let _guard = AbortOnPanic(self.cancel.clone());
        let mut on_fallback = false;
        while let Some(mut job) = self.input.pop() {
            let Some(pixels) = job.pixels.take() else {
                continue;
            };
            job.stamps.inference_start_us = self.clock.now_us();
            let features = match self.state.run(pixels.view()) {
                Ok(f) => f,
                Err(e) => match self.fall_back(&e.to_string(), &job, &pixels) {
                    Some(f) => {
                        on_fallback = true;
                        f
                    }
                    None => {
                        self.cancel.abort();
                        break;
                    }
                },
            };
            job.stamps.inferred_us = self.clock.now_us();
            if !on_fallback {
                job.stamps.gpu_us = self
                    .state
                    .last_gpu_ms()
                    .map(|ms| (ms * 1000.0).round() as u64);
            }
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
                degraded: on_fallback,
                controls: Vec::new(),
            });
        }
    }

    /// After the engine failed on `job`: moves this worker to the CPU fallback and runs the
    /// frame there, where the error poisoned the GPU and a fallback was prepared; otherwise
    /// records the failure, which ends the run. The input shape is fixed by the preprocessor,
    /// so a failure here is the engine's.
    fn fall_back(
        &mut self,
        message: &str,
        job: &Job,
        pixels: &ndarray::Array4<f32>,
    ) -> Option<Features> {
        let poisoned = is_poisoning(message);
        let seq = job.frame.start.seq;
        let record = |error: &Mutex<Option<EngineFault>>, message: String, poisoned| {
            if let Ok(mut w) = error.lock() {
                w.get_or_insert(EngineFault {
                    message,
                    poisoned,
                    seq,
                });
            }
        };
        let Some(cpu) = self.fallback.take().filter(|_| poisoned) else {
            record(&self.error, message.to_owned(), poisoned);
            return None;
        };
        tracing::error!("GPU fault on frame {seq}: {message}; carrying on with the CPU engine");
        let ran = cpu.state().and_then(|mut state| {
            let features = state.run(pixels.view())?;
            Ok((state, features))
        });
        match ran {
            Ok((state, features)) => {
                self.state = state;
                if let Ok(mut d) = self.degraded.lock() {
                    d.get_or_insert(Degraded {
                        from_seq: seq,
                        session_id: job.session_id,
                        reason: message.to_owned(),
                    });
                }
                Some(features)
            }
            Err(e) => {
                record(
                    &self.error,
                    format!("{message}; then the CPU fallback failed too: {e}"),
                    true,
                );
                None
            }
        }
    }
}
