//! The edge state machine against a test host over an in-memory duplex link, with a
//! hand-driven clock: frames, credit, noise, alarms, restarts, timeouts, rejects, and the
//! previous session told in `Hello`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use std::cell::Cell;
use std::rc::Rc;

use common::{End, NullPin, Pipe, TestClock};

use dinoedge_edge::buffers::{EdgeBuffers, chunk_len, rx_len, tx_len};
use dinoedge_edge::machine::{Edge, EdgeConfig, NoInput, Peripherals, Phase};
use dinoedge_edge::port::SourceInfo;
use dinoedge_edge::source::TestPattern;
use dinoedge_proto::reassembly::{Reassembled, Reassembler, ReassemblerConfig};
use dinoedge_proto::wire::{self, Decoder};
use dinoedge_proto::*;
use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction as PinTransaction};

const INFO: SourceInfo = SourceInfo {
    width: 64,
    height: 48,
    format: PixelFormat::Gray8,
    fps_milli: 0,
};

type Buffers = EdgeBuffers<{ tx_len(1024) }, { rx_len(1024) }, { chunk_len(1024) }>;

/// The host side: decodes what the edge sends and reassembles frames.
struct Host {
    to_edge: Pipe,
    from_edge: Pipe,
    decoder: Decoder<Vec<u8>>,
    reassembler: Reassembler,
    frames: Vec<(u32, Vec<u8>, u32)>,
    lost: Vec<dinoedge_proto::reassembly::Loss>,
    hellos: u32,
    /// Every `Hello` received, in order.
    hello_log: Vec<Hello>,
    heartbeats: Vec<Heartbeat>,
    events: Vec<EventKind>,
    pongs: u32,
    /// Flip a bit in one of this many bytes from the edge (0: clean).
    noise_one_in: u64,
    rng: u64,
}

impl Host {
    fn new(to_edge: Pipe, from_edge: Pipe) -> Self {
        Host {
            to_edge,
            from_edge,
            decoder: Decoder::new(vec![0u8; wire::max_wire_len(4096)]),
            reassembler: Reassembler::new(ReassemblerConfig::default()),
            frames: Vec::new(),
            lost: Vec::new(),
            hellos: 0,
            hello_log: Vec::new(),
            heartbeats: Vec::new(),
            events: Vec::new(),
            pongs: 0,
            noise_one_in: 0,
            rng: 0x1234_5678,
        }
    }

    fn send(&self, msg: &Message<'_>) {
        let mut buf = vec![0u8; 2048];
        self.to_edge
            .borrow_mut()
            .extend(wire::encode(msg, &mut buf).unwrap().iter().copied());
    }

    fn welcome(&mut self, session_id: u32, credits: u32) {
        self.reassembler.reset(&mut |_| {});
        self.send(&Message::Welcome(Welcome {
            protocol_version: PROTOCOL_VERSION,
            session_id,
            max_packet_to_host: 1024,
            max_packet_to_edge: 1024,
            initial_credits: credits,
            roi: None,
            fps_milli: None,
        }));
    }

    /// Takes everything the edge sent.
    fn pump(&mut self) {
        let mut bytes: Vec<u8> = self.from_edge.borrow_mut().drain(..).collect();
        if self.noise_one_in > 0 {
            let one_in = self.noise_one_in;
            for byte in bytes.iter_mut() {
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 7;
                self.rng ^= self.rng << 17;
                if self.rng.is_multiple_of(one_in) {
                    *byte ^= 1 << (self.rng >> 61);
                }
            }
        }
        let mut input = &bytes[..];
        while let Some(r) = self.decoder.decode(&mut input) {
            let Ok(msg) = r else { continue };
            match &msg {
                Message::Hello(h) => {
                    self.hellos += 1;
                    self.hello_log.push(h.clone());
                }
                Message::Heartbeat(h) => self.heartbeats.push(*h),
                Message::Event(e) => self.events.push(e.kind.clone()),
                Message::Pong(_) => self.pongs += 1,
                _ => {}
            }
            let (frames, lost) = (&mut self.frames, &mut self.lost);
            self.reassembler.on_message(&msg, 0, &mut |o| match o {
                Reassembled::Frame(f) => {
                    frames.push((f.start.seq, f.data, f.start.dropped_at_source))
                }
                Reassembled::Lost(l) => lost.push(l),
            });
        }
    }
}

