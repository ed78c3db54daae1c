//! The edge on a secure link against a test host that holds (or lacks) its key: the Noise
//! handshake, sealed streaming, and every way a packet that did not come from the host is
//! kept away from the alarm output: in the clear, forged, replayed, bit-flipped.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use std::rc::Rc;

use common::{End, NullPin, Pipe, TestClock};
use dinoedge_edge::buffers::{EdgeBuffers, chunk_len, rx_len, sealed, tx_len};
use dinoedge_edge::machine::{Edge, EdgeConfig, EdgeSecurity, NoInput, Peripherals, Phase};
use dinoedge_edge::port::SourceInfo;
use dinoedge_edge::source::TestPattern;
use dinoedge_proto::secure::{Channel, Initiator, LinkKey, NOISE_LEN, SEAL_OVERHEAD, respond};
use dinoedge_proto::wire::{self, Decoder};
use dinoedge_proto::*;
use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction as PinTransaction};

const INFO: SourceInfo = SourceInfo {
    width: 64,
    height: 48,
    format: PixelFormat::Gray8,
    fps_milli: 0,
};

type Buffers = EdgeBuffers<{ tx_len(sealed(1024)) }, { rx_len(sealed(1024)) }, { chunk_len(1024) }>;

/// The host's side of a secure link: answers the handshake under its key, opens what the
/// edge seals and seals what it sends.
struct SecureHost {
    to_edge: Pipe,
    from_edge: Pipe,
    key: LinkKey,
    decoder: Decoder<Vec<u8>>,
    channel: Option<Channel>,
    /// The edge ephemeral keys answered, in order.
    ephemerals: Vec<[u8; 32]>,
    hellos: Vec<Hello>,
    clear_messages: Vec<MessageKind>,
    sealed_kinds: Vec<MessageKind>,
    /// Every sealed packet sent to the edge, as sent (for replays).
    sent: Vec<Vec<u8>>,
    /// Whether to answer `SecureHello`.
    answer: bool,
}

impl SecureHost {
    fn new(to_edge: Pipe, from_edge: Pipe, key: LinkKey) -> Self {
        SecureHost {
            to_edge,
            from_edge,
            key,
            decoder: Decoder::new(vec![0u8; wire::max_wire_len(4096)]),
            channel: None,
            ephemerals: Vec::new(),
            hellos: Vec::new(),
            clear_messages: Vec::new(),
            sealed_kinds: Vec::new(),
            sent: Vec::new(),
            answer: true,
        }
    }

    fn raw(&self, bytes: &[u8]) {
        self.to_edge.borrow_mut().extend(bytes.iter().copied());
    }

    fn send_clear(&self, msg: &Message<'_>) {
        let mut buf = vec![0u8; 4096];
        self.raw(wire::encode(msg, &mut buf).unwrap());
    }

    fn send_sealed(&mut self, msg: &Message<'_>) {
        let (mut scratch, mut tx) = (vec![0u8; 4096], vec![0u8; 4096]);
        let bytes = self
            .channel
            .as_mut()
            .unwrap()
            .seal_message(msg, 1024 + SEAL_OVERHEAD, &mut scratch, &mut tx)
            .unwrap()
            .to_vec();
        self.raw(&bytes);
        self.sent.push(bytes);
    }

    fn welcome(&mut self, credits: u32) {
        self.send_sealed(&Message::Welcome(Welcome {
            protocol_version: PROTOCOL_VERSION,
            session_id: 9,
            max_packet_to_host: 1024,
            max_packet_to_edge: 1024,
            initial_credits: credits,
            roi: None,
            fps_milli: None,
        }));
    }

