//! The host's side of the handshake as a state machine that does no I/O: bytes from the
//! edge in; what to send back, and whether the edge is in, out, or not yet either.

use std::collections::{HashSet, VecDeque};

use dinoedge_proto::secure::{Channel, KeyId, NOISE_LEN, respond};
use dinoedge_proto::wire::{self, DecodeError, Decoder};
use dinoedge_proto::{
    AuthRefusal, Message, PROTOCOL_VERSION, SecureHello, SecureReject, SecureWelcome,
};

use super::keyring::Keyring;

/// Edge ephemeral keys remembered, to refuse a replayed `SecureHello`.
const SEEN_EPHEMERALS: usize = 65_536;

/// The edge ephemeral keys accepted lately: an edge never uses one twice, so one seen again is
/// a replay of a recorded handshake.
#[derive(Debug, Default)]
pub struct SeenEphemerals {
    order: VecDeque<[u8; 32]>,
    set: HashSet<[u8; 32]>,
}

impl SeenEphemerals {
    /// Remembers `key`; `false` if it was already known.
    pub fn insert(&mut self, key: [u8; 32]) -> bool {
        if !self.set.insert(key) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > SEEN_EPHEMERALS
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

/// What the handshake needs besides the bytes.
pub struct GateContext<'a> {
    /// The keys the host accepts.
    pub keyring: &'a Keyring,
    /// Wall-clock time, seconds since the Unix epoch (a rotated key's window).
    pub now_unix_s: u64,
    /// Edge ephemeral keys seen before.
    pub seen: &'a mut SeenEphemerals,
    /// A fresh ephemeral secret for the host's answer.
    pub secret: [u8; 32],
}

/// An edge that proved its key.
#[derive(Debug)]
pub struct Established {
    /// The session's keys.
    pub channel: Channel,
    /// The key's id.
    pub key_id: KeyId,
    /// The unit the key belongs to; its `Hello` must name it.
    pub device_id: String,
}

/// A handshake the host refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Why, as the audit trail names it.
    pub reason: &'static str,
    /// The key id the edge named, if it named one.
    pub key_id: Option<KeyId>,
    /// The unit of that key, if the host knows it.
    pub device_id: Option<String>,
}

/// What [`Gate::on_bytes`] came to.
#[derive(Debug)]
pub enum GateOutcome {
    /// Nothing decided yet; read more.
    Pending,
    /// The edge is in: seal everything from now on.
    Established(Box<Established>),
    /// The edge was refused (and told, in the packet to send).
    Refused(Refused),
}

/// The handshake's state: the decoder of the edge's clear packets.
#[derive(Debug)]
pub struct Gate {
    decoder: Decoder<Vec<u8>>,
    encode_buf: Vec<u8>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new()
    }
}

impl Gate {
    /// A gate waiting for a `SecureHello`.
    pub fn new() -> Self {
        Gate {
            decoder: Decoder::new(vec![0u8; wire::max_wire_len(dinoedge_proto::MIN_PACKET)]),
            encode_buf: vec![0u8; wire::encode_buffer_len(dinoedge_proto::MIN_PACKET)],
        }
    }

