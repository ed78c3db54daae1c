//! The replay source waits for the host's credit the way an edge does, on tokio's paused
//! clock: "blocked" means the clock had to jump an hour ahead with nothing fed, never a
//! wall-clock threshold.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dinoedge::import::{ImportConfig, SourceFrame, import};
use dinoedge::link::{Connection, LinkConfig, Source};
use dinoedge::proto::wire::{self, Decoder};
use dinoedge::proto::{
    Capabilities, Credit, FrameChunk, FrameEnd, FrameMeta, FrameStart, Hello, Message,
    PROTOCOL_VERSION, PixelFormat, Sensor, Version, Welcome,
};
use dinoedge::recording::{Gating, Pace, RecordKind, RecordingWriter, ReplaySource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `n` 32x24 Gray8 frames as an edge would have sent them.
fn recording(dir: &Path, n: u32) -> PathBuf {
    let path = dir.join("frames.rec");
    let mut w = RecordingWriter::create(&path).unwrap();
    let frames = (0..n).map(|i| {
        Ok(SourceFrame {
            width: 32,
            height: 24,
            format: PixelFormat::Gray8,
            data: vec![i as u8; 32 * 24],
            label: None,
        })
    });
    let config = ImportConfig {
        packet: 1024,
        ..ImportConfig::default()
    };
    import(frames, "test", &config, &mut w).unwrap();
    w.finish().unwrap();
    path
}

/// What the replay fed, packet by packet, as the host's link reads it.
struct Reader {
    conn: Connection,
    decoder: Decoder<Vec<u8>>,
    pending: Vec<u8>,
}

/// A packet, reduced to what the tests look at.
#[derive(Debug, Clone, PartialEq)]
enum Fed {
    Hello,
    FrameStart(u32),
    Other,
    End,
}

impl Reader {
    fn new(conn: Connection) -> Self {
        Reader {
            conn,
            decoder: Decoder::new(vec![0u8; wire::max_wire_len(1 << 16)]),
            pending: Vec::new(),
        }
    }

    /// The next packet, or `None` when the source fed nothing for an hour of paused time.
    async fn next(&mut self) -> Option<Fed> {
        loop {
            let mut input = self.pending.as_slice();
            let outcome = self.decoder.push(&mut input);
            let used = self.pending.len() - input.len();
            self.pending.drain(..used);
            if let Some(outcome) = outcome {
                outcome.unwrap();
                return Some(match self.decoder.message().unwrap() {
                    Message::Hello(_) => Fed::Hello,
                    Message::FrameStart(s) => Fed::FrameStart(s.seq),
                    _ => Fed::Other,
                });
            }
            let mut buf = [0u8; 4096];
            let read =
                tokio::time::timeout(Duration::from_secs(3600), self.conn.read.read(&mut buf));
            match read.await {
                Err(_) => return None,
                Ok(Ok(0)) => return Some(Fed::End),
                Ok(Ok(n)) => self.pending.extend_from_slice(&buf[..n]),
                Ok(Err(e)) => panic!("{e}"),
            }
        }
    }

    /// The frames started until the feed blocks or ends.
    async fn frames_until_blocked(&mut self) -> (Vec<u32>, bool) {
        let mut frames = Vec::new();
        loop {
            match self.next().await {
                None => return (frames, false),
                Some(Fed::End) => return (frames, true),
                Some(Fed::FrameStart(seq)) => frames.push(seq),
                Some(_) => {}
            }
        }
    }

    /// The host answers.
    async fn send(&mut self, msg: &Message<'_>) {
        let mut buf = vec![0u8; 4096];
        let bytes = wire::encode(msg, &mut buf).unwrap();
        self.conn.write.write_all(bytes).await.unwrap();
    }
}

fn welcome(credits: u32) -> Message<'static> {
    Message::Welcome(Welcome {
        protocol_version: PROTOCOL_VERSION,
        session_id: 1,
        max_packet_to_host: 1024,
        max_packet_to_edge: 1024,
        initial_credits: credits,
        roi: None,
        fps_milli: None,
    })
}

#[tokio::test(start_paused = true)]
async fn each_frame_waits_for_credit_and_nothing_is_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let path = recording(tmp.path(), 6);
    let mut source =
        ReplaySource::start(&path, Pace::MaxSpeed, Gating::WaitForCredit, None).unwrap();
    let mut feed = Reader::new(source.open().await.unwrap().expect("a connection"));
    assert_eq!(feed.next().await, Some(Fed::Hello));
    // No Welcome yet: the first frame waits for the session's terms.
    assert_eq!(feed.frames_until_blocked().await, (vec![], false));
    feed.send(&welcome(2)).await;
    assert_eq!(feed.frames_until_blocked().await, (vec![0, 1], false));
    feed.send(&Message::Credit(Credit { until_seq: 4 })).await;
    assert_eq!(feed.frames_until_blocked().await, (vec![2, 3], false));
    // A grant that is older than the current one never shrinks the window.
    feed.send(&Message::Credit(Credit { until_seq: 3 })).await;
    assert_eq!(feed.frames_until_blocked().await, (vec![], false));
    feed.send(&Message::Credit(Credit { until_seq: 100 })).await;
    assert_eq!(feed.frames_until_blocked().await, (vec![4, 5], true));
    // Played out: the source ends, and with it the link.
    assert!(source.open().await.unwrap().is_none());
    let end = source.end().borrow().clone().expect("the end is known");
    assert_eq!((end.connections, end.error, end.damage.len()), (1, None, 0));
}

