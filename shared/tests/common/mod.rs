//! Helpers shared by the integration tests: sample messages, proptest strategies, a
//! deterministic random generator.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use dinoedge_proto::*;
use proptest::collection::vec;
use proptest::prelude::*;

/// SplitMix64: a tiny deterministic generator, so that soak tests repeat exactly.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next_u64() as u8;
        }
    }
}

pub fn hs<const N: usize>(s: &str) -> heapless::String<N> {
    heapless::String::try_from(s).unwrap()
}

/// The sample `Hello` of an edge that lost its session 7 with frames up to 299 started: the
/// golden vector of `Hello::previous`.
pub fn hello_after_lost_session() -> Message<'static> {
    let Message::Hello(mut hello) = samples().swap_remove(0) else {
        unreachable!("the first sample is a Hello")
    };
    hello.previous = Some(PreviousSession {
        session_id: 7,
        next_seq: 300,
    });
    Message::Hello(hello)
}

/// One fixed example of every message, in wire-id order: the golden vectors.
pub fn samples() -> Vec<Message<'static>> {
    let mut extra = heapless::Vec::new();
    extra
        .push(KeyValue {
            key: hs("depth_mm"),
            value: hs("120"),
        })
        .unwrap();
    let mut top_k = heapless::Vec::new();
    top_k
        .push(ClassScore {
            class: 2,
            score: 0.75,
        })
        .unwrap();
    top_k
        .push(ClassScore {
            class: 0,
            score: 0.25,
        })
        .unwrap();
    let mut segments = heapless::Vec::new();
    segments
        .push(SegmentSummary {
            class: 1,
            area_fraction: 0.5,
            bbox: BoundingBox {
                x: 10,
                y: 20,
                width: 100,
                height: 50,
            },
            centroid_x: 60.0,
            centroid_y: 45.0,
        })
        .unwrap();
    vec![
        Message::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            device_id: hs("US-0042"),
            firmware_version: Version {
                major: 1,
                minor: 2,
                patch: 3,
            },
            sensor: Sensor {
                width: 640,
                height: 480,
                format: PixelFormat::Gray8,
                fps_milli: 30_000,
            },
            max_packet_tx: 4096,
            max_packet_rx: 1024,
            capabilities: Capabilities::EVENTS.with(Capabilities::ALARM_OUTPUT),
            previous: None,
        }),
        Message::Welcome(Welcome {
            protocol_version: PROTOCOL_VERSION,
            session_id: 7,
            max_packet_to_host: 4096,
            max_packet_to_edge: 1024,
            initial_credits: 4,
            roi: Some(Roi {
                x: 0,
                y: 0,
                width: 640,
                height: 480,
            }),
            fps_milli: None,
        }),
        Message::Reject(Reject {
            reason: RejectReason::UnsupportedVersion,
            supported_min: PROTOCOL_VERSION,
            supported_max: PROTOCOL_VERSION,
        }),
        Message::FrameStart(FrameStart {
            seq: 1,
            capture_us: 1_000_000,
            width: 4,
            height: 2,
            format: PixelFormat::Gray8,
            total_len: 8,
            frame_crc: Some(0x1234_5678),
            dropped_at_source: 0,
            meta: FrameMeta {
                sweep: Some(SweepPosition {
                    sweep_id: 3,
                    slice_index: 5,
                    slice_count: None,
                }),
                source_id: hs("C5-1"),
                extra,
            },
        }),
        Message::FrameChunk(FrameChunk {
            seq: 1,
            offset: 0,
            data: &[0x00, 0x01, 0x02, 0x03],
        }),
        Message::FrameEnd(FrameEnd {
            seq: 1,
            frame_crc: 0x1234_5678,
        }),
        Message::Credit(Credit { until_seq: 300 }),
        Message::Result(InferenceResult {
            seq: 1,
            capture_us: 1_000_000,
            latency: Latency {
                transfer_us: 2_000,
                queue_us: 100,
                preprocess_us: 1_500,
                backbone_us: 40_000,
                heads_us: 500,
                total_us: 44_100,
            },
            top_k,
            segments,
            mask: Some(RleMask {
                width: 4,
                height: 2,
                runs: &[0, 3, 1, 5],
            }),
            alarms: AlarmFlags::CLASS_THRESHOLD,
        }),
        Message::Heartbeat(Heartbeat {
            now_us: 5_000_000,
            frames_sent: 150,
            dropped_at_source: 3,
            packets_received: 160,
            packets_rejected: 1,
        }),
        Message::Ping(Ping {
            id: 1,
            sent_us: 1_000,
        }),
        Message::Pong(Pong {
            id: 1,
            ping_sent_us: 1_000,
            received_us: 2_000,
        }),
        Message::Event(Event {
            at_us: 123,
            kind: EventKind::ProbeChanged {
                probe_id: hs("L12"),
            },
        }),
        Message::Log(Log {
            level: LogLevel::Warn,
            text: hs("sensor warm"),
        }),
        Message::Error(ErrorReport {
            code: ErrorCode::Sensor,
            detail: hs("no vsync"),
        }),
        Message::SecureHello(SecureHello {
            protocol_version: dinoedge_proto::PROTOCOL_VERSION,
            key_id: [0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 0x07, 0x18],
            noise: leak((0u8..48).collect()),
        }),
        Message::SecureWelcome(SecureWelcome {
            noise: leak((100u8..148).collect()),
        }),
        Message::SecureReject(SecureReject {
            reason: AuthRefusal::RevokedKey,
            supported_min: 3,
            supported_max: 3,
        }),
        Message::Sealed(Sealed {
            counter: 300,
            data: leak((1u8..=20).collect()),
        }),
    ]
}

