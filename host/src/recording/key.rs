//! Keys for recordings encrypted at rest: the key file, the key's public id, and the sealing
//! of record payloads (`host/RECORDING.md`, version 2, has the byte layout and the reasons).
//!
//! The key lives in a file of its own, readable by its owner only, and never goes into a
//! recording: a recording names its key by an 8-byte id, a hash that says which key to fetch
//! without helping anyone guess it.

use std::fmt;
use std::io::{Read, Write};
use std::path::Path;

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, Tag};
use sha2::{Digest, Sha256};

use super::RecordingError;

/// The first word of a key file, then the format version, then the key in hex.
const KEY_FILE_TAG: &str = "dinoedge-recording-key";
/// The key file format this build writes and reads.
const KEY_FILE_VERSION: &str = "v1";
/// A key file is one short line; anything much longer is not one.
const KEY_FILE_MAX: u64 = 1024;
/// Hashed before the key for its id, so that the id is no other hash of the key anyone uses.
const KEY_ID_LABEL: &[u8] = b"dinoedge recording key id v1\0";
/// HKDF's `info` for a file's record key: the key for another purpose would differ.
const FILE_KEY_INFO: &[u8] = b"dinoedge recording v2 record key";

/// Bytes of a recording key.
pub const KEY_LEN: usize = 32;
/// Bytes of a key id.
pub const KEY_ID_LEN: usize = 8;
/// Bytes of a file's random salt.
pub const SALT_LEN: usize = 16;
/// Bytes of the writer tag at the start of every sealed payload.
pub const WRITER_TAG_LEN: usize = 4;
/// Bytes a sealed payload adds to the plain one: the writer tag and the Poly1305 tag.
pub const SEAL_OVERHEAD: usize = WRITER_TAG_LEN + 16;

/// A key's public name: the first 8 bytes of SHA-256 over a label and the key. It tells which
/// key a recording needs; it does not help find the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A 32-byte key that recordings are encrypted with. Its `Debug` shows only its id, so that
/// no log or error message can carry the key itself; it is wiped from memory when dropped.
#[derive(Clone, PartialEq, Eq, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct RecordingKey {
    bytes: [u8; KEY_LEN],
}

impl fmt::Debug for RecordingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordingKey(id {})", self.id())
    }
}

impl RecordingKey {
    /// A key from its bytes (tests, or a key kept elsewhere).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        RecordingKey { bytes }
    }

    /// A new random key from the operating system's entropy.
    pub fn generate() -> Result<Self, RecordingError> {
        let mut bytes = [0u8; KEY_LEN];
        fill_random(&mut bytes)?;
        Ok(RecordingKey { bytes })
    }

    /// The key's public id, as written in the recordings it encrypts.
    pub fn id(&self) -> KeyId {
        let digest = Sha256::new()
            .chain_update(KEY_ID_LABEL)
            .chain_update(self.bytes)
            .finalize();
        let mut id = [0u8; KEY_ID_LEN];
        for (out, b) in id.iter_mut().zip(digest.iter()) {
            *out = *b;
        }
        KeyId(id)
    }

    /// Reads a key file written by [`create_key_file`]. A key file that its group or others
    /// may read is refused, whatever it holds: the key in it must be taken as known.
    pub fn load(path: &Path) -> Result<Self, RecordingError> {
        let file = crate::files::open_private(path).map_err(|e| match e {
            crate::files::OpenPrivateError::Io(e) => RecordingError::io(path, e),
            crate::files::OpenPrivateError::ReadableByOthers(mode) => {
                RecordingError::KeyFileReadableByOthers {
                    path: path.to_owned(),
                    mode,
                }
            }
        })?;
        let bad = |reason: &str| RecordingError::KeyFileFormat {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        let mut text = String::new();
        file.take(KEY_FILE_MAX + 1)
            .read_to_string(&mut text)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::InvalidData => bad("it is not text"),
                _ => RecordingError::io(path, e),
            })?;
        if text.len() as u64 > KEY_FILE_MAX {
            return Err(bad("too long for a key file"));
        }
        let mut words = text.split_whitespace();
        let (Some(tag), Some(version), Some(hex), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return Err(bad(&format!(
                "expected one line `{KEY_FILE_TAG} {KEY_FILE_VERSION} <64 hex digits>`"
            )));
        };
        if tag != KEY_FILE_TAG {
            return Err(bad(&format!("it does not start with `{KEY_FILE_TAG}`")));
        }
        if version != KEY_FILE_VERSION {
            return Err(bad(&format!(
                "key file version {version}; this dinoedge reads {KEY_FILE_VERSION}"
            )));
        }
        let bytes = parse_hex_key(hex)
            .ok_or_else(|| bad(&format!("the key is not {} hex digits", KEY_LEN * 2)))?;
        Ok(RecordingKey { bytes })
    }

    /// The key that seals the records of the file with `salt`: HKDF-SHA256 of this key, so
    /// that files sharing a key never share a record key (their nonces may repeat).
    pub(crate) fn file_cipher(&self, salt: &[u8; SALT_LEN]) -> FileCipher {
        let hkdf = hkdf::Hkdf::<Sha256>::new(Some(salt), &self.bytes);
        let mut okm = [0u8; KEY_LEN];
        // 32 bytes is far below HKDF-SHA256's limit of 255 blocks: this cannot fail.
        let _ = hkdf.expand(FILE_KEY_INFO, &mut okm);
        let aead = ChaCha20Poly1305::new(&okm.into());
        okm.fill(0);
        FileCipher { aead }
    }
}

