//! Each stage on its own: fed by hand through its queues, no link, no model.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use dinoedge_proto::reassembly::Frame;
use dinoedge_proto::{Event, EventKind, FrameMeta, FrameStart, PixelFormat};
use tokio::sync::mpsc;

use super::ingest::Ingest;
use super::preprocess::Preprocess;
use super::{Cancel, Clock, Counters, DropReason, Job};
use crate::backbone::InputSize;
use crate::link::{EdgeInput, LinkEvent, ReceivedFrame};
use crate::pipeline::handoff::{Handoff, Overflow};
use crate::pipeline::record::{FrameFailure, FrameOutcome};
use crate::preprocess::{FramePreprocessor, PreprocessConfig, Preprocessor, Rect};

fn frame(seq: u32, width: u16, height: u16, data: Vec<u8>) -> Box<Frame> {
    Box::new(Frame {
        start: FrameStart {
            seq,
            capture_us: 0,
            width,
            height,
            format: PixelFormat::Gray8,
            total_len: data.len() as u32,
            frame_crc: None,
            dropped_at_source: 0,
            meta: FrameMeta::default(),
        },
        crc: 0,
        data,
        first_us: 0,
        last_us: 0,
    })
}

fn received(seq: u32) -> LinkEvent {
    LinkEvent::Frame(ReceivedFrame {
        frame: frame(seq, 8, 8, vec![seq as u8; 64]),
        session_id: 1,
        received_us: 100 + u64::from(seq),
        capture_host_us: Some(50),
    })
}

fn job(seq: u32, width: u16, height: u16, data: Vec<u8>) -> Job {
    Job {
        frame: frame(seq, width, height, data),
        session_id: 1,
        stamps: Default::default(),
        crop: Rect {
            x: 0,
            y: 0,
            width: u32::from(width),
            height: u32::from(height),
        },
        pixels: None,
    }
}

fn queues(capacity: usize, overflow: Overflow) -> (Arc<Handoff<Job>>, Arc<Handoff<Job>>, Cancel) {
    let a = Arc::new(Handoff::new(capacity, overflow));
    let b = Arc::new(Handoff::new(capacity, overflow));
    let cancel = Cancel::new(a.clone(), vec![a.clone(), b.clone()]);
    (a, b, cancel)
}

#[test]
fn ingest_under_live_keeps_the_newest_frame_and_counts_the_rest() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (tx, rx) = mpsc::channel(8);
    let pedal = |at_us| {
        LinkEvent::EdgeEvent(EdgeInput {
            event: Event {
                at_us,
                kind: EventKind::FootSwitchPressed,
            },
            session_id: 7,
            received_us: at_us,
            at_host_us: None,
        })
    };
    tx.try_send(pedal(1)).unwrap();
    for seq in 0..5 {
        tx.try_send(received(seq)).unwrap();
    }
    tx.try_send(pedal(2)).unwrap();
    tx.try_send(LinkEvent::Connected).unwrap();
    drop(tx);
    let (next, _, cancel) = queues(1, Overflow::ReplaceOldest);
    let counters = Arc::new(Counters::default());
    let (controls_tx, controls) = std::sync::mpsc::channel();
    Ingest {
        events: rx,
        next: next.clone(),
        counters: counters.clone(),
        capture_clock: false,
        cancel,
        controls: controls_tx,
    }
    .run(runtime.handle());
    // The edge's events go on in order, each with the newest frame taken before it.
    let told: Vec<_> = controls
        .try_iter()
        .map(|c| (c.input.event.at_us, c.after_seq))
        .collect();
    assert_eq!(told, vec![(1, None), (2, Some(4))]);
    assert_eq!(counters.received_total(), 5);
    assert_eq!(counters.dropped_total(DropReason::Superseded), 4);
    assert_eq!(counters.take_dropped_recently(), 4);
    let kept = next.pop().expect("the newest frame");
    assert_eq!(kept.frame.start.seq, 4);
    assert_eq!(kept.stamps.received_us, 104);
    assert_eq!(
        kept.stamps.capture_us, None,
        "a replay's capture clock is not used"
    );
    assert!(next.pop().is_none(), "closed once the events ended");
}

