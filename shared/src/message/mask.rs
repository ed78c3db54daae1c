//! Run-length encoding of a low-resolution class mask, carried in a
//! [`InferenceResult`](super::InferenceResult).
//!
//! The runs are a byte string: for each run, the class (one byte), then the run length as an
//! unsigned LEB128 varint (the same varint postcard uses; 1 to 5 bytes, at least 1). Runs go
//! in row-major order and may cross rows; their lengths add up to `width * height`.

use serde::{Deserialize, Serialize};

/// Most cells a mask may have (e.g. 1024 x 1024); a larger one is refused before anything is
/// sized from it.
pub const MAX_MASK_CELLS: usize = 1 << 20;

/// Why a run-length mask could not be decoded or encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum MaskError {
    /// The bytes end inside a run.
    #[error("run-length mask ends inside a run at byte {at}")]
    Truncated {
        /// Byte offset of the incomplete run.
        at: usize,
    },
    /// A run length is not a valid varint of at most 5 bytes fitting in u32.
    #[error("run-length mask has a bad run length at byte {at}")]
    BadLength {
        /// Byte offset of the run.
        at: usize,
    },
    /// A run has length zero.
    #[error("run-length mask has an empty run at byte {at}")]
    EmptyRun {
        /// Byte offset of the run.
        at: usize,
    },
    /// The runs do not cover exactly `width * height` cells.
    #[error("run-length mask covers {covered} cells, expected {expected}")]
    CoverageMismatch {
        /// `width * height`.
        expected: u64,
        /// Sum of the run lengths (up to the first excess).
        covered: u64,
    },
    /// `width * height` exceeds [`MAX_MASK_CELLS`].
    #[error("mask of {cells} cells exceeds the limit of {MAX_MASK_CELLS}")]
    TooLarge {
        /// `width * height`.
        cells: usize,
    },
    /// The output buffer's length differs from `width * height` (decoding), or it is too
    /// short for the runs (encoding).
    #[error("mask buffer of {len} bytes does not fit: {needed} needed")]
    BufferSize {
        /// The buffer's length.
        len: usize,
        /// What it would have needed (at least).
        needed: usize,
    },
}

/// A class mask of `width x height` cells, run-length encoded.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RleMask<'a> {
    /// Mask width in cells.
    pub width: u16,
    /// Mask height in cells.
    pub height: u16,
    /// The runs, as described in the module documentation.
    #[serde(borrow, with = "super::borrowed_bytes")]
    pub runs: &'a [u8],
}

/// One run: `len` consecutive cells of class `class`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RleRun {
    /// The class index.
    pub class: u8,
    /// How many cells, at least 1.
    pub len: u32,
}

/// Iterator over the runs of an [`RleMask`]; yields an error once and then stops.
#[derive(Debug, Clone)]
pub struct RleRuns<'a> {
    bytes: &'a [u8],
    pos: usize,
    failed: bool,
}

impl Iterator for RleRuns<'_> {
    type Item = Result<RleRun, MaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let at = self.pos;
        let rest = self.bytes.get(at..)?;
        let (&class, mut rest) = rest.split_first()?;
        let mut len: u64 = 0;
        let mut used = 1;
        for shift in (0..35).step_by(7) {
            let Some((&byte, tail)) = rest.split_first() else {
                self.failed = true;
                return Some(Err(MaskError::Truncated { at }));
            };
            rest = tail;
            used += 1;
            len |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                let Ok(len) = u32::try_from(len) else {
                    break;
                };
                if len == 0 {
                    self.failed = true;
                    return Some(Err(MaskError::EmptyRun { at }));
                }
                self.pos = at + used;
                return Some(Ok(RleRun { class, len }));
            }
        }
        self.failed = true;
        Some(Err(MaskError::BadLength { at }))
    }
}

