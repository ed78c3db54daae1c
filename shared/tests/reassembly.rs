//! Each loss reason of the reassembler, one scenario each.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use dinoedge_proto::chunk::Chunks;
use dinoedge_proto::reassembly::{LossReason, Reassembled, Reassembler, ReassemblerConfig};
use dinoedge_proto::wire::crc32;
use dinoedge_proto::*;

const W: u16 = 10;
const H: u16 = 10;

fn start(seq: u32, data: &[u8], crc: Option<u32>) -> Message<'static> {
    Message::FrameStart(FrameStart {
        seq,
        capture_us: 0,
        width: W,
        height: H,
        format: PixelFormat::Gray8,
        total_len: data.len() as u32,
        frame_crc: crc,
        dropped_at_source: 0,
        meta: FrameMeta::default(),
    })
}

fn data(seed: u8) -> Vec<u8> {
    (0..100u32).map(|i| (i as u8).wrapping_mul(seed)).collect()
}

/// Feeds messages at 1 ms intervals; returns the outcomes as (seq, Ok(len) | Err(reason)).
fn run(r: &mut Reassembler, msgs: &[Message<'_>]) -> Vec<(u32, Result<usize, LossReason>)> {
    let mut out = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        r.on_message(m, i as u64 * 1000, &mut |o| {
            out.push(match o {
                Reassembled::Frame(f) => (f.start.seq, Ok(f.data.len())),
                Reassembled::Lost(l) => (l.seq, Err(l.reason)),
            })
        });
    }
    out
}

fn chunks(seq: u32, d: &[u8]) -> Vec<FrameChunk<'_>> {
    Chunks::new(seq, d, 30).collect()
}

fn k(c: FrameChunk<'_>) -> Message<'_> {
    Message::FrameChunk(c)
}

fn reassembler() -> Reassembler {
    Reassembler::new(ReassemblerConfig {
        max_frame_len: 1000,
        max_chunk_len: 30,
        timeout_us: 10_000,
    })
}

#[test]
fn delivers_with_crc_at_start_or_at_end() {
    let d = data(3);
    let mut msgs = vec![start(0, &d, Some(crc32(&d)))];
    msgs.extend(chunks(0, &d).into_iter().map(k));
    msgs.push(start(1, &d, None));
    msgs.extend(chunks(1, &d).into_iter().map(k));
    msgs.push(Message::FrameEnd(FrameEnd {
        seq: 1,
        frame_crc: crc32(&d),
    }));
    let mut r = reassembler();
    let mut headers = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        r.on_message(m, i as u64, &mut |o| match o {
            Reassembled::Frame(f) => headers.push((f.start.frame_crc, f.crc, f.data == d)),
            Reassembled::Lost(l) => panic!("{l:?}"),
        });
    }
    // The header is kept as sent: the CRC that came in the FrameEnd is in `crc` only.
    assert_eq!(
        headers,
        [(Some(crc32(&d)), crc32(&d), true), (None, crc32(&d), true)]
    );
    assert_eq!(r.held_bytes(), 0);
}

