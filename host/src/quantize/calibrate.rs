//! Activation statistics over the calibration frames, and the per-tensor INT8 scale each
//! method takes from them.

use serde::Serialize;

use super::QuantizeError;
use crate::backbone::numerics::{INT8_MAX, quantize_value};

/// How an activation's clipping range is chosen from its statistics.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "lowercase", tag = "method", content = "value")]
pub enum Method {
    /// The largest magnitude seen.
    Max,
    /// This percentile (e.g. 99.99) of the magnitudes seen.
    Percentile(f64),
    /// The clip that minimises the mean squared quantisation error over the samples.
    Mse,
}

impl std::str::FromStr for Method {
    type Err = String;

    /// `max`, `mse` or `percentile:P` with 0 < P <= 100.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "max" => Ok(Method::Max),
            "mse" => Ok(Method::Mse),
            _ => {
                let p = s
                    .strip_prefix("percentile:")
                    .and_then(|p| p.parse::<f64>().ok())
                    .ok_or_else(|| {
                        format!("{s:?}: expected max, mse or percentile:P (e.g. percentile:99.99)")
                    })?;
                if p > 0.0 && p <= 100.0 {
                    Ok(Method::Percentile(p))
                } else {
                    Err(format!("percentile {p} is outside (0, 100]"))
                }
            }
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Method::Max => f.write_str("max"),
            Method::Percentile(p) => write!(f, "percentile:{p}"),
            Method::Mse => f.write_str("mse"),
        }
    }
}

/// What calibration keeps of one activation: its largest magnitude, and a deterministic
/// pseudo-random sample of its magnitudes (each value kept with probability 1/`stride`) for
/// percentiles and the MSE search. Not every `stride`-th value: a stride sharing a factor
/// with the channel count would never sample some channels, outlier channels among them.
#[derive(Clone, Debug)]
pub struct ActivationStats {
    /// Largest magnitude over every value seen.
    pub max: f32,
    /// Values seen.
    pub count: u64,
    stride: u64,
    /// xorshift64 state: the same sample on every run.
    draw: u64,
    samples: Vec<f32>,
}

impl ActivationStats {
    /// Statistics that keep about `sample_budget` samples out of `expected` values.
    pub fn new(expected: u64, sample_budget: u64) -> Self {
        ActivationStats {
            max: 0.0,
            count: 0,
            stride: expected.div_ceil(sample_budget.max(1)).max(1),
            draw: 0x9E37_79B9_7F4A_7C15,
            samples: Vec::new(),
        }
    }

    /// Adds one frame's values; a NaN or infinity is an error, named by `point`.
    pub fn add(&mut self, point: &str, values: &[f32]) -> Result<(), QuantizeError> {
        for &v in values {
            if !v.is_finite() {
                return Err(QuantizeError::NonFinite {
                    point: point.to_string(),
                });
            }
            let a = v.abs();
            self.max = self.max.max(a);
            self.draw ^= self.draw << 13;
            self.draw ^= self.draw >> 7;
            self.draw ^= self.draw << 17;
            if self.stride == 1 || self.draw.is_multiple_of(self.stride) {
                self.samples.push(a);
            }
            self.count += 1;
        }
        Ok(())
    }

    /// The clipping magnitude `method` picks; never zero (an all-zero activation gets 1).
    pub fn clip(&mut self, method: Method) -> f32 {
        if self.max <= 0.0 {
            return 1.0;
        }
        self.samples.sort_by(f32::total_cmp);
        let clip = match method {
            Method::Max => self.max,
            Method::Percentile(p) => {
                let n = self.samples.len();
                let rank = ((p / 100.0) * n as f64).ceil() as usize;
                self.samples
                    .get(rank.clamp(1, n.max(1)) - 1)
                    .copied()
                    .unwrap_or(self.max)
            }
            Method::Mse => mse_clip(&self.samples, self.max),
        };
        if clip > 0.0 { clip } else { self.max }
    }
}

/// The squared error of quantising `values` with the clip `clip` (clipped values count their
/// full error).
fn squared_error(values: &[f32], clip: f32) -> f64 {
    let scale = scale_for(clip);
    values
        .iter()
        .map(|&v| {
            let back = f32::from(quantize_value(v, scale)) * scale;
            f64::from(v - back).powi(2)
        })
        .sum()
}

/// The clip, among 100 candidates from max/100 to max, with the least squared error of
/// quantising the sampled magnitudes.
fn mse_clip(sorted: &[f32], max: f32) -> f32 {
    let mut best = (f64::INFINITY, max);
    for step in 1..=100u32 {
        let clip = max * step as f32 / 100.0;
        let err = squared_error(sorted, clip);
        if err < best.0 {
            best = (err, clip);
        }
    }
    best.1
}

/// The INT8 scale for a clipping magnitude, never below the smallest normal f32 (a subnormal
/// scale is refused by some runtimes).
pub fn scale_for(clip: f32) -> f32 {
    (clip / INT8_MAX).max(f32::MIN_POSITIVE)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn methods_parse_and_reject_what_they_should() {
        assert_eq!("max".parse::<Method>(), Ok(Method::Max));
        assert_eq!(
            "percentile:99.9".parse::<Method>(),
            Ok(Method::Percentile(99.9))
        );
        assert!("percentile:0".parse::<Method>().is_err());
        assert!("percentile:x".parse::<Method>().is_err());
        assert!("median".parse::<Method>().is_err());
    }

    #[test]
    fn clips_follow_the_method() {
        // 1000 small values and one outlier.
        let mut values: Vec<f32> = (0..1000).map(|i| (i % 10) as f32 * 0.1).collect();
        values.push(100.0);
        let mut s = ActivationStats::new(values.len() as u64, 1 << 20);
        s.add("x", &values).unwrap();
        assert_eq!(s.clip(Method::Max), 100.0);
        let p = s.clip(Method::Percentile(99.0));
        assert!((p - 0.9).abs() < 1e-6, "{p}");
        // The MSE clip errs no more than either of the others: squared error keeps one large
        // outlier (clipping it costs more than the many small values gain).
        let m = s.clip(Method::Mse);
        let err = |clip| squared_error(&values, clip);
        assert!(err(m) <= err(100.0) && err(m) <= err(p), "{m}");
        // A long tail of middling values, by contrast, is clipped.
        let tail: Vec<f32> = (1..=10_000)
            .map(|i| -((i as f32) / 10_001.0).ln())
            .collect();
        let mut s = ActivationStats::new(tail.len() as u64, 1 << 20);
        s.add("tail", &tail).unwrap();
        let m = s.clip(Method::Mse);
        let tail_err = |clip| squared_error(&tail, clip);
        assert!(
            m < s.max && tail_err(m) < tail_err(s.max),
            "{m} of {}",
            s.max
        );
    }

    #[test]
    fn non_finite_activations_are_named() {
        let mut s = ActivationStats::new(2, 2);
        let e = s.add("block3.fc2", &[1.0, f32::NAN]).unwrap_err();
        assert!(e.to_string().contains("block3.fc2"), "{e}");
    }
}
