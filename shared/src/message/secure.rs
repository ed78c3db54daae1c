//! The secure handshake and sealed packets (PROTOCOL.md §7): [`SecureHello`] from the edge,
//! [`SecureWelcome`] or [`SecureReject`] from the host, then every packet as [`Sealed`].
//!
//! The handshake is Noise `NNpsk0` (see [`crate::secure`]); these messages only carry its
//! bytes. Only [`SecureReject`] is sent in the clear without proof: an edge takes it as advice
//! (it waits and tries again), never as a reason to fall back to a clear link.

use serde::{Deserialize, Serialize};

/// Bytes of a key id: the first bytes of a hash of the key, so that the host can find the key
/// an edge uses without the key itself crossing the wire.
pub const KEY_ID_LEN: usize = 8;

/// Edge → host, first packet of a secure link: Noise `NNpsk0` message 1 (`psk, e`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SecureHello<'a> {
    /// The protocol version the edge speaks; part of the handshake's prologue, so a peer that
    /// rewrites it breaks the handshake.
    pub protocol_version: u16,
    /// Which pre-shared key the edge holds ([`crate::secure::KeyId`]); also in the prologue.
    pub key_id: [u8; KEY_ID_LEN],
    /// The Noise message: the edge's ephemeral public key and an encrypted empty payload.
    #[serde(borrow, with = "super::borrowed_bytes")]
    pub noise: &'a [u8],
}

/// Host → edge: Noise `NNpsk0` message 2 (`e, ee`); after it both sides hold session keys.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SecureWelcome<'a> {
    /// The Noise message: the host's ephemeral public key and an encrypted empty payload.
    #[serde(borrow, with = "super::borrowed_bytes")]
    pub noise: &'a [u8],
}

/// Why a host refused a [`SecureHello`].
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AuthRefusal {
    /// The host does not speak the edge's protocol version.
    UnsupportedVersion,
    /// No key with this id is configured on the host.
    UnknownKey,
    /// The key is listed as revoked.
    RevokedKey,
    /// The key's rotation window has ended: it was replaced by a newer key.
    RetiredKey,
    /// The handshake did not verify: the edge does not hold the key it named, or the
    /// message was damaged or replayed.
    BadProof,
    /// Too many failures from this address; try again later.
    RateLimited,
    /// The host requires a secure link and the edge spoke in the clear.
    SecureLinkRequired,
}

/// Host → edge, in the clear: the host will not complete the handshake, and why.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SecureReject {
    /// Why.
    pub reason: AuthRefusal,
    /// Oldest protocol version the host speaks.
    pub supported_min: u16,
    /// Newest protocol version the host speaks.
    pub supported_max: u16,
}

/// Both directions, once the handshake is done: one packet's message, encrypted and
/// authenticated with ChaCha20-Poly1305 under the session key of its direction.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Sealed<'a> {
    /// The sender's packet counter in this session, from 0: the AEAD nonce. It never repeats
    /// under one key; the receiver drops a counter it has seen or one too far behind.
    pub counter: u64,
    /// The inner message's postcard bytes, encrypted, then the 16-byte tag.
    #[serde(borrow, with = "super::borrowed_bytes")]
    pub data: &'a [u8],
}