#[test]
fn each_fault_has_its_reason() {
    let d = data(5);
    let crc = Some(crc32(&d));
    let c = chunks(0, &d);
    let cases: Vec<(Vec<Message<'_>>, LossReason)> = vec![
        (
            vec![start(0, &d, crc), k(c[0]), k(c[2])],
            LossReason::MissingChunk {
                expected_offset: 30,
                got_offset: 60,
            },
        ),
        (
            vec![start(0, &d, crc), k(c[0]), k(c[1]), k(c[1])],
            LossReason::DuplicateChunk { offset: 30 },
        ),
        (
            // An empty chunk between a chunk and its repeat does not hide the repeat.
            vec![
                start(0, &d, crc),
                k(c[0]),
                k(FrameChunk {
                    seq: 0,
                    offset: 30,
                    data: &[],
                }),
                k(c[0]),
            ],
            LossReason::DuplicateChunk { offset: 0 },
        ),
        (
            vec![start(0, &d, crc), k(c[0]), k(c[1]), k(c[0])],
            LossReason::OutOfOrderChunk {
                expected_offset: 60,
                got_offset: 0,
            },
        ),
        (
            vec![
                start(0, &d, Some(crc32(&d) ^ 1)),
                k(c[0]),
                k(c[1]),
                k(c[2]),
                k(c[3]),
            ],
            LossReason::CrcMismatch {
                expected: crc32(&d) ^ 1,
                computed: crc32(&d),
            },
        ),
        (
            vec![start(0, &d, crc), k(c[0]), start(1, &d, crc)],
            LossReason::Incomplete {
                received: 30,
                total_len: 100,
            },
        ),
        (
            vec![
                start(0, &d, None),
                k(c[0]),
                k(c[1]),
                k(c[2]),
                k(c[3]),
                start(1, &d, None),
            ],
            LossReason::MissingEnd,
        ),
        (
            vec![start(0, &d, crc), start(0, &d, crc)],
            LossReason::DuplicateStart,
        ),
        (vec![k(c[1])], LossReason::MissingStart),
        (
            vec![
                start(0, &d, crc),
                k(c[0]),
                k(c[1]),
                k(c[2]),
                Message::FrameChunk(FrameChunk {
                    seq: 0,
                    offset: 90,
                    data: &[1; 20],
                }),
            ],
            LossReason::Overrun {
                offset: 90,
                len: 20,
                total_len: 100,
            },
        ),
        (
            vec![
                start(0, &d, crc),
                Message::FrameChunk(FrameChunk {
                    seq: 0,
                    offset: 0,
                    data: &d[..31],
                }),
            ],
            LossReason::OversizedChunk { len: 31, limit: 30 },
        ),
    ];
    for (msgs, reason) in cases {
        let mut r = reassembler();
        let out = run(&mut r, &msgs);
        assert_eq!(out.first(), Some(&(0, Err(reason))), "{reason:?}: {out:?}");
        assert_eq!(
            r.stats().lost,
            out.iter().filter(|o| o.1.is_err()).count() as u64
        );
    }
}

#[test]
fn bad_headers_are_lost_without_holding_memory() {
    let mut r = reassembler();
    let huge = Message::FrameStart(FrameStart {
        seq: 0,
        capture_us: 0,
        width: 1920,
        height: 1080,
        format: PixelFormat::Rgb888,
        total_len: 1920 * 1080 * 3,
        frame_crc: Some(0),
        dropped_at_source: 0,
        meta: FrameMeta::default(),
    });
    let odd = Message::FrameStart(FrameStart {
        seq: 1,
        width: 3,
        height: 2,
        format: PixelFormat::Yuyv422,
        total_len: 12,
        ..match &huge {
            Message::FrameStart(s) => s.clone(),
            _ => unreachable!(),
        }
    });
    let out = run(&mut r, &[huge, odd]);
    assert_eq!(
        out,
        [
            (
                0,
                Err(LossReason::TooLarge {
                    total_len: 1920 * 1080 * 3,
                    limit: 1000
                })
            ),
            (
                1,
                Err(LossReason::BadHeader {
                    total_len: 12,
                    implied_len: 0
                })
            )
        ]
    );
    assert_eq!(r.held_bytes(), 0);
}

#[test]
fn a_silent_frame_times_out_and_late_chunks_are_ignored() {
    let d = data(7);
    let c = chunks(0, &d);
    let mut r = reassembler();
    run(&mut r, &[start(0, &d, Some(crc32(&d))), k(c[0])]);
    let mut out = Vec::new();
    r.poll(5_000, &mut |o| out.push(o));
    assert!(out.is_empty(), "not yet");
    r.poll(1_000 + 10_001, &mut |o| out.push(o));
    assert!(matches!(
        &out[..],
        [Reassembled::Lost(l)] if l.reason == LossReason::Timeout { received: 30, total_len: 100 }
    ));
    let late = run(&mut r, &[k(c[1]), k(c[2])]);
    assert!(late.is_empty(), "a lost frame is told once: {late:?}");
    assert_eq!(r.stats().ignored, 2);
}

