//! The linear-evaluation protocol: a sweep of the regularisation strength, each value fitted on
//! a training split and scored on a validation split that keeps subjects apart, then the chosen
//! value refitted on both.

use ndarray::{Array2, ArrayView2, Axis, concatenate};

use super::lbfgs::LbfgsConfig;
use super::logreg::{
    ClassWeight, FitError, LinearClassifier, LogRegConfig, fit_multi_label, fit_single_label_from,
};
use super::metrics::{balanced_accuracy, roc_auc};
use crate::heads::RunError;

/// How to fit.
#[derive(Clone, Debug)]
pub struct FitOptions {
    /// Values of C tried.
    pub c_grid: Vec<f64>,
    /// Fraction of groups held out for choosing C.
    pub val_fraction: f64,
    /// Seed of the validation split (and of patch subsampling).
    pub seed: u64,
    /// Class weighting.
    pub class_weight: ClassWeight,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            // 1e-4 .. 1e2, as in the DINOv3 linear evaluation's logistic-regression sweep.
            c_grid: (0..=12)
                .map(|i| 10f64.powf(-4.0 + 0.5 * f64::from(i)))
                .collect(),
            val_fraction: 0.2,
            seed: 0,
            class_weight: ClassWeight::Balanced,
        }
    }
}

/// A fitted head and how it was chosen.
#[derive(Clone, Debug)]
pub struct FitOutcome {
    /// The classifier refitted on all given samples with the chosen C.
    pub classifier: LinearClassifier,
    /// The chosen C.
    pub c: f64,
    /// (C, validation score) for each C tried.
    pub sweep: Vec<(f64, f64)>,
    /// What the score is.
    pub score_name: &'static str,
    /// Samples used for training and validation in the sweep.
    pub train_samples: usize,
    /// Validation samples.
    pub val_samples: usize,
}

/// Labels of the samples of a probe.
#[derive(Clone, Debug)]
pub enum Labels {
    /// One class per sample.
    Single(Vec<usize>),
    /// Flags per class per sample.
    Multi(Vec<Vec<bool>>),
}

impl Labels {
    /// What [`score_of_proba`] measures for these labels.
    pub fn score_name(&self) -> &'static str {
        match self {
            Labels::Single(_) => "balanced accuracy",
            Labels::Multi(_) => "mean ROC AUC",
        }
    }

    fn len(&self) -> usize {
        match self {
            Labels::Single(v) => v.len(),
            Labels::Multi(v) => v.len(),
        }
    }
    fn pick(&self, idx: &[usize]) -> Labels {
        match self {
            Labels::Single(v) => {
                Labels::Single(idx.iter().filter_map(|&i| v.get(i).copied()).collect())
            }
            Labels::Multi(v) => {
                Labels::Multi(idx.iter().filter_map(|&i| v.get(i).cloned()).collect())
            }
        }
    }
}

fn fit_once(
    x: ArrayView2<f32>,
    labels: &Labels,
    classes: usize,
    config: &LogRegConfig,
    warm: Option<&LinearClassifier>,
) -> Result<LinearClassifier, FitError> {
    Ok(match labels {
        Labels::Single(y) => fit_single_label_from(x, y, classes, config, warm)?.0,
        Labels::Multi(y) => fit_multi_label(x, y, classes, config)?.0,
    })
}

fn score(model: &LinearClassifier, x: ArrayView2<f32>, labels: &Labels) -> Result<f64, FitError> {
    let p = model.predict_proba(x)?;
    Ok(score_of_proba(p.view(), labels))
}

/// The validation score of predicted probabilities (rows: samples): balanced accuracy for
/// single labels, the mean one-vs-rest ROC AUC for label sets.
pub fn score_of_proba(p: ArrayView2<f32>, labels: &Labels) -> f64 {
    match labels {
        Labels::Single(y) => balanced_accuracy(p.view(), y),
        Labels::Multi(y) => {
            let aucs: Vec<f64> = (0..p.ncols())
                .filter_map(|k| {
                    let truth: Vec<bool> = y
                        .iter()
                        .map(|l| l.get(k).copied().unwrap_or(false))
                        .collect();
                    roc_auc(&p.column(k).to_vec(), &truth)
                })
                .collect();
            aucs.iter().sum::<f64>() / aucs.len().max(1) as f64
        }
    }
}

