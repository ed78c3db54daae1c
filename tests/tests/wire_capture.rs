//! The host's capture tools over the protocol crate: a synthetic edge stream, clean and
//! damaged, taken apart again.

use std::collections::HashMap;

use dinoedge::proto::reassembly::ReassemblerConfig;
use dinoedge::proto::wire;
use dinoedge::wire_tools::{SynthConfig, inspect, inspect::InspectEvent, synthesize};

fn frames_of(
    capture: &[u8],
    packet: usize,
) -> (dinoedge::wire_tools::Inspection, HashMap<u32, Vec<u8>>) {
    let mut frames = HashMap::new();
    let config = ReassemblerConfig {
        max_chunk_len: wire::chunk_capacity(packet) as u32,
        ..ReassemblerConfig::default()
    };
    let summary = inspect(&mut &capture[..], packet, config, &mut |e| {
        if let InspectEvent::Frame(f) = e {
            assert!(
                frames.insert(f.start.seq, f.data.clone()).is_none(),
                "frame told twice"
            );
        }
    })
    .unwrap();
    (summary, frames)
}

#[test]
fn a_clean_capture_delivers_every_frame_bit_exact() {
    for crc_at_end in [false, true] {
        let config = SynthConfig {
            frames: 12,
            width: 320,
            height: 240,
            crc_at_end,
            ..SynthConfig::default()
        };
        let mut capture = Vec::new();
        let report = synthesize(&config, &mut capture).unwrap();
        assert_eq!(report.wire_bytes, capture.len() as u64);
        let (summary, frames) = frames_of(&capture, config.packet);
        assert_eq!(summary.frames_delivered, 12);
        assert_eq!(summary.lost_total(), 0);
        assert_eq!(summary.decoder.rejected(), 0);
        assert_eq!(summary.decoder.packets, report.packets);
        assert_eq!(frames.len(), 12);
        // Consecutive frames differ (the pattern moves), so a stale frame would show.
        assert_ne!(frames[&0], frames[&1]);
        assert!(frames.values().all(|f| f.len() == 320 * 240));
    }
}

#[test]
fn a_damaged_capture_explains_every_frame_and_delivers_nothing_corrupt() {
    let clean_config = SynthConfig {
        frames: 60,
        width: 160,
        height: 120,
        packet: 1024,
        ..SynthConfig::default()
    };
    let mut clean = Vec::new();
    synthesize(&clean_config, &mut clean).unwrap();
    let (_, reference) = frames_of(&clean, 1024);

    let damaged_config = SynthConfig {
        bit_error_rate: 2e-6,
        ..clean_config.clone()
    };
    let mut damaged = Vec::new();
    let report = synthesize(&damaged_config, &mut damaged).unwrap();
    assert!(report.flipped_bits > 5, "the line must actually be noisy");
    let (summary, frames) = frames_of(&damaged, 1024);
    for (seq, data) in &frames {
        assert_eq!(
            data, &reference[seq],
            "frame {seq} delivered with wrong bytes"
        );
    }
    assert!(summary.lost_total() > 0);
    assert!(summary.frames_delivered > 0);
    // Every frame is told exactly once: delivered, or lost with a reason (a frame whose every
    // packet was destroyed is counted from the gap in sequence numbers, unless it was the last).
    assert_eq!(summary.frames_delivered + summary.lost_total(), 60);
    assert!(summary.decoder.rejected() > 0);
}

#[test]
fn a_capture_cut_mid_packet_says_so() {
    let config = SynthConfig {
        frames: 2,
        width: 64,
        height: 64,
        ..SynthConfig::default()
    };
    let mut capture = Vec::new();
    synthesize(&config, &mut capture).unwrap();
    capture.truncate(capture.len() - 10);
    let (summary, frames) = frames_of(&capture, config.packet);
    assert_eq!(frames.len(), 1);
    assert!(summary.truncated_tail > 0);
    assert_eq!(summary.frames_lost.get("Incomplete"), Some(&1));
}