    fn alarm_result(seq: u32) -> Message<'static> {
        Message::Result(InferenceResult {
            seq,
            capture_us: 0,
            latency: Latency::default(),
            top_k: heapless::Vec::new(),
            segments: heapless::Vec::new(),
            mask: None,
            alarms: AlarmFlags::CLASS_THRESHOLD,
        })
    }

    fn pump(&mut self) {
        let bytes: Vec<u8> = self.from_edge.borrow_mut().drain(..).collect();
        let mut input = &bytes[..];
        let mut replies = Vec::new();
        while let Some(r) = self.decoder.decode(&mut input) {
            let Ok(msg) = r else { continue };
            match &msg {
                Message::SecureHello(h) if self.answer => {
                    self.clear_messages.push(MessageKind::SecureHello);
                    assert_eq!(h.key_id, self.key.id().0);
                    let mut m2 = [0u8; NOISE_LEN];
                    let secret = [self.ephemerals.len() as u8 + 1; 32];
                    let (channel, edge_e) =
                        respond(&self.key, h.protocol_version, secret, h.noise, &mut m2).unwrap();
                    self.ephemerals.push(edge_e);
                    self.channel = Some(channel);
                    replies.push(m2);
                }
                Message::Sealed(s) => {
                    let mut scratch = vec![0u8; 4096];
                    let inner = self
                        .channel
                        .as_mut()
                        .unwrap()
                        .open_message(s, &mut scratch)
                        .unwrap();
                    self.sealed_kinds.push(inner.kind());
                    if let Message::Hello(h) = &inner {
                        self.hellos.push(h.clone());
                    }
                }
                other => self.clear_messages.push(other.kind()),
            }
        }
        for m2 in replies {
            self.send_clear(&Message::SecureWelcome(SecureWelcome { noise: &m2 }));
        }
    }
}

/// The counter and sealed data `channel` gives `msg`: where a forger altering a genuine packet
/// starts from.
fn sealed_parts(channel: &mut Channel, msg: &Message<'_>) -> (u64, Vec<u8>) {
    let (mut scratch, mut tx) = (vec![0u8; 4096], vec![0u8; 4096]);
    let packet = channel
        .seal_message(msg, 2048, &mut scratch, &mut tx)
        .unwrap()
        .to_vec();
    let mut decoder = Decoder::new(vec![0u8; 4096]);
    let Message::Sealed(sealed) = decoder.decode(&mut &packet[..]).unwrap().unwrap() else {
        panic!("not a sealed packet")
    };
    (sealed.counter, sealed.data.to_vec())
}

/// A whole handshake under `key` between two peers that are not the edge under test: the
/// host's channel, and its `SecureWelcome` noise.
fn other_handshake(key: &LinkKey) -> (Channel, [u8; NOISE_LEN]) {
    let mut m1 = [0u8; NOISE_LEN];
    let _ = Initiator::start(key, PROTOCOL_VERSION, [5; 32], &mut m1).unwrap();
    let mut m2 = [0u8; NOISE_LEN];
    let (channel, _) = respond(key, PROTOCOL_VERSION, [6; 32], &m1, &mut m2).unwrap();
    (channel, m2)
}

fn security(key: &LinkKey, boot: u8) -> EdgeSecurity {
    EdgeSecurity {
        key: key.clone(),
        boot_seed: [boot; 32],
    }
}

