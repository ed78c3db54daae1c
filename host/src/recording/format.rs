//! The byte layout of a recording, shared by the writer and the reader.

use std::path::Path;

use super::RecordingError;
use super::key::{KEY_ID_LEN, KeyId, SALT_LEN};

/// The first eight bytes of every recording.
pub const FILE_MAGIC: [u8; 8] = *b"DNEDGREC";
/// The newest format this build reads. It writes [`ENCRYPTED_FORMAT_VERSION`] when given a key
/// and [`PLAIN_FORMAT_VERSION`] otherwise.
pub const FORMAT_VERSION: u16 = 2;
/// The format of a recording written without a key, unchanged since version 1, so that plain
/// recordings and their replays stay byte for byte what they were.
pub const PLAIN_FORMAT_VERSION: u16 = 1;
/// The format of a recording whose record payloads are encrypted (sealed).
pub const ENCRYPTED_FORMAT_VERSION: u16 = 2;
/// Bytes before the first record of a version 1 file: magic, version (u16 LE), reserved
/// (u16), creation time (u64 LE, ms since the Unix epoch), reserved (u32). A version 2 file
/// begins the same way.
pub const HEADER_LEN: usize = 24;
/// Bytes before the first record of a version 2 file: the version 1 fields (the first
/// reserved u16 holding the flags), the key id (8), the file's salt (16), and a CRC-32 (u32 LE)
/// of the 48 bytes before it.
pub const ENCRYPTED_HEADER_LEN: usize = HEADER_LEN + KEY_ID_LEN + SALT_LEN + 4;
/// Version 2 header flag: the record payloads are sealed. The only flag, and required.
pub const FLAG_ENCRYPTED: u16 = 1;
/// The marker every record begins with; after damage the reader finds the next record by it.
pub const RECORD_SYNC: [u8; 4] = [0xD1, 0x0E, 0x5E, 0xC0];
/// Sync (4), length (u32), kind (u8), time (u64), then the payload, then CRC-32 (u32).
pub const RECORD_HEAD: usize = 4 + 4 + 1 + 8;
/// Bytes a record adds to its payload.
pub const RECORD_OVERHEAD: usize = RECORD_HEAD + 4;
/// Largest payload of one record (a read or write of the link is far smaller).
pub const MAX_RECORD_PAYLOAD: usize = 16 << 20;

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKind {
    /// Bytes the edge sent, as the host received them.
    EdgeToHost,
    /// Bytes the host sent to the edge.
    HostToEdge,
    /// A connection opened; the payload names the transport (UTF-8).
    Connected,
    /// A connection ended; the payload says why (UTF-8).
    Disconnected,
    /// A note (UTF-8 JSON): who wrote the file and from what.
    Note,
}

impl RecordKind {
    /// Its byte in the file.
    pub const fn byte(self) -> u8 {
        match self {
            RecordKind::EdgeToHost => 1,
            RecordKind::HostToEdge => 2,
            RecordKind::Connected => 3,
            RecordKind::Disconnected => 4,
            RecordKind::Note => 5,
        }
    }

    /// The kind of a byte from the file.
    pub const fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => RecordKind::EdgeToHost,
            2 => RecordKind::HostToEdge,
            3 => RecordKind::Connected,
            4 => RecordKind::Disconnected,
            5 => RecordKind::Note,
            _ => return None,
        })
    }
}

/// The file header of a plain (version 1) recording created at `created_ms`.
pub(crate) fn header(created_ms: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&FILE_MAGIC);
    h[8..10].copy_from_slice(&PLAIN_FORMAT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&created_ms.to_le_bytes());
    h
}

/// The file header of an encrypted (version 2) recording created at `created_ms`.
pub(crate) fn encrypted_header(
    created_ms: u64,
    key_id: KeyId,
    salt: &[u8; SALT_LEN],
) -> [u8; ENCRYPTED_HEADER_LEN] {
    let mut h = [0u8; ENCRYPTED_HEADER_LEN];
    h[..8].copy_from_slice(&FILE_MAGIC);
    h[8..10].copy_from_slice(&ENCRYPTED_FORMAT_VERSION.to_le_bytes());
    h[10..12].copy_from_slice(&FLAG_ENCRYPTED.to_le_bytes());
    h[12..20].copy_from_slice(&created_ms.to_le_bytes());
    h[24..32].copy_from_slice(&key_id.0);
    h[32..48].copy_from_slice(salt);
    // A damaged salt or key id would make every record fail its tag: the CRC names the
    // header as the damage instead.
    let crc = crc32fast::hash(&h[..48]);
    h[48..52].copy_from_slice(&crc.to_le_bytes());
    h
}

