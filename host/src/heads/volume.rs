//! 3D sweeps: a cine loop or probe sweep as a volume of slices. Volume classification reads the
//! mean over slices of the per-slice `[CLS ; mean patch]` features; volume segmentation is the
//! stack of per-slice masks, scored by Dice pooled over every voxel.

use ndarray::{Array1, ArrayView1};

use super::ClassMask;

/// The mean of per-slice feature vectors (all of one length); `None` for no slices or
/// mismatched lengths.
pub fn mean_features<'a>(
    slices: impl IntoIterator<Item = ArrayView1<'a, f32>>,
) -> Option<Array1<f32>> {
    let mut sum: Option<Array1<f64>> = None;
    let mut n = 0usize;
    for s in slices {
        match &mut sum {
            None => sum = Some(s.mapv(f64::from)),
            Some(acc) if acc.len() == s.len() => *acc += &s.mapv(f64::from),
            Some(_) => return None,
        }
        n += 1;
    }
    sum.map(|s| s.mapv(|v| (v / n as f64) as f32))
}

/// Dice of `class` over a whole volume (every slice's pixels pooled); `None` when the stacks
/// differ in length or slice size, or neither has the class.
pub fn volume_dice(pred: &[ClassMask], truth: &[ClassMask], class: u8) -> Option<f64> {
    if pred.len() != truth.len() {
        return None;
    }
    let (mut inter, mut total) = (0usize, 0usize);
    for (p, t) in pred.iter().zip(truth) {
        if (p.width, p.height) != (t.width, t.height) {
            return None;
        }
        for (&a, &b) in p.data.iter().zip(&t.data) {
            inter += usize::from(a == class && b == class);
            total += usize::from(a == class) + usize::from(b == class);
        }
    }
    (total > 0).then(|| 2.0 * inter as f64 / total as f64)
}

/// One slice: its index, classification features and mask.
type Slice = (u16, Array1<f32>, Option<ClassMask>);

/// One completed sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct Volume {
    /// The sweep's id (from the frame metadata).
    pub sweep_id: u32,
    /// Slices received, by slice index.
    pub slice_indices: Vec<u16>,
    /// Mean of the slices' classification features.
    pub mean_features: Array1<f32>,
    /// Per-slice masks, in slice order, of the slices that had one.
    pub masks: Vec<ClassMask>,
    /// Slices that arrived without a mask (so `masks` is shorter than `slice_indices`).
    pub unmasked: Vec<u16>,
    /// Slices the edge announced but that never arrived.
    pub missing: Vec<u16>,
}

/// Why a slice was not taken into its sweep.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "sweep {sweep_id}, slice {slice_index}: {found} feature values, the sweep's slices have {expected}"
)]
pub struct SliceError {
    /// The sweep.
    pub sweep_id: u32,
    /// The refused slice.
    pub slice_index: u16,
    /// Feature values of the sweep's slices so far.
    pub expected: usize,
    /// Feature values of this slice.
    pub found: usize,
}

/// Collects the slices of the sweep in progress and hands out a [`Volume`] when it is complete
/// (all announced slices) or when a new sweep begins (whatever arrived, with what is missing).
#[derive(Debug, Default)]
pub struct SweepAccumulator {
    current: Option<(u32, Option<u16>, Vec<Slice>)>,
}