fn link(key: LinkKey) -> (End, SecureHost) {
    let to_edge: Pipe = Rc::default();
    let from_edge: Pipe = Rc::default();
    let end = End {
        rx: to_edge.clone(),
        tx: from_edge.clone(),
    };
    (end, SecureHost::new(to_edge, from_edge, key))
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

type TestEdge<'b, A> = Edge<'b, End, TestPattern, &'b TestClock, A, NoInput, NoInput>;

fn run<A: embedded_hal::digital::OutputPin>(
    edge: &mut TestEdge<'_, A>,
    clock: &TestClock,
    host: &mut SecureHost,
    steps: u32,
) {
    for _ in 0..steps {
        clock.0.set(clock.0.get() + 1_000);
        let _ = edge.step();
        host.pump();
    }
}

/// Brings `edge` into a sealed session with `host`.
fn establish<A: embedded_hal::digital::OutputPin>(
    edge: &mut TestEdge<'_, A>,
    clock: &TestClock,
    host: &mut SecureHost,
) {
    run(edge, clock, host, 3);
    assert!(edge.is_sealed(), "{:?}", edge.stats());
    assert_eq!(host.hellos.len(), 1, "the Hello comes sealed");
    host.welcome(0);
    run(edge, clock, host, 2);
    assert_eq!(edge.phase(), Phase::Session { session_id: 9 });
}

#[test]
fn the_handshake_completes_and_every_packet_after_it_is_sealed() {
    let key = LinkKey::new([3; 32]);
    let clock = TestClock::default();
    let (end, mut host) = link(key.clone());
    let mut buffers = Buffers::new();
    let mut edge = Edge::new_secure(
        peripherals(end, &clock, NullPin),
        EdgeConfig::default(),
        security(&key, 1),
        &mut buffers,
    );
    establish(&mut edge, &clock, &mut host);
    host.send_sealed(&Message::Credit(Credit { until_seq: 2 }));
    run(&mut edge, &clock, &mut host, 400);
    assert_eq!(host.clear_messages, vec![MessageKind::SecureHello]);
    assert!(host.sealed_kinds.contains(&MessageKind::FrameEnd));
    assert_eq!(edge.stats().frames_sent, 2);
    // The edge announces what is left of its buffers once sealed.
    assert_eq!(host.hellos[0].max_packet_tx, 1024);
    assert_eq!(edge.stats().secure_handshakes, 1);
}

/// Only `Result`s that open under the session's key may move the alarm: the pin mock fails
/// the test on any transition it was not told to expect.
#[test]
fn a_forged_clear_or_replayed_result_leaves_the_alarm_pin_still() {
    let key = LinkKey::new([3; 32]);
    let clock = TestClock::default();
    let (end, mut host) = link(key.clone());
    let mut buffers = Buffers::new();
    // Exactly one rise (the genuine result) and one fall (its clearing result).
    let mut pin = PinMock::new(&[
        PinTransaction::set(State::High),
        PinTransaction::set(State::Low),
    ]);
    let mut edge = Edge::new_secure(
        peripherals(end, &clock, pin.clone()),
        EdgeConfig::default(),
        security(&key, 1),
        &mut buffers,
    );
    establish(&mut edge, &clock, &mut host);

    // In the clear: a downgrade attempt.
    host.send_clear(&SecureHost::alarm_result(0));
    run(&mut edge, &clock, &mut host, 2);
    assert!(!edge.alarm_raised());
    assert_eq!(edge.stats().packets_clear_refused, 1);

    // Sealed (by a copy of the host's channel, whose counter the genuine result below uses
    // again), then altered in each byte of its data in turn.
    let (counter, sealed) = sealed_parts(
        &mut host.channel.clone().unwrap(),
        &SecureHost::alarm_result(0),
    );
    for i in 0..sealed.len() {
        let mut data = sealed.clone();
        data[i] ^= 0x01;
        host.send_clear(&Message::Sealed(Sealed {
            counter,
            data: &data,
        }));
    }
    run(&mut edge, &clock, &mut host, 4);
    assert!(!edge.alarm_raised());
    assert_eq!(edge.stats().packets_forged, sealed.len() as u32);

    // Sealed by a peer with another key.
    let (mut stranger, _) = other_handshake(&LinkKey::new([4; 32]));
    let (mut scratch, mut tx) = (vec![0u8; 4096], vec![0u8; 4096]);
    let bytes = stranger
        .seal_message(&SecureHost::alarm_result(0), 2048, &mut scratch, &mut tx)
        .unwrap()
        .to_vec();
    host.raw(&bytes);
    let dropped =
        |edge: &TestEdge<'_, PinMock>| edge.stats().packets_forged + edge.stats().packets_replayed;
    let before = dropped(&edge);
    run(&mut edge, &clock, &mut host, 2);
    assert!(!edge.alarm_raised());
    assert_eq!(dropped(&edge), before + 1, "the stranger's packet");
    let replayed_before = edge.stats().packets_replayed;

    // The genuine one raises it; its replay after a genuine clearing result does not.
    host.send_sealed(&SecureHost::alarm_result(0));
    run(&mut edge, &clock, &mut host, 2);
    assert!(edge.alarm_raised());
    let raise = host.sent.last().unwrap().clone();
    let mut clear = SecureHost::alarm_result(1);
    if let Message::Result(r) = &mut clear {
        r.alarms = AlarmFlags::default();
    }
    host.send_sealed(&clear);
    run(&mut edge, &clock, &mut host, 2);
    assert!(!edge.alarm_raised());
    host.raw(&raise);
    run(&mut edge, &clock, &mut host, 2);
    assert!(!edge.alarm_raised(), "a replayed result");
    assert_eq!(edge.stats().packets_replayed, replayed_before + 1);
    pin.done();
}

#[test]
fn a_host_without_the_key_never_gets_a_session() {
    let clock = TestClock::default();
    let (end, mut host) = link(LinkKey::new([8; 32]));
    // The host answers under its own key, which is not the edge's: it would fail to verify
    // message 1, so this host skips the check and answers as if it had.
    host.answer = false;
    let mut buffers = Buffers::new();
    let edge_key = LinkKey::new([3; 32]);
    let mut edge = Edge::new_secure(
        peripherals(end, &clock, NullPin),
        EdgeConfig::default(),
        security(&edge_key, 1),
        &mut buffers,
    );
    run(&mut edge, &clock, &mut host, 2);
    // A host holding a different key forges a SecureWelcome for its own handshake.
    let (_, m2) = other_handshake(&LinkKey::new([8; 32]));
    host.send_clear(&Message::SecureWelcome(SecureWelcome { noise: &m2 }));
    // And a clear Welcome, as a version 2 host would send.
    host.send_clear(&Message::Welcome(Welcome {
        protocol_version: 2,
        session_id: 1,
        max_packet_to_host: 1024,
        max_packet_to_edge: 1024,
        initial_credits: 4,
        roi: None,
        fps_milli: None,
    }));
    run(&mut edge, &clock, &mut host, 50);
    assert_eq!(edge.phase(), Phase::Handshake);
    assert!(!edge.is_sealed());
    assert_eq!(edge.stats().handshake_failures, 1);
    assert_eq!(edge.stats().packets_clear_refused, 1);
    assert!(
        host.clear_messages
            .iter()
            .all(|k| *k == MessageKind::SecureHello)
    );
}

#[test]
fn handshake_secrets_never_repeat_across_attempts_or_boots() {
    let key = LinkKey::new([3; 32]);
    let mut seen = std::collections::HashSet::new();
    for boot in 1..=3u8 {
        let clock = TestClock::default();
        let (end, mut host) = link(key.clone());
        let mut buffers = Buffers::new();
        let mut edge = Edge::new_secure(
            peripherals(end, &clock, NullPin),
            EdgeConfig::default(),
            security(&key, boot),
            &mut buffers,
        );
        // Each link loss costs a new handshake.
        for _ in 0..3 {
            run(&mut edge, &clock, &mut host, 3);
            assert!(edge.is_sealed());
            host.welcome(0);
            run(&mut edge, &clock, &mut host, 2);
            assert!(matches!(edge.phase(), Phase::Session { .. }));
            clock.0.set(clock.0.get() + 10_000_000);
            let _ = edge.step();
            assert!(!edge.is_sealed(), "the link timed out");
            host.pump();
        }
        assert!(host.ephemerals.len() >= 3);
        for e in &host.ephemerals {
            assert!(seen.insert(*e), "an ephemeral key came twice");
        }
    }
}

#[test]
fn a_bit_flipping_peer_never_moves_the_alarm() {
    let key = LinkKey::new([3; 32]);
    let clock = TestClock::default();
    let (end, mut host) = link(key.clone());
    let mut buffers = Buffers::new();
    let mut pin = PinMock::new(&[]);
    let mut edge = Edge::new_secure(
        peripherals(end, &clock, pin.clone()),
        EdgeConfig::default(),
        security(&key, 1),
        &mut buffers,
    );
    establish(&mut edge, &clock, &mut host);
    // Sealed alarm results with one bit flipped somewhere in the packet each, CRC fixed up
    // where the flip is in the data so that only the tag can catch it.
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for seq in 0..200u32 {
        let (counter, mut data) = sealed_parts(
            host.channel.as_mut().unwrap(),
            &SecureHost::alarm_result(seq),
        );
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let at = (rng % data.len() as u64) as usize;
        data[at] ^= 1 << (rng >> 61);
        host.send_clear(&Message::Sealed(Sealed {
            counter,
            data: &data,
        }));
        run(&mut edge, &clock, &mut host, 1);
    }
    assert!(!edge.alarm_raised());
    assert_eq!(edge.stats().packets_forged, 200);
    pin.done();
}
