//! The rotation and retention planner: when to finish the file being written and begin the
//! next, and which finished files to delete. No I/O and no clock: it is handed what is on disk
//! and the time, and says what to do ([`super::set::RotatingSet`] does it).
//!
//! Files of a set are numbered, `session.000001.rec`, `session.000002.rec`, ..., and "oldest"
//! means lowest number, never oldest modification time: a Jetson whose clock jumps when NTP
//! first answers must not take a fresh file for an old one. For the same reason retention has
//! no age limit; an age bound is a rotation age times a file count.

use std::time::{Duration, Instant};

/// When the file being written is finished and the next one begun.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Begin a new file before the current one would grow past this many bytes.
    pub max_bytes: Option<u64>,
    /// Begin a new file once the current one has been open this long.
    pub max_age: Option<Duration>,
}

/// Which finished files are kept; the file being written always is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// At most this many files, the one being written included (at least 1).
    pub max_files: Option<usize>,
    /// At most this many bytes in all, the file being written included.
    pub max_bytes: Option<u64>,
}

/// Rotation and retention of one set of files (the recordings, or the results).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// When to begin the next file.
    pub rotation: Rotation,
    /// Which finished files to keep.
    pub retention: Retention,
}

impl Policy {
    /// Whether the set is numbered (any limit given); without limits it is the one file named.
    pub fn numbered(&self) -> bool {
        *self != Policy::default()
    }
}

/// Why the file being written is finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// It would grow past the size limit.
    Size,
    /// It has been open for the age limit.
    Age,
}

impl Why {
    /// Its name in logs.
    pub fn name(self) -> &'static str {
        match self {
            Why::Size => "size",
            Why::Age => "age",
        }
    }
}

/// The file being written, as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Current {
    /// Its size now.
    pub bytes: u64,
    /// Whether anything was written into it since it was opened (its header aside): a file
    /// with nothing in it is never rotated, so that one write larger than the size limit, or
    /// an idle link, does not leave a trail of empty files.
    pub written: bool,
    /// When it was opened (a monotonic clock).
    pub opened: Instant,
}

/// Whether the current file is to be finished before `incoming` more bytes go into it, at
/// `now`.
pub fn rotate_before(
    rotation: &Rotation,
    current: &Current,
    incoming: u64,
    now: Instant,
) -> Option<Why> {
    if !current.written {
        return None;
    }
    if rotation
        .max_bytes
        .is_some_and(|max| current.bytes.saturating_add(incoming) > max)
    {
        return Some(Why::Size);
    }
    if rotation
        .max_age
        .is_some_and(|max| now.saturating_duration_since(current.opened) >= max)
    {
        return Some(Why::Age);
    }
    None
}

/// A finished file of the set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// Its number.
    pub seq: u64,
    /// Its size.
    pub bytes: u64,
}

/// The numbers of the finished files to delete, oldest (lowest number) first, so that what is
/// kept fits `retention` together with the file being written (`current_bytes` in size). The
/// file being written is not among `finished` and never deleted, even when it alone exceeds the
/// limits.
pub fn plan_retention(
    retention: &Retention,
    finished: &[Finished],
    current_bytes: u64,
) -> Vec<u64> {
    let mut files = finished.to_vec();
    files.sort_by_key(|f| f.seq);
    let mut count = files.len() + 1;
    let mut total = files
        .iter()
        .fold(current_bytes, |sum, f| sum.saturating_add(f.bytes));
    let mut delete = Vec::new();
    for f in files {
        let too_many = retention.max_files.is_some_and(|max| count > max.max(1));
        let too_big = retention.max_bytes.is_some_and(|max| total > max);
        if !(too_many || too_big) {
            break;
        }
        delete.push(f.seq);
        count -= 1;
        total = total.saturating_sub(f.bytes);
    }
    delete
}

/// How the files of a numbered set are named: the base name's stem, a six-digit number (more
/// digits past 999999), the base name's extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    stem: String,
    extension: Option<String>,
}

impl Naming {
    /// The naming for a base file name (`session.rec`); `None` for an empty name.
    pub fn new(base_name: &str) -> Option<Naming> {
        if base_name.is_empty() {
            return None;
        }
        Some(match base_name.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() && !ext.is_empty() => Naming {
                stem: stem.to_owned(),
                extension: Some(ext.to_owned()),
            },
            _ => Naming {
                stem: base_name.to_owned(),
                extension: None,
            },
        })
    }

    /// The name of file `seq`: `session.000042.rec`.
    pub fn name(&self, seq: u64) -> String {
        match &self.extension {
            Some(ext) => format!("{}.{seq:06}.{ext}", self.stem),
            None => format!("{}.{seq:06}", self.stem),
        }
    }

    /// The number of a file of this set, from its name; `None` for any other name.
    pub fn seq(&self, name: &str) -> Option<u64> {
        let rest = name.strip_prefix(&self.stem)?.strip_prefix('.')?;
        let digits = match &self.extension {
            Some(ext) => rest.strip_suffix(ext)?.strip_suffix('.')?,
            None => rest,
        };
        if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }
}