#[tokio::test(start_paused = true)]
async fn without_gating_frames_play_as_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let path = recording(tmp.path(), 4);
    let mut source = ReplaySource::start(&path, Pace::MaxSpeed, Gating::None, None).unwrap();
    let mut feed = Reader::new(source.open().await.unwrap().unwrap());
    assert_eq!(feed.next().await, Some(Fed::Hello));
    assert_eq!(feed.frames_until_blocked().await, (vec![0, 1, 2, 3], true));
}

#[tokio::test(start_paused = true)]
async fn a_connection_the_host_drops_stops_the_wait() {
    let tmp = tempfile::tempdir().unwrap();
    let path = recording(tmp.path(), 3);
    let mut source =
        ReplaySource::start(&path, Pace::MaxSpeed, Gating::WaitForCredit, None).unwrap();
    let conn = source.open().await.unwrap().unwrap();
    // The host hangs up at once: the replay must not wait for credit that never comes. What
    // follows goes to the next connection, as a live edge's bytes would (outside a session,
    // so nothing holds them).
    drop(conn);
    let mut feed = Reader::new(source.open().await.unwrap().expect("the next connection"));
    let (frames, ended) = feed.frames_until_blocked().await;
    assert!(ended);
    assert!(!frames.is_empty());
    assert!(source.open().await.unwrap().is_none());
    assert_eq!(
        source.end().borrow().as_ref().map(|e| e.connections),
        Some(2)
    );
}

#[test]
fn a_gated_replay_turns_the_liveness_timeout_off_and_reconnects_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let path = recording(tmp.path(), 1);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    for (gating, timeout) in [
        (Gating::WaitForCredit, None),
        (Gating::None, LinkConfig::default().link_timeout),
    ] {
        let source = ReplaySource::start(&path, Pace::MaxSpeed, gating, None).unwrap();
        let mut config = LinkConfig::default();
        source.configure(&mut config);
        assert_eq!(config.link_timeout, timeout, "{gating:?}");
        assert_eq!(config.reconnect_delay, Duration::ZERO);
        assert!(!source.is_live());
    }
}

#[test]
fn a_file_that_is_no_recording_is_refused_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("not.rec");
    std::fs::write(&path, b"hello").unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let err = ReplaySource::start(&path, Pace::MaxSpeed, Gating::None, None)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("not.rec"), "{err}");
}

/// A recording whose frames 1 to 5 are missing whole (their records lost to damage), more
/// than the credit window the host grants beyond its next untold frame.
fn recording_with_a_gap(dir: &Path) -> PathBuf {
    let path = dir.join("gap.rec");
    let mut w = RecordingWriter::create(&path).unwrap();
    w.write_at(RecordKind::Connected, 0, b"test").unwrap();
    let mut t = 0;
    let mut send = |w: &mut RecordingWriter, msg: &Message<'_>| {
        let mut buf = vec![0u8; 4096];
        t += 1000;
        w.write_at(
            RecordKind::EdgeToHost,
            t,
            wire::encode(msg, &mut buf).unwrap(),
        )
        .unwrap();
    };
    send(
        &mut w,
        &Message::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            device_id: heapless::String::try_from("gap").unwrap(),
            firmware_version: Version {
                major: 1,
                minor: 0,
                patch: 0,
            },
            sensor: Sensor {
                width: 8,
                height: 8,
                format: PixelFormat::Gray8,
                fps_milli: 30_000,
            },
            max_packet_tx: 1024,
            max_packet_rx: 1024,
            capabilities: Capabilities::default(),
            previous: None,
        }),
    );
    let data = [7u8; 64];
    for seq in [0, 6, 7] {
        send(
            &mut w,
            &Message::FrameStart(FrameStart {
                seq,
                capture_us: 0,
                width: 8,
                height: 8,
                format: PixelFormat::Gray8,
                total_len: 64,
                frame_crc: None,
                dropped_at_source: 0,
                meta: FrameMeta::default(),
            }),
        );
        send(
            &mut w,
            &Message::FrameChunk(FrameChunk {
                seq,
                offset: 0,
                data: &data,
            }),
        );
        send(
            &mut w,
            &Message::FrameEnd(FrameEnd {
                seq,
                frame_crc: wire::crc32(&data),
            }),
        );
    }
    w.finish().unwrap();
    path
}

#[tokio::test(start_paused = true)]
async fn a_gap_in_a_damaged_recording_does_not_hold_the_next_frame_for_ever() {
    let tmp = tempfile::tempdir().unwrap();
    let path = recording_with_a_gap(tmp.path());
    let mut source =
        ReplaySource::start(&path, Pace::MaxSpeed, Gating::WaitForCredit, None).unwrap();
    let mut feed = Reader::new(source.open().await.unwrap().unwrap());
    assert_eq!(feed.next().await, Some(Fed::Hello));
    // Two frames of credit: 0, then the frame after the gap (the host learns of the gap
    // from it); 7 waits for credit beyond it.
    feed.send(&welcome(2)).await;
    assert_eq!(feed.frames_until_blocked().await, (vec![0, 6], false));
    feed.send(&Message::Credit(Credit { until_seq: 8 })).await;
    assert_eq!(feed.frames_until_blocked().await, (vec![7], true));
}