fn link() -> (End, Host) {
    let to_edge: Pipe = Rc::default();
    let from_edge: Pipe = Rc::default();
    let end = End {
        rx: to_edge.clone(),
        tx: from_edge.clone(),
    };
    (end, Host::new(to_edge, from_edge))
}

/// Which test-pattern frame `data` is, if any.
fn pattern_index(data: &[u8]) -> Option<u32> {
    (0..100_000).find(|&k| {
        data.iter()
            .enumerate()
            .all(|(i, &b)| b == TestPattern::pattern_byte(&INFO, k, i as u32))
    })
}

fn run(
    edge: &mut Edge<
        '_,
        End,
        TestPattern,
        &TestClock,
        impl embedded_hal::digital::OutputPin,
        NoInput,
        NoInput,
    >,
    clock: &TestClock,
    host: &mut Host,
    steps: u32,
    dt_us: u64,
) {
    for _ in 0..steps {
        clock.0.set(clock.0.get() + dt_us);
        let _ = edge.step();
        host.pump();
    }
}

fn peripherals<A>(
    end: End,
    clock: &TestClock,
    alarm: A,
) -> Peripherals<End, TestPattern, &TestClock, A, NoInput, NoInput> {
    Peripherals {
        link: end,
        source: TestPattern::new(INFO),
        clock,
        alarm,
        freeze: NoInput,
        foot_switch: NoInput,
    }
}

#[test]
fn frames_arrive_intact_and_in_order() {
    let clock = TestClock::default();
    let (end, mut host) = link();
    let mut buffers = Buffers::new();
    let mut edge = Edge::new(
        peripherals(end, &clock, NullPin),
        EdgeConfig::default(),
        &mut buffers,
    );
    run(&mut edge, &clock, &mut host, 3, 1000);
    assert!(host.hellos >= 1);
    assert_eq!(edge.phase(), Phase::Handshake);
    host.welcome(1, 1_000);
    run(&mut edge, &clock, &mut host, 400, 1000);
    assert_eq!(edge.phase(), Phase::Session { session_id: 1 });
    assert!(host.frames.len() >= 20, "{} frames", host.frames.len());
    assert!(host.lost.is_empty(), "{:?}", host.lost);
    let first = pattern_index(&host.frames[0].1).expect("a test-pattern frame");
    for (i, (seq, data, dropped)) in host.frames.iter().enumerate() {
        assert_eq!(*seq, i as u32, "in order");
        assert_eq!(*dropped, 0);
        let k = first + i as u32;
        assert!(
            data.iter()
                .enumerate()
                .all(|(j, &b)| b == TestPattern::pattern_byte(&INFO, k, j as u32)),
            "frame {seq} is not pattern frame {k}"
        );
    }
    assert!(!host.heartbeats.is_empty());
}

#[test]
fn without_credit_the_edge_drops_and_the_count_reaches_the_host() {
    let clock = TestClock::default();
    let (end, mut host) = link();
    let mut buffers = Buffers::new();
    let mut edge = Edge::new(
        peripherals(end, &clock, NullPin),
        EdgeConfig::default(),
        &mut buffers,
    );
    run(&mut edge, &clock, &mut host, 2, 1000);
    host.welcome(2, 3);
    // 2 s of steps, the host repeating its (unchanged) grant every 0.5 s.
    for round in 0..4 {
        run(&mut edge, &clock, &mut host, 500, 1000);
        host.send(&Message::Credit(Credit { until_seq: 3 }));
        assert_eq!(
            edge.phase(),
            Phase::Session { session_id: 2 },
            "round {round}"
        );
    }
    host.pump();
    assert_eq!(host.frames.len(), 3, "exactly the credited frames");
    let dropped = edge.stats().dropped_no_credit;
    assert!(
        dropped > 100,
        "the edge kept capturing and dropping: {dropped}"
    );
    let last_beat = host.heartbeats.last().unwrap();
    assert!(last_beat.dropped_at_source > 0 && last_beat.dropped_at_source <= dropped);
    // More credit: the next frame's start carries the exact drop count so far.
    host.send(&Message::Credit(Credit { until_seq: 4 }));
    run(&mut edge, &clock, &mut host, 1, 1000);
    let before = edge.stats().dropped_no_credit;
    run(&mut edge, &clock, &mut host, 200, 1000);
    assert_eq!(host.frames.len(), 4);
    assert_eq!(host.frames[3].2, before);
}