fn leak(v: Vec<u8>) -> &'static [u8] {
    v.leak()
}

fn ascii<const N: usize>(max: usize) -> impl Strategy<Value = heapless::String<N>> {
    proptest::string::string_regex(&format!("[ -~]{{0,{max}}}"))
        .unwrap()
        .prop_map(|s| heapless::String::try_from(s.as_str()).unwrap())
}

fn text<const N: usize>() -> impl Strategy<Value = heapless::String<N>> {
    // Mostly ASCII, sometimes multi-byte UTF-8, never over N bytes.
    prop_oneof![
        ascii::<N>(N),
        proptest::string::string_regex(&format!("[a-zé€😀]{{0,{}}}", N / 4))
            .unwrap()
            .prop_map(|s| heapless::String::try_from(s.as_str()).unwrap()),
    ]
}

fn pixel_format() -> impl Strategy<Value = PixelFormat> {
    prop_oneof![
        Just(PixelFormat::Gray8),
        Just(PixelFormat::Rgb565),
        Just(PixelFormat::Rgb888),
        Just(PixelFormat::Yuyv422),
    ]
}

fn finite() -> impl Strategy<Value = f32> {
    -1.0e6f32..1.0e6f32
}

fn hello() -> impl Strategy<Value = Hello> {
    (
        any::<u16>(),
        text::<MAX_ID>(),
        any::<(u16, u16, u16)>(),
        (any::<u16>(), any::<u16>(), pixel_format(), any::<u32>()),
        any::<(u32, u32, u32)>(),
        proptest::option::of(any::<(u32, u32)>()),
    )
        .prop_map(
            |(
                protocol_version,
                device_id,
                (major, minor, patch),
                (width, height, format, fps_milli),
                (tx, rx, caps),
                previous,
            )| {
                Hello {
                    protocol_version,
                    device_id,
                    firmware_version: Version {
                        major,
                        minor,
                        patch,
                    },
                    sensor: Sensor {
                        width,
                        height,
                        format,
                        fps_milli,
                    },
                    max_packet_tx: tx,
                    max_packet_rx: rx,
                    capabilities: Capabilities(caps),
                    previous: previous.map(|(session_id, next_seq)| PreviousSession {
                        session_id,
                        next_seq,
                    }),
                }
            },
        )
}

