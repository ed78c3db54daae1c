//! The Noise `NNpsk0` handshake: the edge starts it ([`Initiator`]), the host answers it
//! ([`respond`]); both end with a [`Channel`].

use clatter::bytearray::ByteArray;
use clatter::crypto::cipher::ChaChaPoly;
use clatter::crypto::dh::X25519;
use clatter::crypto::hash::Blake2s;
use clatter::handshakepattern::noise_nn_psk0;
use clatter::rand_core::{CryptoRng, RngCore};
use clatter::traits::{Dh, Handshaker};
use clatter::{KeyPair, NqHandshakeCore};

use super::channel::Channel;
use super::keys::{KeyId, LinkKey};

/// Bytes of each handshake message's `noise` field: an ephemeral public key (32) and the
/// tag of the empty encrypted payload (16).
pub const NOISE_LEN: usize = 48;

/// The prologue both sides mix in before the first message: the protocol version and the key
/// id, so that a peer that rewrites either breaks the handshake.
const PROLOGUE_LABEL: &[u8] = b"dinoedge link NNpsk0";
const PROLOGUE_LEN: usize = PROLOGUE_LABEL.len() + 2 + 8;

type Handshake = NqHandshakeCore<X25519, ChaChaPoly, Blake2s, SuppliedEphemeral>;

/// Why a handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum HandshakeError {
    /// The peer's message has the wrong length.
    #[error("the handshake message is {found} bytes; {NOISE_LEN} expected")]
    Length {
        /// Its length.
        found: usize,
    },
    /// The peer's message did not verify: it does not hold the key, or the message (or its
    /// version or key id) was altered.
    #[error(
        "the handshake did not verify: the peer does not hold the key, or the message was altered"
    )]
    BadProof,
    /// The Noise state machine refused an operation (a bug here, not the peer's doing).
    #[error("the handshake state machine refused: {0}")]
    Internal(&'static str),
}

/// The edge's half-done handshake: message 1 is sent, message 2 awaited.
pub struct Initiator {
    handshake: Handshake,
}

impl core::fmt::Debug for Initiator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Initiator(awaiting SecureWelcome)")
    }
}

impl Initiator {
    /// Starts a handshake under `key` with `ephemeral_secret` (never used before: see
    /// [`ephemeral_secret`](super::ephemeral_secret)); writes message 1 into `out`.
    pub fn start(
        key: &LinkKey,
        protocol_version: u16,
        ephemeral_secret: [u8; 32],
        out: &mut [u8; NOISE_LEN],
    ) -> Result<Initiator, HandshakeError> {
        let mut handshake = new_handshake(key, protocol_version, true, ephemeral_secret)?;
        let written = handshake
            .write_message(&[], out)
            .map_err(|_| HandshakeError::Internal("write message 1"))?;
        if written != NOISE_LEN {
            return Err(HandshakeError::Internal("message 1 length"));
        }
        Ok(Initiator { handshake })
    }

    /// Reads the host's message 2: a [`Channel`] when the host proved it holds the key.
    pub fn finish(mut self, noise: &[u8]) -> Result<Channel, HandshakeError> {
        if noise.len() != NOISE_LEN {
            return Err(HandshakeError::Length { found: noise.len() });
        }
        let mut payload = [0u8; 0];
        self.handshake
            .read_message(noise, &mut payload)
            .map_err(|_| HandshakeError::BadProof)?;
        finish(self.handshake, true)
    }
}

/// The host's side: reads the edge's message 1 under `key` and, when the edge proved it holds
/// the key, writes message 2 into `out`; returns the channel and the edge's ephemeral public
/// key (a host that sees one twice is looking at a replay).
pub fn respond(
    key: &LinkKey,
    protocol_version: u16,
    ephemeral_secret: [u8; 32],
    hello_noise: &[u8],
    out: &mut [u8; NOISE_LEN],
) -> Result<(Channel, [u8; 32]), HandshakeError> {
    if hello_noise.len() != NOISE_LEN {
        return Err(HandshakeError::Length {
            found: hello_noise.len(),
        });
    }
    let mut handshake = new_handshake(key, protocol_version, false, ephemeral_secret)?;
    let mut payload = [0u8; 0];
    handshake
        .read_message(hello_noise, &mut payload)
        .map_err(|_| HandshakeError::BadProof)?;
    let mut edge_ephemeral = [0u8; 32];
    edge_ephemeral.copy_from_slice(hello_noise.get(..32).unwrap_or(&[0u8; 32]));
    let written = handshake
        .write_message(&[], out)
        .map_err(|_| HandshakeError::Internal("write message 2"))?;
    if written != NOISE_LEN {
        return Err(HandshakeError::Internal("message 2 length"));
    }
    Ok((finish(handshake, false)?, edge_ephemeral))
}

fn new_handshake(
    key: &LinkKey,
    protocol_version: u16,
    initiator: bool,
    ephemeral_secret: [u8; 32],
) -> Result<Handshake, HandshakeError> {
    let mut prologue = [0u8; PROLOGUE_LEN];
    let id: KeyId = key.id();
    let version = protocol_version.to_le_bytes();
    let parts = PROLOGUE_LABEL
        .iter()
        .chain(version.iter())
        .chain(id.0.iter());
    for (slot, byte) in prologue.iter_mut().zip(parts) {
        *slot = *byte;
    }
    let secret = <X25519 as Dh>::PrivateKey::from_slice(&ephemeral_secret);
    let public = X25519::pubkey(&secret);
    let mut handshake = Handshake::new(
        noise_nn_psk0(),
        &prologue,
        initiator,
        None,
        Some(KeyPair::new(public, secret)),
        None,
        None,
    )
    .map_err(|_| HandshakeError::Internal("pattern"))?;
    handshake.push_psk(key.bytes());
    Ok(handshake)
}

