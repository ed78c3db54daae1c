//! Choosing a model and input size for a latency budget: the results of probing each
//! configuration (its grouped-validation score and its latency), the Pareto front of score
//! against latency, the choice (the fastest configuration within a stated tolerance of the best
//! validation score, so that the choice is never fitted to the test split), bootstrap confidence
//! intervals for the test scores of the chosen and the best, and the `sweep.json` that lets an
//! interrupted sweep resume.

use std::path::Path;

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

/// The sweep file's format version.
pub const FORMAT: u32 = 1;

/// One configuration's figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigResult {
    /// The `--models` entry as given (folder or repo id).
    pub model: String,
    /// Its architecture (`vits16`, ...).
    pub arch: String,
    /// Which weights (`random weights`, or `weights ORG/NAME@REV (crc32:...)`).
    pub weights: String,
    /// The weights' content fingerprint (with the size, what identifies the configuration).
    pub fingerprint: String,
    /// Input height and width.
    pub size: [usize; 2],
    /// The probe's score on the grouped validation split (`None` with `--latency-only` before a
    /// full sweep).
    pub val_score: Option<f64>,
    /// What the score is (`balanced accuracy`, `mean ROC AUC`).
    pub score_name: String,
    /// The regularisation chosen.
    pub c: Option<f64>,
    /// Images the head was fitted on (training and validation).
    pub images: usize,
    /// Median latency of one frame through the backbone, ms.
    pub latency_median_ms: f64,
    /// 99th percentile, ms.
    pub latency_p99_ms: f64,
    /// Where the latency was measured (engine, precision, device).
    pub latency_device: String,
    /// The head's folder, relative to the sweep's.
    pub head: Option<String>,
    /// The test split's score, for the chosen and the best configuration only.
    pub test: Option<TestScore>,
}

impl ConfigResult {
    /// `vits16 224x224`.
    pub fn label(&self) -> String {
        format!("{} {}x{}", self.arch, self.size[0], self.size[1])
    }

    /// Whether `other` is the same configuration (weights and size).
    pub fn same_config(&self, fingerprint: &str, size: [usize; 2]) -> bool {
        self.fingerprint == fingerprint && self.size == size
    }
}

/// A score on the test split with its bootstrap confidence interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TestScore {
    /// What it is (`balanced accuracy`, `mean foreground Dice`).
    pub name: String,
    /// The score on the whole test split.
    pub score: f64,
    /// 2.5th percentile of the bootstrap (`None` when no resample could be scored).
    pub ci_low: Option<f64>,
    /// 97.5th percentile.
    pub ci_high: Option<f64>,
    /// Test images.
    pub images: usize,
    /// Test groups (subjects): what the bootstrap resamples (0 where not recorded).
    #[serde(default)]
    pub groups: usize,
    /// Bootstrap resamples.
    pub resamples: usize,
}

/// What was chosen, and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// Index of the chosen configuration.
    pub chosen: usize,
    /// Index of the best validation score.
    pub best: usize,
    /// The tolerance: the chosen is the fastest with a validation score at least the best's
    /// minus this.
    pub tolerance: f64,
    /// One line saying why.
    pub reason: String,
}

/// `sweep.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepFile {
    /// [`FORMAT`].
    pub format: u32,
    /// What the sweep was run on: the data arguments, task and split; a resumed sweep must
    /// match it.
    pub data_key: String,
    /// `classify` or `segment`.
    pub task: String,
    /// The dataset as opened (item count and a digest of paths, groups and labels).
    #[serde(default)]
    pub data_digest: Option<String>,
    /// Every configuration measured so far.
    pub results: Vec<ConfigResult>,
    /// Which configurations are on the Pareto front (same order as `results`).
    pub pareto: Vec<bool>,
    /// The choice, once every configuration has a validation score.
    pub choice: Option<Choice>,
    /// What the latency figures are worth.
    pub note: String,
}

impl SweepFile {
    /// A new, empty sweep.
    pub fn new(data_key: String, task: String) -> Self {
        SweepFile {
            format: FORMAT,
            data_key,
            task,
            data_digest: None,
            results: Vec::new(),
            pareto: Vec::new(),
            choice: None,
            note: LATENCY_NOTE.to_owned(),
        }
    }

