//! Sizes and ages as people write them on a command line or in the config: `1GiB`, `500MB`,
//! `90s`, `1h`; and the free-space threshold, a size or a share of the filesystem (`5%`).

use std::time::Duration;

/// A size, an age or a threshold that does not parse; the message says what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not {what}")]
pub struct UnitError {
    text: String,
    what: &'static str,
}

const SIZE_FORMS: &str = "a size: a number with B, KB, MB, GB, TB (powers of 1000) or KiB, \
                          MiB, GiB, TiB (powers of 1024), e.g. 1GiB";
const AGE_FORMS: &str = "an age: a number with s, m, h or d, e.g. 90s, 30m, 1h, 7d";
const MIN_FREE_FORMS: &str = "a free-space threshold: a size (e.g. 2GiB; 0 turns the guard off) \
                              or a share of the filesystem (e.g. 5%)";

/// Splits `12.5GiB` into `12.5` and `GiB`.
fn number_and_unit(text: &str) -> Option<(f64, &str)> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    (value.is_finite() && value >= 0.0).then_some((value, unit.trim()))
}

/// Bytes in `text`: a number with `B`, `KB`, `MB`, `GB`, `TB` (powers of 1000) or `KiB`,
/// `MiB`, `GiB`, `TiB` (powers of 1024); a bare number is bytes.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let err = || UnitError {
        text: text.to_owned(),
        what: SIZE_FORMS,
    };
    let (value, unit) = number_and_unit(text).ok_or_else(err)?;
    let scale: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(err()),
    };
    let bytes = (value * scale).round();
    // Anything past u64 is a typo, not a disk.
    if bytes >= u64::MAX as f64 {
        return Err(err());
    }
    Ok(bytes as u64)
}

/// The age in `text`: a number with `s`, `m`, `h` or `d`.
pub fn parse_age(text: &str) -> Result<Duration, UnitError> {
    let err = || UnitError {
        text: text.to_owned(),
        what: AGE_FORMS,
    };
    let (value, unit) = number_and_unit(text).ok_or_else(err)?;
    let seconds = match unit {
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => return Err(err()),
    };
    let age = Duration::try_from_secs_f64(value * seconds).map_err(|_| err())?;
    if age.is_zero() {
        return Err(err());
    }
    Ok(age)
}

/// Bytes for people: `812.0 MiB`, `1.5 GiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let name = UNITS.get(unit).copied().unwrap_or("B");
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {name}")
    }
}

/// How much free space the disk-space guard leaves on a filesystem.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MinFree {
    /// At least this many bytes free (0: the guard is off).
    Bytes(u64),
    /// At least this share of the filesystem free, in percent (above 0, below 100).
    Percent(f64),
}

/// The default threshold: 1 GiB, whatever the disk's size (a Jetson's eMMC is 32 or 64 GB; a
/// share would leave too little on a small disk or hold back too much on a large one).
pub const DEFAULT_MIN_FREE: MinFree = MinFree::Bytes(1 << 30);

impl Default for MinFree {
    fn default() -> Self {
        DEFAULT_MIN_FREE
    }
}

impl MinFree {
    /// The threshold in bytes on a filesystem of `total` bytes.
    pub fn bytes(&self, total: u64) -> u64 {
        match *self {
            MinFree::Bytes(b) => b,
            MinFree::Percent(p) => (total as f64 * p / 100.0).ceil() as u64,
        }
    }

    /// Whether the guard is off.
    pub fn is_off(&self) -> bool {
        *self == MinFree::Bytes(0)
    }
}

impl std::str::FromStr for MinFree {
    type Err = UnitError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(share) = text.trim().strip_suffix('%') {
            let err = || UnitError {
                text: text.to_owned(),
                what: MIN_FREE_FORMS,
            };
            let (value, unit) = number_and_unit(share).ok_or_else(err)?;
            if !unit.is_empty() || value <= 0.0 || value >= 100.0 {
                return Err(err());
            }
            return Ok(MinFree::Percent(value));
        }
        parse_size(text).map(MinFree::Bytes).map_err(|_| UnitError {
            text: text.to_owned(),
            what: MIN_FREE_FORMS,
        })
    }
}

impl std::fmt::Display for MinFree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MinFree::Bytes(b) => write!(f, "{}", format_bytes(*b)),
            MinFree::Percent(p) => write!(f, "{p}%"),
        }
    }
}