impl<'a> RleMask<'a> {
    /// The runs, in order.
    pub fn runs(&self) -> RleRuns<'a> {
        RleRuns {
            bytes: self.runs,
            pos: 0,
            failed: false,
        }
    }

    /// Number of cells, `width * height`.
    pub fn cells(&self) -> usize {
        usize::from(self.width) * usize::from(self.height)
    }

    /// Checks that the mask has at most [`MAX_MASK_CELLS`] cells and that the runs decode and
    /// cover exactly `width * height` of them. Call it before sizing anything from
    /// [`cells`](Self::cells).
    pub fn validate(&self) -> Result<(), MaskError> {
        let cells = self.cells();
        if cells > MAX_MASK_CELLS {
            return Err(MaskError::TooLarge { cells });
        }
        let expected = cells as u64;
        let mut covered = 0u64;
        for run in self.runs() {
            covered += u64::from(run?.len);
            if covered > expected {
                return Err(MaskError::CoverageMismatch { expected, covered });
            }
        }
        if covered == expected {
            Ok(())
        } else {
            Err(MaskError::CoverageMismatch { expected, covered })
        }
    }

    /// Expands the mask into `out`, one class byte per cell in row-major order; `out` must
    /// hold exactly `width * height` bytes. On error `out` may be partly written.
    pub fn decode_into(&self, out: &mut [u8]) -> Result<(), MaskError> {
        let cells = self.cells();
        if cells > MAX_MASK_CELLS {
            return Err(MaskError::TooLarge { cells });
        }
        if out.len() != cells {
            return Err(MaskError::BufferSize {
                len: out.len(),
                needed: cells,
            });
        }
        let mut pos = 0usize;
        for run in self.runs() {
            let run = run?;
            let end = pos.saturating_add(run.len as usize);
            let Some(cells) = out.get_mut(pos..end) else {
                return Err(MaskError::CoverageMismatch {
                    expected: cells as u64,
                    covered: end as u64,
                });
            };
            cells.fill(run.class);
            pos = end;
        }
        if pos == cells {
            Ok(())
        } else {
            Err(MaskError::CoverageMismatch {
                expected: cells as u64,
                covered: pos as u64,
            })
        }
    }
}

/// Run-length encodes a class mask (one byte per cell, row-major) into `out`; returns the
/// number of bytes written. Pair the result with the mask's width and height in an
/// [`RleMask`]. At most `2 + 5 * cells` bytes are needed in the worst case.
pub fn encode_rle(cells: &[u8], out: &mut [u8]) -> Result<usize, MaskError> {
    let mut written = 0usize;
    let mut rest = cells;
    while let Some(&class) = rest.first() {
        let run = rest.iter().take_while(|&&c| c == class).count();
        rest = rest.get(run..).unwrap_or_default();
        let mut len = u32::try_from(run).map_err(|_| MaskError::BufferSize {
            len: cells.len(),
            needed: u32::MAX as usize,
        })?;
        let mut put = |byte: u8| -> Result<(), MaskError> {
            let slot = out.get_mut(written).ok_or(MaskError::BufferSize {
                len: written,
                needed: written + 1,
            })?;
            *slot = byte;
            written += 1;
            Ok(())
        };
        put(class)?;
        loop {
            let low = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                put(low)?;
                break;
            }
            put(low | 0x80)?;
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let mut cells = [0u8; 300];
        cells[10..200].fill(2);
        cells[299] = 1;
        let mut buf = [0u8; 32];
        let n = encode_rle(&cells, &mut buf).unwrap();
        assert_eq!(&buf[..n], &[0, 10, 2, 0xbe, 0x01, 0, 99, 1, 1]);
        let mask = RleMask {
            width: 20,
            height: 15,
            runs: &buf[..n],
        };
        mask.validate().unwrap();
        let mut out = [9u8; 300];
        mask.decode_into(&mut out).unwrap();
        assert_eq!(out, cells);

        let short = RleMask {
            runs: &buf[..n - 2],
            ..mask
        };
        assert!(matches!(
            short.validate(),
            Err(MaskError::CoverageMismatch { covered: 299, .. })
        ));
        let cut = RleMask {
            runs: &buf[..4],
            ..mask
        };
        assert_eq!(cut.validate(), Err(MaskError::Truncated { at: 2 }));
        let empty_run = RleMask {
            runs: &[3, 0],
            ..mask
        };
        assert_eq!(empty_run.validate(), Err(MaskError::EmptyRun { at: 0 }));
        let huge = RleMask {
            width: 2048,
            height: 1024,
            runs: &[0, 0x80, 0x80, 0x80, 0x01],
        };
        assert_eq!(huge.validate(), Err(MaskError::TooLarge { cells: 1 << 21 }));
        let overlong = RleMask {
            runs: &[3, 0xff, 0xff, 0xff, 0xff, 0x7f],
            ..mask
        };
        assert_eq!(overlong.validate(), Err(MaskError::BadLength { at: 0 }));
        assert!(matches!(
            encode_rle(&cells, &mut buf[..5]),
            Err(MaskError::BufferSize { .. })
        ));
    }
}
