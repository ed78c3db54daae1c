//! Authenticated, encrypted links (PROTOCOL.md §7; the threat model is SECURITY.md).
//!
//! ```text
//!  edge (initiator)                                   host (responder)
//!  SecureHello{version, key_id, noise: e}  ──────►   key by id (revoked? retired?),
//!                                                     respond(): proves the edge holds it
//!  Initiator::finish(): proves the host holds it ◄──  SecureWelcome{noise: e, ee}
//!  Sealed{counter, AEAD(message)}          ◄──────►   Sealed{counter, AEAD(message)}
//! ```
//!
//! The handshake is Noise `NNpsk0` over X25519, ChaCha20-Poly1305 and BLAKE2s
//! ([`NOISE_PROTOCOL`]), run by the `clatter` crate, which is `no_std` without an allocator.
//! Both sides hold one pre-shared key per edge ([`LinkKey`]); only its [`KeyId`] crosses the
//! wire. Every packet after the handshake is a [`Sealed`](crate::Sealed) message: the inner
//! message's bytes under the session key of its direction, its counter the nonce
//! ([`Channel`]).
//!
//! Nothing here reads a clock or a random number generator: the caller supplies each
//! ephemeral secret. An edge without a hardware RNG derives its secrets with
//! [`ephemeral_secret`] from a seed that never repeats across reboots (a boot counter kept in
//! flash and the chip's unique id).

mod channel;
mod handshake;
mod keys;

pub use channel::{
    Channel, OpenError, REPLAY_WINDOW, ReplayWindow, SEAL_OVERHEAD, SealError, TAG_LEN,
};
pub use handshake::{HandshakeError, Initiator, NOISE_LEN, respond};
pub use keys::{
    KEY_BLOCK_LEN, KeyBlockError, KeyId, LinkKey, PSK_LEN, ephemeral_secret, key_block,
    parse_key_block,
};

/// The Noise protocol name, as the Noise specification spells it.
pub const NOISE_PROTOCOL: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";