    /// Reads `path`; `Ok(None)` when there is none.
    pub fn read(path: &Path) -> Result<Option<Self>, String> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let file: SweepFile = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{}: not a sweep file: {e}", path.display()))?;
        if file.format != FORMAT {
            return Err(format!(
                "{}: sweep format {}, this dinoedge reads {FORMAT}",
                path.display(),
                file.format
            ));
        }
        Ok(Some(file))
    }

    /// Writes it whole or not at all.
    pub fn write(&self, path: &Path) -> Result<(), String> {
        let mut json = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        json.push(b'\n');
        crate::files::write_whole(path, &json).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Recomputes the Pareto front and the choice from the results.
    pub fn update(&mut self, tolerance: f64) {
        let points: Vec<(f64, Option<f64>)> = self
            .results
            .iter()
            .map(|r| (r.latency_median_ms, r.val_score))
            .collect();
        self.pareto = pareto_front(&points);
        self.choice = choose(&self.results, tolerance);
    }
}

/// Said in every sweep: latency depends on the machine.
pub const LATENCY_NOTE: &str = "Latencies are this machine's, on the engine named with them. \
     Re-run the latency part on the target device (`dinoedge sweep --latency-only` there, with \
     the same --out) before relying on the choice.";

/// Which points are on the Pareto front: no other point is at least as fast and at least as
/// good, and strictly better in one. Points without a score are never on it.
pub fn pareto_front(points: &[(f64, Option<f64>)]) -> Vec<bool> {
    points
        .iter()
        .map(|&(lat, score)| {
            let Some(score) = score else {
                return false;
            };
            !points
                .iter()
                .any(|&(l, s)| s.is_some_and(|s| l <= lat && s >= score && (l < lat || s > score)))
        })
        .collect()
}

/// The best validation score, and the fastest configuration within `tolerance` of it (ties
/// broken by the better score). `None` until every configuration has a score.
pub fn choose(results: &[ConfigResult], tolerance: f64) -> Option<Choice> {
    if results.is_empty() || results.iter().any(|r| r.val_score.is_none()) {
        return None;
    }
    let score = |r: &ConfigResult| r.val_score.unwrap_or(f64::NEG_INFINITY);
    let best = (0..results.len()).max_by(|&a, &b| {
        let (ra, rb) = (&results[a], &results[b]);
        score(ra)
            .total_cmp(&score(rb))
            // Of equal scores, the faster is the better.
            .then(rb.latency_median_ms.total_cmp(&ra.latency_median_ms))
    })?;
    // A hair below the stated floor, so that a score exactly `tolerance` below the best is in,
    // whatever the rounding.
    let floor = score(&results[best]) - tolerance - 1e-9;
    let chosen = (0..results.len())
        .filter(|&i| score(&results[i]) >= floor)
        .min_by(|&a, &b| {
            let (ra, rb) = (&results[a], &results[b]);
            ra.latency_median_ms
                .total_cmp(&rb.latency_median_ms)
                .then(score(rb).total_cmp(&score(ra)))
        })?;
    let (b, c) = (&results[best], &results[chosen]);
    let reason = if best == chosen {
        format!(
            "{} has the best validation {} ({:.4}) and nothing within {tolerance} of it is faster",
            c.label(),
            c.score_name,
            score(c)
        )
    } else {
        format!(
            "{} is the fastest ({:.2} ms median) within {tolerance} of the best validation {} \
             ({} {:.4}; it has {:.4} at {:.2} ms)",
            c.label(),
            c.latency_median_ms,
            c.score_name,
            b.label(),
            score(b),
            score(c),
            b.latency_median_ms
        )
    };
    Some(Choice {
        chosen,
        best,
        tolerance,
        reason,
    })
}

/// The 95% percentile bootstrap interval of `metric` over items grouped by `groups` (one group
/// id per item, e.g. the subject): `resamples` draws of as many groups as there are, with
/// replacement, each expanded to its items (images of one patient are not independent, so
/// resampling images would make the interval too narrow), seeded so that it is the same on
/// every machine. `metric` is given the drawn items' indices; draws it cannot score (`None`)
/// are skipped.
pub fn bootstrap_ci(
    groups: &[usize],
    resamples: usize,
    seed: u64,
    metric: impl Fn(&[usize]) -> Option<f64>,
) -> Option<(f64, f64)> {
    let n_groups = groups.iter().copied().max().map_or(0, |m| m + 1);
    if groups.is_empty() || resamples == 0 {
        return None;
    }
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); n_groups];
    for (item, &g) in groups.iter().enumerate() {
        if let Some(m) = members.get_mut(g) {
            m.push(item);
        }
    }
    members.retain(|m| !m.is_empty());
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut scores = Vec::with_capacity(resamples);
    let mut draw = Vec::with_capacity(groups.len());
    for _ in 0..resamples {
        draw.clear();
        for _ in 0..members.len() {
            if let Some(m) = members.get(rng.random_range(0..members.len())) {
                draw.extend_from_slice(m);
            }
        }
        if let Some(s) = metric(&draw).filter(|s| s.is_finite()) {
            scores.push(s);
        }
    }
    if scores.is_empty() {
        return None;
    }
    scores.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let i = ((scores.len() - 1) as f64 * q).round() as usize;
        scores.get(i).copied()
    };
    Some((at(0.025)?, at(0.975)?))
}