impl SweepAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one slice; returns the volumes this completes or closes (at most two: the previous
    /// sweep, closed by a new id, and this one if it is now complete). A slice whose features
    /// differ in length from its sweep's earlier slices is refused (it could not be averaged
    /// with them) and the sweep goes on without it.
    pub fn push(
        &mut self,
        sweep_id: u32,
        slice_index: u16,
        slice_count: Option<u16>,
        features: Array1<f32>,
        mask: Option<ClassMask>,
    ) -> Result<Vec<Volume>, SliceError> {
        if let Some((id, _, slices)) = &self.current
            && *id == sweep_id
            && let Some((_, first, _)) = slices.first()
            && first.len() != features.len()
        {
            return Err(SliceError {
                sweep_id,
                slice_index,
                expected: first.len(),
                found: features.len(),
            });
        }
        let mut done = Vec::new();
        if self
            .current
            .as_ref()
            .is_some_and(|(id, ..)| *id != sweep_id)
            && let Some(v) = self.flush()
        {
            done.push(v);
        }
        let entry = self
            .current
            .get_or_insert_with(|| (sweep_id, slice_count, Vec::new()));
        entry.1 = entry.1.or(slice_count);
        // A repeated slice index replaces the earlier one (a re-sent slice).
        entry.2.retain(|(i, ..)| *i != slice_index);
        entry.2.push((slice_index, features, mask));
        if entry.1.is_some_and(|n| entry.2.len() >= usize::from(n))
            && let Some(v) = self.flush()
        {
            done.push(v);
        }
        Ok(done)
    }

    /// Closes the sweep in progress, if any.
    pub fn flush(&mut self) -> Option<Volume> {
        let (sweep_id, count, mut slices) = self.current.take()?;
        slices.sort_by_key(|(i, ..)| *i);
        let slice_indices: Vec<u16> = slices.iter().map(|(i, ..)| *i).collect();
        let missing = count.map_or_else(Vec::new, |n| {
            (0..n).filter(|i| !slice_indices.contains(i)).collect()
        });
        // `push` keeps every slice of a sweep one length, so this fails only for no slices.
        let mean_features = mean_features(slices.iter().map(|(_, f, _)| f.view()))?;
        let mut masks = Vec::new();
        let mut unmasked = Vec::new();
        for (i, _, m) in slices {
            match m {
                Some(m) => masks.push(m),
                None => unmasked.push(i),
            }
        }
        Some(Volume {
            sweep_id,
            slice_indices,
            mean_features,
            masks,
            unmasked,
            missing,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ndarray::array;

    #[test]
    fn sweeps_complete_close_and_average() {
        let mut acc = SweepAccumulator::new();
        assert!(
            acc.push(7, 0, Some(3), array![1.0, 2.0], None)
                .unwrap()
                .is_empty()
        );
        assert!(
            acc.push(7, 2, None, array![3.0, 4.0], None)
                .unwrap()
                .is_empty()
        );
        let done = acc.push(7, 1, None, array![5.0, 6.0], None).unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].mean_features, array![3.0, 4.0]);
        assert_eq!(done[0].slice_indices, vec![0, 1, 2]);
        // A new sweep closes an incomplete one, saying what is missing.
        assert!(
            acc.push(8, 0, Some(4), array![1.0, 1.0], None)
                .unwrap()
                .is_empty()
        );
        let done = acc.push(9, 0, None, array![0.0, 0.0], None).unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(
            (done[0].sweep_id, done[0].missing.clone()),
            (8, vec![1, 2, 3])
        );
        assert_eq!(acc.flush().unwrap().sweep_id, 9);
        assert!(acc.flush().is_none());
    }

    #[test]
    fn a_slice_that_does_not_fit_its_sweep_is_refused_and_unmasked_slices_are_named() {
        let mask = ClassMask {
            width: 1,
            height: 1,
            data: vec![1],
        };
        let mut acc = SweepAccumulator::new();
        assert!(
            acc.push(3, 0, Some(3), array![1.0, 2.0], Some(mask.clone()))
                .unwrap()
                .is_empty()
        );
        let err = acc
            .push(3, 1, None, array![1.0, 2.0, 3.0], None)
            .unwrap_err();
        assert_eq!(
            err,
            SliceError {
                sweep_id: 3,
                slice_index: 1,
                expected: 2,
                found: 3
            }
        );
        assert!(err.to_string().contains("slice 1"), "{err}");
        // The sweep goes on: the refused slice is reported missing, not averaged in.
        assert!(
            acc.push(3, 2, None, array![3.0, 4.0], None)
                .unwrap()
                .is_empty()
        );
        let v = acc.flush().unwrap();
        assert_eq!(v.mean_features, array![2.0, 3.0]);
        assert_eq!(v.missing, vec![1]);
        assert_eq!((v.masks.len(), v.unmasked.clone()), (1, vec![2]));
        // A new sweep may have another width.
        assert!(acc.push(4, 0, None, array![1.0], None).is_ok());
    }

    #[test]
    fn volume_dice_pools_every_slice() {
        let a = ClassMask {
            width: 2,
            height: 1,
            data: vec![1, 0],
        };
        let b = ClassMask {
            width: 2,
            height: 1,
            data: vec![1, 1],
        };
        assert_eq!(
            volume_dice(&[a.clone(), a.clone()], &[a.clone(), b.clone()], 1),
            Some(2.0 * 2.0 / 5.0)
        );
        assert_eq!(
            volume_dice(std::slice::from_ref(&a), &[a.clone(), b], 1),
            None
        );
    }
}