#[test]
fn a_noisy_line_is_survived_and_nothing_corrupt_is_delivered() {
    let clock = TestClock::default();
    let (end, mut host) = link();
    let mut buffers = Buffers::new();
    let mut edge = Edge::new(
        peripherals(end, &clock, NullPin),
        EdgeConfig::default(),
        &mut buffers,
    );
    run(&mut edge, &clock, &mut host, 2, 1000);
    host.welcome(3, 1_000_000);
    host.noise_one_in = 20_000;
    // Garbage from the host too, between its grants.
    for round in 0..20u32 {
        run(&mut edge, &clock, &mut host, 200, 1000);
        host.to_edge
            .borrow_mut()
            .extend([0x13, 0x37, 0x00, 0xff, 0x42, 0x00]);
        host.send(&Message::Credit(Credit {
            until_seq: 1_000_000 + round,
        }));
    }
    assert_eq!(edge.phase(), Phase::Session { session_id: 3 });
    assert!(
        edge.stats().packets_rejected >= 20,
        "garbage from the host is counted"
    );
    assert!(host.frames.len() > 50, "{}", host.frames.len());
    assert!(!host.lost.is_empty(), "the noise must cost some frames");
    for (seq, data, _) in &host.frames {
        assert!(
            pattern_index(data).is_some(),
            "frame {seq} delivered corrupt"
        );
    }
}

#[test]
fn the_alarm_output_follows_results() {
    let clock = TestClock::default();
    let (end, mut host) = link();
    let mut buffers = Buffers::new();
    let alarm = PinMock::new(&[
        PinTransaction::set(State::High),
        PinTransaction::set(State::Low),
        PinTransaction::set(State::High),
        PinTransaction::set(State::Low),
    ]);
    let mut edge = Edge::new(
        peripherals(end, &clock, alarm),
        EdgeConfig::default(),
        &mut buffers,
    );
    run(&mut edge, &clock, &mut host, 2, 1000);
    host.welcome(4, 0);
    run(&mut edge, &clock, &mut host, 2, 1000);
    let result = |alarms: AlarmFlags, score: f32| {
        let mut top_k = heapless::Vec::new();
        top_k.push(ClassScore { class: 1, score }).unwrap();
        Message::Result(InferenceResult {
            seq: 0,
            capture_us: 0,
            latency: Latency::default(),
            top_k,
            segments: heapless::Vec::new(),
            mask: None,
            alarms,
        })
    };
    let steps = [
        (result(AlarmFlags::AREA_THRESHOLD, 0.1), true),
        (result(AlarmFlags::AREA_THRESHOLD, 0.1), true),
        (result(AlarmFlags::default(), 0.2), false),
        (result(AlarmFlags::default(), 0.9), true),
    ];
    for (msg, raised) in steps {
        host.send(&msg);
        run(&mut edge, &clock, &mut host, 1, 1000);
        assert_eq!(edge.alarm_raised(), raised);
    }
    // A lost link lowers the alarm: its results are stale.
    run(&mut edge, &clock, &mut host, 1, 3_100_000);
    assert_eq!(edge.phase(), Phase::Handshake);
    assert!(!edge.alarm_raised());
    edge.peripherals_mut().alarm.done();
}

