//! The tokio packet reader and writer (feature `tokio`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use dinoedge_proto::io::{AsyncPacketReader, AsyncPacketWriter};

#[tokio::test]
async fn tokio_reader_and_writer_over_a_duplex_pipe() {
    let (a, b) = tokio::io::duplex(64);
    let samples = common::samples();
    let sent = samples.clone();
    let writer = tokio::spawn(async move {
        let mut w = AsyncPacketWriter::new(a, 4096);
        for m in &sent {
            w.send(m).await.unwrap();
        }
        w.flush().await.unwrap();
    });
    let mut reader = AsyncPacketReader::new(b, 4096);
    let mut got = Vec::new();
    while let Some(m) = reader.next_message().await.unwrap() {
        got.push(format!("{m:?}"));
    }
    writer.await.unwrap();
    let expected: Vec<String> = samples.iter().map(|m| format!("{m:?}")).collect();
    assert_eq!(got, expected);
}
