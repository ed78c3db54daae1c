//! Recordings of the link: every byte in both directions with its receive time, in an
//! append-only file that survives a crash (`host/RECORDING.md` has the byte layout).
//!
//! ```text
//!  any link source ─► TappedSource (tap.rs) ─► link        RecordingWriter (writer.rs)
//!                       └── bytes as they pass ─────────►  one record per read or write,
//!                                                          written through, synced every second
//!  RecordingReader (reader.rs) ─► records, damage reported ─► ReplaySource (replay.rs) ─► link
//!                                  (paced; waits for the host's credit like an edge)
//! ```

mod format;
pub mod key;
pub mod reader;
pub mod replay;
pub mod tap;
pub mod writer;

pub use format::{
    ENCRYPTED_FORMAT_VERSION, ENCRYPTED_HEADER_LEN, FILE_MAGIC, FLAG_ENCRYPTED, FORMAT_VERSION,
    HEADER_LEN, MAX_RECORD_PAYLOAD, PLAIN_FORMAT_VERSION, RECORD_OVERHEAD, RECORD_SYNC, RecordKind,
};
pub use key::{KeyId, RecordingKey, SEAL_OVERHEAD, create_key_file};
pub use reader::{Damage, Record, RecordingReader, Scan};
pub use replay::{Gating, Pace, ReplayEnd, ReplaySource};
pub use tap::{SharedRecording, TappedSource};
pub use writer::RecordingWriter;

use std::path::PathBuf;

/// Why a recording could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not start with the recording magic: not a dinoedge recording.
    #[error("{path} is not a dinoedge recording (its first bytes are not the recording magic)")]
    NotARecording {
        /// The file.
        path: PathBuf,
    },
    /// The file is shorter than a recording's header.
    #[error("{path} ends inside its header ({len} bytes)")]
    TruncatedHeader {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// A newer dinoedge wrote the file in a format this one does not know.
    #[error(
        "{path} is recording format version {found}; this dinoedge reads version {supported} \
         (upgrade dinoedge to replay it)"
    )]
    NewerVersion {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u16,
        /// The version this build reads and writes.
        supported: u16,
    },
    /// A record's payload exceeds [`MAX_RECORD_PAYLOAD`].
    #[error("a record of {0} bytes exceeds the {MAX_RECORD_PAYLOAD}-byte limit")]
    RecordTooLarge(usize),
    /// The file exists and would be overwritten.
    #[error(
        "{path} exists; a recording is never overwritten: choose another file (or continue it with `record --append`)"
    )]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The recording is encrypted and no key was given.
    #[error("{path} is encrypted with key id {key_id}; pass --recording-key FILE with that key")]
    KeyRequired {
        /// The file.
        path: PathBuf,
        /// The id of the key it needs.
        key_id: KeyId,
    },
    /// The recording is encrypted with another key than the one given.
    #[error(
        "{path} is encrypted with key id {key_id}, not with the given key (id {given}); \
         pass --recording-key FILE with the key whose id is {key_id}"
    )]
    WrongKey {
        /// The file.
        path: PathBuf,
        /// The id of the key it needs.
        key_id: KeyId,
        /// The id of the key given.
        given: KeyId,
    },
    /// A key was given to continue a recording that is not encrypted: one file never mixes
    /// plain and sealed records.
    #[error(
        "{path} is not encrypted; continue it without --recording-key, or start a new file to \
         record encrypted"
    )]
    NotEncrypted {
        /// The file.
        path: PathBuf,
    },
    /// The header of an encrypted recording fails its CRC: its key id or salt cannot be
    /// trusted, so no record could be decrypted.
    #[error("{path}: the header of this encrypted recording is damaged (CRC mismatch)")]
    DamagedHeader {
        /// The file.
        path: PathBuf,
    },
    /// A version 2 header with flags this build does not know.
    #[error(
        "{path} has header flags {flags:#06x}, which this dinoedge does not know (upgrade dinoedge to read it)"
    )]
    UnknownFlags {
        /// The file.
        path: PathBuf,
        /// The flags.
        flags: u16,
    },
    /// A key file that its group or others may read (or write): its key must be taken as known.
    #[error(
        "{path} has mode {mode:04o}: a recording key file must be readable by its owner only; \
         run `chmod 600 {path}` (and consider the key exposed if others could read it)"
    )]
    KeyFileReadableByOthers {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file that does not hold a key in the expected form.
    #[error("{path} is not a dinoedge recording key file: {reason}")]
    KeyFileFormat {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key file exists: overwriting it would make its recordings unreadable.
    #[error(
        "{path} exists; a key file is never overwritten (its recordings would become unreadable): choose another file"
    )]
    KeyFileExists {
        /// The file.
        path: PathBuf,
    },
    /// The operating system gave no random bytes for a key, salt or writer tag.
    #[error("no random bytes from the operating system: {0}")]
    Entropy(String),
}

impl RecordingError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        RecordingError::Io {
            path: path.to_owned(),
            source,
        }
    }
}