#[test]
fn host_restart_and_silence_lead_back_to_the_handshake() {
    let clock = TestClock::default();
    let (end, mut host) = link();
    let mut buffers = Buffers::new();
    let mut edge = Edge::new(
        peripherals(end, &clock, NullPin),
        EdgeConfig::default(),
        &mut buffers,
    );
    run(&mut edge, &clock, &mut host, 2, 1000);
    host.welcome(5, 1000);
    run(&mut edge, &clock, &mut host, 50, 1000);
    assert_eq!(edge.phase(), Phase::Session { session_id: 5 });
    // A restarted host answers frames with a protocol error: the edge says Hello at once.
    let hellos = host.hellos;
    host.send(&Message::Error(ErrorReport {
        code: ErrorCode::Protocol,
        detail: heapless::String::try_from("no session").unwrap(),
    }));
    run(&mut edge, &clock, &mut host, 2, 1000);
    assert_eq!(edge.phase(), Phase::Handshake);
    assert_eq!(host.hellos, hellos + 1);
    host.welcome(6, 1000);
    run(&mut edge, &clock, &mut host, 50, 1000);
    assert_eq!(edge.phase(), Phase::Session { session_id: 6 });
    // Silence for longer than the link timeout.
    run(&mut edge, &clock, &mut host, 31, 100_000);
    assert_eq!(edge.phase(), Phase::Handshake);
    assert_eq!(edge.stats().link_losses, 2);
    // Hello retries back off: at most one per 2 s after a few tries.
    let hellos = host.hellos;
    run(&mut edge, &clock, &mut host, 100, 100_000);
    let sent = host.hellos - hellos;
    assert!((5..=8).contains(&sent), "{sent} hellos in 10 s");
}

/// A button the test presses: shared, so the test holds one handle and the edge the other.
#[derive(Clone, Default)]
struct TestButton(Rc<Cell<bool>>);

impl embedded_hal::digital::ErrorType for TestButton {
    type Error = core::convert::Infallible;
}

impl embedded_hal::digital::InputPin for TestButton {
    fn is_high(&mut self) -> Result<bool, Self::Error> {
        Ok(self.0.get())
    }

    fn is_low(&mut self) -> Result<bool, Self::Error> {
        Ok(!self.0.get())
    }
}

#[test]
fn button_and_pedal_events_reach_the_host_in_a_session() {
    let clock = TestClock::default();
    let (end, mut host) = link();
    let mut buffers = Buffers::new();
    let (freeze, foot) = (TestButton::default(), TestButton::default());
    let io = Peripherals {
        link: end,
        source: TestPattern::new(INFO),
        clock: &clock,
        alarm: NullPin,
        freeze: freeze.clone(),
        foot_switch: foot.clone(),
    };
    let mut edge = Edge::new(io, EdgeConfig::default(), &mut buffers);
    let step =
        |edge: &mut Edge<'_, End, TestPattern, &TestClock, NullPin, TestButton, TestButton>,
         host: &mut Host| {
            clock.0.set(clock.0.get() + 1000);
            let _ = edge.step();
            host.pump();
        };
    // Presses before the session are not reported (there is no one to tell).
    freeze.0.set(true);
    step(&mut edge, &mut host);
    freeze.0.set(false);
    step(&mut edge, &mut host);
    host.welcome(9, 0);
    step(&mut edge, &mut host);
    freeze.0.set(true);
    step(&mut edge, &mut host);
    foot.0.set(true);
    step(&mut edge, &mut host);
    freeze.0.set(false);
    foot.0.set(false);
    step(&mut edge, &mut host);
    assert_eq!(
        host.events,
        [
            EventKind::FreezePressed,
            EventKind::FootSwitchPressed,
            EventKind::FreezeReleased,
            EventKind::FootSwitchReleased
        ]
    );
}

