//! L2-regularised logistic regression on frozen features, as scikit-learn's
//! `LogisticRegression(solver="lbfgs")` defines it, so that its results can be checked against it:
//!
//! - single-label, K > 2 classes: multinomial (softmax) with weights `[K, F]` and biases `[K]`;
//! - single-label, 2 classes: one sigmoid (scikit-learn fits one vector, not two);
//! - multi-label: one sigmoid per label, fitted independently (one-vs-rest).
//!
//! The objective is `C * sum_i s_i * loss_i + ||W||^2 / 2` (biases not penalised), with sample
//! weights `s_i` from the class weighting. Features are standardised on the training set before
//! fitting and the scaling is folded back into the returned weights, so the model applies to raw
//! features. The result is a [`LinearClassifier`], the type a head runs (defined in `heads`).

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

use super::lbfgs::{LbfgsConfig, LbfgsReport, minimise};
use crate::heads::linear::sigmoid;
// The fitted model is the heads' run-time type: a fit hands over exactly what a head runs.
use crate::heads::RunError;
pub use crate::heads::{LinearClassifier, Link};

/// How samples are weighted by class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ClassWeight {
    /// Every sample counts once.
    None,
    /// `n / (classes * n_class)`, as scikit-learn's `class_weight="balanced"`.
    #[default]
    Balanced,
}

/// What to fit.
#[derive(Clone, Copy, Debug)]
pub struct LogRegConfig {
    /// Inverse regularisation strength (scikit-learn's `C`).
    pub c: f64,
    /// Class weighting.
    pub class_weight: ClassWeight,
    /// Optimiser settings.
    pub lbfgs: LbfgsConfig,
}

impl Default for LogRegConfig {
    fn default() -> Self {
        LogRegConfig {
            c: 1.0,
            class_weight: ClassWeight::Balanced,
            lbfgs: LbfgsConfig::default(),
        }
    }
}

/// Why a fit could not be done.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    /// No samples.
    #[error("no training samples")]
    Empty,
    /// Labels and features disagree in count, or a label is out of range.
    #[error("{0}")]
    Labels(String),
    /// A class (or a label's positive or negative side) has no samples.
    #[error("class {class} has no training samples")]
    EmptyClass {
        /// The class index.
        class: usize,
    },
    /// The features hold NaN or infinite values.
    #[error("feature row {row} holds a NaN or infinite value")]
    NonFinite {
        /// The first bad row.
        row: usize,
    },
    /// Features could not be scored, or do not stack into one sample matrix.
    #[error(transparent)]
    Features(#[from] RunError),
}

/// Per-feature mean and standard deviation of the training features (std floored so that a
/// constant feature stays finite).
fn standardiser(x: ArrayView2<f32>) -> (Array1<f64>, Array1<f64>) {
    let xf = x.mapv(f64::from);
    let mean = xf
        .mean_axis(Axis(0))
        .unwrap_or_else(|| Array1::zeros(x.ncols()));
    let std = xf
        .std_axis(Axis(0), 0.0)
        .mapv(|s| if s > 1e-8 { s } else { 1.0 });
    (mean, std)
}

fn check(x: ArrayView2<f32>, n_labels: usize) -> Result<(), FitError> {
    if x.nrows() == 0 {
        return Err(FitError::Empty);
    }
    if n_labels != x.nrows() {
        return Err(FitError::Labels(format!(
            "{} labels for {} feature rows",
            n_labels,
            x.nrows()
        )));
    }
    if let Some(row) = x
        .rows()
        .into_iter()
        .position(|r| r.iter().any(|v| !v.is_finite()))
    {
        return Err(FitError::NonFinite { row });
    }
    Ok(())
}

/// Fits a single-label classifier: `labels[i]` in `0..classes`.
pub fn fit_single_label(
    x: ArrayView2<f32>,
    labels: &[usize],
    classes: usize,
    config: &LogRegConfig,
) -> Result<(LinearClassifier, LbfgsReport), FitError> {
    fit_single_label_from(x, labels, classes, config, None)
}

