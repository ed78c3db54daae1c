//! Frames from a capture on the host, the edge (the simulator: the firmware core) beside it on
//! a secure TCP link serving only its controls: it is granted no credit and sends no frame,
//! the capture's results reach it and raise its alarm output, and its foot switch reaches
//! the run in the result line of the next frame. Each step waits for the one before it (the
//! capture hands out a frame only when the test says so): no sleeps, no clocks.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use dinoedge::backbone::{InputSize, ModelDir};
use dinoedge::capture::{
    BufferSource, CaptureFormat, DeviceError, Layout, Next, RecordedBuffers, Timestamp,
};
use dinoedge::engine::EngineSetup;
use dinoedge::heads::{HeadFiles, Task};
use dinoedge::link::secure::{Keyring, LinkSecurity, SecureSource, keyring};
use dinoedge::link::{LiveSource, Transport};
use dinoedge::pipeline::{self, Input, Models, PipelineConfig, Policy};
use dinoedge_edge::port::SourceInfo;
use dinoedge_edge_sim::{SimConfig, SimControls, SimInput, SimTarget, run_sim};
use dinoedge_proto::PixelFormat;
use dinoedge_proto::secure::parse_key_block;

const W: u32 = 64;
/// Seconds after which a run stuck on a step is ended (the steps take about 2 s).
const HANG_GUARD_S: f64 = 120.0;
const H: u32 = 48;

/// Recorded buffers handed out one per token the test sends; the capture ends once the test
/// drops its sender and every token was used.
struct Gated {
    buffers: RecordedBuffers,
    tokens: mpsc::Receiver<()>,
}

impl BufferSource for Gated {
    fn layout(&self) -> Layout {
        self.buffers.layout()
    }

    fn describe(&self) -> String {
        "gated test buffers".into()
    }

    fn next(&mut self, timeout: Duration) -> Result<Next<'_>, DeviceError> {
        // A device waits for its next frame as long; here the frame comes when the test says.
        match self.tokens.recv_timeout(timeout) {
            Ok(()) => self.buffers.next(timeout),
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(Next::Timeout),
            Err(mpsc::RecvTimeoutError::Disconnected) => Ok(Next::End),
        }
    }

    fn release(&mut self) -> Result<(), DeviceError> {
        self.buffers.release()
    }
}

/// Where the run is: each step waits for what the one before it caused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Until the edge has a session.
    WaitForEdge,
    /// Frame 0 was let through; until its result reached the edge.
    WaitForResult,
    /// The foot switch is down; until the run has the event.
    WaitForEvent,
    /// Frame 1 was let through and the capture told to end.
    Ending,
}