#[test]
fn truncated_and_garbled_packets_from_the_host_are_survived() {
    let clock = TestClock::default();
    let (end, mut host) = link();
    let mut buffers = Buffers::new();
    let mut edge = Edge::new(
        peripherals(end, &clock, NullPin),
        EdgeConfig::default(),
        &mut buffers,
    );
    run(&mut edge, &clock, &mut host, 2, 1000);
    host.welcome(10, 1000);
    run(&mut edge, &clock, &mut host, 20, 1000);
    let mut buf = vec![0u8; 64];
    let credit = wire::encode(&Message::Credit(Credit { until_seq: 5000 }), &mut buf)
        .unwrap()
        .to_vec();
    // Half a packet, cut off by the next one; a packet with a flipped bit; a run of noise
    // longer than the edge's receive buffer.
    host.to_edge
        .borrow_mut()
        .extend(&credit[..credit.len() / 2]);
    host.to_edge.borrow_mut().extend(&credit);
    let mut flipped = credit.clone();
    flipped[2] ^= 0x04;
    host.to_edge.borrow_mut().extend(&flipped);
    host.to_edge
        .borrow_mut()
        .extend(std::iter::repeat_n(0x5a, 5000));
    host.to_edge.borrow_mut().push_back(0);
    host.to_edge.borrow_mut().extend(&credit);
    let before = edge.stats().packets_rejected;
    run(&mut edge, &clock, &mut host, 200, 1000);
    assert_eq!(edge.phase(), Phase::Session { session_id: 10 });
    assert!(
        edge.stats().packets_rejected >= before + 3,
        "{:?}",
        edge.stats()
    );
    let frames = host.frames.len();
    run(&mut edge, &clock, &mut host, 100, 1000);
    assert!(host.frames.len() > frames, "streaming goes on");
}

type TestEdge<'b> = Edge<'b, End, TestPattern, &'b TestClock, NullPin, NoInput, NoInput>;

/// One step at exactly `t_us` on the test clock, then the host reads what the edge sent.
fn step_at(edge: &mut TestEdge<'_>, clock: &TestClock, host: &mut Host, t_us: u64) {
    clock.0.set(t_us);
    let _ = edge.step();
    host.pump();
}

fn reject(reason: RejectReason) -> Message<'static> {
    Message::Reject(Reject {
        reason,
        supported_min: PROTOCOL_VERSION,
        supported_max: PROTOCOL_VERSION,
    })
}

const REASONS: [RejectReason; 4] = [
    RejectReason::UnsupportedVersion,
    RejectReason::PacketTooSmall,
    RejectReason::UnsupportedFormat,
    RejectReason::Busy,
];

#[test]
fn frames_in_flight_when_the_link_drops_are_told_after_the_reconnect() {
    let clock = TestClock::default();
    let (end, mut host) = link();
    let mut buffers = Buffers::new();
    let mut edge = Edge::new(
        peripherals(end, &clock, NullPin),
        EdgeConfig::default(),
        &mut buffers,
    );
    run(&mut edge, &clock, &mut host, 2, 1000);
    assert!(!host.hello_log.is_empty());
    assert!(
        host.hello_log.iter().all(|h| h.previous.is_none()),
        "no previous session after boot"
    );
    assert_eq!(edge.previous_session(), None);
    host.welcome(21, 1_000);
    run(&mut edge, &clock, &mut host, 200, 1000);
    let delivered = host.frames.len() as u32;
    assert!(delivered >= 10, "{delivered} frames");

    // The connection drops: nothing the edge sends arrives, nothing comes back; the host
    // reports its partial frame lost at once, the edge notices at its link timeout.
    let mut told: Vec<(u32, u32)> = (0..delivered).map(|seq| (seq, 1)).collect();
    host.reassembler.flush(&mut |o| {
        if let Reassembled::Lost(l) = o {
            told.push((l.seq, l.frames()));
        }
    });
    for _ in 0..1_000 {
        if edge.phase() == Phase::Handshake {
            break;
        }
        clock.0.set(clock.0.get() + 10_000);
        let _ = edge.step();
        host.from_edge.borrow_mut().clear();
    }
    assert_eq!(edge.phase(), Phase::Handshake);
    assert_eq!(edge.stats().link_losses, 1);
    let previous = edge
        .previous_session()
        .expect("the lost session is remembered");
    assert_eq!(previous.session_id, 21);
    assert!(
        previous.next_seq > delivered,
        "frames were started during the outage: {previous:?}, {delivered} delivered"
    );

    // The edge reconnects and says where it had got to.
    run(&mut edge, &clock, &mut host, 1, 1000);
    let hello = host.hello_log.last().expect("a Hello after the loss");
    assert_eq!(hello.previous, Some(previous));
    let mut lost = Vec::new();
    host.reassembler
        .connection_lost(previous.next_seq, &mut |o| {
            if let Reassembled::Lost(l) = o {
                lost.push(l);
            }
        });
    let [gone] = lost[..] else {
        panic!("one report: {lost:?}")
    };
    assert!(matches!(
        gone.reason,
        reassembly::LossReason::ConnectionLost { .. }
    ));
    told.push((gone.seq, gone.frames()));
    // Every frame the edge started is told exactly once, in order: delivered, lost with the
    // partial frame, or lost with the connection.
    let mut next = 0;
    for (seq, frames) in told {
        assert_eq!(seq, next, "frames told in order, none twice, none left out");
        next = seq + frames;
    }
    assert_eq!(next, previous.next_seq);
}

