//! The session driven by hand: a clock the test advances, bytes made in memory, and what the
//! session wants sent decoded back. No sockets, no sleeps.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use dinoedge_proto::reassembly::LossReason;
use dinoedge_proto::wire::{self, Decoder};
use dinoedge_proto::{
    AlarmFlags, Capabilities, ErrorCode, Event, EventKind, FrameChunk, FrameEnd, FrameMeta,
    FrameStart, Heartbeat, Hello, InferenceResult, Latency, Message, PROTOCOL_VERSION, PixelFormat,
    Pong, PreviousSession, RejectReason, Sensor, Version,
};

use super::LinkSession;
use crate::link::{LinkConfig, LinkEvent, OutgoingResult};

/// What the host sent, reduced to what the tests look at.
#[derive(Debug, Clone, PartialEq)]
enum Sent {
    Welcome {
        session_id: u32,
        credits: u32,
    },
    Reject(RejectReason),
    Credit(u32),
    Ping {
        id: u32,
        sent_us: u64,
    },
    Pong {
        id: u32,
    },
    Heartbeat {
        packets: u32,
        rejected: u32,
        results: u32,
    },
    Result {
        seq: u32,
        capture_us: u64,
        mask: Option<(u16, u16)>,
        alarms: u32,
    },
    Error(ErrorCode),
}

const MS: u64 = 1_000;
const SESSION: u32 = 100;

struct Host {
    link: LinkSession,
    now: u64,
    sent: Decoder<Vec<u8>>,
}

impl Host {
    fn new(config: LinkConfig) -> Self {
        let mut link = LinkSession::new(config, SESSION);
        link.set_consumer_room(4);
        link.on_connected(0);
        Host {
            link,
            now: 0,
            sent: Decoder::new(vec![0u8; wire::max_wire_len(1 << 20)]),
        }
    }

    fn default() -> Self {
        Host::new(LinkConfig::default())
    }

    /// A host whose edge serves only its controls (a capture brings the frames).
    fn controls_only() -> Self {
        Host::new(LinkConfig {
            controls_only: true,
            ..LinkConfig::default()
        })
    }

    /// The edge sends `msg` now.
    fn recv(&mut self, msg: &Message<'_>) {
        let mut buf = vec![0u8; wire::encode_buffer_len(256 * 1024)];
        let bytes = wire::encode(msg, &mut buf).unwrap();
        let now = self.now;
        self.link.on_bytes(now, bytes);
    }

    /// The edge answers ping `id`, sent at `ping_sent_us`, having got it at `edge_us` on its
    /// clock.
    fn pong(&mut self, id: u32, ping_sent_us: u64, edge_us: u64) {
        self.recv(&Message::Pong(Pong {
            id,
            ping_sent_us,
            received_us: edge_us,
        }));
    }

    /// Time passes, and the runner ticks.
    fn advance(&mut self, us: u64) {
        self.now += us;
        let now = self.now;
        self.link.on_tick(now);
    }

    fn sent(&mut self) -> Vec<Sent> {
        let mut out = Vec::new();
        while let Some(packet) = self.link.poll_transmit() {
            let mut input = packet.as_slice();
            let msg = self.sent.decode(&mut input).unwrap().unwrap();
            assert!(input.is_empty(), "one packet per transmit");
            out.push(match msg {
                Message::Welcome(w) => Sent::Welcome {
                    session_id: w.session_id,
                    credits: w.initial_credits,
                },
                Message::Reject(r) => Sent::Reject(r.reason),
                Message::Credit(c) => Sent::Credit(c.until_seq),
                Message::Ping(p) => Sent::Ping {
                    id: p.id,
                    sent_us: p.sent_us,
                },
                Message::Pong(p) => Sent::Pong { id: p.id },
                Message::Heartbeat(h) => Sent::Heartbeat {
                    packets: h.packets_received,
                    rejected: h.packets_rejected,
                    results: h.frames_sent,
                },
                Message::Result(r) => Sent::Result {
                    seq: r.seq,
                    capture_us: r.capture_us,
                    mask: r.mask.map(|m| (m.width, m.height)),
                    alarms: r.alarms.0,
                },
                Message::Error(e) => Sent::Error(e.code),
                other => panic!("the host sent {other:?}"),
            });
        }
        out
    }

