//! The runner: does what the planner ([`super::rotation`]) and the guard ([`super::guard`])
//! decide, for one set of files in one folder. It lists and deletes files and reads the free
//! space; the writer that owns the set (a recording, the results) opens, writes and finishes
//! the files, asking [`RotatingSet::before_write`] first.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use super::StorageError;
use super::guard::{DiskGuard, Verdict};
use super::rotation::{Current, Finished, Naming, Policy, Why, plan_retention, rotate_before};
use super::space::FreeSpace;
use super::units::{MinFree, format_bytes};

/// Rotation, retention and the free-space threshold of one set, and where free space is read.
#[derive(Clone)]
pub struct StorageConfig {
    /// Rotation and retention.
    pub policy: Policy,
    /// The free space to leave.
    pub min_free: MinFree,
    /// Where free space is read.
    pub space: Arc<dyn FreeSpace>,
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageConfig")
            .field("policy", &self.policy)
            .field("min_free", &self.min_free)
            .finish_non_exhaustive()
    }
}

impl StorageConfig {
    /// `policy` and `min_free`, reading free space as this process does
    /// ([`super::space::system`]).
    pub fn new(policy: Policy, min_free: MinFree) -> Self {
        StorageConfig {
            policy,
            min_free,
            space: super::space::system(),
        }
    }
}

/// Why writing stopped before the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Less than the threshold was free.
    DiskLow,
    /// The next file could not be created.
    RotateFailed,
}

/// Writing stopped: where, why, and how much space was left.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stopped {
    /// Why.
    pub reason: StopReason,
    /// The same for people.
    pub detail: String,
    /// The file finished last (the folder, for overlays).
    pub file: PathBuf,
    /// Bytes free when it stopped (a low disk).
    pub free_bytes: Option<u64>,
    /// The threshold, in bytes (a low disk).
    pub min_free_bytes: Option<u64>,
    /// Seconds after the set began.
    pub after_s: f64,
}

/// What happened to one set over a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SetReport {
    /// The files written, in order.
    pub files: Vec<PathBuf>,
    /// Files finished because of the size or age limit.
    pub rotations: u64,
    /// Finished files the retention policy deleted.
    pub deleted: Vec<PathBuf>,
    /// Files that were to be deleted and could not be, with why.
    pub delete_errors: Vec<String>,
    /// Bytes written, in all files.
    pub bytes_written: u64,
    /// Bytes not written because writing had stopped.
    pub bytes_not_written: u64,
    /// Why writing stopped, if it did.
    pub stopped: Option<Stopped>,
}

/// A set's report, shared with whoever reports the run.
pub type SharedSetReport = Arc<Mutex<SetReport>>;