    /// Feeds `input` until a decision; the bytes after the deciding packet stay in `input`
    /// (sealed packets that followed it). Packets to send back are appended to `send`.
    pub fn on_bytes(
        &mut self,
        input: &mut &[u8],
        ctx: &mut GateContext<'_>,
        send: &mut Vec<u8>,
    ) -> GateOutcome {
        while let Some(result) = self.decoder.push(input) {
            let outcome = match result.and_then(|_| self.decoder.message()) {
                Ok(Message::SecureHello(hello)) => answer(&hello, ctx),
                Ok(Message::Hello(_)) | Err(DecodeError::OtherVersionHello { .. }) => {
                    Err(Refused {
                        reason: "secure_link_required",
                        key_id: None,
                        device_id: None,
                    })
                }
                // Anything else before the handshake (a sealed packet of a session the host
                // no longer has, noise) is dropped.
                _ => continue,
            };
            return match outcome {
                Ok((established, noise)) => {
                    let welcome = Message::SecureWelcome(SecureWelcome { noise: &noise });
                    if let Ok(bytes) = wire::encode(&welcome, &mut self.encode_buf) {
                        send.extend_from_slice(bytes);
                    }
                    GateOutcome::Established(Box::new(established))
                }
                Err(refused) => {
                    let reject = Message::SecureReject(SecureReject {
                        reason: refusal(refused.reason),
                        supported_min: PROTOCOL_VERSION,
                        supported_max: PROTOCOL_VERSION,
                    });
                    if let Ok(bytes) = wire::encode(&reject, &mut self.encode_buf) {
                        send.extend_from_slice(bytes);
                    }
                    GateOutcome::Refused(refused)
                }
            };
        }
        GateOutcome::Pending
    }
}

/// The protocol's refusal for an audit reason.
pub fn refusal(reason: &str) -> AuthRefusal {
    match reason {
        "unsupported_version" => AuthRefusal::UnsupportedVersion,
        "unknown_key" => AuthRefusal::UnknownKey,
        "revoked_key" => AuthRefusal::RevokedKey,
        "retired_key" => AuthRefusal::RetiredKey,
        "rate_limited" => AuthRefusal::RateLimited,
        "secure_link_required" => AuthRefusal::SecureLinkRequired,
        _ => AuthRefusal::BadProof,
    }
}