    fn events(&mut self) -> Vec<LinkEvent> {
        std::iter::from_fn(|| self.link.poll_event()).collect()
    }

    /// Hello, then the Welcome and the first Ping are taken off the queue.
    fn open_session(&mut self) {
        self.recv(&hello(PROTOCOL_VERSION, 4096, 1024, 64, 48));
        let sent = self.sent();
        assert!(
            matches!(sent.first(), Some(Sent::Welcome { .. })),
            "{sent:?}"
        );
        self.events();
    }

    /// A whole 64x48 Gray8 frame, in two chunks.
    fn frame(&mut self, seq: u32, capture_us: u64) {
        let data: Vec<u8> = (0..64 * 48).map(|i| (i + seq as usize) as u8).collect();
        self.recv(&Message::FrameStart(start(seq, capture_us, &data)));
        let (a, b) = data.split_at(2000);
        self.recv(&Message::FrameChunk(FrameChunk {
            seq,
            offset: 0,
            data: a,
        }));
        self.recv(&Message::FrameChunk(FrameChunk {
            seq,
            offset: 2000,
            data: b,
        }));
        self.recv(&Message::FrameEnd(FrameEnd {
            seq,
            frame_crc: wire::crc32(&data),
        }));
    }
}

fn hello(version: u16, tx: u32, rx: u32, width: u16, height: u16) -> Message<'static> {
    Message::Hello(Hello {
        protocol_version: version,
        device_id: heapless::String::try_from("US-1").unwrap(),
        firmware_version: Version {
            major: 1,
            minor: 0,
            patch: 0,
        },
        sensor: Sensor {
            width,
            height,
            format: PixelFormat::Gray8,
            fps_milli: 30_000,
        },
        max_packet_tx: tx,
        max_packet_rx: rx,
        capabilities: Capabilities::default(),
        previous: None,
    })
}

fn start(seq: u32, capture_us: u64, data: &[u8]) -> FrameStart {
    FrameStart {
        seq,
        capture_us,
        width: 64,
        height: 48,
        format: PixelFormat::Gray8,
        total_len: data.len() as u32,
        frame_crc: None,
        dropped_at_source: 0,
        meta: FrameMeta::default(),
    }
}

fn result(session_id: u32, seq: u32, mask: Option<(u16, u16, Vec<u8>)>) -> OutgoingResult {
    OutgoingResult {
        session_id,
        result: InferenceResult {
            seq,
            capture_us: 0,
            latency: Latency::default(),
            top_k: heapless::Vec::new(),
            segments: heapless::Vec::new(),
            mask: None,
            alarms: AlarmFlags::BAD_INPUT,
        },
        mask,
    }
}

#[test]
fn hello_is_welcomed_with_credit_from_the_consumers_room_and_a_ping() {
    let mut host = Host::default();
    assert!(matches!(host.events().as_slice(), [LinkEvent::Connected]));
    host.link.set_consumer_room(3);
    host.now = 5 * MS;
    host.recv(&hello(PROTOCOL_VERSION, 4096, 1024, 64, 48));
    assert_eq!(
        host.sent(),
        vec![
            Sent::Welcome {
                session_id: SESSION,
                credits: 3
            },
            Sent::Ping {
                id: 1,
                sent_us: 5 * MS
            },
        ]
    );
    let events = host.events();
    assert!(
        matches!(
            events.as_slice(),
            [LinkEvent::SessionStarted {
                session_id: SESSION,
                ..
            }]
        ),
        "{events:?}"
    );
    assert_eq!(host.link.stats().sessions, 1);
}

