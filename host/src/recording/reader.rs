//! Reading a recording record by record, streaming (recordings run to gigabytes), checking
//! each record's CRC and finding the next record by its sync marker after damage; in an
//! encrypted recording, opening each record's sealed payload with the key.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::RecordingError;
use super::format::{MAX_RECORD_PAYLOAD, RECORD_HEAD, RECORD_SYNC, RecordKind, read_header};
use super::key::{FileCipher, KeyId, RecordingKey};

/// One record as read back. Its `Debug` shows the payload's length, never its bytes: they
/// may be pixels of a patient's images.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    /// What it holds.
    pub kind: RecordKind,
    /// When, µs on the recording's clock.
    pub t_us: u64,
    /// The bytes.
    pub payload: Vec<u8>,
    /// Where it starts in the file.
    pub offset: u64,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("kind", &self.kind)
            .field("t_us", &self.t_us)
            .field("payload_len", &self.payload.len())
            .field("offset", &self.offset)
            .finish()
    }
}

/// Damage found while reading; the records around it are still read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// Bytes that are not a valid record (bad CRC, impossible length, no sync marker) were
    /// skipped up to the next record.
    Corrupt {
        /// Where the damage starts.
        offset: u64,
        /// Bytes skipped.
        bytes: u64,
    },
    /// The file ends inside a record: the write in progress when the recorder stopped (a
    /// crash, a kill, a power loss). Everything before it is intact.
    TruncatedTail {
        /// Where the incomplete record starts.
        offset: u64,
        /// Its bytes present.
        bytes: u64,
    },
    /// In an encrypted recording, a record whose framing and CRC are whole but whose sealed
    /// payload fails its authentication tag (altered and given a fresh CRC, moved from another
    /// offset, or sealed under another key with the same id). It is skipped; the next record
    /// is read as usual.
    Unauthenticated {
        /// Where the record starts.
        offset: u64,
        /// Its bytes, framing included.
        bytes: u64,
    },
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::Corrupt { offset, bytes } => {
                write!(f, "corrupt: {bytes} bytes skipped at offset {offset}")
            }
            Damage::TruncatedTail { offset, bytes } => write!(
                f,
                "truncated: the last record (offset {offset}, {bytes} bytes) is incomplete"
            ),
            Damage::Unauthenticated { offset, bytes } => write!(
                f,
                "unauthenticated: the encrypted record at offset {offset} ({bytes} bytes) \
                 failed its tag and was skipped"
            ),
        }
    }
}

/// Reads records from a recording file in order.
pub struct RecordingReader {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    /// Start of unread data in `buf`.
    start: usize,
    /// File offset of `buf[0]`.
    buf_offset: u64,
    eof: bool,
    damage: Vec<Damage>,
    created_ms: u64,
    /// Bytes before the first record.
    header_len: u64,
    /// The key id of an encrypted recording.
    key_id: Option<KeyId>,
    /// Opens the sealed payloads of an encrypted recording.
    cipher: Option<FileCipher>,
}

impl std::fmt::Debug for RecordingReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingReader")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

const READ_SIZE: usize = 1 << 20;

impl RecordingReader {
    /// Opens a plain recording and checks its header; an encrypted one is refused with
    /// [`RecordingError::KeyRequired`] ([`Self::open_with`] takes its key).
    pub fn open(path: &Path) -> Result<Self, RecordingError> {
        Self::open_with(path, None)
    }

    /// Opens a recording and checks its header. An encrypted recording needs `key`, and the
    /// right one (its id is in the header): without it, or with another, the error names the
    /// key id the file needs. A plain recording reads the same with or without a key.
    pub fn open_with(path: &Path, key: Option<&RecordingKey>) -> Result<Self, RecordingError> {
        let mut file = File::open(path).map_err(|e| RecordingError::io(path, e))?;
        let header = read_header(path, &mut file)?;
        let (key_id, cipher) = match (header.encryption, key) {
            (None, _) => (None, None),
            (Some((key_id, _)), None) => {
                return Err(RecordingError::KeyRequired {
                    path: path.to_owned(),
                    key_id,
                });
            }
            (Some((key_id, _)), Some(key)) if key.id() != key_id => {
                return Err(RecordingError::WrongKey {
                    path: path.to_owned(),
                    key_id,
                    given: key.id(),
                });
            }
            (Some((key_id, salt)), Some(key)) => (Some(key_id), Some(key.file_cipher(&salt))),
        };
        Ok(RecordingReader {
            path: path.to_owned(),
            file,
            buf: Vec::new(),
            start: 0,
            buf_offset: header.len as u64,
            eof: false,
            damage: Vec::new(),
            created_ms: header.created_ms,
            header_len: header.len as u64,
            key_id,
            cipher,
        })
    }