/// Two hex digits per byte, upper or lower case.
fn parse_hex_key(hex: &str) -> Option<[u8; KEY_LEN]> {
    let digits = hex.as_bytes();
    if digits.len() != KEY_LEN * 2 {
        return None;
    }
    let mut out = [0u8; KEY_LEN];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

/// Fills `buf` from the operating system's entropy (as the link's keys are made).
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), RecordingError> {
    getrandom::fill(buf).map_err(|e| RecordingError::Entropy(e.to_string()))
}

/// Writes a new random key to `path`, readable and writable by its owner only from the moment
/// the file exists, and returns it. An existing file is never overwritten: the recordings made
/// with the key it holds would become unreadable.
pub fn create_key_file(path: &Path) -> Result<RecordingKey, RecordingError> {
    let key = RecordingKey::generate()?;
    let mut file = crate::files::create_private(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => RecordingError::KeyFileExists {
            path: path.to_owned(),
        },
        _ => RecordingError::io(path, e),
    })?;
    let mut line = format!("{KEY_FILE_TAG} {KEY_FILE_VERSION} ");
    for b in key.bytes {
        line.push_str(&format!("{b:02x}"));
    }
    line.push('\n');
    let written = file
        .write_all(line.as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        // A key file cut short holds no usable key: leave nothing that looks like one.
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(RecordingError::io(path, e));
    }
    Ok(key)
}

/// Seals and opens the record payloads of one encrypted recording (its key from the key and
/// the file's salt).
pub(crate) struct FileCipher {
    aead: ChaCha20Poly1305,
}

impl FileCipher {
    /// The nonce of the record at `offset` written by the writer with `writer_tag`: the offset
    /// is unique within a file, and the writer tag keeps apart the records of two writers at
    /// one offset (an append that rewrites where a crashed writer's last record had begun).
    fn nonce(offset: u64, writer_tag: [u8; WRITER_TAG_LEN]) -> Nonce {
        let mut n = [0u8; 12];
        n[..8].copy_from_slice(&offset.to_le_bytes());
        n[8..].copy_from_slice(&writer_tag);
        n.into()
    }

    /// The associated data: a record's kind and time, so that neither can be changed or
    /// swapped with another record's without the tag failing.
    fn associated(kind: u8, t_us: u64) -> [u8; 9] {
        let mut a = [0u8; 9];
        a[0] = kind;
        a[1..].copy_from_slice(&t_us.to_le_bytes());
        a
    }