#[test]
fn the_previous_session_survives_retries_and_rejects_until_the_next_one_is_lost() {
    let clock = TestClock::default();
    let (end, mut host) = link();
    let mut buffers = Buffers::new();
    let mut edge = Edge::new(
        peripherals(end, &clock, NullPin),
        EdgeConfig::default(),
        &mut buffers,
    );
    run(&mut edge, &clock, &mut host, 2, 1000);
    host.welcome(31, 2);
    run(&mut edge, &clock, &mut host, 200, 1000);
    assert_eq!(host.frames.len(), 2, "exactly the credited frames");
    // The host restarts: its protocol error ends the session, frames 0 and 1 started.
    host.send(&Message::Error(ErrorReport {
        code: ErrorCode::Protocol,
        detail: heapless::String::try_from("no session").unwrap(),
    }));
    run(&mut edge, &clock, &mut host, 1, 1000);
    assert_eq!(edge.phase(), Phase::Handshake);
    let first = PreviousSession {
        session_id: 31,
        next_seq: 2,
    };
    assert_eq!(edge.previous_session(), Some(first));

    // Unanswered Hellos, then a Reject, then more Hellos: all tell the same session.
    let seen = host.hello_log.len();
    run(&mut edge, &clock, &mut host, 30, 100_000);
    host.send(&reject(RejectReason::Busy));
    run(&mut edge, &clock, &mut host, 50, 100_000);
    let hellos = &host.hello_log[seen..];
    assert!(hellos.len() >= 4, "{} Hellos", hellos.len());
    assert!(hellos.iter().all(|h| h.previous == Some(first)));
    assert_eq!(edge.stats().rejects, 1);

    // A new session; while it is up the remembered one does not change ...
    host.welcome(32, 3);
    run(&mut edge, &clock, &mut host, 300, 1000);
    assert_eq!(edge.phase(), Phase::Session { session_id: 32 });
    assert_eq!(edge.previous_session(), Some(first));
    // ... and once it is lost to silence, it is the one told.
    run(&mut edge, &clock, &mut host, 40, 100_000);
    assert_eq!(edge.phase(), Phase::Handshake);
    let second = PreviousSession {
        session_id: 32,
        next_seq: 3,
    };
    assert_eq!(edge.previous_session(), Some(second));
    assert_eq!(host.hello_log.last().unwrap().previous, Some(second));
}

#[test]
fn a_session_lost_before_any_frame_tells_next_seq_zero() {
    let clock = TestClock::default();
    let (end, mut host) = link();
    let mut buffers = Buffers::new();
    let mut edge = Edge::new(
        peripherals(end, &clock, NullPin),
        EdgeConfig::default(),
        &mut buffers,
    );
    run(&mut edge, &clock, &mut host, 2, 1000);
    host.welcome(41, 0);
    run(&mut edge, &clock, &mut host, 40, 100_000);
    assert_eq!(edge.stats().link_losses, 1);
    assert_eq!(
        host.hello_log.last().unwrap().previous,
        Some(PreviousSession {
            session_id: 41,
            next_seq: 0
        })
    );
}

