//! The CRC-32 of packets and frames against the published CRC-32/ISO-HDLC check values and a
//! bit-at-a-time implementation written from the definition (reflected polynomial 0xEDB88320,
//! initial value and final XOR 0xFFFFFFFF), so that a table or SIMD shortcut in the crate's
//! CRC cannot drift from what the other end of the link computes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use dinoedge_proto::wire::{self, FrameCrc};

/// CRC-32/ISO-HDLC, one bit at a time.
fn bitwise(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Inputs of many lengths, long enough to reach the vectorised paths (64 bytes and up).
fn inputs() -> Vec<Vec<u8>> {
    let mut rng = common::SplitMix(0xc4c3_2000);
    [
        0usize, 1, 3, 15, 16, 63, 64, 65, 127, 128, 255, 1000, 4096, 65_537,
    ]
    .iter()
    .map(|&n| (0..n).map(|_| rng.next_u64() as u8).collect())
    .collect()
}

#[test]
fn the_check_values_of_crc32_iso_hdlc() {
    assert_eq!(bitwise(b"123456789"), 0xcbf4_3926, "the reference itself");
    assert_eq!(wire::crc32(b"123456789"), 0xcbf4_3926);
    assert_eq!(wire::crc32(b""), 0);
    let mut frame = FrameCrc::new();
    assert_eq!(frame.value(), 0, "a frame CRC over nothing");
    frame.update(b"1234");
    frame.update(b"");
    frame.update(b"56789");
    assert_eq!(frame.value(), 0xcbf4_3926, "the frame CRC, in pieces");
}

#[test]
fn packet_and_frame_crcs_match_the_bitwise_definition() {
    for data in inputs() {
        let want = bitwise(&data);
        assert_eq!(wire::crc32(&data), want, "{} bytes", data.len());
        let mut frame = FrameCrc::new();
        // Uneven pieces, as chunks arrive.
        for piece in data.chunks(37) {
            frame.update(piece);
        }
        assert_eq!(frame.value(), want, "frame CRC over {} bytes", data.len());
    }
}

/// The CRC that ends every packet on the wire: unstuffed by the `cobs` crate (not the crate's
/// own COBS), it is the little-endian CRC-32 of the message bytes before it.
#[test]
fn every_packet_ends_with_the_crc_of_its_message() {
    let mut buf = vec![0u8; 1 << 16];
    for msg in common::samples() {
        let packet = wire::encode(&msg, &mut buf).unwrap();
        let (&delimiter, stuffed) = packet.split_last().unwrap();
        assert_eq!(delimiter, wire::DELIMITER);
        let body = cobs::decode_vec(stuffed).unwrap();
        let (message, crc) = body.split_at(body.len() - wire::CRC_LEN);
        assert_eq!(crc, bitwise(message).to_le_bytes(), "{:?}", msg.kind());
    }
}
