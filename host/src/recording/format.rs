//! The byte layout of a recording, shared by the writer and the reader.

/// The first eight bytes of every recording.
pub const FILE_MAGIC: [u8; 8] = *b"DNEDGREC";
/// The format this build writes and the newest it reads.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes before the first record: magic, version (u16 LE), reserved (u16), creation time
/// (u64 LE, ms since the Unix epoch), reserved (u32).
pub const HEADER_LEN: usize = 24;
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

/// The file header for a recording created at `created_ms`.
pub(crate) fn header(created_ms: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&FILE_MAGIC);
    h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&created_ms.to_le_bytes());
    h
}

/// One record's bytes, ready to be written in a single call.
pub(crate) fn encode_record(kind: RecordKind, t_us: u64, payload: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&RECORD_SYNC);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.push(kind.byte());
    out.extend_from_slice(&t_us.to_le_bytes());
    out.extend_from_slice(payload);
    // The CRC covers everything after the sync marker, so that a damaged length is caught.
    let crc = crc32fast::hash(&out[RECORD_SYNC.len()..]);
    out.extend_from_slice(&crc.to_le_bytes());
}