#[test]
fn the_edge_serves_its_controls_while_the_host_captures_the_frames() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures/tiny_mlp");
    let model = ModelDir::load(&dir).unwrap();
    let size = InputSize::new(32, 32);
    // One class: its score is 1, over the edge's alarm threshold on every frame.
    let heads = vec![(
        PathBuf::from("classify"),
        HeadFiles::random(&model, Task::Classify, vec!["finding".into()], size, 1),
    )];
    let models = Models::from_files(&model, &dir, Some(size), heads, &EngineSetup::cpu(1)).unwrap();

    let keys = tempfile::tempdir().unwrap();
    let new = keyring::new_key(keys.path(), "controls-test", 0).unwrap();
    let (key, _) = parse_key_block(&std::fs::read(&new.firmware_file).unwrap()).unwrap();
    let security = LinkSecurity::new(Keyring::load(keys.path()).unwrap());
    let listening = LiveSource::new(Transport::TcpListen("127.0.0.1:0".parse().unwrap())).unwrap();
    let addr = listening.local_addr().unwrap();
    let edge = SecureSource::new(Box::new(listening), security.clone());

    let controls = SimControls::default();
    let sim_stop = std::sync::Arc::new(AtomicBool::new(false));
    let sim = {
        let controls = controls.clone();
        let stop = sim_stop.clone();
        std::thread::spawn(move || {
            run_sim(
                SimConfig {
                    duration: Some(Duration::from_secs(120)),
                    device_id: heapless::String::try_from("controls-test").unwrap(),
                    key: Some(key),
                    controls,
                    ..SimConfig::new(
                        SimInput::Pattern(SourceInfo {
                            width: 64,
                            height: 48,
                            format: PixelFormat::Gray8,
                            fps_milli: 30_000,
                        }),
                        SimTarget::TcpConnect(addr),
                    )
                },
                &stop,
            )
            .unwrap()
        })
    };

    let mut buffers = RecordedBuffers::new(Layout::packed(CaptureFormat::Grey, W, H));
    for i in 0..2u32 {
        let data = (0..W * H).map(|p| (p + 40 * i) as u8).collect();
        buffers.push(data, 10 + i, Timestamp::Unknown, false);
    }
    let (tokens, gate) = mpsc::channel();
    let mut tokens = Some(tokens);
    let config = PipelineConfig {
        policy: Policy::Offline,
        workers: 1,
        link_security: Some(security),
        ..PipelineConfig::default()
    };
    let mut step = Step::WaitForEdge;
    let mut alarm_after_first_result = false;
    let mut lines = Vec::new();
    let report = pipeline::run(
        &models,
        &config,
        Input::CaptureWithControls {
            capture: Box::new(Gated {
                buffers,
                tokens: gate,
            }),
            edge: Box::new(edge),
        },
        &AtomicBool::new(false),
        |record| lines.push(record.to_json(&models)),
        |status| {
            // Not a timing assertion: a run stuck on a step ends, and the asserts say which.
            if status.elapsed_s > HANG_GUARD_S {
                tokens = None;
            }
            let edge = status.controls.clone().unwrap_or_default();
            match step {
                Step::WaitForEdge if edge.sessions >= 1 && tokens.is_some() => {
                    tokens.as_ref().unwrap().send(()).unwrap();
                    step = Step::WaitForResult;
                }
                Step::WaitForResult if controls.results_seen.load(Ordering::Acquire) >= 1 => {
                    alarm_after_first_result = controls.alarm.load(Ordering::Relaxed);
                    controls.foot_switch.store(true, Ordering::Relaxed);
                    step = Step::WaitForEvent;
                }
                Step::WaitForEvent if status.edge_events >= 1 && tokens.is_some() => {
                    tokens.take().unwrap().send(()).unwrap();
                    step = Step::Ending;
                }
                _ => {}
            }
        },
    )
    .unwrap();
    sim_stop.store(true, Ordering::Relaxed);
    let sim = sim.join().unwrap();

    assert_eq!(step, Step::Ending);
    assert!(
        alarm_after_first_result,
        "the capture's result raised the edge's alarm output"
    );
    // Frames: the capture's two, each processed; none from the edge, which was never granted
    // credit and dropped what its sensor gave.
    assert_eq!(report.frames_processed, 2, "{report:?}");
    assert_eq!(report.lost_total(), 0);
    assert_eq!(sim.edge.frames_sent, 0);
    assert!(sim.edge.dropped_no_credit > 0, "{sim:?}");
    assert!(sim.edge.results_received >= 1, "{sim:?}");

    // The pedal is in the line of the frame that went out after it, naming the frame before.
    let [first, second] = lines.as_slice() else {
        panic!("{lines:?}")
    };
    assert_eq!(first["seq"], 10);
    assert_eq!(first["controls"], serde_json::json!([]));
    assert_eq!(second["seq"], 11);
    let pedal = &second["controls"][0];
    assert_eq!(pedal["kind"], "FootSwitchPressed", "{second}");
    assert_eq!(pedal["after_seq"], 10, "{second}");
    assert!(
        pedal["at_us"].is_u64(),
        "the edge's clock was known: {second}"
    );

    // The report: the event by kind, and the edge's side of the run, every result counted.
    assert_eq!(
        report.edge_events,
        [("FootSwitchPressed".to_owned(), 1)].into()
    );
    let controls = report.controls.unwrap();
    assert_eq!(controls.device.as_deref(), Some("controls-test"));
    assert!(controls.sessions >= 1);
    assert_eq!(controls.events, report.edge_events);
    assert_eq!(controls.results_sent + controls.results_not_sent, 2);
    assert!(controls.results_sent >= 1);
    assert_eq!(controls.frame_packets_unasked, 0);
    let capture = report.capture.unwrap();
    assert_eq!((capture.buffers, capture.frames), (2, 2));
}