    /// Appends to `out` the sealed form of `plain`: the writer tag, the ciphertext, the tag.
    /// `None` (and `out` as it was) if the cipher refuses, which ChaCha20-Poly1305 does only
    /// beyond 256 GiB per message: nothing unsealed is ever left to be written.
    pub(crate) fn seal(
        &self,
        offset: u64,
        writer_tag: [u8; WRITER_TAG_LEN],
        kind: u8,
        t_us: u64,
        plain: &[u8],
        out: &mut Vec<u8>,
    ) -> Option<()> {
        let before = out.len();
        out.extend_from_slice(&writer_tag);
        let start = out.len();
        out.extend_from_slice(plain);
        let sealed = out.get_mut(start..).and_then(|buf| {
            self.aead
                .encrypt_in_place_detached(
                    &Self::nonce(offset, writer_tag),
                    &Self::associated(kind, t_us),
                    buf,
                )
                .ok()
        });
        match sealed {
            Some(tag) => {
                out.extend_from_slice(&tag);
                Some(())
            }
            None => {
                out.truncate(before);
                None
            }
        }
    }

    /// The plain payload of the sealed record at `offset`, or `None` when it is too short to be
    /// sealed or its tag fails (damage that kept the CRC whole, a record moved or altered, or a
    /// different key with the same id).
    pub(crate) fn open(&self, offset: u64, kind: u8, t_us: u64, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < SEAL_OVERHEAD {
            return None;
        }
        let (writer_tag, rest) = sealed.split_at(WRITER_TAG_LEN);
        let (ciphertext, tag) = rest.split_at(rest.len() - 16);
        let writer_tag: [u8; WRITER_TAG_LEN] = writer_tag.try_into().ok()?;
        let mut plain = ciphertext.to_vec();
        self.aead
            .decrypt_in_place_detached(
                &Self::nonce(offset, writer_tag),
                &Self::associated(kind, t_us),
                &mut plain,
                Tag::from_slice(tag),
            )
            .ok()?;
        Some(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_payload_opens_only_where_and_as_it_was_sealed() {
        let key = RecordingKey::from_bytes([7; KEY_LEN]);
        let cipher = key.file_cipher(&[1; SALT_LEN]);
        let mut sealed = Vec::new();
        cipher
            .seal(100, [9, 9, 9, 9], 1, 5, b"pixels", &mut sealed)
            .unwrap();
        assert_eq!(sealed.len(), 6 + SEAL_OVERHEAD);
        assert!(!sealed.windows(6).any(|w| w == b"pixels"));
        assert_eq!(
            cipher.open(100, 1, 5, &sealed).as_deref(),
            Some(&b"pixels"[..])
        );
        // Another offset, kind, time, salt or key: the tag fails.
        assert_eq!(cipher.open(101, 1, 5, &sealed), None);
        assert_eq!(cipher.open(100, 2, 5, &sealed), None);
        assert_eq!(cipher.open(100, 1, 6, &sealed), None);
        assert_eq!(
            key.file_cipher(&[2; SALT_LEN]).open(100, 1, 5, &sealed),
            None
        );
        let other = RecordingKey::from_bytes([8; KEY_LEN]);
        assert_eq!(
            other.file_cipher(&[1; SALT_LEN]).open(100, 1, 5, &sealed),
            None
        );
        assert_eq!(cipher.open(100, 1, 5, &sealed[..SEAL_OVERHEAD - 1]), None);
    }

    #[test]
    fn key_ids_differ_by_key_and_never_show_the_key() {
        let a = RecordingKey::from_bytes([0xAB; KEY_LEN]);
        let b = RecordingKey::from_bytes([0xAC; KEY_LEN]);
        assert_ne!(a.id(), b.id());
        assert_eq!(a.id().to_string().len(), KEY_ID_LEN * 2);
        let shown = format!("{a:?}");
        assert!(!shown.to_lowercase().contains("abab"), "{shown}");
        assert_eq!(parse_hex_key(&"Ab".repeat(KEY_LEN)), Some([0xAB; KEY_LEN]));
        assert_eq!(parse_hex_key(&"zz".repeat(KEY_LEN)), None);
        assert_eq!(parse_hex_key("ab"), None);
    }
}
