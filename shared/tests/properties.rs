//! Property tests: round trips, any split of a stream, reassembly under faults.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::{encode_stream, message};
use dinoedge_proto::chunk::Chunks;
use dinoedge_proto::reassembly::{Reassembled, Reassembler, ReassemblerConfig};
use dinoedge_proto::wire::{self, DecodeError, Decoder};
use dinoedge_proto::*;
use proptest::collection::vec;
use proptest::prelude::*;

/// Cases per property: the default here, or `PROPTEST_CASES` for a longer hunt.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Decodes a whole stream fed in pieces of the given sizes (cycled), as debug strings so
/// that errors and messages compare alike.
fn decode_in_pieces(
    stream: &[u8],
    pieces: &[usize],
    buf_len: usize,
) -> Vec<Result<String, DecodeError>> {
    let mut decoder = Decoder::new(vec![0u8; buf_len]);
    let mut out = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < stream.len() {
        let take = pieces[i % pieces.len()].max(1).min(stream.len() - pos);
        i += 1;
        let mut input = &stream[pos..pos + take];
        pos += take;
        while let Some(r) = decoder.decode(&mut input) {
            out.push(r.map(|m| format!("{m:?}")));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(512)))]

    #[test]
    fn every_message_round_trips(msg in message(600)) {
        let mut buf = vec![0u8; wire::encode_buffer_len(wire::serialized_len(&msg) + wire::CRC_LEN)];
        let bytes = wire::encode(&msg, &mut buf).unwrap().to_vec();
        prop_assert_eq!(bytes.last(), Some(&0u8));
        prop_assert!(!bytes[..bytes.len() - 1].contains(&0));
        prop_assert!(bytes.len() <= wire::max_wire_len(wire::serialized_len(&msg) + wire::CRC_LEN));
        let mut decoder = Decoder::new(vec![0u8; bytes.len()]);
        let mut input = &bytes[..];
        let decoded = decoder.decode(&mut input).unwrap().unwrap();
        prop_assert_eq!(&decoded, &msg);
        prop_assert!(input.is_empty());
    }

    #[test]
    fn any_split_decodes_the_same(
        msgs in vec(message(300), 1..12),
        pieces in vec(1usize..200, 1..8),
        garbage in vec(any::<u8>(), 0..40),
    ) {
        // Garbage up front exercises resynchronisation in every split as well.
        let mut stream = garbage;
        stream.push(0);
        stream.extend(encode_stream(&msgs));
        let whole = decode_in_pieces(&stream, &[stream.len()], 4096);
        let bytewise = decode_in_pieces(&stream, &[1], 4096);
        let split = decode_in_pieces(&stream, &pieces, 4096);
        prop_assert_eq!(&whole, &bytewise);
        prop_assert_eq!(&whole, &split);
        let valid: Vec<String> = whole.iter().filter_map(|r| r.clone().ok()).collect();
        let expected: Vec<String> = msgs.iter().map(|m| format!("{m:?}")).collect();
        // Every message comes through; garbage yields at most errors (or, with odds of
        // 2^-32, a packet), before them.
        prop_assert!(valid.ends_with(&expected));
    }

    #[test]
    fn encode_never_overflows_a_small_buffer(msg in message(300), len in 0usize..400) {
        let mut buf = vec![0u8; len];
        match wire::encode(&msg, &mut buf) {
            Ok(bytes) => {
                let mut d = Decoder::new(vec![0u8; 1024]);
                let mut input = bytes;
                prop_assert_eq!(d.decode(&mut input).unwrap().unwrap(), msg);
            }
            Err(wire::EncodeError::BufferTooSmall { needed, .. }) => {
                prop_assert!(needed > len);
                let mut big = vec![0u8; needed];
                prop_assert!(wire::encode(&msg, &mut big).is_ok());
            }
            Err(e) => prop_assert!(false, "unexpected {e:?}"),
        }
    }
}

