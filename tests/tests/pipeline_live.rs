//! The pipeline on a live, secure TCP link from the edge simulator: every frame is accounted
//! for (processed or superseded), results go back to the edge, latency is measured from
//! capture, and the report carries the audit trail.
//! The pipeline serves one connection and ends when the edge hangs up: no sleeps, no clocks.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use dinoedge::backbone::{InputSize, ModelDir};
use dinoedge::engine::EngineSetup;
use dinoedge::link::secure::{Keyring, LinkSecurity, SecureSource, keyring};
use dinoedge::link::{Limited, LiveSource, Transport};
use dinoedge::pipeline::{self, Input, Models, PipelineConfig, Policy};
use dinoedge_edge::port::SourceInfo;
use dinoedge_edge_sim::{SimConfig, SimInput, SimTarget, run_sim};
use dinoedge_proto::PixelFormat;
use dinoedge_proto::secure::parse_key_block;

#[test]
fn a_live_link_gets_a_result_for_every_processed_frame() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures/tiny_mlp");
    let model = ModelDir::load(&dir).unwrap();
    let models = Models::load(
        &model,
        &dir,
        Some(InputSize::new(64, 64)),
        &[],
        &EngineSetup::cpu(1),
    )
    .unwrap();
    let keys = tempfile::tempdir().unwrap();
    let new = keyring::new_key(keys.path(), "live-test", 0).unwrap();
    let (key, _) = parse_key_block(&std::fs::read(&new.firmware_file).unwrap()).unwrap();
    let security = LinkSecurity::new(Keyring::load(keys.path()).unwrap());
    // Bound before the edge starts; the run ends when the edge's one connection does.
    let source = LiveSource::new(Transport::TcpListen("127.0.0.1:0".parse().unwrap())).unwrap();
    let addr = source.local_addr().unwrap();
    let source = SecureSource::new(Box::new(source), security.clone());
    let run = std::thread::spawn(move || {
        let config = PipelineConfig {
            policy: Policy::Live,
            workers: 1,
            // The source is secured above; the report reads the trail from here.
            link_security: Some(security),
            ..PipelineConfig::default()
        };
        // Results in order, each whether its latency ran from capture.
        let mut from_capture = Vec::new();
        let report = pipeline::run(
            &models,
            &config,
            Input::Source(Box::new(Limited::new(source, 1))),
            &AtomicBool::new(false),
            |r| {
                from_capture.push(r.stamps.from_capture());
            },
            |_| {},
        )
        .unwrap();
        (report, from_capture)
    });
    let sim_stop = AtomicBool::new(false);
    let sim = run_sim(
        SimConfig {
            max_frames: Some(60),
            duration: Some(Duration::from_secs(30)),
            device_id: heapless::String::try_from("live-test").unwrap(),
            key: Some(key),
            ..SimConfig::new(
                SimInput::Pattern(SourceInfo {
                    width: 96,
                    height: 64,
                    format: PixelFormat::Gray8,
                    fps_milli: 60_000,
                }),
                SimTarget::TcpConnect(addr),
            )
        },
        &sim_stop,
    )
    .unwrap();
    let (report, from_capture) = run.join().unwrap();
    assert!(sim.edge.frames_sent >= 60, "{:?}", sim.edge);
    assert_eq!(sim.edge.secure_handshakes, 1);
    let security = report.security.clone().unwrap();
    assert_eq!(security.handshakes_accepted, 1);
    assert_eq!(security.packets_forged + security.packets_replayed, 0);
    let json = serde_json::to_value(&report).unwrap();
    let entry = &json["security"]["audit"][0];
    assert_eq!(entry["outcome"], "accepted", "{json}");
    assert_eq!(entry["device_id"], "live-test");
    assert_eq!(entry["key_id"], new.id.to_string());
    assert!(entry["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    let told = report.frames_received + report.lost_total();
    assert!(
        told >= 60,
        "received {} lost {:?}",
        report.frames_received,
        report.lost
    );
    assert_eq!(
        report.frames_processed + report.dropped_total(),
        report.frames_received,
        "every received frame is processed or counted as dropped: {:?}",
        report.dropped
    );
    assert!(report.frames_processed > 0);
    // A result either reached the edge or is counted as not sent (the simulator hangs up
    // right after its last frame, so the last results find no session).
    assert_eq!(
        report.link.results_sent + report.link.results_stale,
        report.frames_processed
    );
    assert!(report.link.results_stale <= 3, "{:?}", report.link);
    // Once the edge clock is mapped through Ping/Pong (the host pings at once), latency can run
    // from capture. How many results come before the first Pong, and whether a capture time
    // mapped through an offset estimated on a loaded machine lands before the arrival (only
    // then is it used), depend on timing, so only the mapping's existence is asserted.
    assert!(
        from_capture.iter().any(|&c| c),
        "no result measured from capture: {from_capture:?}"
    );
}
