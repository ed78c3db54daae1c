//! The std and tokio packet readers and writers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use dinoedge_proto::io::{PacketReader, PacketWriter, ReadError};
use dinoedge_proto::wire::{DecodeError, EncodeError};
use dinoedge_proto::*;

#[test]
fn blocking_round_trip_survives_damage_and_reports_truncation() {
    let samples = common::samples();
    let mut wire_bytes = Vec::new();
    let mut writer = PacketWriter::new(&mut wire_bytes, 4096);
    for m in &samples {
        writer.send(m).unwrap();
    }
    // Damage the third packet, and cut the stream inside a last one.
    let third = wire_bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == 0)
        .nth(1)
        .unwrap()
        .0
        + 3;
    wire_bytes[third] ^= 0x40;
    wire_bytes.extend_from_slice(&[0x05, 0x09, 0x01]);

    let mut reader = PacketReader::new(&wire_bytes[..], 4096);
    let mut got = Vec::new();
    let mut errors = Vec::new();
    loop {
        match reader.next_message() {
            Ok(Some(m)) => got.push(format!("{m:?}")),
            Ok(None) => break,
            Err(ReadError::Decode(e)) => errors.push(e),
            Err(ReadError::Truncated { pending }) => {
                assert_eq!(pending, 3);
                errors.push(DecodeError::NoPacket);
            }
            Err(e) => panic!("{e}"),
        }
    }
    let expected: Vec<String> = samples
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 2)
        .map(|(_, m)| format!("{m:?}"))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(matches!(
        errors[0],
        DecodeError::Crc { .. } | DecodeError::Cobs { .. }
    ));
    assert_eq!(reader.stats().packets, samples.len() as u64 - 1);
}

#[test]
fn writer_refuses_a_packet_over_the_negotiated_size() {
    let data = [7u8; 2000];
    let chunk = Message::FrameChunk(FrameChunk {
        seq: 0,
        offset: 0,
        data: &data,
    });
    let mut sink = Vec::new();
    let mut writer = PacketWriter::new(&mut sink, 1024);
    let err = writer.send(&chunk).unwrap_err();
    assert!(matches!(
        err,
        dinoedge_proto::io::WriteError::Encode(EncodeError::PacketTooLarge { max: 1024, .. })
    ));
    drop(writer);
    assert!(
        sink.is_empty(),
        "nothing of a refused packet reaches the link"
    );
}

#[test]
fn a_stream_cut_inside_an_oversize_packet_is_reported_as_truncated() {
    // 3000 non-zero bytes and no delimiter, into a reader for 1 KiB packets.
    let noise = vec![0x55u8; 3000];
    let mut reader = PacketReader::new(&noise[..], 1024);
    assert!(matches!(
        reader.next_message(),
        Err(ReadError::Decode(DecodeError::Oversize { .. }))
    ));
    match reader.next_message() {
        Err(ReadError::Truncated { pending }) => assert_eq!(pending, 3000),
        other => panic!("expected Truncated, got {other:?}"),
    }
    assert!(reader.next_message().unwrap().is_none());
}