/// A fault applied to one packet of a frame stream.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Keep,
    Drop,
    Duplicate,
    SwapWithNext,
    FlipBit,
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        20 => Just(Fault::Keep),
        1 => Just(Fault::Drop),
        1 => Just(Fault::Duplicate),
        1 => Just(Fault::SwapWithNext),
        1 => Just(Fault::FlipBit),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    /// Frames pass through the wire and the reassembler with packets dropped, repeated,
    /// swapped and corrupted: every frame seen ends exactly once, delivered bytes are exact,
    /// and frames no fault touched are delivered.
    #[test]
    fn reassembly_reports_every_frame_exactly_once(
        frames in vec((1u16..40, 1u16..12, any::<u64>(), any::<bool>()), 1..10),
        max_chunk in 8usize..80,
        faults in vec(fault(), 0..400),
    ) {
        // Build the packets, remembering which frame each belongs to.
        let mut datas = Vec::new();
        for (i, &(w, h, seed, _)) in frames.iter().enumerate() {
            let mut rng = common::SplitMix(seed ^ i as u64);
            let mut data = vec![0u8; usize::from(w) * usize::from(h)];
            rng.fill(&mut data);
            datas.push(data);
        }
        let mut packets: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut buf = vec![0u8; 4096];
        for (i, &(w, h, _, crc_at_end)) in frames.iter().enumerate() {
            let seq = i as u32;
            let data = &datas[i];
            let crc = wire::crc32(data);
            let start = FrameStart {
                seq,
                capture_us: i as u64 * 33_333,
                width: w,
                height: h,
                format: PixelFormat::Gray8,
                total_len: data.len() as u32,
                frame_crc: (!crc_at_end).then_some(crc),
                dropped_at_source: 0,
                meta: FrameMeta::default(),
            };
            packets.push((i, wire::encode(&Message::FrameStart(start), &mut buf).unwrap().to_vec()));
            for chunk in Chunks::new(seq, data, max_chunk) {
                packets.push((i, wire::encode(&Message::FrameChunk(chunk), &mut buf).unwrap().to_vec()));
            }
            if crc_at_end {
                let end = FrameEnd { seq, frame_crc: crc };
                packets.push((i, wire::encode(&Message::FrameEnd(end), &mut buf).unwrap().to_vec()));
            }
        }
        // Apply the faults, one per packet position.
        let mut touched = vec![false; frames.len()];
        let mut stream = Vec::new();
        let mut k = 0;
        while k < packets.len() {
            let f = faults.get(k).copied().unwrap_or(Fault::Keep);
            let (frame, bytes) = &packets[k];
            match f {
                Fault::Keep => stream.extend_from_slice(bytes),
                Fault::Drop => touched[*frame] = true,
                Fault::Duplicate => {
                    touched[*frame] = true;
                    stream.extend_from_slice(bytes);
                    stream.extend_from_slice(bytes);
                }
                Fault::SwapWithNext if k + 1 < packets.len() => {
                    let (next_frame, next) = &packets[k + 1];
                    touched[*frame] = true;
                    touched[*next_frame] = true;
                    stream.extend_from_slice(next);
                    stream.extend_from_slice(bytes);
                    k += 1;
                }
                Fault::SwapWithNext => stream.extend_from_slice(bytes),
                Fault::FlipBit => {
                    touched[*frame] = true;
                    let mut b = bytes.clone();
                    let at = (k * 7) % (b.len() - 1);
                    b[at] ^= 1 << (k % 8);
                    stream.extend_from_slice(&b);
                }
            }
            k += 1;
        }
        // Decode and reassemble.
        let mut decoder = Decoder::new(vec![0u8; 4096]);
        let mut reassembler = Reassembler::new(ReassemblerConfig {
            max_chunk_len: max_chunk as u32,
            ..ReassemblerConfig::default()
        });
        let mut outcomes: Vec<Reassembled> = Vec::new();
        // As after a Welcome: the session's first frame is seq 0.
        reassembler.reset(&mut |o| outcomes.push(o));
        let mut input = &stream[..];
        let mut seen = vec![false; frames.len()];
        while let Some(r) = decoder.decode(&mut input) {
            if let Ok(msg) = r {
                let seq = match &msg {
                    Message::FrameStart(s) => s.seq,
                    Message::FrameChunk(c) => c.seq,
                    Message::FrameEnd(e) => e.seq,
                    _ => unreachable!(),
                };
                seen[seq as usize] = true;
                reassembler.on_message(&msg, 0, &mut |o| outcomes.push(o));
            }
        }
        reassembler.flush(&mut |o| outcomes.push(o));

        let mut told = vec![0u32; frames.len()];
        for o in &outcomes {
            match o {
                Reassembled::Frame(f) => {
                    let i = f.start.seq as usize;
                    told[i] += 1;
                    prop_assert_eq!(&f.data, &datas[i], "frame {} delivered with wrong bytes", i);
                }
                Reassembled::Lost(l) => {
                    for i in l.seq..l.seq + l.frames() {
                        let i = i as usize;
                        told[i] += 1;
                        prop_assert!(touched[i], "frame {} lost without a fault: {:?}", i, l.reason);
                    }
                }
            }
        }
        // Every frame up to the last one seen is told exactly once; frames after it (wholly
        // lost at the end of the stream) cannot be known.
        let last = seen.iter().rposition(|&s| s);
        for (i, &times) in told.iter().enumerate() {
            let expected = u32::from(last.is_some_and(|l| i <= l));
            prop_assert_eq!(times, expected, "frame {} told {} times", i, times);
        }
        let stats = reassembler.stats();
        prop_assert_eq!(stats.delivered + stats.lost, told.iter().map(|&t| u64::from(t)).sum::<u64>());
    }
}