/// What a file's header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    /// Bytes before the first record.
    pub len: usize,
    /// When the file was created, ms since the Unix epoch.
    pub created_ms: u64,
    /// The key id and salt of an encrypted file.
    pub encryption: Option<(KeyId, [u8; SALT_LEN])>,
}

/// Reads and checks the header of `path` from `file`, leaving `file` at the first record.
pub(crate) fn read_header(
    path: &Path,
    file: &mut impl std::io::Read,
) -> Result<Header, RecordingError> {
    let mut h = [0u8; ENCRYPTED_HEADER_LEN];
    let got = read_up_to(file, &mut h[..HEADER_LEN]).map_err(|e| RecordingError::io(path, e))?;
    let magic_len = got.min(FILE_MAGIC.len());
    if got == 0 || h.get(..magic_len) != FILE_MAGIC.get(..magic_len) {
        return Err(RecordingError::NotARecording {
            path: path.to_owned(),
        });
    }
    if got < HEADER_LEN {
        return Err(RecordingError::TruncatedHeader {
            path: path.to_owned(),
            len: got as u64,
        });
    }
    let version = u16::from_le_bytes([h[8], h[9]]);
    let created_ms = u64::from_le_bytes([h[12], h[13], h[14], h[15], h[16], h[17], h[18], h[19]]);
    if version > FORMAT_VERSION {
        return Err(RecordingError::NewerVersion {
            path: path.to_owned(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if version < ENCRYPTED_FORMAT_VERSION {
        return Ok(Header {
            len: HEADER_LEN,
            created_ms,
            encryption: None,
        });
    }
    let rest = read_up_to(file, &mut h[HEADER_LEN..]).map_err(|e| RecordingError::io(path, e))?;
    if rest < ENCRYPTED_HEADER_LEN - HEADER_LEN {
        return Err(RecordingError::TruncatedHeader {
            path: path.to_owned(),
            len: (HEADER_LEN + rest) as u64,
        });
    }
    let stored = u32::from_le_bytes([h[48], h[49], h[50], h[51]]);
    if crc32fast::hash(&h[..48]) != stored {
        return Err(RecordingError::DamagedHeader {
            path: path.to_owned(),
        });
    }
    let flags = u16::from_le_bytes([h[10], h[11]]);
    if flags != FLAG_ENCRYPTED {
        return Err(RecordingError::UnknownFlags {
            path: path.to_owned(),
            flags,
        });
    }
    let mut key_id = [0u8; KEY_ID_LEN];
    key_id.copy_from_slice(&h[24..32]);
    let mut salt = [0u8; SALT_LEN];
    salt.copy_from_slice(&h[32..48]);
    Ok(Header {
        len: ENCRYPTED_HEADER_LEN,
        created_ms,
        encryption: Some((KeyId(key_id), salt)),
    })
}

/// Reads until `buf` is full or the file ends; the bytes read.
fn read_up_to(file: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while let Some(rest) = buf.get_mut(got..).filter(|r| !r.is_empty()) {
        match file.read(rest) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// One record's bytes, ready to be written in a single call.
pub(crate) fn encode_record(kind: RecordKind, t_us: u64, payload: &[u8], out: &mut Vec<u8>) {
    start_record(kind, t_us, payload.len(), out);
    out.extend_from_slice(payload);
    finish_record(out);
}

/// The head of a record whose payload of `len` bytes follows (`out` is cleared first).
pub(crate) fn start_record(kind: RecordKind, t_us: u64, len: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&RECORD_SYNC);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.push(kind.byte());
    out.extend_from_slice(&t_us.to_le_bytes());
}

/// Ends the record in `out`, begun by [`start_record`] and followed by its payload.
pub(crate) fn finish_record(out: &mut Vec<u8>) {
    // The CRC covers everything after the sync marker, so that a damaged length is caught.
    let crc = crc32fast::hash(out.get(RECORD_SYNC.len()..).unwrap_or_default());
    out.extend_from_slice(&crc.to_le_bytes());
}