#[test]
fn ingest_told_to_stop_counts_what_the_link_had_handed_over() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (tx, rx) = mpsc::channel(8);
    for seq in 0..3 {
        tx.try_send(received(seq)).unwrap();
    }
    let (next, _, cancel) = queues(4, Overflow::Wait);
    cancel.stop();
    let counters = Arc::new(Counters::default());
    Ingest {
        events: rx,
        next,
        counters: counters.clone(),
        capture_clock: true,
        cancel,
        controls: std::sync::mpsc::channel().0,
    }
    .run(runtime.handle());
    assert_eq!(counters.received_total(), 3);
    assert_eq!(counters.dropped_total(DropReason::Stopped), 3);
    // The link learns that nobody listens any more.
    assert!(tx.is_closed());
}

#[test]
fn preprocess_hands_good_frames_on_and_fails_a_bad_one_by_itself() {
    let (input, next, cancel) = queues(4, Overflow::Wait);
    let (failed_tx, failed_rx) = sync_channel(4);
    input.push(job(0, 16, 16, vec![128; 256])).unwrap();
    // Declared 16x16 but 10 bytes: it cannot be preprocessed.
    input.push(job(1, 16, 16, vec![1; 10])).unwrap();
    input.push(job(2, 16, 16, vec![7; 256])).unwrap();
    input.close();
    let counters = Arc::new(Counters::default());
    Preprocess {
        input,
        next: next.clone(),
        failed: failed_tx,
        preprocessor: FramePreprocessor::Cpu(Preprocessor::new(PreprocessConfig::new(
            InputSize::new(16, 16),
        ))),
        moved_to_cpu: Default::default(),
        counters,
        clock: Clock::new(Instant::now()),
        cancel,
    }
    .run();
    let done: Vec<u32> = std::iter::from_fn(|| next.pop())
        .map(|j| {
            assert_eq!(
                j.pixels.as_ref().map(|p| p.shape().to_vec()),
                Some(vec![1, 3, 16, 16])
            );
            assert!(j.stamps.preprocessed_us >= j.stamps.preprocess_start_us);
            j.frame.start.seq
        })
        .collect();
    assert_eq!(done, vec![0, 2]);
    let bad = failed_rx
        .try_recv()
        .expect("the bad frame goes to the output");
    assert_eq!(bad.frame.start.seq, 1);
    assert!(matches!(
        &bad.outcome,
        FrameOutcome::Failed(FrameFailure::BadInput(_))
    ));
    assert!(bad.heads().is_empty());
}

#[test]
fn abort_closes_every_hand_off_and_stop_only_the_input() {
    let (input, next, cancel) = queues(2, Overflow::Wait);
    input.push(job(0, 1, 1, vec![0])).unwrap();
    cancel.stop();
    assert!(cancel.is_stopped());
    assert!(input.push(job(1, 1, 1, vec![0])).is_err());
    assert!(
        input.pop().is_some(),
        "what was taken in is still processed"
    );
    assert!(next.push(job(2, 1, 1, vec![0])).is_ok());
    cancel.abort();
    assert!(next.push(job(3, 1, 1, vec![0])).is_err());
}

mod gpu_fault {
    use std::sync::Mutex;

    use super::*;
    use crate::backbone::{Arch, Backbone, ModelDir, RuntimeOptions};
    use crate::engine::EngineRequest;
    use crate::pipeline::analyze::Models;
    use crate::pipeline::stage::engine::{EngineFault, EngineWorker};

    const STICKY: &str = "DriverError(CUDA_ERROR_ILLEGAL_ADDRESS, \"an illegal memory access\")";