fn welcome() -> impl Strategy<Value = Welcome> {
    (
        any::<(u16, u32, u32, u32, u32)>(),
        proptest::option::of(any::<(u16, u16, u16, u16)>()),
        proptest::option::of(any::<u32>()),
    )
        .prop_map(|((v, sid, th, te, ic), roi, fps_milli)| Welcome {
            protocol_version: v,
            session_id: sid,
            max_packet_to_host: th,
            max_packet_to_edge: te,
            initial_credits: ic,
            roi: roi.map(|(x, y, width, height)| Roi {
                x,
                y,
                width,
                height,
            }),
            fps_milli,
        })
}

fn frame_start() -> impl Strategy<Value = FrameStart> {
    (
        any::<(u32, u64, u16, u16, u32)>(),
        pixel_format(),
        proptest::option::of(any::<u32>()),
        any::<u32>(),
        proptest::option::of(any::<(u32, u16, Option<u16>)>()),
        text::<MAX_ID>(),
        vec(
            (text::<MAX_META_KEY>(), text::<MAX_META_VALUE>()),
            0..=MAX_META_ENTRIES,
        ),
    )
        .prop_map(
            |(
                (seq, capture_us, width, height, total_len),
                format,
                frame_crc,
                dropped,
                sweep,
                source_id,
                kvs,
            )| {
                FrameStart {
                    seq,
                    capture_us,
                    width,
                    height,
                    format,
                    total_len,
                    frame_crc,
                    dropped_at_source: dropped,
                    meta: FrameMeta {
                        sweep: sweep.map(|(sweep_id, slice_index, slice_count)| SweepPosition {
                            sweep_id,
                            slice_index,
                            slice_count,
                        }),
                        source_id,
                        extra: kvs
                            .into_iter()
                            .map(|(key, value)| KeyValue { key, value })
                            .collect(),
                    },
                }
            },
        )
}

fn inference_result() -> impl Strategy<Value = InferenceResult<'static>> {
    (
        any::<(u32, u64)>(),
        any::<(u32, u32, u32, u32, u32, u32)>(),
        vec((any::<u16>(), finite()), 0..=MAX_TOP_K),
        vec(
            (
                any::<u16>(),
                finite(),
                any::<(u16, u16, u16, u16)>(),
                finite(),
                finite(),
            ),
            0..=MAX_SEGMENTS,
        ),
        proptest::option::of((any::<u16>(), any::<u16>(), vec(any::<u8>(), 0..64))),
        any::<u32>(),
    )
        .prop_map(
            |((seq, capture_us), l, top, segs, mask, alarms)| InferenceResult {
                seq,
                capture_us,
                latency: Latency {
                    transfer_us: l.0,
                    queue_us: l.1,
                    preprocess_us: l.2,
                    backbone_us: l.3,
                    heads_us: l.4,
                    total_us: l.5,
                },
                top_k: top
                    .into_iter()
                    .map(|(class, score)| ClassScore { class, score })
                    .collect(),
                segments: segs
                    .into_iter()
                    .map(
                        |(class, area_fraction, (x, y, width, height), centroid_x, centroid_y)| {
                            SegmentSummary {
                                class,
                                area_fraction,
                                bbox: BoundingBox {
                                    x,
                                    y,
                                    width,
                                    height,
                                },
                                centroid_x,
                                centroid_y,
                            }
                        },
                    )
                    .collect(),
                mask: mask.map(|(width, height, runs)| RleMask {
                    width,
                    height,
                    runs: leak(runs),
                }),
                alarms: AlarmFlags(alarms),
            },
        )
}

fn event_kind() -> impl Strategy<Value = EventKind> {
    prop_oneof![
        Just(EventKind::FreezePressed),
        Just(EventKind::FreezeReleased),
        Just(EventKind::FootSwitchPressed),
        Just(EventKind::FootSwitchReleased),
        text::<MAX_ID>().prop_map(|probe_id| EventKind::ProbeChanged { probe_id }),
    ]
}

fn log_level() -> impl Strategy<Value = LogLevel> {
    prop_oneof![
        Just(LogLevel::Trace),
        Just(LogLevel::Debug),
        Just(LogLevel::Info),
        Just(LogLevel::Warn),
        Just(LogLevel::Error),
    ]
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        Just(ErrorCode::Protocol),
        Just(ErrorCode::Sensor),
        Just(ErrorCode::Overflow),
        Just(ErrorCode::Unsupported),
        Just(ErrorCode::Internal),
    ]
}

