//! Pre-shared link keys, their ids, the key block flashed into the edge, and the derivation
//! of ephemeral secrets on an edge without a random number generator.

use clatter::crypto::hash::Blake2s;
use clatter::traits::Hash;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::message::{KEY_ID_LEN, MAX_ID};

/// Bytes of a pre-shared key.
pub const PSK_LEN: usize = 32;

/// Identifies a [`LinkKey`] without revealing it: the first bytes of a BLAKE2s hash of the key
/// under a label of its own.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

impl KeyId {
    /// The id of `psk`.
    pub fn of(psk: &[u8; PSK_LEN]) -> KeyId {
        let mut hasher = Blake2s::default();
        hasher.input(b"dinoedge link key id v1");
        hasher.input(psk);
        let digest = hasher.result();
        let mut id = [0u8; KEY_ID_LEN];
        for (slot, byte) in id.iter_mut().zip(digest.iter()) {
            *slot = *byte;
        }
        KeyId(id)
    }
}

impl core::fmt::Display for KeyId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl core::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// One edge's pre-shared key; wiped from memory when dropped, and never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct LinkKey {
    psk: [u8; PSK_LEN],
}

impl LinkKey {
    /// A key from its bytes.
    pub fn new(psk: [u8; PSK_LEN]) -> Self {
        LinkKey { psk }
    }

    /// Its id, as sent in a [`SecureHello`](crate::SecureHello).
    pub fn id(&self) -> KeyId {
        KeyId::of(&self.psk)
    }

    /// The key's bytes (to write a key file).
    pub fn bytes(&self) -> &[u8; PSK_LEN] {
        &self.psk
    }
}

impl core::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "LinkKey({}, secret withheld)", self.id())
    }
}

/// The secret of the edge's `attempt`-th handshake under `key` since the boot `seed` stands
/// for: a keyed BLAKE2s hash of the seed and the attempt.
///
/// On an edge without a hardware RNG the seed is the chip's unique id and a boot counter
/// that the firmware increments in flash before its first handshake, so no two handshakes
/// ever share a secret; a board with an RNG may pass 32 random bytes instead. Keyed with the
/// pre-shared key, so knowing the seed alone predicts nothing.
pub fn ephemeral_secret(key: &LinkKey, seed: &[u8], attempt: u32) -> [u8; 32] {
    let mac = Blake2s::hmac_many(
        &key.psk,
        &[b"dinoedge ephemeral v1", seed, &attempt.to_le_bytes()],
    );
    let mut secret = [0u8; 32];
    for (slot, byte) in secret.iter_mut().zip(mac.iter()) {
        *slot = *byte;
    }
    secret
}

/// Bytes of a key block: magic (8), key id (8), key (32), device id length (1), device id
/// (24, zero-padded), reserved (3), CRC-32 of all before it (4).
pub const KEY_BLOCK_LEN: usize = 80;

/// The first bytes of every key block.
const KEY_BLOCK_MAGIC: [u8; 8] = *b"DNEKEY01";

/// Why a key block was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum KeyBlockError {
    /// Shorter than [`KEY_BLOCK_LEN`].
    #[error("the key block is {0} bytes, a key block is 80")]
    TooShort(usize),
    /// No key block magic: erased flash (all `0xff`) or something else.
    #[error("no key block here (erased flash or another format)")]
    NoMagic,
    /// The CRC does not match: damaged.
    #[error("the key block is damaged (CRC mismatch)")]
    Damaged,
    /// The stored key id does not match the key: damaged or tampered with.
    #[error("the key block's key id does not match its key")]
    WrongId,
    /// The device id is too long or not UTF-8.
    #[error("the key block's device id is invalid")]
    BadDeviceId,
}

