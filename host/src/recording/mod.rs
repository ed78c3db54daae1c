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
pub mod reader;
pub mod replay;
pub mod tap;
pub mod writer;

pub use format::{
    FILE_MAGIC, FORMAT_VERSION, HEADER_LEN, MAX_RECORD_PAYLOAD, RECORD_OVERHEAD, RECORD_SYNC,
    RecordKind,
};
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
    #[error("{path} exists; pass --append to continue it or choose another file")]
    Exists {
        /// The file.
        path: PathBuf,
    },
}

impl RecordingError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        RecordingError::Io {
            path: path.to_owned(),
            source,
        }
    }
}