/// [`fit_single_label`] starting from `warm` (e.g. the fit at a neighbouring C, which makes a
/// sweep several times faster); the optimum is the same.
pub fn fit_single_label_from(
    x: ArrayView2<f32>,
    labels: &[usize],
    classes: usize,
    config: &LogRegConfig,
    warm: Option<&LinearClassifier>,
) -> Result<(LinearClassifier, LbfgsReport), FitError> {
    check(x, labels.len())?;
    if let Some(&bad) = labels.iter().find(|&&l| l >= classes) {
        return Err(FitError::Labels(format!(
            "label {bad} out of range for {classes} classes"
        )));
    }
    let mut counts = vec![0usize; classes];
    for &l in labels {
        counts[l] += 1;
    }
    if let Some(class) = counts.iter().position(|&n| n == 0) {
        return Err(FitError::EmptyClass { class });
    }
    let n = labels.len();
    let sample_weight: Vec<f64> = labels
        .iter()
        .map(|&l| match config.class_weight {
            ClassWeight::None => 1.0,
            ClassWeight::Balanced => n as f64 / (classes as f64 * counts[l] as f64),
        })
        .collect();
    let (mean, std) = standardiser(x);
    let xs = (x.mapv(f64::from) - &mean) / &std;
    // The warm start, moved into standardised space: W_std = W * std, b_std = b + W . mean.
    let init = warm
        .filter(|w| w.weight.dim() == (classes, x.ncols()))
        .map(|w| {
            let ws = w.weight.mapv(f64::from) * &std;
            let bs = w.bias.mapv(f64::from) + w.weight.mapv(f64::from).dot(&mean);
            (ws, bs)
        });
    if classes == 2 {
        let y: Vec<f64> = labels.iter().map(|&l| l as f64).collect();
        let init = init.map(|(ws, bs)| {
            let mut t: Vec<f64> = (&ws.row(1) - &ws.row(0)).to_vec();
            t.push(bs[1] - bs[0]);
            t
        });
        let (w, b, report) = fit_binary(&xs, &y, &sample_weight, config, init);
        // Softmax over [0, w.x + b] is the sigmoid of w.x + b.
        let mut weight = Array2::zeros((2, x.ncols()));
        weight.row_mut(1).assign(&w);
        let bias = Array1::from(vec![0.0, b]);
        return Ok((
            unstandardise(weight, bias, &mean, &std, Link::Softmax),
            report,
        ));
    }
    let init = init.map(|(ws, bs)| ws.iter().chain(bs.iter()).copied().collect());
    let (weight, bias, report) =
        fit_multinomial(&xs, labels, classes, &sample_weight, config, init);
    Ok((
        unstandardise(weight, bias, &mean, &std, Link::Softmax),
        report,
    ))
}

/// Fits a multi-label classifier: `labels[i][k]` says whether sample `i` has label `k`.
pub fn fit_multi_label(
    x: ArrayView2<f32>,
    labels: &[Vec<bool>],
    classes: usize,
    config: &LogRegConfig,
) -> Result<(LinearClassifier, Vec<LbfgsReport>), FitError> {
    check(x, labels.len())?;
    if let Some(bad) = labels.iter().find(|l| l.len() != classes) {
        return Err(FitError::Labels(format!(
            "a sample has {} labels, expected {classes}",
            bad.len()
        )));
    }
    let (mean, std) = standardiser(x);
    let xs = (x.mapv(f64::from) - &mean) / &std;
    let n = labels.len() as f64;
    let mut weight = Array2::zeros((classes, x.ncols()));
    let mut bias = Array1::zeros(classes);
    let mut reports = Vec::with_capacity(classes);
    for k in 0..classes {
        let y: Vec<f64> = labels.iter().map(|l| f64::from(u8::from(l[k]))).collect();
        let pos = y.iter().filter(|&&v| v > 0.5).count() as f64;
        if pos == 0.0 || pos == n {
            return Err(FitError::EmptyClass { class: k });
        }
        let sw: Vec<f64> = y
            .iter()
            .map(|&v| match config.class_weight {
                ClassWeight::None => 1.0,
                ClassWeight::Balanced => n / (2.0 * if v > 0.5 { pos } else { n - pos }),
            })
            .collect();
        let (w, b, report) = fit_binary(&xs, &y, &sw, config, None);
        weight.row_mut(k).assign(&w);
        bias[k] = b;
        reports.push(report);
    }
    Ok((
        unstandardise(weight, bias, &mean, &std, Link::Sigmoid),
        reports,
    ))
}

fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

fn fit_binary(
    x: &Array2<f64>,
    y: &[f64],
    sw: &[f64],
    config: &LogRegConfig,
    init: Option<Vec<f64>>,
) -> (Array1<f64>, f64, LbfgsReport) {
    let f = x.ncols();
    let mut theta = init
        .filter(|t| t.len() == f + 1)
        .unwrap_or_else(|| vec![0.0; f + 1]);
    let c = config.c;
    let report = minimise(&mut theta, config.lbfgs, |t, g| {
        let w = ArrayView1::from(&t[..f]);
        let b = t[f];
        let z = x.dot(&w) + b;
        let mut loss = 0.0;
        let mut r = Array1::zeros(z.len());
        for i in 0..z.len() {
            loss += sw[i] * (softplus(z[i]) - y[i] * z[i]);
            r[i] = sw[i] * (sigmoid(z[i]) - y[i]);
        }
        // Rows scaled and summed (contiguous), not x^T r through strided columns.
        let mut gw = w.to_owned();
        for (ri, row) in r.iter().zip(x.rows()) {
            gw.scaled_add(c * ri, &row);
        }
        g.iter_mut().zip(gw.iter()).for_each(|(gi, v)| *gi = *v);
        g[f] = c * r.sum();
        c * loss + 0.5 * w.dot(&w)
    });
    let w = Array1::from(theta[..f].to_vec());
    (w, theta[f], report)
}

fn fit_multinomial(
    x: &Array2<f64>,
    labels: &[usize],
    classes: usize,
    sw: &[f64],
    config: &LogRegConfig,
    init: Option<Vec<f64>>,
) -> (Array2<f64>, Array1<f64>, LbfgsReport) {
    let f = x.ncols();
    let k = classes;
    let mut theta = init
        .filter(|t| t.len() == k * f + k)
        .unwrap_or_else(|| vec![0.0; k * f + k]);
    let c = config.c;
    let report = minimise(&mut theta, config.lbfgs, |t, g| {
        // The optimiser keeps the length it was given, so the shape always fits.
        let Ok(w) = ArrayView2::from_shape((k, f), &t[..k * f]) else {
            return f64::NAN;
        };
        let b = ArrayView1::from(&t[k * f..]);
        let mut z = x.dot(&w.t()) + b;
        let mut loss = 0.0;
        for (i, mut row) in z.rows_mut().into_iter().enumerate() {
            let max = row.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            let sum: f64 = row.iter().map(|v| (v - max).exp()).sum();
            let log_sum = max + sum.ln();
            loss += sw[i] * (log_sum - row[labels[i]]);
            // Residual (p - onehot) * s_i, in place.
            row.mapv_inplace(|v| (v - log_sum).exp());
            row[labels[i]] -= 1.0;
            row.mapv_inplace(|v| v * sw[i]);
        }
        let gw = z.t().dot(x) * c + w;
        let gb = z.sum_axis(Axis(0)) * c;
        g.iter_mut()
            .zip(gw.iter().chain(gb.iter()))
            .for_each(|(gi, v)| *gi = *v);
        c * loss + 0.5 * w.iter().map(|v| v * v).sum::<f64>()
    });
    let weight = Array2::from_shape_fn((k, f), |(i, j)| theta[i * f + j]);
    let bias = Array1::from(theta[k * f..].to_vec());
    (weight, bias, report)
}

fn unstandardise(
    weight: Array2<f64>,
    bias: Array1<f64>,
    mean: &Array1<f64>,
    std: &Array1<f64>,
    link: Link,
) -> LinearClassifier {
    let w_raw = &weight / std;
    let b_raw = &bias - &w_raw.dot(mean);
    LinearClassifier {
        weight: w_raw.mapv(|v| v as f32),
        bias: b_raw.mapv(|v| v as f32),
        link,
    }
}
