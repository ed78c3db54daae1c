//! Class masks: from upsampled logits, to per-class statistics, components, run-length bytes
//! and overlays.

use dinoedge_proto::message::encode_rle;
use ndarray::ArrayView3;

/// One class index per pixel, row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassMask {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// `width * height` class indices.
    pub data: Vec<u8>,
}

/// What one class covers in a mask.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SegmentStats {
    /// Class index.
    pub class: u8,
    /// Pixels of the class.
    pub pixels: usize,
    /// Fraction of the mask, 0 to 1.
    pub area_fraction: f32,
    /// Bounding box: left, top, width, height.
    pub bbox: (usize, usize, usize, usize),
    /// Centroid (x, y), pixel centres at +0.5.
    pub centroid: (f32, f32),
}

/// Per class: pixels, min x, min y, max x, max y, sum of x, sum of y.
type Accumulator = (usize, usize, usize, usize, usize, f64, f64);

/// Linear interpolation positions for `out` samples over `n` source cells, pixel centres aligned.
fn taps(out: usize, n: usize) -> Vec<(usize, usize, f32)> {
    (0..out)
        .map(|i| {
            let src = ((i as f32 + 0.5) * n as f32 / out as f32 - 0.5).clamp(0.0, (n - 1) as f32);
            let lo = src.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            (lo, hi, src - lo as f32)
        })
        .collect()
}

impl ClassMask {
    /// Argmax over classes of `logits` `[classes, h, w]` upsampled bilinearly to `width` x
    /// `height`.
    pub fn from_logits(logits: ArrayView3<f32>, width: usize, height: usize) -> Self {
        let (k, h, w) = logits.dim();
        let mut data = vec![0u8; width * height];
        if k == 0 || h == 0 || w == 0 {
            return ClassMask {
                width,
                height,
                data,
            };
        }
        let (ty, tx) = (taps(height, h), taps(width, w));
        for (y, &(y0, y1, fy)) in ty.iter().enumerate() {
            for (x, &(x0, x1, fx)) in tx.iter().enumerate() {
                let mut best = (0u8, f32::NEG_INFINITY);
                for c in 0..k {
                    let l = logits.index_axis(ndarray::Axis(0), c);
                    let top = l[[y0, x0]] * (1.0 - fx) + l[[y0, x1]] * fx;
                    let bottom = l[[y1, x0]] * (1.0 - fx) + l[[y1, x1]] * fx;
                    let v = top * (1.0 - fy) + bottom * fy;
                    if v > best.1 {
                        best = (c as u8, v);
                    }
                }
                data[y * width + x] = best.0;
            }
        }
        ClassMask {
            width,
            height,
            data,
        }
    }

    /// Statistics of every class present except `background`, by class index.
    pub fn stats(&self, background: Option<u8>) -> Vec<SegmentStats> {
        let mut acc: std::collections::BTreeMap<u8, Accumulator> = Default::default();
        for (i, &c) in self.data.iter().enumerate() {
            if Some(c) == background {
                continue;
            }
            let (x, y) = (i % self.width, i / self.width);
            let e = acc
                .entry(c)
                .or_insert((0, usize::MAX, usize::MAX, 0, 0, 0.0, 0.0));
            e.0 += 1;
            e.1 = e.1.min(x);
            e.2 = e.2.min(y);
            e.3 = e.3.max(x);
            e.4 = e.4.max(y);
            e.5 += x as f64 + 0.5;
            e.6 += y as f64 + 0.5;
        }
        let total = self.data.len().max(1) as f32;
        acc.into_iter()
            .map(|(class, (n, x0, y0, x1, y1, sx, sy))| SegmentStats {
                class,
                pixels: n,
                area_fraction: n as f32 / total,
                bbox: (x0, y0, x1 - x0 + 1, y1 - y0 + 1),
                centroid: ((sx / n as f64) as f32, (sy / n as f64) as f32),
            })
            .collect()
    }

    /// Keeps only the largest 4-connected component of `class`; its other pixels become
    /// `background`.
    pub fn keep_largest_component(&mut self, class: u8, background: u8) {
        let (w, h) = (self.width, self.height);
        let mut label = vec![0u32; w * h];
        let mut sizes = vec![0usize];
        let mut stack = Vec::new();
        for start in 0..w * h {
            if self.data[start] != class || label[start] != 0 {
                continue;
            }
            let id = sizes.len() as u32;
            sizes.push(0);
            label[start] = id;
            stack.push(start);
            while let Some(i) = stack.pop() {
                sizes[id as usize] += 1;
                let (x, y) = (i % w, i / w);
                let mut visit = |j: usize| {
                    if self.data[j] == class && label[j] == 0 {
                        label[j] = id;
                        stack.push(j);
                    }
                };
                if x > 0 {
                    visit(i - 1);
                }
                if x + 1 < w {
                    visit(i + 1);
                }
                if y > 0 {
                    visit(i - w);
                }
                if y + 1 < h {
                    visit(i + w);
                }
            }
        }
        let Some(best) = (1..sizes.len()).max_by_key(|&i| (sizes[i], std::cmp::Reverse(i))) else {
            return;
        };
        for (d, &l) in self.data.iter_mut().zip(&label) {
            if l != 0 && l as usize != best {
                *d = background;
            }
        }
    }