#[test]
fn every_reject_path_answers_with_its_reason_and_opens_no_session() {
    let cases = [
        (
            hello(PROTOCOL_VERSION + 1, 4096, 1024, 64, 48),
            RejectReason::UnsupportedVersion,
        ),
        (
            hello(PROTOCOL_VERSION, 512, 1024, 64, 48),
            RejectReason::PacketTooSmall,
        ),
        (
            hello(PROTOCOL_VERSION, 4096, 100, 64, 48),
            RejectReason::PacketTooSmall,
        ),
        // 65535 x 65535 Gray8 is 4 GiB: beyond the host's frame limit.
        (
            hello(PROTOCOL_VERSION, 4096, 1024, u16::MAX, u16::MAX),
            RejectReason::UnsupportedFormat,
        ),
    ];
    for (msg, reason) in cases {
        let mut host = Host::default();
        host.recv(&msg);
        assert_eq!(host.sent(), vec![Sent::Reject(reason)], "{msg:?}");
        let stats = host.link.stats();
        assert_eq!((stats.sessions, stats.rejected), (0, 1));
        // Frame packets after a refused Hello are outside any session.
        host.frame(0, 0);
        assert_eq!(host.link.stats().out_of_session, 4);
        assert_eq!(host.link.stats().frames_received, 0);
    }
}

