//! Pinned wire bytes for one example of every message. A failing test here means the wire
//! format changed: that needs a new PROTOCOL_VERSION, and PROTOCOL.md must follow.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use dinoedge_proto::io::{PacketReader, ReadError};
use dinoedge_proto::wire::{self, DecodeError, Decoder, MalformedKind};
use dinoedge_proto::{Message, MessageKind};

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// (postcard body, full wire packet) per message, in wire-id order.
const GOLDEN: [(&str, &str); 18] = [
    (
        "00 03 07 55 53 2d 30 30 34 32 01 02 03 80 05 e0 03 00 b0 ea 01 80 20 80 08 0c 00",
        "01 11 03 07 55 53 2d 30 30 34 32 01 02 03 80 05 e0 03 09 b0 ea 01 80 20 80 08 0c 05 8e 07 b5 21 00",
    ),
    (
        "01 03 07 80 20 80 08 04 01 00 00 80 05 e0 03 00",
        "0a 01 03 07 80 20 80 08 04 01 01 05 80 05 e0 03 05 a8 03 bf 7f 00",
    ),
    ("02 00 03 03", "02 02 07 03 03 ee 15 69 39 00"),
    (
        "03 01 c0 84 3d 04 02 00 08 01 f8 ac d1 91 01 00 01 03 05 00 04 43 35 2d 31 01 08 64 65 70 74 68 5f 6d 6d 03 31 32 30",
        "08 03 01 c0 84 3d 04 02 08 08 01 f8 ac d1 91 01 04 01 03 05 18 04 43 35 2d 31 01 08 64 65 70 74 68 5f 6d 6d 03 31 32 30 90 1f 7d f1 00",
    ),
    (
        "04 01 00 04 00 01 02 03",
        "03 04 01 02 04 08 01 02 03 e8 25 62 18 00",
    ),
    (
        "05 01 f8 ac d1 91 01",
        "0c 05 01 f8 ac d1 91 01 97 4a e7 e8 00",
    ),
    ("06 ac 02", "08 06 ac 02 69 37 70 17 00"),
    (
        "07 01 c0 84 3d d0 0f 64 dc 0b c0 b8 02 f4 03 c4 d8 02 02 02 00 00 40 3f 00 00 00 80 3e 01 01 00 00 00 3f 0a 14 64 32 00 00 70 42 00 00 34 42 01 04 02 04 00 03 01 05 01",
        "15 07 01 c0 84 3d d0 0f 64 dc 0b c0 b8 02 f4 03 c4 d8 02 02 02 01 03 40 3f 01 01 05 80 3e 01 01 01 01 06 3f 0a 14 64 32 01 03 70 42 01 07 34 42 01 04 02 04 09 03 01 05 01 7d d9 c8 f3 00",
    ),
    (
        "08 c0 96 b1 02 96 01 03 a0 01 01",
        "10 08 c0 96 b1 02 96 01 03 a0 01 01 1b 8d 39 ce 00",
    ),
    ("09 01 e8 07", "09 09 01 e8 07 e6 16 4d 55 00"),
    ("0a 01 e8 07 d0 0f", "0b 0a 01 e8 07 d0 0f a9 0c 3a 2a 00"),
    (
        "0b 7b 04 03 4c 31 32",
        "0c 0b 7b 04 03 4c 31 32 3e 5d b1 6e 00",
    ),
    (
        "0c 03 0b 73 65 6e 73 6f 72 20 77 61 72 6d",
        "13 0c 03 0b 73 65 6e 73 6f 72 20 77 61 72 6d c8 97 44 ba 00",
    ),
    (
        "0d 01 08 6e 6f 20 76 73 79 6e 63",
        "10 0d 01 08 6e 6f 20 76 73 79 6e 63 77 81 c7 30 00",
    ),
    (
        "0e 03 a1 b2 c3 d4 e5 f6 07 18 30 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d 1e 1f 20 21 22 23 24 25 26 27 28 29 2a 2b 2c 2d 2e 2f",
        "0c 0e 03 a1 b2 c3 d4 e5 f6 07 18 30 34 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d 1e 1f 20 21 22 23 24 25 26 27 28 29 2a 2b 2c 2d 2e 2f c0 66 f4 9b 00",
    ),
    (
        "0f 30 64 65 66 67 68 69 6a 6b 6c 6d 6e 6f 70 71 72 73 74 75 76 77 78 79 7a 7b 7c 7d 7e 7f 80 81 82 83 84 85 86 87 88 89 8a 8b 8c 8d 8e 8f 90 91 92 93",
        "37 0f 30 64 65 66 67 68 69 6a 6b 6c 6d 6e 6f 70 71 72 73 74 75 76 77 78 79 7a 7b 7c 7d 7e 7f 80 81 82 83 84 85 86 87 88 89 8a 8b 8c 8d 8e 8f 90 91 92 93 aa 5a 75 31 00",
    ),
    ("10 02 03 03", "09 10 02 03 03 94 5e fd c0 00"),
    (
        "11 ac 02 14 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10 11 12 13 14",
        "1d 11 ac 02 14 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10 11 12 13 14 d5 97 0a 7b 00",
    ),
];

/// (postcard body, full wire packet) of `common::hello_after_lost_session()`: a `Hello` whose
/// `previous` is set.
const HELLO_AFTER_LOST_SESSION: (&str, &str) = (
    "00 03 07 55 53 2d 30 30 34 32 01 02 03 80 05 e0 03 00 b0 ea 01 80 20 80 08 0c 01 07 ac 02",
    "01 11 03 07 55 53 2d 30 30 34 32 01 02 03 80 05 e0 03 11 b0 ea 01 80 20 80 08 0c 01 07 ac 02 54 dd ef b1 00",
);