    /// The id of the key an encrypted recording is sealed with; `None` for a plain one.
    pub fn key_id(&self) -> Option<KeyId> {
        self.key_id
    }

    /// Bytes before the first record (the header's length, by format version).
    pub fn header_len(&self) -> u64 {
        self.header_len
    }

    /// When the recording was created, ms since the Unix epoch.
    pub fn created_ms(&self) -> u64 {
        self.created_ms
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Damage met so far.
    pub fn damage(&self) -> &[Damage] {
        &self.damage
    }

    /// File offset of the next unread byte.
    pub fn position(&self) -> u64 {
        self.buf_offset + self.start as u64
    }

    fn available(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Makes at least `n` unread bytes available unless the file ends first.
    fn fill(&mut self, n: usize) -> Result<(), RecordingError> {
        if self.start > READ_SIZE {
            self.buf.drain(..self.start);
            self.buf_offset += self.start as u64;
            self.start = 0;
        }
        while self.available() < n && !self.eof {
            let len = self.buf.len();
            self.buf.resize(len + READ_SIZE, 0);
            let read = self.file.read(&mut self.buf[len..]);
            let got = match read {
                Ok(got) => got,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                    // A signal, not the end of the file: read again.
                    self.buf.truncate(len);
                    continue;
                }
                Err(e) => {
                    self.buf.truncate(len);
                    return Err(RecordingError::io(&self.path, e));
                }
            };
            self.buf.truncate(len + got);
            if got == 0 {
                self.eof = true;
            }
        }
        Ok(())
    }

    /// Skips from the current position (a bad record start) to the next sync marker after
    /// it, or to the end, and notes the damage.
    fn skip_to_next_sync(&mut self) -> Result<(), RecordingError> {
        let from = self.position();
        self.start += 1;
        loop {
            let unread = self.buf.get(self.start..).unwrap_or_default();
            if let Some(i) = memchr::memmem::find(unread, &RECORD_SYNC) {
                self.start += i;
                break;
            }
            if self.eof {
                self.start = self.buf.len();
                break;
            }
            // Keep the last 3 bytes: a marker may straddle the boundary.
            let keep = unread.len().min(RECORD_SYNC.len() - 1);
            self.start = self.buf.len() - keep;
            self.fill(keep + READ_SIZE)?;
        }
        let to = self.position();
        // One stretch of damage is one entry, however many false starts it held.
        match self.damage.last_mut() {
            Some(Damage::Corrupt { offset, bytes }) if *offset + *bytes == from => {
                *bytes = to - *offset;
            }
            _ => self.damage.push(Damage::Corrupt {
                offset: from,
                bytes: to - from,
            }),
        }
        Ok(())
    }

    /// Whether an intact record starts anywhere after the current position in what is
    /// buffered (the whole rest of the file, once it has been read to the end).
    fn intact_record_follows(&self) -> bool {
        let rest = self.buf.get(self.start + 1..).unwrap_or_default();
        let mut from = 0;
        while let Some(i) = rest
            .get(from..)
            .and_then(|r| memchr::memmem::find(r, &RECORD_SYNC))
        {
            if rest.get(from + i..).is_some_and(intact_record_at) {
                return true;
            }
            from += i + 1;
        }
        false
    }

    /// The next intact record, or `None` at the end of the file. Damage is skipped and noted
    /// ([`Self::damage`]); only I/O failures are errors.
    pub fn next_record(&mut self) -> Result<Option<Record>, RecordingError> {
        loop {
            self.fill(RECORD_HEAD)?;
            let avail = self.available();
            if avail == 0 {
                return Ok(None);
            }
            let head = self
                .buf
                .get(self.start..self.start + RECORD_HEAD.min(avail));
            let Some(head) = head else {
                return Ok(None);
            };
            if head.len() < RECORD_HEAD {
                if head.starts_with(&RECORD_SYNC[..head.len().min(4)]) {
                    self.note_truncated_tail();
                    return Ok(None);
                }
                self.skip_to_next_sync()?;
                continue;
            }
            if head[..4] != RECORD_SYNC {
                self.skip_to_next_sync()?;
                continue;
            }
            let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
            let kind_byte = head[8];
            let mut t = [0u8; 8];
            t.copy_from_slice(&head[9..17]);
            let t_us = u64::from_le_bytes(t);
            // An impossible length or kind is not a record start: no CRC is worth computing.
            if len > MAX_RECORD_PAYLOAD || RecordKind::from_byte(kind_byte).is_none() {
                self.skip_to_next_sync()?;
                continue;
            }
            let total = RECORD_HEAD + len + 4;
            self.fill(total)?;
            if self.available() < total {
                // The file ends inside this record: a crash mid-write, unless its length is
                // damaged and intact records follow.
                if self.intact_record_follows() {
                    self.skip_to_next_sync()?;
                    continue;
                }
                self.note_truncated_tail();
                return Ok(None);
            }
            let body = self.buf.get(self.start + 4..self.start + RECORD_HEAD + len);
            let crc_bytes = self
                .buf
                .get(self.start + RECORD_HEAD + len..self.start + total);
            let (Some(body), Some(crc_bytes)) = (body, crc_bytes) else {
                return Ok(None);
            };
            let stored =
                u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
            if crc32fast::hash(body) != stored {
                self.skip_to_next_sync()?;
                continue;
            }
            let offset = self.position();
            let stored_payload = body.get(RECORD_HEAD - 4..).unwrap_or_default();
            let payload = match &self.cipher {
                None => Some(stored_payload.to_vec()),
                Some(cipher) => cipher.open(offset, kind_byte, t_us, stored_payload),
            };
            self.start += total;
            let Some(payload) = payload else {
                // The framing is whole, so the next record starts right after this one.
                self.damage.push(Damage::Unauthenticated {
                    offset,
                    bytes: total as u64,
                });
                continue;
            };
            if let Some(kind) = RecordKind::from_byte(kind_byte) {
                return Ok(Some(Record {
                    kind,
                    t_us,
                    payload,
                    offset,
                }));
            }
        }
    }

    fn note_truncated_tail(&mut self) {
        self.damage.push(Damage::TruncatedTail {
            offset: self.position(),
            bytes: self.available() as u64,
        });
        self.start = self.buf.len();
    }
}

/// Whether `bytes` begins with a complete record whose CRC matches.
fn intact_record_at(bytes: &[u8]) -> bool {
    let Some(len) = bytes
        .get(4..8)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    else {
        return false;
    };
    if len > MAX_RECORD_PAYLOAD {
        return false;
    }
    match (
        bytes.get(4..RECORD_HEAD + len),
        bytes.get(RECORD_HEAD + len..RECORD_HEAD + len + 4),
    ) {
        (Some(body), Some(crc)) => {
            crc32fast::hash(body) == u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]])
        }
        _ => false,
    }
}