/// Group ids `0..` for group names, in order of first appearance.
pub fn group_ids<S: AsRef<str>>(names: &[S]) -> Vec<usize> {
    let mut seen: Vec<&str> = Vec::new();
    names
        .iter()
        .map(|n| {
            let n = n.as_ref();
            match seen.iter().position(|s| *s == n) {
                Some(i) => i,
                None => {
                    seen.push(n);
                    seen.len() - 1
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(arch: &str, score: Option<f64>, latency: f64) -> ConfigResult {
        ConfigResult {
            model: arch.into(),
            arch: arch.into(),
            weights: "random weights".into(),
            fingerprint: arch.into(),
            size: [224, 224],
            val_score: score,
            score_name: "balanced accuracy".into(),
            c: Some(1.0),
            images: 10,
            latency_median_ms: latency,
            latency_p99_ms: latency * 1.2,
            latency_device: "cpu".into(),
            head: None,
            test: None,
        }
    }

    #[test]
    fn the_front_keeps_what_nothing_beats_on_both_axes() {
        let front = pareto_front(&[
            (10.0, Some(0.80)),
            (20.0, Some(0.90)),
            (25.0, Some(0.85)), // slower and worse than the second
            (5.0, Some(0.70)),
            (20.0, Some(0.90)), // a tie stays on the front with its twin
            (1.0, None),
        ]);
        assert_eq!(front, vec![true, true, false, true, true, false]);
    }

    #[test]
    fn the_choice_is_the_fastest_within_the_tolerance_of_the_best_validation_score() {
        let results = vec![
            result("vitl16", Some(0.91), 80.0),
            result("vitb16", Some(0.90), 30.0),
            result("vits16", Some(0.86), 10.0),
        ];
        let c = choose(&results, 0.02).unwrap();
        assert_eq!((c.best, c.chosen), (0, 1));
        assert!(c.reason.contains("vitb16"), "{}", c.reason);
        let c = choose(&results, 0.0).unwrap();
        assert_eq!((c.best, c.chosen), (0, 0));
        let c = choose(&results, 0.1).unwrap();
        assert_eq!(c.chosen, 2);
        // Not until every configuration has a score.
        let mut partial = results.clone();
        partial[1].val_score = None;
        assert!(choose(&partial, 0.02).is_none());
    }

    #[test]
    fn the_bootstrap_brackets_the_mean_and_widens_with_fewer_independent_groups() {
        let values: Vec<f64> = (0..200)
            .map(|i| if i % 4 == 0 { 1.0 } else { 0.0 })
            .collect();
        let mean =
            |idx: &[usize]| Some(idx.iter().map(|&i| values[i]).sum::<f64>() / idx.len() as f64);
        let each_alone: Vec<usize> = (0..200).collect();
        let (lo, hi) = bootstrap_ci(&each_alone, 500, 7, mean).unwrap();
        assert!(lo < 0.25 && 0.25 < hi, "{lo} {hi}");
        assert_eq!(
            bootstrap_ci(&each_alone, 500, 7, mean),
            Some((lo, hi)),
            "seeded"
        );
        // The same 200 items as 20 subjects of 10 images each, a subject's images alike: far
        // less evidence, a wider interval.
        let subjects: Vec<usize> = (0..200).map(|i| (i % 4) * 5 + i / 40).collect();
        let (lo_g, hi_g) = bootstrap_ci(&subjects, 500, 7, mean).unwrap();
        assert!(hi_g - lo_g > hi - lo, "{lo_g} {hi_g} vs {lo} {hi}");
        assert_eq!(bootstrap_ci(&[], 500, 7, mean), None);
        assert_eq!(bootstrap_ci(&each_alone, 0, 7, mean), None);
        assert_eq!(group_ids(&["b", "a", "b", "c"]), vec![0, 1, 0, 2]);
    }

    #[test]
    fn a_sweep_file_round_trips_and_refuses_another_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sweep.json");
        assert_eq!(SweepFile::read(&path).unwrap(), None);
        let mut f = SweepFile::new("k".into(), "classify".into());
        f.results.push(result("vits16", Some(0.8), 10.0));
        f.update(0.01);
        f.write(&path).unwrap();
        assert_eq!(SweepFile::read(&path).unwrap(), Some(f.clone()));
        let mut other = f;
        other.format = 99;
        std::fs::write(&path, serde_json::to_vec(&other).unwrap()).unwrap();
        assert!(SweepFile::read(&path).unwrap_err().contains("format 99"));
    }
}