/// Every `RejectReason` is handled alike: counted, the Hello after it waits exactly 2 s, then
/// the usual back-off goes on; no session, no link loss.
#[test]
fn a_reject_of_any_reason_is_counted_and_the_next_hello_waits_2_s() {
    for reason in REASONS {
        let clock = TestClock::default();
        let (end, mut host) = link();
        let mut buffers = Buffers::new();
        let mut edge = Edge::new(
            peripherals(end, &clock, NullPin),
            EdgeConfig::default(),
            &mut buffers,
        );
        step_at(&mut edge, &clock, &mut host, 1_000);
        assert_eq!(host.hellos, 1, "{reason:?}: the first Hello at once");
        host.send(&reject(reason));
        let t = 2_000;
        step_at(&mut edge, &clock, &mut host, t);
        assert_eq!(edge.stats().rejects, 1, "{reason:?}");
        assert_eq!(edge.phase(), Phase::Handshake, "{reason:?}");
        // The retry due at 0.5 s is put off to 2 s after the Reject.
        step_at(&mut edge, &clock, &mut host, t + 1_999_999);
        assert_eq!(host.hellos, 1, "{reason:?}: no Hello before 2 s");
        step_at(&mut edge, &clock, &mut host, t + 2_000_000);
        assert_eq!(host.hellos, 2, "{reason:?}: a Hello at 2 s");
        // Then the back-off of the tries so far: the third Hello 1 s later.
        step_at(&mut edge, &clock, &mut host, t + 2_999_999);
        assert_eq!(host.hellos, 2, "{reason:?}");
        step_at(&mut edge, &clock, &mut host, t + 3_000_000);
        assert_eq!(host.hellos, 3, "{reason:?}");
        // A second Reject waits 2 s again, and is counted again.
        host.send(&reject(reason));
        step_at(&mut edge, &clock, &mut host, t + 3_000_001);
        step_at(&mut edge, &clock, &mut host, t + 5_000_000);
        assert_eq!(host.hellos, 3, "{reason:?}");
        step_at(&mut edge, &clock, &mut host, t + 5_000_001);
        assert_eq!(host.hellos, 4, "{reason:?}");
        let stats = edge.stats();
        assert_eq!(stats.rejects, 2, "{reason:?}");
        assert_eq!(stats.sessions, 0, "{reason:?}");
        assert_eq!(stats.link_losses, 0, "{reason:?}");
        assert_eq!(stats.packets_received, 2, "{reason:?}");
        assert_eq!(
            stats.packets_rejected, 0,
            "{reason:?}: a Reject is not damage"
        );
        assert!(host.hello_log.iter().all(|h| h.previous.is_none()));
        // A Welcome still begins a session after Rejects.
        host.welcome(50, 1);
        step_at(&mut edge, &clock, &mut host, t + 5_002_000);
        assert_eq!(
            edge.phase(),
            Phase::Session { session_id: 50 },
            "{reason:?}"
        );
    }
}

/// A Reject that comes during a session (a late answer to an old Hello) changes nothing.
#[test]
fn a_reject_during_a_session_is_ignored() {
    for reason in REASONS {
        let clock = TestClock::default();
        let (end, mut host) = link();
        let mut buffers = Buffers::new();
        let mut edge = Edge::new(
            peripherals(end, &clock, NullPin),
            EdgeConfig::default(),
            &mut buffers,
        );
        run(&mut edge, &clock, &mut host, 2, 1000);
        host.welcome(60, 1_000);
        run(&mut edge, &clock, &mut host, 20, 1000);
        let frames = host.frames.len();
        host.send(&reject(reason));
        run(&mut edge, &clock, &mut host, 100, 1000);
        assert_eq!(
            edge.phase(),
            Phase::Session { session_id: 60 },
            "{reason:?}"
        );
        assert_eq!(edge.stats().rejects, 0, "{reason:?}");
        assert_eq!(edge.stats().link_losses, 0, "{reason:?}");
        assert!(host.frames.len() > frames, "{reason:?}: streaming goes on");
    }
}