#[test]
fn frames_that_vanish_whole_are_counted_from_the_sequence_gap() {
    let d = data(9);
    let crc = Some(crc32(&d));
    let mut msgs = vec![start(0, &d, crc)];
    msgs.extend(chunks(0, &d).into_iter().map(k));
    // Frames 1, 2 and 3 never arrive; then frame 4 does, and a late chunk of frame 2.
    msgs.push(start(4, &d, crc));
    msgs.extend(chunks(4, &d).into_iter().map(k));
    msgs.push(k(chunks(2, &d)[0]));
    let mut r = reassembler();
    let out = run(&mut r, &msgs);
    assert_eq!(
        out,
        [
            (0, Ok(100)),
            (1, Err(LossReason::Unseen { count: 3 })),
            (4, Ok(100))
        ]
    );
    assert_eq!(r.stats().lost, 3);
    assert_eq!(r.stats().ignored, 1);

    // After a reset (a new session), a lost first frame is reported too.
    let mut r = reassembler();
    r.reset(&mut |_| {});
    let mut msgs = vec![start(1, &d, crc)];
    msgs.extend(chunks(1, &d).into_iter().map(k));
    assert_eq!(
        run(&mut r, &msgs),
        [(0, Err(LossReason::Unseen { count: 1 })), (1, Ok(100))]
    );
}

#[test]
fn frames_lost_with_the_connection_are_told_once_the_edge_says_where_it_was() {
    let d = data(11);
    let crc = Some(crc32(&d));
    let mut r = reassembler();
    r.reset(&mut |_| {});
    // Frame 0 arrives whole, frame 1 in part; then the connection drops while the edge has
    // started frames 2, 3 and 4 (its next seq is 5).
    let mut msgs = vec![start(0, &d, crc)];
    msgs.extend(chunks(0, &d).into_iter().map(k));
    msgs.push(start(1, &d, crc));
    msgs.push(k(chunks(1, &d)[0]));
    assert_eq!(run(&mut r, &msgs), [(0, Ok(100))]);
    let mut out = Vec::new();
    r.connection_lost(5, &mut |o| out.push(o));
    let told: Vec<_> = out
        .iter()
        .map(|o| match o {
            Reassembled::Lost(l) => (l.seq, l.reason),
            Reassembled::Frame(f) => panic!("frame {} delivered", f.start.seq),
        })
        .collect();
    assert_eq!(
        told,
        [
            (
                1,
                LossReason::Incomplete {
                    received: 30,
                    total_len: 100
                }
            ),
            (2, LossReason::ConnectionLost { count: 3 }),
        ]
    );
    assert_eq!(r.stats().lost, 4);
    assert_eq!(r.next_untold(), Some(5));
    // Told once: the same news again, or late packets of those frames, add nothing.
    let mut again = Vec::new();
    r.connection_lost(5, &mut |o| again.push(o));
    assert!(again.is_empty());
    assert!(run(&mut r, &[k(chunks(3, &d)[0])]).is_empty());
    assert_eq!(r.stats().lost, 4);
}

#[test]
fn a_connection_lost_after_every_frame_was_told_reports_nothing() {
    let d = data(13);
    let mut r = reassembler();
    r.reset(&mut |_| {});
    let mut msgs = vec![start(0, &d, Some(crc32(&d)))];
    msgs.extend(chunks(0, &d).into_iter().map(k));
    run(&mut r, &msgs);
    let mut out = Vec::new();
    r.connection_lost(1, &mut |o| out.push(o));
    assert!(out.is_empty());
    // A joined stream (no reset, no frame yet) cannot tell which frames are missing.
    let mut joined = reassembler();
    joined.connection_lost(7, &mut |o| out.push(o));
    assert!(out.is_empty());
    assert_eq!(joined.stats().lost, 0);
}
