//! Where recordings and results go on disk over a long run: rotation by size and age,
//! retention by count and total size, and a disk-space guard that stops writing cleanly
//! (the file finished, the stop logged and reported) before the disk fills. Nothing already
//! written is ever deleted to make room: only the retention policy deletes, and only finished
//! files.
//!
//! ```text
//!  writer (recording::RecordingWriter, storage::RotatingLines)
//!     │ before each write: before_write(bytes, now)
//!     ▼
//!  set.rs  RotatingSet ── lists, names, deletes files; reads free space (space.rs)
//!     │ asks
//!     ▼
//!  rotation.rs (when to rotate, what to delete)   guard.rs (when to read, is it enough)
//!  pure: no I/O, no clock
//! ```

pub mod guard;
pub mod lines;
pub mod rotation;
pub mod set;
pub mod space;
pub mod units;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use guard::{DiskGuard, Space, Verdict};
pub use lines::RotatingLines;
pub use rotation::{Policy, Retention, Rotation};
pub use set::{
    FolderGuard, RotatingSet, SetReport, SharedSetReport, Step, StopReason, Stopped, StorageConfig,
    snapshot,
};
pub use space::{FAKE_FREE_ENV, FakeFree, FreeSpace, Statvfs};
pub use units::{DEFAULT_MIN_FREE, MinFree, UnitError, format_bytes, parse_age, parse_size};

/// Why a set of files could not be begun.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The path names no file (a folder, `..`, a name that is not UTF-8).
    #[error("{0} does not name a file (rotated files are named after it)")]
    Name(PathBuf),
    /// The file exists: results and recordings are never overwritten.
    #[error("{path} exists; results and recordings are never overwritten: choose another file")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A file or the folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl StorageError {
    pub(crate) fn create(path: &Path, e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            StorageError::Exists {
                path: path.to_owned(),
            }
        } else {
            StorageError::Io {
                path: path.to_owned(),
                source: e,
            }
        }
    }
}

/// What the run's storage did: the recording's and the results' files, and whether overlays
/// stopped; in `report.json` as `storage`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StorageReport {
    /// The recording (`run --record`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording: Option<SetReport>,
    /// The results file (`--results FILE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results: Option<SetReport>,
    /// Why overlays stopped, if they did (`--overlays DIR`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overlays_stopped: Option<Stopped>,
}

impl StorageReport {
    /// Whether anything happened worth a line in the summary.
    pub fn is_quiet(&self) -> bool {
        let quiet = |s: &Option<SetReport>| {
            s.as_ref().is_none_or(|s| {
                s.rotations == 0
                    && s.deleted.is_empty()
                    && s.delete_errors.is_empty()
                    && s.stopped.is_none()
            })
        };
        quiet(&self.recording) && quiet(&self.results) && self.overlays_stopped.is_none()
    }

    /// One line per set for the summary: files written and deleted, and any stop.
    pub fn summary_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (name, set) in [("recording", &self.recording), ("results", &self.results)] {
            let Some(set) = set else {
                continue;
            };
            let mut line = format!(
                "{name}: {} file(s), {} written",
                set.files.len(),
                format_bytes(set.bytes_written)
            );
            if !set.deleted.is_empty() {
                line.push_str(&format!(
                    ", {} deleted by the retention policy",
                    set.deleted.len()
                ));
            }
            if !set.delete_errors.is_empty() {
                line.push_str(&format!(
                    ", {} could not be deleted",
                    set.delete_errors.len()
                ));
            }
            if let Some(stopped) = &set.stopped {
                line.push_str(&format!(
                    "; STOPPED after {:.1} s ({}), {} complete; {} not written",
                    stopped.after_s,
                    stopped.detail,
                    stopped.file.display(),
                    format_bytes(set.bytes_not_written)
                ));
            }
            lines.push(line);
        }
        if let Some(stopped) = &self.overlays_stopped {
            lines.push(format!(
                "overlays: STOPPED after {:.1} s ({})",
                stopped.after_s, stopped.detail
            ));
        }
        lines
    }
}