/// The key block the firmware image carries (flashed to its own sector), for `key` and the
/// unit `device_id`; `None` when the id is longer than [`MAX_ID`] bytes.
pub fn key_block(key: &LinkKey, device_id: &str) -> Option<[u8; KEY_BLOCK_LEN]> {
    let id = device_id.as_bytes();
    if id.len() > MAX_ID {
        return None;
    }
    let mut block = [0u8; KEY_BLOCK_LEN];
    let (head, crc) = block.split_at_mut(KEY_BLOCK_LEN - 4);
    head.get_mut(..8)?.copy_from_slice(&KEY_BLOCK_MAGIC);
    head.get_mut(8..16)?.copy_from_slice(&key.id().0);
    head.get_mut(16..48)?.copy_from_slice(&key.psk);
    *head.get_mut(48)? = id.len() as u8;
    head.get_mut(49..49 + id.len())?.copy_from_slice(id);
    crc.copy_from_slice(&crate::wire::crc32(head).to_le_bytes());
    Some(block)
}

/// Reads a key block: the key and the unit's device id.
pub fn parse_key_block(block: &[u8]) -> Result<(LinkKey, heapless::String<MAX_ID>), KeyBlockError> {
    let block = block
        .get(..KEY_BLOCK_LEN)
        .ok_or(KeyBlockError::TooShort(block.len()))?;
    let (head, crc) = block.split_at(KEY_BLOCK_LEN - 4);
    if head.get(..8) != Some(&KEY_BLOCK_MAGIC[..]) {
        return Err(KeyBlockError::NoMagic);
    }
    let mut stored = [0u8; 4];
    stored.copy_from_slice(crc);
    if u32::from_le_bytes(stored) != crate::wire::crc32(head) {
        return Err(KeyBlockError::Damaged);
    }
    let mut psk = [0u8; PSK_LEN];
    psk.copy_from_slice(head.get(16..48).ok_or(KeyBlockError::Damaged)?);
    let key = LinkKey::new(psk);
    psk.zeroize();
    if head.get(8..16) != Some(&key.id().0[..]) {
        return Err(KeyBlockError::WrongId);
    }
    let len = usize::from(*head.get(48).ok_or(KeyBlockError::Damaged)?);
    let id = head
        .get(49..49 + len)
        .filter(|_| len <= MAX_ID)
        .ok_or(KeyBlockError::BadDeviceId)?;
    let id = core::str::from_utf8(id).map_err(|_| KeyBlockError::BadDeviceId)?;
    let device_id = heapless::String::try_from(id).map_err(|_| KeyBlockError::BadDeviceId)?;
    Ok((key, device_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_differ_by_key_and_hide_it() {
        let a = LinkKey::new([1; PSK_LEN]);
        let b = LinkKey::new([2; PSK_LEN]);
        assert_ne!(a.id(), b.id());
        assert_eq!(a.id(), LinkKey::new([1; PSK_LEN]).id());
        assert!(!format!("{a:?}").contains("0101"), "{a:?}");
    }

    #[test]
    fn ephemeral_secrets_differ_by_seed_attempt_and_key() {
        let key = LinkKey::new([7; PSK_LEN]);
        let s = ephemeral_secret(&key, b"uid-0001 boot 1", 0);
        assert_ne!(s, ephemeral_secret(&key, b"uid-0001 boot 2", 0));
        assert_ne!(s, ephemeral_secret(&key, b"uid-0001 boot 1", 1));
        assert_ne!(
            s,
            ephemeral_secret(&LinkKey::new([8; PSK_LEN]), b"uid-0001 boot 1", 0)
        );
        assert_eq!(s, ephemeral_secret(&key, b"uid-0001 boot 1", 0));
    }

    #[test]
    fn key_blocks_round_trip_and_refuse_damage() {
        let key = LinkKey::new([9; PSK_LEN]);
        let block = key_block(&key, "US-0042").unwrap();
        let (read, id) = parse_key_block(&block).unwrap();
        assert_eq!(read.bytes(), key.bytes());
        assert_eq!(id.as_str(), "US-0042");
        assert_eq!(
            parse_key_block(&[0xff; KEY_BLOCK_LEN]).unwrap_err(),
            KeyBlockError::NoMagic
        );
        assert_eq!(
            parse_key_block(&block[..40]).unwrap_err(),
            KeyBlockError::TooShort(40)
        );
        for i in 8..KEY_BLOCK_LEN {
            let mut bad = block;
            bad[i] ^= 0x10;
            assert!(parse_key_block(&bad).is_err(), "byte {i} flipped");
        }
        assert!(key_block(&key, &"x".repeat(MAX_ID + 1)).is_none());
    }
}