/// The sample `Hello` as a version 1 edge sends it (the version 1 golden vector): no
/// `previous` field.
const V1_HELLO_BODY: &str =
    "00 01 07 55 53 2d 30 30 34 32 01 02 03 80 05 e0 03 00 b0 ea 01 80 20 80 08 0c";
const V1_HELLO_PACKET: &str = "01 11 01 07 55 53 2d 30 30 34 32 01 02 03 80 05 e0 03 0d b0 ea 01 80 20 80 08 0c 4f 6d ff 9e 00";

fn unhex(text: &str) -> Vec<u8> {
    text.split(' ')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect()
}

fn encodings(msg: &Message<'_>) -> (String, String) {
    let body = postcard::to_allocvec(msg).unwrap();
    let mut buf = vec![0u8; 1024];
    let packet = wire::encode(msg, &mut buf).unwrap();
    (hex(&body), hex(packet))
}

#[test]
fn every_message_has_pinned_bytes() {
    let samples = common::samples();
    assert_eq!(samples.len(), MessageKind::ALL.len());
    let mut mismatch = false;
    for (i, msg) in samples.iter().enumerate() {
        assert_eq!(msg.kind(), MessageKind::ALL[i]);
        let (body, packet) = encodings(msg);
        if (body.as_str(), packet.as_str()) != GOLDEN[i] {
            mismatch = true;
            println!("    (\"{body}\",\n     \"{packet}\"),");
        }
    }
    assert!(
        !mismatch,
        "wire bytes changed; the new ones are printed above"
    );
}

#[test]
fn a_hello_after_a_lost_session_has_pinned_bytes() {
    let msg = common::hello_after_lost_session();
    let (body, packet) = encodings(&msg);
    assert_eq!((body.as_str(), packet.as_str()), HELLO_AFTER_LOST_SESSION);
    let bytes = unhex(HELLO_AFTER_LOST_SESSION.1);
    let mut decoder = Decoder::new([0u8; 512]);
    assert_eq!(decoder.decode(&mut &bytes[..]).unwrap().unwrap(), msg);
}

/// A version 1 edge's `Hello` does not parse as this version's, but is told apart from
/// damage: the decoder names its version, counts it on its own, and goes on.
#[test]
fn a_version_1_hello_is_told_by_its_version() {
    let ping = common::samples()[9].clone();
    let mut stream = unhex(V1_HELLO_PACKET);
    stream.extend(unhex(&encodings(&ping).1));

    let mut decoder = Decoder::new([0u8; 512]);
    let mut input = &stream[..];
    assert_eq!(
        decoder.decode(&mut input).unwrap(),
        Err(DecodeError::OtherVersionHello { version: 1 })
    );
    assert_eq!(
        decoder.decode(&mut input).unwrap().unwrap(),
        ping,
        "the next packet decodes"
    );
    let stats = decoder.stats();
    assert_eq!(stats.other_version_hellos, 1);
    assert_eq!(stats.rejected(), 0, "not counted as damage");
    assert_eq!(stats.packets, 1);

    // The same through a stream reader, whose error carries it.
    let mut reader = PacketReader::new(&stream[..], 1024);
    assert!(matches!(
        reader.next_message(),
        Err(ReadError::Decode(DecodeError::OtherVersionHello {
            version: 1
        }))
    ));
    assert!(matches!(reader.next_message(), Ok(Some(Message::Ping(_)))));
}

/// A `Hello` of this version that does not parse is damage, as before.
#[test]
fn a_malformed_hello_of_this_version_stays_malformed() {
    let mut body = unhex(&encodings(&common::samples()[0]).0);
    body.pop(); // `previous` cut off
    let crc = wire::crc32(&body);
    body.extend(crc.to_le_bytes());
    assert_eq!(
        wire::decode_packet(&body),
        Err(DecodeError::Malformed {
            kind: MalformedKind::Truncated,
            wire_id: 0
        })
    );
}

#[test]
fn pinned_bytes_decode_to_the_samples() {
    for (msg, (_, packet)) in common::samples().iter().zip(GOLDEN) {
        let bytes = unhex(packet);
        let mut decoder = Decoder::new([0u8; 512]);
        let mut input = &bytes[..];
        assert_eq!(&decoder.decode(&mut input).unwrap().unwrap(), msg);
    }
}

/// PROTOCOL.md shows these same bytes; keep the document honest.
#[test]
fn protocol_document_shows_the_pinned_bytes() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/PROTOCOL.md")).unwrap();
    let flat = doc.split_whitespace().collect::<Vec<_>>().join(" ");
    let labelled = MessageKind::ALL
        .iter()
        .map(|kind| format!("{kind:?}"))
        .zip(GOLDEN)
        .chain([
            (
                "Hello after a lost session".to_string(),
                HELLO_AFTER_LOST_SESSION,
            ),
            (
                "version 1 Hello".to_string(),
                (V1_HELLO_BODY, V1_HELLO_PACKET),
            ),
        ]);
    for (kind, (body, packet)) in labelled {
        assert!(
            flat.contains(body),
            "PROTOCOL.md lacks the body of {kind}: {body}"
        );
        assert!(
            flat.contains(packet),
            "PROTOCOL.md lacks the packet of {kind}: {packet}"
        );
    }
}