fn answer(
    hello: &SecureHello<'_>,
    ctx: &mut GateContext<'_>,
) -> Result<(Established, [u8; NOISE_LEN]), Refused> {
    let key_id = KeyId(hello.key_id);
    let refused = |reason, device_id| Refused {
        reason,
        key_id: Some(key_id),
        device_id,
    };
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(refused("unsupported_version", None));
    }
    let entry = ctx.keyring.lookup(key_id, ctx.now_unix_s).map_err(|r| {
        let reason = match r {
            AuthRefusal::RevokedKey => "revoked_key",
            AuthRefusal::RetiredKey => "retired_key",
            _ => "unknown_key",
        };
        refused(reason, None)
    })?;
    let device = Some(entry.device_id.clone());
    let mut noise = [0u8; NOISE_LEN];
    let (channel, edge_ephemeral) = respond(
        &entry.key,
        hello.protocol_version,
        ctx.secret,
        hello.noise,
        &mut noise,
    )
    .map_err(|_| refused("bad_proof", device.clone()))?;
    if !ctx.seen.insert(edge_ephemeral) {
        return Err(refused("replayed_handshake", device));
    }
    Ok((
        Established {
            channel,
            key_id,
            device_id: entry.device_id.clone(),
        },
        noise,
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use dinoedge_proto::secure::{Initiator, LinkKey};
    use dinoedge_proto::{Capabilities, Hello, PixelFormat, Sensor, Version};

    use super::*;
    use crate::link::secure::keyring::{self, new_key, revoke_key, rotate_key};

    struct Edge {
        key: LinkKey,
        attempt: u8,
    }

    impl Edge {
        /// A SecureHello on the wire, and the initiator awaiting its answer.
        fn hello(&mut self, version: u16) -> (Vec<u8>, Initiator) {
            self.attempt += 1;
            let mut noise = [0u8; NOISE_LEN];
            let initiator =
                Initiator::start(&self.key, version, [self.attempt; 32], &mut noise).unwrap();
            let msg = Message::SecureHello(SecureHello {
                protocol_version: version,
                key_id: self.key.id().0,
                noise: &noise,
            });
            let mut buf = vec![0u8; 256];
            (wire::encode(&msg, &mut buf).unwrap().to_vec(), initiator)
        }
    }

    fn key_of(dir: &std::path::Path, device: &str) -> (LinkKey, KeyId) {
        let new = new_key(dir, device, 0).unwrap();
        let block = std::fs::read(&new.firmware_file).unwrap();
        (
            dinoedge_proto::secure::parse_key_block(&block).unwrap().0,
            new.id,
        )
    }

    /// Runs the gate on `bytes`; the outcome and the one packet it sent back.
    fn gate(
        keyring: &Keyring,
        seen: &mut SeenEphemerals,
        now_unix_s: u64,
        bytes: &[u8],
    ) -> (GateOutcome, Option<Message<'static>>) {
        let mut g = Gate::new();
        let mut ctx = GateContext {
            keyring,
            now_unix_s,
            seen,
            secret: [0x77; 32],
        };
        let mut send = Vec::new();
        let mut input = bytes;
        let outcome = g.on_bytes(&mut input, &mut ctx, &mut send);
        let reply = (!send.is_empty()).then(|| {
            let mut d = Decoder::new(vec![0u8; 512]);
            let msg = d.decode(&mut &send[..]).unwrap().unwrap();
            match msg {
                Message::SecureWelcome(_) => Message::SecureWelcome(SecureWelcome { noise: &[] }),
                Message::SecureReject(r) => Message::SecureReject(r),
                other => panic!("{other:?}"),
            }
        });
        (outcome, reply)
    }

    fn refused_for(outcome: &GateOutcome) -> &'static str {
        match outcome {
            GateOutcome::Refused(r) => r.reason,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn the_right_key_gets_a_channel_that_talks_to_the_edge() {
        let dir = tempfile::tempdir().unwrap();
        let (key, id) = key_of(dir.path(), "US-7");
        let ring = Keyring::load(dir.path()).unwrap();
        let mut seen = SeenEphemerals::default();
        let mut edge = Edge { key, attempt: 0 };
        let (hello, initiator) = edge.hello(PROTOCOL_VERSION);
        let mut g = Gate::new();
        let mut ctx = GateContext {
            keyring: &ring,
            now_unix_s: 10,
            seen: &mut seen,
            secret: [9; 32],
        };
        let mut send = Vec::new();
        let GateOutcome::Established(est) = g.on_bytes(&mut &hello[..], &mut ctx, &mut send) else {
            panic!()
        };
        assert_eq!(est.key_id, id);
        assert_eq!(est.device_id, "US-7");
        let mut d = Decoder::new(vec![0u8; 512]);
        let Message::SecureWelcome(w) = d.decode(&mut &send[..]).unwrap().unwrap() else {
            panic!()
        };
        let mut edge_channel = initiator.finish(w.noise).unwrap();
        let mut host_channel = est.channel;
        let mut buf = [0u8; 32];
        buf[..4].copy_from_slice(b"ping");
        let (counter, len) = edge_channel.seal_in_place(&mut buf, 4).unwrap();
        assert_eq!(
            host_channel
                .open_in_place(counter, &mut buf[..len])
                .unwrap(),
            4
        );
    }

    #[test]
    fn wrong_unknown_revoked_retired_and_replayed_handshakes_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let (key, id) = key_of(dir.path(), "US-7");
        let mut seen = SeenEphemerals::default();

        // A key the host does not have.
        let mut stranger = Edge {
            key: LinkKey::new([1; 32]),
            attempt: 0,
        };
        let ring = Keyring::load(dir.path()).unwrap();
        let (out, reply) = gate(&ring, &mut seen, 10, &stranger.hello(PROTOCOL_VERSION).0);
        assert_eq!(refused_for(&out), "unknown_key");
        assert!(matches!(
            reply,
            Some(Message::SecureReject(SecureReject {
                reason: AuthRefusal::UnknownKey,
                ..
            }))
        ));

        // The right key id with the wrong key behind it: the proof fails.
        let mut impostor = Edge {
            key: LinkKey::new([1; 32]),
            attempt: 0,
        };
        let (mut forged, _) = impostor.hello(PROTOCOL_VERSION);
        let mut d = Decoder::new(vec![0u8; 512]);
        let Message::SecureHello(h) = d.decode(&mut &forged[..]).unwrap().unwrap() else {
            panic!()
        };
        let noise = h.noise.to_vec();
        let msg = Message::SecureHello(SecureHello {
            protocol_version: PROTOCOL_VERSION,
            key_id: id.0,
            noise: &noise,
        });
        let mut buf = vec![0u8; 256];
        forged = wire::encode(&msg, &mut buf).unwrap().to_vec();
        let (out, _) = gate(&ring, &mut seen, 10, &forged);
        assert_eq!(refused_for(&out), "bad_proof");

        // The genuine edge, then the same handshake replayed.
        let mut edge = Edge { key, attempt: 0 };
        let (hello, _) = edge.hello(PROTOCOL_VERSION);
        assert!(matches!(
            gate(&ring, &mut seen, 10, &hello).0,
            GateOutcome::Established(_)
        ));
        assert_eq!(
            refused_for(&gate(&ring, &mut seen, 10, &hello).0),
            "replayed_handshake"
        );

        // A downgrade: the old version in the SecureHello, and a clear Hello of any version.
        assert_eq!(
            refused_for(&gate(&ring, &mut seen, 10, &edge.hello(2).0).0),
            "unsupported_version"
        );
        for version in [2, PROTOCOL_VERSION] {
            let hello = Message::Hello(Hello {
                protocol_version: version,
                device_id: heapless::String::try_from("US-7").unwrap(),
                firmware_version: Version {
                    major: 1,
                    minor: 0,
                    patch: 0,
                },
                sensor: Sensor {
                    width: 64,
                    height: 48,
                    format: PixelFormat::Gray8,
                    fps_milli: 30_000,
                },
                max_packet_tx: 4096,
                max_packet_rx: 1024,
                capabilities: Capabilities::empty(),
                previous: None,
            });
            let bytes = wire::encode(&hello, &mut buf).unwrap().to_vec();
            let (out, reply) = gate(&ring, &mut seen, 10, &bytes);
            assert_eq!(refused_for(&out), "secure_link_required");
            assert!(matches!(
                reply,
                Some(Message::SecureReject(SecureReject {
                    reason: AuthRefusal::SecureLinkRequired,
                    ..
                }))
            ));
        }

        // Rotated: the old key works inside its window, not after it; the new one works.
        let (_, retired) = rotate_key(dir.path(), "US-7", 100, 60).unwrap();
        assert_eq!(retired, vec![id]);
        let ring = Keyring::load(dir.path()).unwrap();
        assert!(matches!(
            gate(&ring, &mut seen, 150, &edge.hello(PROTOCOL_VERSION).0).0,
            GateOutcome::Established(_)
        ));
        assert_eq!(
            refused_for(&gate(&ring, &mut seen, 161, &edge.hello(PROTOCOL_VERSION).0).0),
            "retired_key"
        );

        // Revoked: refused at once, whatever the window says.
        revoke_key(dir.path(), id, "unit stolen").unwrap();
        let ring = Keyring::load(dir.path()).unwrap();
        assert_eq!(
            refused_for(&gate(&ring, &mut seen, 120, &edge.hello(PROTOCOL_VERSION).0).0),
            "revoked_key"
        );
        assert!(keyring::parse_key_id(&id.to_string()) == Some(id));
    }

    #[test]
    fn noise_before_the_handshake_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = key_of(dir.path(), "US-7");
        let ring = Keyring::load(dir.path()).unwrap();
        let mut seen = SeenEphemerals::default();
        let mut bytes = vec![0x13, 0x37, 0x00, 0xff, 0x00];
        bytes.extend(Edge { key, attempt: 0 }.hello(PROTOCOL_VERSION).0);
        assert!(matches!(
            gate(&ring, &mut seen, 10, &bytes).0,
            GateOutcome::Established(_)
        ));
    }
}