/// Whether the group goes to validation: a hash of seed and group, as the dataset split does
/// (with its own seed, so the two splits are independent).
pub fn in_validation(group: &str, seed: u64, fraction: f64) -> bool {
    let mut h = crc32fast::Hasher::new();
    h.update(&seed.wrapping_add(0x9e37_79b9_7f4a_7c15).to_le_bytes());
    h.update(group.as_bytes());
    f64::from(h.finalize()) / f64::from(u32::MAX) < fraction
}

/// Sweeps C with a validation split by `groups` (one per sample), then refits on everything.
/// Falls back to the middle of the grid when a split leaves a class out.
pub fn fit_with_sweep(
    x: ArrayView2<f32>,
    labels: &Labels,
    groups: &[String],
    classes: usize,
    options: &FitOptions,
) -> Result<FitOutcome, FitError> {
    if labels.len() != x.nrows() || groups.len() != x.nrows() {
        return Err(FitError::Labels(format!(
            "{} labels and {} groups for {} samples",
            labels.len(),
            groups.len(),
            x.nrows()
        )));
    }
    let (val, train): (Vec<usize>, Vec<usize>) = (0..x.nrows()).partition(|&i| {
        groups
            .get(i)
            .is_some_and(|g| in_validation(g, options.seed, options.val_fraction))
    });
    let score_name = labels.score_name();
    let base = LogRegConfig {
        class_weight: options.class_weight,
        ..Default::default()
    };
    let mut sweep = Vec::new();
    let mut grid = options.c_grid.clone();
    grid.sort_by(f64::total_cmp);
    // Each fit starts from the previous (smaller) C's solution, and the final refit from the
    // chosen one's.
    let mut warm: Option<LinearClassifier> = None;
    // (score, C, model) of the best so far; on ties the smaller C, met first, stays.
    let mut best: Option<(f64, f64, LinearClassifier)> = None;
    if !val.is_empty() && !train.is_empty() {
        let (xt, xv) = (x.select(Axis(0), &train), x.select(Axis(0), &val));
        let (lt, lv) = (labels.pick(&train), labels.pick(&val));
        for &c in &grid {
            // The sweep only ranks values of C: a looser tolerance and fewer iterations serve.
            let sweep_config = LogRegConfig {
                c,
                lbfgs: LbfgsConfig {
                    gradient_tolerance: 1e-5,
                    max_iterations: 300,
                    ..base.lbfgs
                },
                ..base
            };
            match fit_once(xt.view(), &lt, classes, &sweep_config, warm.as_ref()) {
                Ok(m) => {
                    let s = score(&m, xv.view(), &lv)?;
                    sweep.push((c, s));
                    if best.as_ref().is_none_or(|(bs, ..)| s > *bs) {
                        best = Some((s, c, m.clone()));
                    }
                    warm = Some(m);
                }
                // A class absent from the training side: the split cannot choose C.
                Err(FitError::EmptyClass { .. }) => {
                    sweep.clear();
                    best = None;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
    }
    let (c, start) = match best {
        Some((_, c, m)) => (c, Some(m)),
        None => (grid.get(grid.len() / 2).copied().unwrap_or(1.0), None),
    };
    let classifier = fit_once(
        x,
        labels,
        classes,
        &LogRegConfig { c, ..base },
        start.as_ref(),
    )?;
    Ok(FitOutcome {
        classifier,
        c,
        sweep,
        score_name,
        train_samples: train.len(),
        val_samples: val.len(),
    })
}

/// Stacked patch samples: features `[samples, F]`, each sample's class and group.
pub type Stacked = (Array2<f32>, Vec<usize>, Vec<String>);

/// Stacks per-image patch features `[P, F]` (and their labels) into one sample matrix, keeping
/// at most `max_samples` patches: every patch of a rare class, then an even subsample of the
/// rest, deterministically. An image whose labels do not match its feature rows one to one, a
/// label past `classes`, or images of different feature widths are an error naming the image
/// (by its place in `per_image`), never patches quietly left out.
pub fn stack_patches(
    per_image: &[(Array2<f32>, Vec<u8>, String)],
    classes: usize,
    max_samples: usize,
) -> Result<Stacked, FitError> {
    let width = per_image.first().map_or(0, |p| p.0.ncols());
    let mut counts = vec![0usize; classes];
    for (i, (x, l, g)) in per_image.iter().enumerate() {
        if l.len() != x.nrows() {
            return Err(FitError::Labels(format!(
                "image {i} (group {g}): {} patch labels for {} feature rows",
                l.len(),
                x.nrows()
            )));
        }
        if x.ncols() != width {
            return Err(RunError::Width {
                expected: width,
                found: x.ncols(),
            }
            .into());
        }
        for &c in l {
            let n = counts.get_mut(usize::from(c)).ok_or_else(|| {
                FitError::Labels(format!(
                    "image {i} (group {g}): patch label {c} out of range for {classes} classes"
                ))
            })?;
            *n += 1;
        }
    }
    // Keep-rate per class: all of a class when it is small, evenly thinned otherwise.
    let share = max_samples / classes.max(1);
    let keep_every: Vec<usize> = counts
        .iter()
        .map(|&n| {
            if n <= share {
                1
            } else {
                n.div_ceil(share.max(1))
            }
        })
        .collect();
    let mut seen = vec![0usize; classes];
    let (mut rows, mut labels, mut groups) = (Vec::new(), Vec::new(), Vec::new());
    for (x, l, g) in per_image {
        // Labels and rows were checked to pair up, and every label to be a class.
        for (row, &c) in x.rows().into_iter().zip(l) {
            let ci = usize::from(c);
            let (Some(s), Some(&every)) = (seen.get_mut(ci), keep_every.get(ci)) else {
                continue;
            };
            *s += 1;
            if (*s - 1) % every == 0 {
                rows.push(row.insert_axis(Axis(0)));
                labels.push(ci);
                groups.push(g.clone());
            }
        }
    }
    let x = if rows.is_empty() {
        Array2::zeros((0, width))
    } else {
        concatenate(Axis(0), &rows)
            .map_err(|_| FitError::Labels("patch features do not stack into one matrix".into()))?
    };
    Ok((x, labels, groups))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn stacking_patches_keeps_every_one_under_the_cap() {
        let per_image = vec![
            (Array2::zeros((2, 3)), vec![0, 1], "a".to_string()),
            (Array2::ones((2, 3)), vec![1, 1], "b".to_string()),
        ];
        let (x, labels, groups) = stack_patches(&per_image, 2, 100).unwrap();
        assert_eq!(x.dim(), (4, 3));
        assert_eq!(labels, vec![0, 1, 1, 1]);
        assert_eq!(groups, vec!["a", "a", "b", "b"]);
    }

    #[test]
    fn a_patch_without_a_usable_label_is_an_error_not_a_gap() {
        // Three labels for two feature rows.
        let short = vec![(Array2::zeros((2, 3)), vec![0, 1, 1], "a".to_string())];
        let err = stack_patches(&short, 2, 100).unwrap_err();
        assert!(
            matches!(&err, FitError::Labels(m) if m.contains("image 0") && m.contains("3 patch labels for 2")),
            "{err}"
        );
        // A label naming no class.
        let odd = vec![
            (Array2::zeros((1, 3)), vec![0], "a".to_string()),
            (Array2::zeros((1, 3)), vec![5], "b".to_string()),
        ];
        let err = stack_patches(&odd, 2, 100).unwrap_err();
        assert!(
            matches!(&err, FitError::Labels(m) if m.contains("image 1") && m.contains("label 5")),
            "{err}"
        );
        // Images of different feature widths.
        let mixed = vec![
            (Array2::zeros((1, 3)), vec![0], "a".to_string()),
            (Array2::zeros((1, 4)), vec![1], "b".to_string()),
        ];
        assert_eq!(
            stack_patches(&mixed, 2, 100).unwrap_err(),
            FitError::Features(RunError::Width {
                expected: 3,
                found: 4
            })
        );
    }
}