    fn backbone() -> Backbone {
        let mut config = Arch::Vits16.config();
        config.hidden_size = 32;
        config.intermediate_size = 64;
        config.num_attention_heads = 2;
        config.num_hidden_layers = 1;
        let model = ModelDir {
            path: Default::default(),
            weights: crate::backbone::Weights::random(&config, 5),
            config,
            random_weights: true,
        };
        let options = RuntimeOptions {
            engine: EngineRequest::Cpu,
            ..RuntimeOptions::default()
        };
        Backbone::load(&model, InputSize::new(16, 16), &options).unwrap()
    }

    /// Runs one worker over frames 0..3 whose state fails after one run with `message`.
    fn run_worker(
        message: &str,
        fallback: bool,
    ) -> (
        Vec<crate::pipeline::record::FrameRecord>,
        Option<EngineFault>,
        Option<crate::pipeline::stage::engine::Degraded>,
    ) {
        let backbone = backbone();
        let models = Models {
            backbone: backbone.clone(),
            fallback: None,
            heads: Vec::new(),
            model_path: Default::default(),
        };
        let (input, _, cancel) = queues(4, Overflow::Wait);
        for seq in 0..3 {
            let mut j = job(seq, 16, 16, vec![0; 256]);
            j.pixels = Some(ndarray::Array4::zeros((1, 3, 16, 16)));
            input.push(j).unwrap();
        }
        input.close();
        let (tx, rx) = sync_channel(8);
        let error = Arc::new(Mutex::new(None));
        let degraded = Arc::new(Mutex::new(None));
        EngineWorker {
            input,
            output: tx,
            state: backbone.state().unwrap().failing_after(1, message),
            models,
            fallback: fallback.then_some(backbone),
            error: error.clone(),
            degraded: degraded.clone(),
            clock: Clock::new(Instant::now()),
            cancel,
        }
        .run();
        let records = rx.try_iter().collect();
        let e = error.lock().unwrap().clone();
        let d = degraded.lock().unwrap().clone();
        (records, e, d)
    }

    #[test]
    fn a_sticky_gpu_error_moves_the_worker_to_the_cpu_losing_no_frame() {
        let (records, error, degraded) = run_worker(STICKY, true);
        assert_eq!(error, None);
        let seqs: Vec<(u32, bool)> = records
            .iter()
            .map(|r| (r.frame.start.seq, r.degraded))
            .collect();
        assert_eq!(seqs, vec![(0, false), (1, true), (2, true)]);
        assert!(records.iter().all(|r| r.failure().is_none()));
        // The edge is told: results from the CPU carry DEGRADED, the others do not.
        let models = Models {
            backbone: backbone(),
            fallback: None,
            heads: Vec::new(),
            model_path: Default::default(),
        };
        let config = crate::pipeline::PipelineConfig::default();
        let degraded_flag = |r: &crate::pipeline::record::FrameRecord| {
            r.wire_result(&models, &config)
                .result
                .alarms
                .contains(dinoedge_proto::message::AlarmFlags::DEGRADED)
        };
        assert!(!degraded_flag(&records[0]));
        assert!(degraded_flag(&records[1]) && degraded_flag(&records[2]));
        let d = degraded.unwrap();
        assert_eq!((d.from_seq, d.session_id), (1, 1));
        assert!(d.reason.contains("CUDA_ERROR_ILLEGAL_ADDRESS"), "{d:?}");
    }

    #[test]
    fn without_a_fallback_a_sticky_error_ends_the_run_as_a_gpu_fault() {
        let (records, error, degraded) = run_worker(STICKY, false);
        assert_eq!(records.len(), 1);
        let e = error.unwrap();
        assert!(e.poisoned && e.seq == 1, "{e:?}");
        assert_eq!(degraded, None);
    }

    #[test]
    fn an_ordinary_engine_error_ends_the_run_even_with_a_fallback() {
        let (records, error, degraded) = run_worker("CUDA_ERROR_OUT_OF_MEMORY", true);
        assert_eq!(records.len(), 1);
        let e = error.unwrap();
        assert!(!e.poisoned && e.seq == 1, "{e:?}");
        assert_eq!(degraded, None);
    }
}
