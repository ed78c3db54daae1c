//! A linear layer and its link function: what a classification head computes at run time.
//! Fitting one is `probe::logreg`'s business; it builds on these types.

use ndarray::{Array1, Array2, ArrayView2};

use super::RunError;

/// How the linear scores become probabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Softmax over classes (single-label).
    Softmax,
    /// Independent sigmoid per class (multi-label).
    Sigmoid,
}

/// A linear classifier on raw features: `scores = x W^T + b`, then the link.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearClassifier {
    /// `[classes, features]`.
    pub weight: Array2<f32>,
    /// `[classes]`.
    pub bias: Array1<f32>,
    /// Softmax or sigmoid.
    pub link: Link,
}

/// The logistic function, computed without overflow on either side.
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        z.exp() / (1.0 + z.exp())
    }
}

/// The first row of `x` holding NaN or an infinity, if any.
pub(crate) fn first_non_finite(x: ArrayView2<f32>) -> Option<usize> {
    x.rows()
        .into_iter()
        .position(|r| r.iter().any(|v| !v.is_finite()))
}

impl LinearClassifier {
    /// Classes (or labels).
    pub fn classes(&self) -> usize {
        self.bias.len()
    }

    /// Features it expects.
    pub fn features(&self) -> usize {
        self.weight.ncols()
    }

    /// Probabilities `[N, classes]` for feature rows `[N, features]`, one row out per row in:
    /// rows of another width, or holding NaN or infinite values, are an error naming them
    /// rather than a row left out or a row of NaN.
    pub fn predict_proba(&self, x: ArrayView2<f32>) -> Result<Array2<f32>, RunError> {
        if self.weight.nrows() != self.bias.len() {
            return Err(RunError::Layer(format!(
                "{} weight rows but {} biases",
                self.weight.nrows(),
                self.bias.len()
            )));
        }
        if x.ncols() != self.features() {
            return Err(RunError::Width {
                expected: self.features(),
                found: x.ncols(),
            });
        }
        if let Some(row) = first_non_finite(x) {
            return Err(RunError::NonFinite { row });
        }
        let mut z = x.dot(&self.weight.t()) + &self.bias;
        for mut row in z.rows_mut() {
            match self.link {
                Link::Softmax => {
                    let max = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                    row.mapv_inplace(|v| (v - max).exp());
                    let sum = row.sum();
                    row.mapv_inplace(|v| v / sum);
                }
                Link::Sigmoid => row.mapv_inplace(|v| sigmoid(f64::from(v)) as f32),
            }
        }
        Ok(z)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ndarray::array;

    fn two_class(link: Link) -> LinearClassifier {
        LinearClassifier {
            weight: array![[1.0, 0.0], [0.0, 1.0]],
            bias: array![0.0, 0.0],
            link,
        }
    }

    #[test]
    fn one_probability_row_per_feature_row() {
        let p = two_class(Link::Softmax)
            .predict_proba(array![[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]].view())
            .unwrap();
        assert_eq!(p.dim(), (3, 2));
        assert!((p[[0, 0]] - 0.5).abs() < 1e-6);
        assert!(p[[1, 0]] > 0.8 && p[[2, 1]] > 0.8);
        let s = two_class(Link::Sigmoid)
            .predict_proba(array![[0.0, 100.0]].view())
            .unwrap();
        assert_eq!(s.row(0).to_vec(), vec![0.5, 1.0]);
    }

    #[test]
    fn a_row_of_the_wrong_width_or_not_finite_is_an_error() {
        let c = two_class(Link::Softmax);
        assert_eq!(
            c.predict_proba(array![[1.0, 2.0, 3.0]].view()),
            Err(RunError::Width {
                expected: 2,
                found: 3
            })
        );
        assert_eq!(
            c.predict_proba(array![[1.0, 2.0], [f32::NAN, 0.0]].view()),
            Err(RunError::NonFinite { row: 1 })
        );
        let broken = LinearClassifier {
            bias: array![0.0],
            ..c
        };
        assert!(matches!(
            broken.predict_proba(array![[1.0, 2.0]].view()),
            Err(RunError::Layer(_))
        ));
    }
}
