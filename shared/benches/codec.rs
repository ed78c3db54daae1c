//! Encode and decode whole frames through the wire format: a 640x480 Gray8 frame in 4 KiB
//! packets and a 1920x1080 RGB frame in 64 KiB packets, each with two kinds of content
//! (ultrasound-like, with a black background, and noise). Throughput is in frame bytes.
//!
//! `cargo bench -p dinoedge-proto --bench codec`; the framing overhead is printed first.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dinoedge_proto::chunk::Chunks;
use dinoedge_proto::reassembly::{Reassembled, Reassembler, ReassemblerConfig};
use dinoedge_proto::wire::{self, Decoder, FrameCrc};
use dinoedge_proto::*;

struct Case {
    name: &'static str,
    width: u16,
    height: u16,
    format: PixelFormat,
    packet: usize,
}

const CASES: [Case; 2] = [
    Case {
        name: "640x480_gray8_4KiB",
        width: 640,
        height: 480,
        format: PixelFormat::Gray8,
        packet: 4096,
    },
    Case {
        name: "1920x1080_rgb888_64KiB",
        width: 1920,
        height: 1080,
        format: PixelFormat::Rgb888,
        packet: 65536,
    },
];

/// Deterministic pixels: `ultrasound` draws a speckled fan on black (about half the bytes
/// zero, as in a real B-mode frame); otherwise uniform noise.
fn pixels(case: &Case, ultrasound: bool) -> Vec<u8> {
    let bpp = (case.format.frame_len(1, 1).unwrap()) as usize;
    let (w, h) = (usize::from(case.width), usize::from(case.height));
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut data = vec![0u8; w * h * bpp];
    for y in 0..h {
        for x in 0..w {
            let inside = {
                let dx = x as f32 - w as f32 / 2.0;
                let dy = y as f32 + h as f32 * 0.1;
                let r = (dx * dx + dy * dy).sqrt();
                dx.abs() < dy * 0.7 && r < h as f32 * 1.05
            };
            let v = if !ultrasound || inside {
                (next() >> 24) as u8
            } else {
                0
            };
            for c in 0..bpp {
                data[(y * w + x) * bpp + c] = v;
            }
        }
    }
    data
}

/// What the edge does for one frame: CRC, start, chunks, all encoded onto `wire`.
fn encode_frame(seq: u32, case: &Case, data: &[u8], buf: &mut [u8], wire_out: &mut Vec<u8>) {
    let mut crc = FrameCrc::new();
    crc.update(data);
    let start = FrameStart {
        seq,
        capture_us: 0,
        width: case.width,
        height: case.height,
        format: case.format,
        total_len: data.len() as u32,
        frame_crc: Some(crc.value()),
        dropped_at_source: 0,
        meta: FrameMeta::default(),
    };
    wire_out.extend_from_slice(
        wire::encode_limited(&Message::FrameStart(start), case.packet, buf).unwrap(),
    );
    for chunk in Chunks::new(seq, data, wire::chunk_capacity(case.packet)) {
        wire_out.extend_from_slice(
            wire::encode_limited(&Message::FrameChunk(chunk), case.packet, buf).unwrap(),
        );
    }
}

/// What the host does: decode the stream and reassemble the frame.
fn decode_frame(
    bytes: &[u8],
    decoder: &mut Decoder<Vec<u8>>,
    reassembler: &mut Reassembler,
) -> usize {
    let mut input = bytes;
    let mut delivered = 0;
    while let Some(r) = decoder.decode(&mut input) {
        let msg = r.unwrap();
        reassembler.on_message(&msg, 0, &mut |o| match o {
            Reassembled::Frame(f) => delivered += f.data.len(),
            Reassembled::Lost(l) => panic!("lost {l:?}"),
        });
    }
    delivered
}

fn codec(c: &mut Criterion) {
    for case in &CASES {
        for (content, ultrasound) in [("ultrasound", true), ("noise", false)] {
            let data = pixels(case, ultrasound);
            let mut buf = vec![0u8; wire::encode_buffer_len(case.packet)];
            let mut wire_bytes = Vec::with_capacity(data.len() * 2);
            encode_frame(0, case, &data, &mut buf, &mut wire_bytes);
            let zeros = data.iter().filter(|&&b| b == 0).count() as f64 / data.len() as f64;
            println!(
                "{} {content}: frame {} B, wire {} B, overhead {:.3} %, zero bytes {:.0} %",
                case.name,
                data.len(),
                wire_bytes.len(),
                (wire_bytes.len() as f64 / data.len() as f64 - 1.0) * 100.0,
                zeros * 100.0
            );

            let mut group = c.benchmark_group(format!("{}/{content}", case.name));
            group.throughput(Throughput::Bytes(data.len() as u64));
            group.sample_size(30);
            group.bench_function("encode", |b| {
                let mut out = Vec::with_capacity(wire_bytes.len() + 1024);
                b.iter(|| {
                    out.clear();
                    encode_frame(0, case, black_box(&data), &mut buf, &mut out);
                    out.len()
                })
            });
            group.bench_function("decode", |b| {
                let mut decoder = Decoder::new(vec![0u8; wire::max_wire_len(case.packet)]);
                let mut reassembler = Reassembler::new(ReassemblerConfig {
                    max_chunk_len: wire::chunk_capacity(case.packet) as u32,
                    ..ReassemblerConfig::default()
                });
                b.iter(|| {
                    // A new session each time, so that seq 0 is a new frame.
                    reassembler.reset(&mut |_| {});
                    let n = decode_frame(black_box(&wire_bytes), &mut decoder, &mut reassembler);
                    assert_eq!(n, data.len());
                    n
                })
            });
            group.finish();
        }
    }
}

/// The hand-written in-place COBS against the `cobs` crate, on one 4 KiB packet of
/// ultrasound-like bytes (the reason the codec does its own stuffing).
fn cobs_alternatives(c: &mut Criterion) {
    let data = pixels(&CASES[0], true);
    let packet = &data[200 * 640..200 * 640 + 4096];
    let mut group = c.benchmark_group("cobs_4KiB_ultrasound");
    group.throughput(Throughput::Bytes(packet.len() as u64));
    let mut buf = vec![0u8; wire::encode_buffer_len(8192)];
    let chunk = Message::FrameChunk(FrameChunk {
        seq: 0,
        offset: 0,
        data: packet,
    });
    group.bench_function("dinoedge_encode_packet", |b| {
        b.iter(|| wire::encode(black_box(&chunk), &mut buf).unwrap().len())
    });
    let mut out = vec![0u8; cobs::max_encoding_length(packet.len())];
    group.bench_function("cobs_crate_stuff_only", |b| {
        b.iter(|| cobs::encode(black_box(packet), &mut out))
    });
    let stuffed_len = cobs::encode(packet, &mut out);
    let stuffed = out[..stuffed_len].to_vec();
    let mut back = vec![0u8; packet.len() + 16];
    group.bench_function("cobs_crate_unstuff_only", |b| {
        b.iter(|| cobs::decode(black_box(&stuffed), &mut back).unwrap())
    });
    let mut wire_bytes = wire::encode(&chunk, &mut buf).unwrap().to_vec();
    group.bench_function("dinoedge_decode_packet", |b| {
        let mut decoder = Decoder::new(vec![0u8; 8192]);
        b.iter(|| {
            let mut input = &wire_bytes[..];
            decoder.push(black_box(&mut input)).unwrap().unwrap()
        })
    });
    wire_bytes.clear();
    group.finish();
}

criterion_group!(benches, codec, cobs_alternatives);
criterion_main!(benches);