/// A copy of a shared report (a poisoned lock still holds a whole report: every update is a
/// single assignment or push).
pub fn snapshot(report: &SharedSetReport) -> SetReport {
    match report.lock() {
        Ok(r) => r.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

fn update(report: &SharedSetReport, f: impl FnOnce(&mut SetReport)) {
    match report.lock() {
        Ok(mut r) => f(&mut r),
        Err(poisoned) => f(&mut poisoned.into_inner()),
    }
}

/// The guard on one folder: reads its free space when the guard says so and says whether
/// writing may go on. Once it stops, it stays stopped for the run: nothing written before is
/// touched, and a half-written file is never left behind (its writer finishes it).
pub struct FolderGuard {
    label: &'static str,
    dir: PathBuf,
    guard: DiskGuard,
    space: Arc<dyn FreeSpace>,
    started: Instant,
    warned_unreadable: bool,
    stopped: Option<Stopped>,
}

impl FolderGuard {
    /// A guard on `dir`, for the writer called `label` in logs.
    pub fn new(
        label: &'static str,
        dir: &Path,
        min_free: MinFree,
        space: Arc<dyn FreeSpace>,
        now: Instant,
    ) -> Self {
        FolderGuard {
            label,
            dir: dir.to_owned(),
            guard: DiskGuard::new(min_free),
            space,
            started: now,
            warned_unreadable: false,
            stopped: None,
        }
    }

    /// Whether `incoming` more bytes may be written at `now`; the first `false` is the stop
    /// (logged, and kept in [`Self::stopped`]), every later call is `false` too. `file` is what
    /// is being written, for the record of the stop.
    pub fn allow(&mut self, incoming: u64, file: &Path, now: Instant) -> bool {
        if self.stopped.is_some() {
            return false;
        }
        if !self.guard.due(incoming, now) {
            return true;
        }
        match self.space.space(&self.dir) {
            Ok(space) => match self.guard.judge(space, incoming, now) {
                Verdict::Enough => true,
                Verdict::Low {
                    available,
                    min_free,
                } => {
                    let detail = format!(
                        "{} free on the filesystem of {}, below the {} to keep free (--min-free {})",
                        format_bytes(available),
                        self.dir.display(),
                        format_bytes(min_free),
                        self.guard.min_free()
                    );
                    tracing::warn!(
                        writer = self.label,
                        file = %file.display(),
                        free_bytes = available,
                        min_free_bytes = min_free,
                        "disk space low: {} stopped, its last file is complete; {detail}",
                        self.label
                    );
                    self.stopped = Some(Stopped {
                        reason: StopReason::DiskLow,
                        detail,
                        file: file.to_owned(),
                        free_bytes: Some(available),
                        min_free_bytes: Some(min_free),
                        after_s: now.saturating_duration_since(self.started).as_secs_f64(),
                    });
                    false
                }
            },
            Err(e) => {
                // A guard that cannot read the space must not stop a recording that may well
                // have room: it says so once and keeps writing.
                self.guard.unreadable(now);
                if !self.warned_unreadable {
                    self.warned_unreadable = true;
                    tracing::warn!(
                        writer = self.label,
                        dir = %self.dir.display(),
                        error = %e,
                        "cannot read the free space; writing goes on unguarded"
                    );
                }
                true
            }
        }
    }

    /// `n` bytes were written.
    pub fn wrote(&mut self, n: u64) {
        self.guard.wrote(n);
    }

    /// The stop, once it happened.
    pub fn stopped(&self) -> Option<&Stopped> {
        self.stopped.as_ref()
    }
}

/// What the writer does before its next write.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Write into the current file.
    Write,
    /// Finish the current file, open `next`, then write there.
    Rotate {
        /// The next file.
        next: PathBuf,
        /// Why now.
        why: Why,
    },
    /// Finish the current file and write nothing more (the first time only).
    Stop(Stopped),
    /// Writing has stopped: leave this out.
    Skip,
}

/// The file being written.
#[derive(Debug, Clone)]
struct Open {
    path: PathBuf,
    seq: Option<u64>,
    bytes: u64,
    written: bool,
    opened: Instant,
}

/// One set of files: either the single file named (no rotation or retention asked), or
/// numbered files beside it, `NAME.000001.EXT`, ..., rotated and kept as the policy says, and
/// numbered on from the highest already in the folder (a restart never overwrites).
pub struct RotatingSet {
    label: &'static str,
    base: PathBuf,
    dir: PathBuf,
    naming: Option<Naming>,
    policy: Policy,
    guard: FolderGuard,
    current: Option<Open>,
    started: Instant,
    report: SharedSetReport,
}

impl RotatingSet {
    /// The set named by `base` (`/var/lib/dinoedge/session.rec`) under `config`, for the
    /// writer called `label` in logs.
    pub fn new(
        label: &'static str,
        base: &Path,
        config: &StorageConfig,
        now: Instant,
    ) -> Result<Self, StorageError> {
        let name = base
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| StorageError::Name(base.to_owned()))?;
        let naming = if config.policy.numbered() {
            Some(Naming::new(name).ok_or_else(|| StorageError::Name(base.to_owned()))?)
        } else {
            None
        };
        let dir = match base.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        Ok(RotatingSet {
            label,
            base: base.to_owned(),
            guard: FolderGuard::new(label, &dir, config.min_free, config.space.clone(), now),
            dir,
            naming,
            policy: config.policy,
            current: None,
            started: now,
            report: SharedSetReport::default(),
        })
    }

    /// The file to open first: the base itself, or the next number in the folder.
    pub fn first_path(&self) -> Result<PathBuf, StorageError> {
        self.next_path()
    }

    fn next_path(&self) -> Result<PathBuf, StorageError> {
        let Some(naming) = &self.naming else {
            return Ok(self.base.clone());
        };
        let highest = self
            .list()?
            .iter()
            .map(|(seq, _, _)| *seq)
            .chain(self.current.as_ref().and_then(|c| c.seq))
            .max()
            .unwrap_or(0);
        Ok(self.dir.join(naming.name(highest.saturating_add(1))))
    }

    /// The numbered files of the set in its folder: number, path, size.
    fn list(&self) -> Result<Vec<(u64, PathBuf, u64)>, StorageError> {
        let Some(naming) = &self.naming else {
            return Ok(Vec::new());
        };
        let io = |e| StorageError::Io {
            path: self.dir.clone(),
            source: e,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let Some(seq) = entry.file_name().to_str().and_then(|n| naming.seq(n)) else {
                continue;
            };
            // A file deleted under us, or a folder named like one, is not ours to count.
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_file() {
                files.push((seq, entry.path(), meta.len()));
            }
        }
        Ok(files)
    }

    /// The writer opened `path`, which holds `bytes` already (its header): it is now the file
    /// being written, and finished files beyond the retention policy are deleted.
    pub fn opened(&mut self, path: &Path, bytes: u64, now: Instant) {
        let seq = path
            .file_name()
            .and_then(|n| n.to_str())
            .zip(self.naming.as_ref())
            .and_then(|(n, naming)| naming.seq(n));
        self.current = Some(Open {
            path: path.to_owned(),
            seq,
            bytes,
            written: false,
            opened: now,
        });
        update(&self.report, |r| r.files.push(path.to_owned()));
        self.retain();
    }

    fn retain(&mut self) {
        let retention = self.policy.retention;
        if retention == Default::default() {
            return;
        }
        let Some(current) = &self.current else {
            return;
        };
        let listed = match self.list() {
            Ok(listed) => listed,
            Err(e) => {
                tracing::warn!(writer = self.label, error = %e, "cannot list the folder: nothing deleted");
                update(&self.report, |r| r.delete_errors.push(e.to_string()));
                return;
            }
        };
        let finished: Vec<Finished> = listed
            .iter()
            .filter(|(seq, path, _)| Some(*seq) != current.seq && *path != current.path)
            .map(|&(seq, _, bytes)| Finished { seq, bytes })
            .collect();
        for seq in plan_retention(&retention, &finished, current.bytes) {
            let Some((_, path, bytes)) = listed.iter().find(|(s, _, _)| *s == seq) else {
                continue;
            };
            match std::fs::remove_file(path) {
                Ok(()) => {
                    tracing::info!(writer = self.label, file = %path.display(), bytes, "deleted by the retention policy");
                    update(&self.report, |r| r.deleted.push(path.clone()));
                }
                Err(e) => {
                    tracing::warn!(writer = self.label, file = %path.display(), error = %e, "cannot delete");
                    update(&self.report, |r| {
                        r.delete_errors.push(format!("{}: {e}", path.display()));
                    });
                }
            }
        }
    }

    /// What to do before writing `incoming` bytes at `now`.
    pub fn before_write(&mut self, incoming: u64, now: Instant) -> Step {
        let file = self
            .current
            .as_ref()
            .map_or_else(|| self.base.clone(), |c| c.path.clone());
        let was_stopped = self.guard.stopped().is_some();
        if !self.guard.allow(incoming, &file, now) {
            update(&self.report, |r| r.bytes_not_written += incoming);
            return match (was_stopped, self.guard.stopped()) {
                (false, Some(stopped)) => {
                    let stopped = stopped.clone();
                    update(&self.report, |r| r.stopped = Some(stopped.clone()));
                    Step::Stop(stopped)
                }
                _ => Step::Skip,
            };
        }
        let Some(current) = &self.current else {
            return Step::Write;
        };
        let state = Current {
            bytes: current.bytes,
            written: current.written,
            opened: current.opened,
        };
        let Some(why) = rotate_before(&self.policy.rotation, &state, incoming, now) else {
            return Step::Write;
        };
        match self.next_path() {
            Ok(next) => Step::Rotate { next, why },
            Err(e) => {
                update(&self.report, |r| r.bytes_not_written += incoming);
                Step::Stop(self.rotation_failed(&e, now))
            }
        }
    }

    /// `n` bytes went into the current file.
    pub fn wrote(&mut self, n: u64) {
        self.guard.wrote(n);
        if let Some(c) = &mut self.current {
            c.bytes = c.bytes.saturating_add(n);
            c.written = true;
        }
        update(&self.report, |r| r.bytes_written += n);
    }

    /// The writer finished the current file for `why` and opened `next` (holding `bytes`).
    pub fn rotated(&mut self, why: Why, next: &Path, bytes: u64, now: Instant) {
        tracing::info!(
            writer = self.label,
            finished = %self.current.as_ref().map_or_else(String::new, |c| c.path.display().to_string()),
            next = %next.display(),
            why = why.name(),
            "rotated"
        );
        update(&self.report, |r| r.rotations += 1);
        self.opened(next, bytes, now);
    }

    /// The next file could not be opened: writing stops (the current file is finished) and
    /// stays stopped; logged and reported.
    pub fn rotation_failed(&mut self, error: &dyn std::fmt::Display, now: Instant) -> Stopped {
        let file = self
            .current
            .as_ref()
            .map_or_else(|| self.base.clone(), |c| c.path.clone());
        let detail = format!("the next file could not be opened: {error}");
        tracing::error!(writer = self.label, file = %file.display(), "{} stopped: {detail}", self.label);
        let stopped = Stopped {
            reason: StopReason::RotateFailed,
            detail,
            file,
            free_bytes: None,
            min_free_bytes: None,
            after_s: now.saturating_duration_since(self.started).as_secs_f64(),
        };
        self.guard.stopped = Some(stopped.clone());
        update(&self.report, |r| r.stopped = Some(stopped.clone()));
        stopped
    }

    /// Whether writing has stopped.
    pub fn is_stopped(&self) -> bool {
        self.guard.stopped().is_some()
    }

    /// The file being written.
    pub fn current_path(&self) -> Option<&Path> {
        self.current.as_ref().map(|c| c.path.as_path())
    }

    /// The set's report, shared: it stays readable after the writer is gone.
    pub fn report(&self) -> SharedSetReport {
        self.report.clone()
    }
}