/// A recording read through once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// Intact records, by kind.
    pub records: BTreeMap<String, u64>,
    /// Payload bytes of intact records, by kind.
    pub bytes: BTreeMap<String, u64>,
    /// Time of the first and last intact record, µs.
    pub first_t_us: Option<u64>,
    /// Time of the last intact record, µs.
    pub last_t_us: Option<u64>,
    /// Damage found.
    pub damage: Vec<Damage>,
    /// End of the last intact record: where an append continues.
    pub valid_end: u64,
}

/// Reads a whole plain recording and sums it up ([`scan_with`] for an encrypted one).
pub fn scan(path: &Path) -> Result<Scan, RecordingError> {
    scan_with(path, None)
}

/// Reads a whole recording, with `key` if it is encrypted, and sums it up.
pub fn scan_with(path: &Path, key: Option<&RecordingKey>) -> Result<Scan, RecordingError> {
    let mut reader = RecordingReader::open_with(path, key)?;
    let mut s = Scan {
        valid_end: reader.header_len(),
        ..Scan::default()
    };
    while let Some(r) = reader.next_record()? {
        let name = format!("{:?}", r.kind);
        *s.records.entry(name.clone()).or_default() += 1;
        *s.bytes.entry(name).or_default() += r.payload.len() as u64;
        s.first_t_us.get_or_insert(r.t_us);
        s.last_t_us = Some(r.t_us);
        s.valid_end = reader.position();
    }
    s.damage = reader.damage.clone();
    Ok(s)
}
