//! The gate every engine passes before it is used: real frames through the new engine and
//! through the CPU reference, compared by cosine on the parts the heads read (the CLS token and
//! the patch tokens), the worst frame deciding. TensorRT has shipped versions that build DINOv3
//! into engines with wrong outputs, so no engine is trusted on its build succeeding alone.

use ndarray::{ArrayView3, Axis};

use super::cache::{PartCosine, Verdict};
use crate::engine::compare::cosine;

/// The threshold for FP32 and FP16 engines (NVIDIA's own DINOv3 builder gates at the same).
pub const FLOAT_THRESHOLD: f64 = 0.999;

/// Running figures for one output part.
#[derive(Clone, Debug)]
struct Part {
    output: String,
    part: &'static str,
    min: f64,
    sum: f64,
    count: usize,
}

/// Collects cosines frame by frame.
#[derive(Clone, Debug, Default)]
pub struct GateTally {
    parts: Vec<Part>,
    frames: usize,
}

impl GateTally {
    fn add(&mut self, output: &str, part: &'static str, c: f64) {
        // NaN (an engine that produced NaN) must count as the worst possible.
        let c = if c.is_nan() { -1.0 } else { c };
        match self
            .parts
            .iter_mut()
            .find(|p| p.output == output && p.part == part)
        {
            Some(p) => {
                p.min = p.min.min(c);
                p.sum += c;
                p.count += 1;
            }
            None => self.parts.push(Part {
                output: output.to_owned(),
                part,
                min: c,
                sum: c,
                count: 1,
            }),
        }
    }

    /// Adds one batch: each output `[N, tokens, D]` of the engine against the reference's,
    /// with `prefix` tokens (CLS and registers) before the patch tokens.
    pub fn add_batch(
        &mut self,
        names: &[String],
        reference: &[ArrayView3<'_, f32>],
        engine: &[ArrayView3<'_, f32>],
        prefix: usize,
    ) -> Result<(), String> {
        if reference.len() != engine.len() || names.len() != engine.len() {
            return Err(format!(
                "the engine has {} outputs, the reference {}",
                engine.len(),
                reference.len()
            ));
        }
        let mut batch = 0;
        for ((name, r), e) in names.iter().zip(reference).zip(engine) {
            if r.shape() != e.shape() {
                return Err(format!(
                    "output {name}: the engine's shape is {:?}, the reference's {:?}",
                    e.shape(),
                    r.shape()
                ));
            }
            batch = r.len_of(Axis(0));
            for (rf, ef) in r.outer_iter().zip(e.outer_iter()) {
                let (r_cls, e_cls) = (rf.row(0).to_vec(), ef.row(0).to_vec());
                self.add(name, "cls", cosine(&r_cls, &e_cls));
                let tokens = rf.len_of(Axis(0));
                if tokens > prefix {
                    let r_patch: Vec<f32> = rf
                        .slice(ndarray::s![prefix.., ..])
                        .iter()
                        .copied()
                        .collect();
                    let e_patch: Vec<f32> = ef
                        .slice(ndarray::s![prefix.., ..])
                        .iter()
                        .copied()
                        .collect();
                    self.add(name, "patch", cosine(&r_patch, &e_patch));
                }
            }
        }
        self.frames += batch;
        Ok(())
    }

    /// The verdict at `threshold`.
    pub fn verdict(&self, threshold: f64, frames_from: Vec<String>) -> Verdict {
        let cosines: Vec<PartCosine> = self
            .parts
            .iter()
            .map(|p| PartCosine {
                output: p.output.clone(),
                part: p.part.to_owned(),
                min: p.min,
                mean: p.sum / p.count.max(1) as f64,
            })
            .collect();
        let failing: Vec<&PartCosine> = cosines.iter().filter(|c| c.min < threshold).collect();
        let passed = self.frames > 0 && failing.is_empty() && !cosines.is_empty();
        let summary = if self.frames == 0 {
            "no frames were compared".to_owned()
        } else if let Some(worst) = failing
            .iter()
            .min_by(|a, b| a.min.total_cmp(&b.min))
            .copied()
        {
            format!(
                "refused: {} {} cosine {:.6} < {threshold} (worst of {} frames)",
                worst.output, worst.part, worst.min, self.frames
            )
        } else {
            let worst = cosines.iter().map(|c| c.min).fold(f64::INFINITY, f64::min);
            format!(
                "passed: lowest cosine {worst:.6} >= {threshold} over {} frames",
                self.frames
            )
        };
        Verdict {
            passed,
            threshold,
            frames: self.frames,
            frames_from,
            cosines,
            summary,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    fn names() -> Vec<String> {
        vec!["last_hidden_state".to_owned()]
    }

    #[test]
    fn a_close_engine_passes_and_a_wrong_patch_token_is_refused_by_name() {
        let reference = Array3::from_shape_fn((2, 5, 4), |(n, t, d)| (n + t * 3 + d) as f32 + 1.0);
        let mut tally = GateTally::default();
        let close = reference.mapv(|v| v * 1.0001);
        tally
            .add_batch(&names(), &[reference.view()], &[close.view()], 1)
            .unwrap();
        let v = tally.verdict(FLOAT_THRESHOLD, vec![]);
        assert!(v.passed, "{}", v.summary);
        assert_eq!(v.frames, 2);
        assert_eq!(v.cosines.len(), 2);

        let mut wrong = reference.clone();
        wrong[[1, 3, 0]] = -50.0;
        let mut tally = GateTally::default();
        tally
            .add_batch(&names(), &[reference.view()], &[wrong.view()], 1)
            .unwrap();
        let v = tally.verdict(FLOAT_THRESHOLD, vec![]);
        assert!(!v.passed);
        assert!(
            v.summary.contains("last_hidden_state patch"),
            "{}",
            v.summary
        );
        let cls = v.cosines.iter().find(|c| c.part == "cls").unwrap();
        assert!(cls.min > 0.9999, "the CLS token was not touched");
    }

    #[test]
    fn nan_outputs_and_no_frames_are_refused() {
        let reference = Array3::<f32>::ones((1, 3, 2));
        let nan = Array3::<f32>::from_elem((1, 3, 2), f32::NAN);
        let mut tally = GateTally::default();
        tally
            .add_batch(&names(), &[reference.view()], &[nan.view()], 1)
            .unwrap();
        assert!(!tally.verdict(0.5, vec![]).passed);
        assert!(!GateTally::default().verdict(0.5, vec![]).passed);
    }

    #[test]
    fn shape_and_count_mismatches_are_errors() {
        let a = Array3::<f32>::ones((1, 3, 2));
        let b = Array3::<f32>::ones((1, 4, 2));
        let mut tally = GateTally::default();
        let e = tally
            .add_batch(&names(), &[a.view()], &[b.view()], 1)
            .unwrap_err();
        assert!(e.contains("shape"), "{e}");
        let e = tally.add_batch(&names(), &[a.view()], &[], 1).unwrap_err();
        assert!(e.contains("outputs"), "{e}");
    }
}
