//! The edge state machine against a test host over an in-memory duplex link, with a
//! hand-driven clock: frames, credit, noise, alarms, restarts, timeouts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use dinoedge_edge::buffers::{EdgeBuffers, chunk_len, rx_len, tx_len};
use dinoedge_edge::machine::{Edge, EdgeConfig, NoInput, Peripherals, Phase};
use dinoedge_edge::port::{Clock, SourceInfo};
use dinoedge_edge::source::TestPattern;
use dinoedge_proto::reassembly::{Reassembled, Reassembler, ReassemblerConfig};
use dinoedge_proto::wire::{self, Decoder};
use dinoedge_proto::*;
use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction as PinTransaction};

type Pipe = Rc<RefCell<VecDeque<u8>>>;

/// One end of an in-memory duplex link.
struct End {
    rx: Pipe,
    tx: Pipe,
}

impl embedded_io::ErrorType for End {
    type Error = core::convert::Infallible;
}

impl embedded_io::Read for End {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let mut rx = self.rx.borrow_mut();
        let n = buf.len().min(rx.len());
        for b in buf.iter_mut().take(n) {
            *b = rx.pop_front().unwrap();
        }
        Ok(n)
    }
}

impl embedded_io::ReadReady for End {
    fn read_ready(&mut self) -> Result<bool, Self::Error> {
        Ok(!self.rx.borrow().is_empty())
    }
}

impl embedded_io::Write for End {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.tx.borrow_mut().extend(buf.iter().copied());
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

#[derive(Default)]
struct TestClock(Cell<u64>);

impl Clock for TestClock {
    fn now_us(&self) -> u64 {
        self.0.get()
    }
}

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
                Message::Hello(_) => self.hellos += 1,
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

struct NullPin;
impl embedded_hal::digital::ErrorType for NullPin {
    type Error = core::convert::Infallible;
}
impl embedded_hal::digital::OutputPin for NullPin {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Self::Error> {
        Ok(())
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