fn reject_reason() -> impl Strategy<Value = RejectReason> {
    prop_oneof![
        Just(RejectReason::UnsupportedVersion),
        Just(RejectReason::PacketTooSmall),
        Just(RejectReason::UnsupportedFormat),
        Just(RejectReason::Busy),
    ]
}

/// Any message of any kind, with chunk payloads up to `max_chunk` bytes.
pub fn message(max_chunk: usize) -> impl Strategy<Value = Message<'static>> {
    prop_oneof![
        hello().prop_map(Message::Hello),
        welcome().prop_map(Message::Welcome),
        (reject_reason(), any::<(u16, u16)>()).prop_map(|(reason, (a, b))| Message::Reject(
            Reject {
                reason,
                supported_min: a,
                supported_max: b,
            }
        )),
        frame_start().prop_map(Message::FrameStart),
        (any::<(u32, u32)>(), vec(any::<u8>(), 0..=max_chunk)).prop_map(|((seq, offset), data)| {
            Message::FrameChunk(FrameChunk {
                seq,
                offset,
                data: leak(data),
            })
        }),
        any::<(u32, u32)>()
            .prop_map(|(seq, frame_crc)| Message::FrameEnd(FrameEnd { seq, frame_crc })),
        any::<u32>().prop_map(|until_seq| Message::Credit(Credit { until_seq })),
        inference_result().prop_map(Message::Result),
        any::<(u64, u32, u32, u32, u32)>().prop_map(|(now_us, a, b, c, d)| Message::Heartbeat(
            Heartbeat {
                now_us,
                frames_sent: a,
                dropped_at_source: b,
                packets_received: c,
                packets_rejected: d,
            }
        )),
        any::<(u32, u64)>().prop_map(|(id, sent_us)| Message::Ping(Ping { id, sent_us })),
        any::<(u32, u64, u64)>().prop_map(|(id, ping_sent_us, received_us)| Message::Pong(Pong {
            id,
            ping_sent_us,
            received_us,
        })),
        (any::<u64>(), event_kind())
            .prop_map(|(at_us, kind)| Message::Event(Event { at_us, kind })),
        (log_level(), text::<MAX_LOG_TEXT>())
            .prop_map(|(level, text)| Message::Log(Log { level, text })),
        (error_code(), text::<MAX_ERROR_DETAIL>())
            .prop_map(|(code, detail)| Message::Error(ErrorReport { code, detail })),
        (any::<(u16, [u8; 8])>(), vec(any::<u8>(), 0..=64)).prop_map(
            |((protocol_version, key_id), noise)| Message::SecureHello(SecureHello {
                protocol_version,
                key_id,
                noise: leak(noise),
            })
        ),
        vec(any::<u8>(), 0..=64)
            .prop_map(|noise| Message::SecureWelcome(SecureWelcome { noise: leak(noise) })),
        (auth_refusal(), any::<(u16, u16)>()).prop_map(|(reason, (a, b))| Message::SecureReject(
            SecureReject {
                reason,
                supported_min: a,
                supported_max: b,
            }
        )),
        (any::<u64>(), vec(any::<u8>(), 0..=max_chunk)).prop_map(
            |(counter, data)| Message::Sealed(Sealed {
                counter,
                data: leak(data),
            })
        ),
    ]
}

fn auth_refusal() -> impl Strategy<Value = AuthRefusal> {
    prop_oneof![
        Just(AuthRefusal::UnsupportedVersion),
        Just(AuthRefusal::UnknownKey),
        Just(AuthRefusal::RevokedKey),
        Just(AuthRefusal::RetiredKey),
        Just(AuthRefusal::BadProof),
        Just(AuthRefusal::RateLimited),
        Just(AuthRefusal::SecureLinkRequired),
    ]
}

/// Encodes messages back to back into one stream.
pub fn encode_stream(msgs: &[Message<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    for m in msgs {
        out.extend_from_slice(wire::encode(m, &mut buf).unwrap());
    }
    out
}