/// A session in which the edge hears nothing valid for `link_timeout_us`: just before, it
/// stays; at that time, it ends.
fn edge_in_session_at(
    edge: &mut TestEdge<'_>,
    clock: &TestClock,
    host: &mut Host,
    session_id: u32,
) -> u64 {
    step_at(edge, clock, host, 1_000);
    // No credit: the edge streams nothing, only heartbeats, which do not count as hearing.
    host.welcome(session_id, 0);
    let welcomed = 2_000;
    step_at(edge, clock, host, welcomed);
    assert_eq!(edge.phase(), Phase::Session { session_id });
    welcomed
}

#[test]
fn silence_ends_the_session_exactly_at_the_link_timeout() {
    let clock = TestClock::default();
    let (end, mut host) = link();
    let mut buffers = Buffers::new();
    let config = EdgeConfig::default();
    let timeout = config.link_timeout_us;
    let mut edge = Edge::new(peripherals(end, &clock, NullPin), config, &mut buffers);
    let heard = edge_in_session_at(&mut edge, &clock, &mut host, 70);
    step_at(&mut edge, &clock, &mut host, heard + timeout - 1);
    assert_eq!(edge.phase(), Phase::Session { session_id: 70 });
    assert_eq!(edge.stats().link_losses, 0);
    let hellos = host.hellos;
    step_at(&mut edge, &clock, &mut host, heard + timeout);
    assert_eq!(edge.phase(), Phase::Handshake);
    assert_eq!(edge.stats().link_losses, 1);
    assert_eq!(edge.stats().link_timeouts, 1);
    // The Hello follows at the next step.
    step_at(&mut edge, &clock, &mut host, heard + timeout + 1);
    assert_eq!(host.hellos, hellos + 1);
}

#[test]
fn a_valid_packet_restarts_the_link_timeout_and_garbage_does_not() {
    let clock = TestClock::default();
    let (end, mut host) = link();
    let mut buffers = Buffers::new();
    let config = EdgeConfig::default();
    let timeout = config.link_timeout_us;
    let mut edge = Edge::new(peripherals(end, &clock, NullPin), config, &mut buffers);
    let welcomed = edge_in_session_at(&mut edge, &clock, &mut host, 71);
    // A grant (any valid packet) 1 s in: the timeout now runs from there.
    let heard = welcomed + 1_000_000;
    host.send(&Message::Credit(Credit { until_seq: 0 }));
    step_at(&mut edge, &clock, &mut host, heard);
    // Damaged packets afterwards are counted but are not hearing from the host.
    let mut buf = vec![0u8; 64];
    let mut garbled = wire::encode(&Message::Credit(Credit { until_seq: 9 }), &mut buf)
        .unwrap()
        .to_vec();
    garbled[2] ^= 0x10;
    host.to_edge.borrow_mut().extend(&garbled);
    host.to_edge.borrow_mut().extend([0x13, 0x37, 0x00]);
    step_at(&mut edge, &clock, &mut host, heard + 2_000_000);
    assert_eq!(edge.stats().packets_rejected, 2);
    step_at(&mut edge, &clock, &mut host, welcomed + timeout);
    assert_eq!(
        edge.phase(),
        Phase::Session { session_id: 71 },
        "timer restarted"
    );
    step_at(&mut edge, &clock, &mut host, heard + timeout - 1);
    assert_eq!(edge.phase(), Phase::Session { session_id: 71 });
    step_at(&mut edge, &clock, &mut host, heard + timeout);
    assert_eq!(
        edge.phase(),
        Phase::Handshake,
        "garbage did not keep it alive"
    );
    assert_eq!(edge.stats().link_losses, 1);
}