#[test]
fn a_frame_is_delivered_with_its_arrival_time_and_answered_with_credit() {
    let mut host = Host::default();
    host.open_session();
    host.now = 40 * MS;
    host.frame(0, 0);
    let sent = host.sent();
    // Room 4 beyond the next untold frame (1), less the frame now waiting for the consumer.
    assert_eq!(sent, vec![Sent::Credit(1 + 3)]);
    let events = host.events();
    let [LinkEvent::Frame(f)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(
        (f.frame.start.seq, f.session_id, f.received_us),
        (0, SESSION, 40 * MS)
    );
    assert_eq!(f.capture_host_us, None, "no clock offset yet");
    let stats = host.link.stats();
    assert_eq!((stats.frames_received, stats.frame_bytes), (1, 64 * 48));
}

#[test]
fn credit_follows_the_consumers_room_and_is_repeated_on_its_interval() {
    let mut host = Host::default();
    host.open_session();
    host.link.set_consumer_room(0);
    host.advance(249 * MS);
    assert_eq!(host.sent(), vec![], "not yet due");
    host.advance(MS);
    assert_eq!(
        host.sent(),
        vec![Sent::Credit(0)],
        "no room: nothing beyond seq 0"
    );
    host.link.set_consumer_room(10);
    host.advance(250 * MS);
    let credits: Vec<_> = host
        .sent()
        .into_iter()
        .filter(|s| matches!(s, Sent::Credit(_)))
        .collect();
    assert_eq!(credits, vec![Sent::Credit(4)], "capped by the window");
}

#[test]
fn heartbeats_report_this_connections_packets_as_they_come() {
    let mut host = Host::default();
    host.open_session();
    host.frame(0, 0);
    host.recv(&Message::Heartbeat(Heartbeat {
        now_us: 0,
        frames_sent: 1,
        dropped_at_source: 0,
        packets_received: 0,
        packets_rejected: 0,
    }));
    // A damaged packet: bytes and a delimiter that are no valid frame.
    host.link.on_bytes(host.now, &[7, 1, 2, 3, 0]);
    host.sent();
    host.advance(Duration::from_secs(1).as_micros() as u64);
    let beat = host
        .sent()
        .into_iter()
        .find(|s| matches!(s, Sent::Heartbeat { .. }));
    // Hello, 4 frame packets, the heartbeat: 6 valid; 1 damaged.
    assert_eq!(
        beat,
        Some(Sent::Heartbeat {
            packets: 6,
            rejected: 1,
            results: 0
        })
    );
}

#[test]
fn pings_map_capture_times_once_the_edge_answers() {
    let mut host = Host::default();
    host.now = 10 * MS;
    host.open_session();
    // The edge's clock runs 1 s ahead; the answer comes 2 ms after the ping left.
    host.now = 12 * MS;
    host.pong(1, 10 * MS, 1_000_000 + 11 * MS);
    let stats = host.link.stats();
    assert_eq!(stats.clock_offset_us, Some(1_000_000));
    assert_eq!(stats.clock_rtt_us, Some(2 * MS));
    host.now = 50 * MS;
    host.frame(0, 1_000_000 + 45 * MS);
    let events = host.events();
    let [LinkEvent::Frame(f)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(f.capture_host_us, Some(45 * MS));
    // The next ping goes out on its interval.
    host.sent();
    host.advance(500 * MS);
    assert!(host.sent().contains(&Sent::Ping {
        id: 2,
        sent_us: 550 * MS
    }));
}

#[test]
fn the_edges_pings_are_answered() {
    let mut host = Host::default();
    host.recv(&Message::Ping(dinoedge_proto::Ping { id: 9, sent_us: 1 }));
    assert_eq!(host.sent(), vec![Sent::Pong { id: 9 }]);
}

#[test]
fn a_silent_edge_is_dropped_just_after_the_timeout_not_before() {
    let mut host = Host::default();
    host.open_session();
    host.advance(3_000 * MS);
    assert_eq!(
        host.link.poll_close(),
        None,
        "exactly the timeout: still alive"
    );
    host.advance(1);
    let reason = host.link.poll_close().expect("closed");
    assert!(reason.contains("nothing from the edge"), "{reason}");
    // Anything from the edge resets the timer.
    let mut host = Host::default();
    host.open_session();
    host.advance(2_900 * MS);
    host.recv(&Message::Ping(dinoedge_proto::Ping { id: 1, sent_us: 0 }));
    host.advance(2_900 * MS);
    assert_eq!(host.link.poll_close(), None);
}

#[test]
fn a_source_without_liveness_is_never_timed_out() {
    let mut host = Host::new(LinkConfig {
        link_timeout: None,
        ..LinkConfig::default()
    });
    host.open_session();
    host.advance(3_600_000 * MS);
    assert_eq!(host.link.poll_close(), None);
}

#[test]
fn frames_outside_a_session_get_one_error_a_second() {
    let mut host = Host::default();
    host.frame(0, 0);
    assert_eq!(host.sent(), vec![Sent::Error(ErrorCode::Protocol)]);
    host.now += 999 * MS;
    host.frame(1, 0);
    assert_eq!(host.sent(), vec![]);
    host.now += MS;
    host.frame(2, 0);
    assert_eq!(host.sent(), vec![Sent::Error(ErrorCode::Protocol)]);
    assert_eq!(host.link.stats().out_of_session, 12);
}

#[test]
fn an_edge_ignoring_its_credit_is_cut_off_at_the_backlogs_event_bound() {
    let mut host = Host::new(LinkConfig {
        backlog_events: 5,
        ..LinkConfig::default()
    });
    host.open_session();
    host.link.set_consumer_room(0);
    for seq in 0..8 {
        host.frame(seq, 0);
    }
    assert_eq!(host.link.pending_events(), 5);
    let stats = host.link.stats();
    assert_eq!(stats.frames_received, 8);
    assert_eq!(stats.frames_lost.get("HostQueueFull"), Some(&3));
    // Structural events are kept beyond the bound; the consumer still learns of the end.
    host.link.on_disconnected(host.now, "gone");
    assert_eq!(host.link.pending_events(), 6);
    let events = host.events();
    assert!(matches!(
        events.last(),
        Some(LinkEvent::Disconnected { .. })
    ));
}

#[test]
fn the_backlog_is_bounded_in_bytes_too() {
    let frame_bytes = 64 * 48;
    let mut host = Host::new(LinkConfig {
        backlog_bytes: 2 * frame_bytes + frame_bytes / 2,
        ..LinkConfig::default()
    });
    host.open_session();
    for seq in 0..4 {
        host.frame(seq, 0);
    }
    assert_eq!(host.link.pending_events(), 2);
    assert_eq!(host.link.pending_bytes(), 2 * frame_bytes);
    assert_eq!(host.link.stats().frames_lost.get("HostQueueFull"), Some(&2));
    // Once the consumer takes them, frames are held again.
    host.events();
    host.frame(4, 0);
    assert_eq!(host.link.pending_events(), 1);
}

#[test]
fn results_go_back_with_fresh_credit_and_stale_ones_are_counted() {
    let mut host = Host::default();
    host.open_session();
    host.frame(0, 0);
    host.events();
    host.sent();
    host.link.on_result(
        host.now,
        &result(SESSION, 0, Some((2, 2, vec![0x03, 0x01]))),
    );
    assert_eq!(
        host.sent(),
        vec![
            Sent::Result {
                seq: 0,
                capture_us: 0,
                mask: Some((2, 2)),
                alarms: AlarmFlags::BAD_INPUT.0
            },
            Sent::Credit(1 + 4)
        ]
    );
    host.link.on_result(host.now, &result(SESSION + 7, 0, None));
    assert_eq!(host.sent(), vec![]);
    let stats = host.link.stats();
    assert_eq!((stats.results_sent, stats.results_stale), (1, 1));
    host.advance(Duration::from_secs(1).as_micros() as u64);
    assert!(
        host.sent()
            .iter()
            .any(|s| matches!(s, Sent::Heartbeat { results: 1, .. }))
    );
}

#[test]
fn a_mask_too_large_for_the_edges_packets_is_left_out_and_counted() {
    let mut host = Host::default();
    host.open_session();
    let runs = vec![0x7f; 4000];
    host.link
        .on_result(host.now, &result(SESSION, 0, Some((64, 64, runs))));
    let sent = host.sent();
    assert_eq!(
        sent.first(),
        Some(&Sent::Result {
            seq: 0,
            capture_us: 0,
            mask: None,
            alarms: AlarmFlags::BAD_INPUT.0
        })
    );
    assert_eq!(host.link.stats().results_mask_left_out, 1);
}

#[test]
fn a_partial_frame_is_lost_when_the_connection_ends_and_the_consumer_is_told() {
    let mut host = Host::default();
    host.open_session();
    let data = vec![1u8; 64 * 48];
    host.recv(&Message::FrameStart(start(0, 0, &data)));
    host.link
        .on_disconnected(host.now, "the edge closed the link");
    let events = host.events();
    assert!(
        matches!(events.as_slice(), [LinkEvent::Lost(l), LinkEvent::Disconnected { .. }] if l.seq == 0),
        "{events:?}"
    );
    assert!(!host.link.is_connected());
    // Nothing queued for the old connection reaches the next one.
    host.link.on_result(host.now, &result(SESSION, 0, None));
    assert_eq!(host.link.poll_transmit(), None);
}

#[test]
fn a_frame_that_stops_arriving_times_out_on_the_tick() {
    let mut host = Host::default();
    host.open_session();
    let data = vec![1u8; 64 * 48];
    host.recv(&Message::FrameStart(start(0, 0, &data)));
    host.advance(999 * MS);
    assert!(host.events().is_empty());
    host.advance(2 * MS);
    let events = host.events();
    assert!(
        matches!(events.as_slice(), [LinkEvent::Lost(l)] if matches!(l.reason, LossReason::Timeout { .. })),
        "{events:?}"
    );
    assert_eq!(host.link.stats().frames_lost.get("Timeout"), Some(&1));
}

#[test]
fn a_new_connection_forgets_the_clock_offset_and_gets_a_new_session_id() {
    let mut host = Host::default();
    host.open_session();
    host.pong(1, 0, 5);
    assert!(host.link.stats().clock_offset_us.is_some());
    host.link.on_disconnected(host.now, "cut");
    host.link.on_connected(host.now);
    assert_eq!(host.link.stats().clock_offset_us, None);
    host.recv(&hello(PROTOCOL_VERSION, 4096, 1024, 64, 48));
    assert!(
        matches!(host.sent().first(), Some(Sent::Welcome { session_id, .. }) if *session_id == SESSION + 1)
    );
    assert_eq!(host.link.stats().connections, 2);
}

#[test]
fn bytes_in_any_pieces_give_the_same_frames() {
    let mut whole = Host::default();
    whole.open_session();
    whole.frame(0, 0);
    let mut bytes = Vec::new();
    let data = vec![9u8; 64 * 48];
    let mut buf = vec![0u8; wire::encode_buffer_len(8192)];
    for msg in [
        Message::FrameStart(start(0, 0, &data)),
        Message::FrameChunk(FrameChunk {
            seq: 0,
            offset: 0,
            data: &data,
        }),
        Message::FrameEnd(FrameEnd {
            seq: 0,
            frame_crc: wire::crc32(&data),
        }),
    ] {
        bytes.extend_from_slice(wire::encode(&msg, &mut buf).unwrap());
    }
    let mut pieces = Host::default();
    pieces.open_session();
    for piece in bytes.chunks(7) {
        pieces.link.on_bytes(0, piece);
    }
    let events = pieces.events();
    assert!(matches!(events.as_slice(), [LinkEvent::Frame(f)] if f.frame.data == data));
}

/// A version 1 edge's `Hello` (PROTOCOL.md's golden bytes: the sample `Hello` without the
/// `previous` field).
const V1_HELLO_PACKET: &str = "01 11 01 07 55 53 2d 30 30 34 32 01 02 03 80 05 e0 03 0d b0 ea \
                               01 80 20 80 08 0c 4f 6d ff 9e 00";

#[test]
fn a_version_1_edge_is_refused_by_name_not_counted_as_damage() {
    let bytes: Vec<u8> = V1_HELLO_PACKET
        .split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    let mut host = Host::default();
    host.link.on_bytes(0, &bytes);
    assert_eq!(
        host.sent(),
        vec![Sent::Reject(RejectReason::UnsupportedVersion)]
    );
    let stats = host.link.stats();
    assert_eq!((stats.rejected, stats.resyncs, stats.sessions), (1, 0, 0));
}

/// Frames 0 and 1 arrive, frame 2 is cut off with the connection; the edge had started frames
/// up to 4 when it lost the link.
fn session_cut_at_frame_2(host: &mut Host) {
    host.open_session();
    host.frame(0, 0);
    host.frame(1, 0);
    let data = vec![1u8; 64 * 48];
    host.recv(&Message::FrameStart(start(2, 0, &data)));
    host.link.on_disconnected(host.now, "cut");
    host.link.on_connected(host.now);
    host.events();
}

fn hello_after(previous: PreviousSession) -> Message<'static> {
    let Message::Hello(mut h) = hello(PROTOCOL_VERSION, 4096, 1024, 64, 48) else {
        unreachable!()
    };
    h.previous = Some(previous);
    Message::Hello(h)
}

#[test]
fn frames_that_vanished_with_a_connection_are_told_lost_once_the_edge_reconnects() {
    let mut host = Host::default();
    session_cut_at_frame_2(&mut host);
    host.recv(&hello_after(PreviousSession {
        session_id: SESSION,
        next_seq: 5,
    }));
    let events = host.events();
    let [
        LinkEvent::Lost(loss),
        LinkEvent::SessionStarted { session_id, .. },
    ] = events.as_slice()
    else {
        panic!("{events:?}")
    };
    assert_eq!(*session_id, SESSION + 1);
    assert_eq!(
        (loss.seq, loss.reason),
        (3, LossReason::ConnectionLost { count: 2 })
    );
    let stats = host.link.stats();
    assert_eq!(stats.frames_lost.get("ConnectionLost"), Some(&2));
    // 0 and 1 delivered, 2 lost with the connection's end, 3 and 4 told now: all 5 told once.
    assert_eq!(stats.frames_received + stats.lost_total(), 5);
}

#[test]
fn an_edge_that_names_another_session_or_none_gets_no_losses_made_up() {
    for previous in [
        Some(PreviousSession {
            session_id: SESSION + 50,
            next_seq: 5,
        }),
        None,
    ] {
        let mut host = Host::default();
        session_cut_at_frame_2(&mut host);
        match previous {
            Some(p) => host.recv(&hello_after(p)),
            None => host.recv(&hello(PROTOCOL_VERSION, 4096, 1024, 64, 48)),
        }
        let events = host.events();
        assert!(
            matches!(events.as_slice(), [LinkEvent::SessionStarted { .. }]),
            "{events:?}"
        );
        assert_eq!(host.link.stats().frames_lost.get("ConnectionLost"), None);
    }
}

#[test]
fn an_edge_serving_only_its_controls_gets_no_credit_and_every_result_and_is_heard() {
    let mut host = Host::controls_only();
    host.events();
    host.now = 10 * MS;
    // A sensor far too large to take: it does not matter, no frame is taken.
    host.recv(&hello(PROTOCOL_VERSION, 4096, 1024, 60_000, 60_000));
    assert_eq!(
        host.sent(),
        vec![
            Sent::Welcome {
                session_id: SESSION,
                credits: 0
            },
            Sent::Ping {
                id: 1,
                sent_us: 10 * MS
            },
        ]
    );
    host.events();
    // The edge's clock runs 1 s ahead.
    host.now = 12 * MS;
    host.pong(1, 10 * MS, 1_000_000 + 11 * MS);

    // A frame sent without credit is counted and ignored; no credit is ever granted, and the
    // frames the edge drops for want of it are not the run's losses.
    host.frame(0, 0);
    host.recv(&Message::Heartbeat(Heartbeat {
        now_us: 0,
        frames_sent: 0,
        dropped_at_source: 30,
        packets_received: 0,
        packets_rejected: 0,
    }));
    host.advance(1_000 * MS);
    assert!(
        !host.sent().iter().any(|s| matches!(s, Sent::Credit(_))),
        "no credit for an edge serving its controls"
    );
    assert!(host.events().is_empty());
    let stats = host.link.stats();
    assert_eq!(stats.frame_packets_unasked, 4);
    assert_eq!(
        (
            stats.frames_received,
            stats.lost_total(),
            stats.dropped_at_edge
        ),
        (0, 0, 0)
    );

    // A result for a frame captured on the host (the capture's own session, not the edge's)
    // goes to the edge's session, its capture time moved onto the edge's clock.
    let mut captured = result(1, 77, None);
    captured.result.capture_us = 45 * MS;
    host.link.on_result(host.now, &captured);
    assert_eq!(
        host.sent(),
        vec![Sent::Result {
            seq: 77,
            capture_us: 1_000_000 + 45 * MS,
            mask: None,
            alarms: AlarmFlags::BAD_INPUT.0
        }]
    );

    // The pedal: handed on with its time on the host's clock and its session.
    host.recv(&Message::Event(Event {
        at_us: 1_000_000 + 60 * MS,
        kind: EventKind::FootSwitchPressed,
    }));
    let events = host.events();
    let [LinkEvent::EdgeEvent(pedal)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(pedal.kind_name(), "FootSwitchPressed");
    assert_eq!(
        (pedal.session_id, pedal.at_host_us, pedal.received_us),
        (SESSION, Some(60 * MS), host.now)
    );
    assert_eq!(host.link.stats().edge_events, 1);

    // With the edge gone, a result has nowhere to go: counted, not sent.
    host.link.on_disconnected(host.now, "unplugged");
    host.link.on_connected(host.now);
    host.link.on_result(host.now, &captured);
    assert_eq!(host.sent(), vec![]);
    let stats = host.link.stats();
    assert_eq!((stats.results_sent, stats.results_stale), (1, 1));
}

#[test]
fn results_go_to_an_edge_serving_its_controls_with_capture_time_zero_until_its_clock_is_known() {
    let mut host = Host::controls_only();
    host.open_session();
    let mut captured = result(1, 5, None);
    captured.result.capture_us = 45 * MS;
    host.link.on_result(host.now, &captured);
    assert_eq!(
        host.sent(),
        vec![Sent::Result {
            seq: 5,
            capture_us: 0,
            mask: None,
            alarms: AlarmFlags::BAD_INPUT.0
        }]
    );
}

#[test]
fn a_hello_on_an_open_line_forgets_the_clock_offset_of_the_edges_last_boot() {
    let mut host = Host::default();
    host.now = 10 * MS;
    host.open_session();
    host.now = 12 * MS;
    host.pong(1, 10 * MS, 1_000_000 + 11 * MS);
    assert_eq!(host.link.stats().clock_offset_us, Some(1_000_000));
    // The edge rebooted on a serial line that stayed open: its clock starts again near 0.
    host.now = 20 * MS;
    host.open_session();
    assert_eq!(host.link.stats().clock_offset_us, None);
    host.frame(0, 5 * MS);
    let events = host.events();
    let [LinkEvent::Frame(f)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(
        f.capture_host_us, None,
        "no capture time from the old offset"
    );
    // The new boot's answer gives the new offset.
    host.pong(2, 20 * MS, 6 * MS);
    assert_eq!(
        host.link.stats().clock_offset_us,
        Some(6 * MS as i64 - 20 * MS as i64)
    );
}