fn finish(handshake: Handshake, initiator: bool) -> Result<Channel, HandshakeError> {
    if !handshake.is_finished() {
        return Err(HandshakeError::Internal("not finished"));
    }
    let states = handshake
        .finalize()
        .map_err(|_| HandshakeError::Internal("finalize"))?
        .take();
    let (to_responder, _) = states.initiator_to_responder.take();
    let (to_initiator, _) = states.responder_to_initiator.take();
    Ok(if initiator {
        Channel::new(to_responder, to_initiator)
    } else {
        Channel::new(to_initiator, to_responder)
    })
}

/// The RNG type `clatter` asks for. Every ephemeral key here is supplied by the caller (the
/// edge derives its own, the host draws its own), so the handshake never asks it for bytes;
/// a test checks that the public key sent is the one derived from the supplied secret.
#[derive(Default, Clone)]
struct SuppliedEphemeral;

impl RngCore for SuppliedEphemeral {
    fn next_u32(&mut self) -> u32 {
        0
    }

    fn next_u64(&mut self) -> u64 {
        0
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.fill(0);
    }

    fn try_fill_bytes(&mut self, _dest: &mut [u8]) -> Result<(), clatter::rand_core::Error> {
        Err(clatter::rand_core::Error::from(core::num::NonZeroU32::MIN))
    }
}

impl CryptoRng for SuppliedEphemeral {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secure::ephemeral_secret;

    fn pair(edge_key: &LinkKey, host_key: &LinkKey) -> Result<(Channel, Channel), HandshakeError> {
        let mut m1 = [0u8; NOISE_LEN];
        let edge = Initiator::start(edge_key, 3, ephemeral_secret(edge_key, b"seed", 0), &mut m1)?;
        let mut m2 = [0u8; NOISE_LEN];
        let (host, _) = respond(host_key, 3, [0x42; 32], &m1, &mut m2)?;
        Ok((edge.finish(&m2)?, host))
    }

    #[test]
    fn both_sides_agree_on_keys() {
        let key = LinkKey::new([5; 32]);
        let (mut edge, mut host) = pair(&key, &key).unwrap();
        let mut buf = [0u8; 64];
        buf[..5].copy_from_slice(b"hello");
        let (counter, len) = edge.seal_in_place(&mut buf, 5).unwrap();
        assert_eq!(host.open_in_place(counter, &mut buf[..len]).unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");
        let (counter, len) = host.seal_in_place(&mut buf, 5).unwrap();
        assert_eq!(edge.open_in_place(counter, &mut buf[..len]).unwrap(), 5);
    }

    #[test]
    fn a_wrong_key_fails_at_the_host() {
        let err = pair(&LinkKey::new([5; 32]), &LinkKey::new([6; 32])).unwrap_err();
        assert_eq!(err, HandshakeError::BadProof);
    }

    #[test]
    fn message_1_carries_the_supplied_ephemeral_key() {
        let key = LinkKey::new([5; 32]);
        let secret = ephemeral_secret(&key, b"seed", 3);
        let mut m1 = [0u8; NOISE_LEN];
        Initiator::start(&key, 3, secret, &mut m1).unwrap();
        let expected = X25519::pubkey(&<X25519 as Dh>::PrivateKey::from_slice(&secret));
        assert_eq!(&m1[..32], &expected[..]);
    }

    #[test]
    fn an_altered_version_or_message_fails() {
        let key = LinkKey::new([5; 32]);
        let mut m1 = [0u8; NOISE_LEN];
        Initiator::start(&key, 3, [1; 32], &mut m1).unwrap();
        let mut m2 = [0u8; NOISE_LEN];
        assert_eq!(
            respond(&key, 2, [2; 32], &m1, &mut m2).unwrap_err(),
            HandshakeError::BadProof,
            "a downgraded version"
        );
        for i in 0..NOISE_LEN {
            let mut bad = m1;
            bad[i] ^= 1;
            assert!(
                respond(&key, 3, [2; 32], &bad, &mut m2).is_err(),
                "byte {i}"
            );
        }
        assert_eq!(
            respond(&key, 3, [2; 32], &m1[..40], &mut m2).unwrap_err(),
            HandshakeError::Length { found: 40 }
        );
    }

    #[test]
    fn a_forged_welcome_fails_at_the_edge() {
        let key = LinkKey::new([5; 32]);
        let mut m1 = [0u8; NOISE_LEN];
        let edge = Initiator::start(&key, 3, [1; 32], &mut m1).unwrap();
        // A host without the key answers with its own message 2.
        let other = LinkKey::new([6; 32]);
        let mut m1_other = [0u8; NOISE_LEN];
        Initiator::start(&other, 3, [1; 32], &mut m1_other).unwrap();
        let mut m2 = [0u8; NOISE_LEN];
        respond(&other, 3, [2; 32], &m1_other, &mut m2).unwrap();
        assert_eq!(edge.finish(&m2).unwrap_err(), HandshakeError::BadProof);
    }
}