    /// The mask resampled to `width` x `height` by nearest neighbour (pixel centres).
    pub fn resized(&self, width: usize, height: usize) -> ClassMask {
        let mut data = Vec::with_capacity(width * height);
        for y in 0..height {
            let sy = ((y * 2 + 1) * self.height / (2 * height.max(1)))
                .min(self.height.saturating_sub(1));
            for x in 0..width {
                let sx = ((x * 2 + 1) * self.width / (2 * width.max(1)))
                    .min(self.width.saturating_sub(1));
                data.push(self.data.get(sy * self.width + sx).copied().unwrap_or(0));
            }
        }
        ClassMask {
            width,
            height,
            data,
        }
    }

    /// The run-length bytes of the protocol's `RleMask` for this mask.
    pub fn to_rle(&self) -> Vec<u8> {
        let mut out = vec![0u8; 2 + 5 * self.data.len()];
        match encode_rle(&self.data, &mut out) {
            Ok(n) => {
                out.truncate(n);
                out
            }
            // The buffer is sized for the worst case, so this cannot happen.
            Err(_) => Vec::new(),
        }
    }

    /// The mask blended over an RGB888 image of the same size (`alpha` of the class colour;
    /// class 0 left as is).
    pub fn overlay(&self, rgb: &[u8], alpha: f32) -> Option<image::RgbImage> {
        if rgb.len() != self.data.len() * 3 {
            return None;
        }
        let mut out = rgb.to_vec();
        for (px, &c) in out.chunks_exact_mut(3).zip(&self.data) {
            if c == 0 {
                continue;
            }
            let colour = palette(c);
            for (v, col) in px.iter_mut().zip(colour) {
                *v = (f32::from(*v) * (1.0 - alpha) + f32::from(col) * alpha).round() as u8;
            }
        }
        image::RgbImage::from_raw(self.width as u32, self.height as u32, out)
    }
}

/// A distinct colour per class.
pub fn palette(class: u8) -> [u8; 3] {
    const COLOURS: [[u8; 3]; 8] = [
        [0, 0, 0],
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
    ];
    COLOURS[class as usize % COLOURS.len()]
}

/// Dice of `class` between two masks of the same size; `None` when neither has it (or the
/// sizes differ).
pub fn dice(a: &ClassMask, b: &ClassMask, class: u8) -> Option<f64> {
    let (inter, sa, sb) = overlap(a, b, class)?;
    (sa + sb > 0).then(|| 2.0 * inter as f64 / (sa + sb) as f64)
}

/// Intersection over union of `class`; `None` when neither has it (or the sizes differ).
pub fn iou(a: &ClassMask, b: &ClassMask, class: u8) -> Option<f64> {
    let (inter, sa, sb) = overlap(a, b, class)?;
    let union = sa + sb - inter;
    (union > 0).then(|| inter as f64 / union as f64)
}

/// Pixels of `class` in both masks, in `a`, and in `b`; `None` when the sizes differ. The
/// counts behind [`dice`] and [`iou`], for pooling over many masks.
pub fn overlap(a: &ClassMask, b: &ClassMask, class: u8) -> Option<(usize, usize, usize)> {
    if (a.width, a.height) != (b.width, b.height) {
        return None;
    }
    let mut t = (0, 0, 0);
    for (&x, &y) in a.data.iter().zip(&b.data) {
        let (ia, ib) = (x == class, y == class);
        t.0 += usize::from(ia && ib);
        t.1 += usize::from(ia);
        t.2 += usize::from(ib);
    }
    Some(t)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use ndarray::Array3;

    #[test]
    fn upsampling_argmax_stats_components_and_rle() {
        // Class 1 is 1 in the right column of a 2x2 grid, class 0 is 0.5 everywhere: class 1
        // wins where the interpolation passes halfway, from x = 4 of 8.
        let mut logits = Array3::<f32>::from_elem((2, 2, 2), 0.5);
        logits.index_axis_mut(ndarray::Axis(0), 1).fill(0.0);
        logits[[1, 0, 1]] = 1.0;
        logits[[1, 1, 1]] = 1.0;
        let m = ClassMask::from_logits(logits.view(), 8, 4);
        assert_eq!(&m.data[..8], &[0, 0, 0, 0, 1, 1, 1, 1]);
        let s = m.stats(Some(0));
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].pixels, 16);
        assert_eq!(s[0].bbox, (4, 0, 4, 4));
        assert_eq!(s[0].centroid, (6.0, 2.0));
        assert!((s[0].area_fraction - 0.5).abs() < 1e-6);
        let rle = m.to_rle();
        let decoded = {
            let r = dinoedge_proto::message::RleMask {
                width: 8,
                height: 4,
                runs: &rle,
            };
            let mut out = vec![0u8; 32];
            r.decode_into(&mut out).unwrap();
            out
        };
        assert_eq!(decoded, m.data);

        let mut two = ClassMask {
            width: 5,
            height: 1,
            data: vec![1, 0, 1, 1, 0],
        };
        two.keep_largest_component(1, 0);
        assert_eq!(two.data, vec![0, 0, 1, 1, 0]);
        let other = ClassMask {
            width: 5,
            height: 1,
            data: vec![0, 0, 1, 0, 0],
        };
        assert_eq!(dice(&two, &other, 1), Some(2.0 / 3.0));
        assert_eq!(iou(&two, &other, 1), Some(0.5));
        assert_eq!(dice(&two, &other, 7), None);
        assert_eq!(two.resized(10, 2).data[4..6], [1, 1]);
        let img = two.overlay(&[100; 15], 0.5).unwrap();
        assert_eq!(img.get_pixel(2, 0).0, [165, 63, 88]);
        assert_eq!(img.get_pixel(0, 0).0, [100, 100, 100]);
    }
}
