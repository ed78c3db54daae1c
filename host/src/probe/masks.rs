//! Ground-truth masks: read from PNG, and reduced to one label per backbone patch for fitting.

use std::path::Path;

use crate::heads::ClassMask;

/// Why a mask could not be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MaskFileError {
    /// Unreadable or undecodable.
    #[error("{path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A value names no class.
    #[error(
        "{path}: value {value} is not a class (the head has {classes}; masks are 0/255 or class indices)"
    )]
    UnknownClass {
        /// The file.
        path: String,
        /// The value.
        value: u8,
        /// Classes known.
        classes: usize,
    },
    /// The mask's size differs from its image's.
    #[error("{path}: mask is {mask_w}x{mask_h}, its image {image_w}x{image_h}")]
    SizeMismatch {
        /// The mask file.
        path: String,
        /// Mask width.
        mask_w: usize,
        /// Mask height.
        mask_h: usize,
        /// Image width.
        image_w: usize,
        /// Image height.
        image_h: usize,
    },
}

/// Reads a mask PNG: a 0/255 image is two classes (255 -> 1); otherwise pixel values are class
/// indices, each below `classes`.
pub fn load_mask(path: &Path, classes: usize) -> Result<ClassMask, MaskFileError> {
    let name = path.display().to_string();
    let img = image::open(path)
        .map_err(|e| MaskFileError::Read {
            path: name.clone(),
            reason: e.to_string(),
        })?
        .into_luma8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut data = img.into_raw();
    let binary = data.iter().all(|&v| v == 0 || v == 255);
    if binary && classes == 2 {
        data.iter_mut().for_each(|v| *v = u8::from(*v == 255));
    } else if let Some(&value) = data.iter().find(|&&v| usize::from(v) >= classes) {
        return Err(MaskFileError::UnknownClass {
            path: name,
            value,
            classes,
        });
    }
    Ok(ClassMask {
        width: w,
        height: h,
        data,
    })
}

/// The pixels `[start, end)` of cell `i` of `cells` over `len` pixels: never empty, never past
/// the end.
fn cell_span(i: usize, cells: usize, len: usize) -> (usize, usize) {
    let start = i * len / cells;
    (start, ((i + 1) * len / cells).max(start + 1).min(len))
}

/// The majority class of each of `hp` x `wp` cells covering the mask (the image is stretched
/// to the model size, so each cell covers the same fraction of the mask), row-major.
pub fn patch_labels(mask: &ClassMask, hp: usize, wp: usize, classes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(hp * wp);
    let mut counts = vec![0usize; classes.max(1)];
    for r in 0..hp {
        let (y0, y1) = cell_span(r, hp, mask.height);
        for c in 0..wp {
            let (x0, x1) = cell_span(c, wp, mask.width);
            counts.iter_mut().for_each(|n| *n = 0);
            for y in y0..y1 {
                for x in x0..x1 {
                    if let Some(n) = mask
                        .data
                        .get(y * mask.width + x)
                        .and_then(|&v| counts.get_mut(usize::from(v)))
                    {
                        *n += 1;
                    }
                }
            }
            let best = counts
                .iter()
                .enumerate()
                .max_by_key(|&(i, n)| (*n, std::cmp::Reverse(i)))
                .map_or(0, |(i, _)| i);
            out.push(best as u8);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_per_cell() {
        // 4x2 mask, right half class 1 except one pixel.
        let m = ClassMask {
            width: 4,
            height: 2,
            data: vec![0, 0, 1, 1, 0, 0, 1, 0],
        };
        assert_eq!(patch_labels(&m, 1, 2, 2), vec![0, 1]);
        assert_eq!(patch_labels(&m, 2, 4, 2), vec![0, 0, 1, 1, 0, 0, 1, 0]);
    }
}
