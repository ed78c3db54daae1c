//! The disk-space guard's decisions: when to read the free space (a `statvfs` is cheap, but
//! not free at every read of a serial port), and whether what it read leaves enough. No I/O
//! and no clock: the caller reads the space and the time.

use std::time::{Duration, Instant};

use super::units::MinFree;

/// Read the free space again after this many bytes were written since the last reading...
pub const CHECK_EVERY_BYTES: u64 = 4 << 20;
/// ...or after this long, whichever comes first (other writers fill the disk too).
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// A filesystem's space, as `statvfs` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Bytes an unprivileged writer may still use (`f_bavail`).
    pub available: u64,
    /// The filesystem's size.
    pub total: u64,
}

/// What a reading says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Enough is free.
    Enough,
    /// Writing would leave less than the threshold free.
    Low {
        /// Bytes free.
        available: u64,
        /// The threshold, in bytes.
        min_free: u64,
    },
}

/// When to read the free space, and what a reading means.
#[derive(Debug, Clone)]
pub struct DiskGuard {
    min_free: MinFree,
    unchecked_bytes: u64,
    last_check: Option<Instant>,
}

impl DiskGuard {
    /// A guard that keeps `min_free` free.
    pub fn new(min_free: MinFree) -> Self {
        DiskGuard {
            min_free,
            unchecked_bytes: 0,
            last_check: None,
        }
    }

    /// The threshold.
    pub fn min_free(&self) -> MinFree {
        self.min_free
    }

    /// Whether to read the free space before writing `incoming` bytes at `now`: before the
    /// first write, after [`CHECK_EVERY_BYTES`] or [`CHECK_EVERY`], and before any write that
    /// large by itself. Never when the guard is off.
    pub fn due(&self, incoming: u64, now: Instant) -> bool {
        if self.min_free.is_off() {
            return false;
        }
        match self.last_check {
            None => true,
            Some(at) => {
                self.unchecked_bytes.saturating_add(incoming) >= CHECK_EVERY_BYTES
                    || now.saturating_duration_since(at) >= CHECK_EVERY
            }
        }
    }

    /// Judges a reading taken at `now` before writing `incoming` bytes: low when writing them
    /// would leave less than the threshold.
    pub fn judge(&mut self, space: Space, incoming: u64, now: Instant) -> Verdict {
        self.last_check = Some(now);
        self.unchecked_bytes = 0;
        let min_free = self.min_free.bytes(space.total);
        if space.available < min_free.saturating_add(incoming) {
            Verdict::Low {
                available: space.available,
                min_free,
            }
        } else {
            Verdict::Enough
        }
    }

    /// A reading could not be taken at `now`: the next one waits as if it had been.
    pub fn unreadable(&mut self, now: Instant) {
        self.last_check = Some(now);
        self.unchecked_bytes = 0;
    }

    /// `n` bytes were written.
    pub fn wrote(&mut self, n: u64) {
        self.unchecked_bytes = self.unchecked_bytes.saturating_add(n);
    }
}
