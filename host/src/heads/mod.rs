//! Heads: light layers that turn frozen backbone features into a classification or a
//! segmentation, fitted by `dinoedge probe` and stored as `head.json` + `head.safetensors`.
//!
//! - [`Classifier`]: a linear layer on `[CLS ; mean of patch tokens]`, softmax (single-label) or
//!   sigmoid (multi-label), top-k.
//! - [`Segmenter`]: a linear classifier per patch token (optionally with intermediate blocks),
//!   logits upsampled bilinearly, argmax to a [`ClassMask`]; the mask gives per-class area, box
//!   and centroid, its largest component, a run-length encoding and an overlay.
//! - [`volume`]: 3D sweeps, classified from the mean of per-slice features, segmented as a
//!   stack of masks with volume-level Dice.

pub mod linear;
mod mask;
mod spec;
pub mod volume;

use ndarray::{Array1, Array2, Array3, ArrayView2, Axis, concatenate};

use crate::backbone::Features;
pub use linear::{LinearClassifier, Link};
pub use mask::{ClassMask, SegmentStats, dice, iou, overlap};
pub use spec::{
    BackboneId, FORMAT, HeadError, HeadFiles, HeadInput, HeadSpec, SPEC_FILE, Task, VERSION,
    WEIGHTS_FILE,
};

/// Why a head could not run on the features it was given: each frame it is asked for yields a
/// result or one of these, never a frame left out of a batch or a made-up output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    /// The frame asked for is not in the batch.
    #[error("frame {frame} is past the batch of {batch}")]
    FrameMissing {
        /// The frame asked for.
        frame: usize,
        /// Frames in the batch.
        batch: usize,
    },
    /// The features lack an intermediate block the head reads.
    #[error("the features lack intermediate block {block}")]
    BlockMissing {
        /// The block.
        block: usize,
    },
    /// The patch tokens do not form the patch grid.
    #[error("frame {frame}: the patch tokens do not form the {hp}x{wp} grid")]
    Tokens {
        /// The frame.
        frame: usize,
        /// Grid rows.
        hp: usize,
        /// Grid columns.
        wp: usize,
    },
    /// Patch features whose row count is not the grid's.
    #[error("{rows} patch feature rows for a {hp}x{wp} grid")]
    Grid {
        /// Rows given.
        rows: usize,
        /// Grid rows.
        hp: usize,
        /// Grid columns.
        wp: usize,
    },
    /// Feature rows of another width than the head reads.
    #[error("features are {found} values wide, the head reads {expected}")]
    Width {
        /// The head's input width.
        expected: usize,
        /// The features' width.
        found: usize,
    },
    /// A feature row holds NaN or infinite values (the frame, for classification; the patch,
    /// for segmentation).
    #[error("feature row {row} holds NaN or infinite values")]
    NonFinite {
        /// The row.
        row: usize,
    },
    /// The head's own layer is inconsistent (built by hand, not loaded).
    #[error("malformed head layer: {0}")]
    Layer(String),
}

/// Frame `n`'s `[Hp, Wp, D]` patch grid from `grid_of` (the last block's or an intermediate
/// block's), told apart: past the batch, or tokens that do not form the grid.
fn grid_or_error<'a>(
    features: &Features,
    n: usize,
    grid: Option<ndarray::ArrayView3<'a, f32>>,
) -> Result<ndarray::ArrayView3<'a, f32>, RunError> {
    grid.ok_or_else(|| {
        if n >= features.batch() {
            RunError::FrameMissing {
                frame: n,
                batch: features.batch(),
            }
        } else {
            let (hp, wp) = features.grid();
            RunError::Tokens { frame: n, hp, wp }
        }
    })
}

/// `[CLS ; mean of the patch tokens]` of frame `n`, the classification features.
pub fn cls_mean_patch(features: &Features, n: usize) -> Result<Array1<f32>, RunError> {
    let grid = grid_or_error(features, n, features.patch_grid(n))?;
    let (hp, wp, d) = grid.dim();
    let tokens = || RunError::Tokens { frame: n, hp, wp };
    let mean = grid
        .to_shape((hp * wp, d))
        .map_err(|_| tokens())?
        .mean_axis(Axis(0))
        .ok_or_else(tokens)?;
    let all_cls = features.cls();
    let cls = all_cls
        .rows()
        .into_iter()
        .nth(n)
        .ok_or(RunError::FrameMissing {
            frame: n,
            batch: features.batch(),
        })?;
    concatenate(Axis(0), &[cls, mean.view()]).map_err(|_| tokens())
}

/// The patch features of frame `n`, `[Hp*Wp, D*(1+blocks)]`, row-major over the grid: the last
/// block's normed tokens, then each requested intermediate block's.
pub fn patch_features(
    features: &Features,
    n: usize,
    blocks: &[usize],
) -> Result<Array2<f32>, RunError> {
    let mut parts = vec![grid_or_error(features, n, features.patch_grid(n))?];
    for &block in blocks {
        if !features.intermediates.iter().any(|(b, _)| *b == block) {
            return Err(RunError::BlockMissing { block });
        }
        parts.push(grid_or_error(
            features,
            n,
            features.intermediate_grid(block, n),
        )?);
    }
    let (hp, wp) = features.grid();
    let flat: Vec<Array2<f32>> = parts
        .iter()
        .map(|g| {
            let (hp, wp, d) = g.dim();
            g.to_shape((hp * wp, d)).map(|a| a.to_owned())
        })
        .collect::<Result<_, _>>()
        .map_err(|_| RunError::Tokens { frame: n, hp, wp })?;
    let views: Vec<_> = flat.iter().map(|a| a.view()).collect();
    concatenate(Axis(1), &views).map_err(|_| RunError::Tokens { frame: n, hp, wp })
}

impl HeadFiles {
    /// The head's linear layer with its link: sigmoid for multi-label, softmax otherwise.
    pub fn linear(&self) -> LinearClassifier {
        LinearClassifier {
            weight: self.weight.clone(),
            bias: self.bias.clone(),
            link: if self.spec.multi_label {
                Link::Sigmoid
            } else {
                Link::Softmax
            },
        }
    }
}

/// The head's layer must have a weight row and a bias per class, or running it would fail on
/// every frame; said once, when the head is built.
fn check_layer(files: &HeadFiles) -> Result<(), HeadError> {
    let k = files.spec.classes.len();
    if files.weight.nrows() != k || files.bias.len() != k {
        return Err(HeadError::Format {
            path: files.path.join(WEIGHTS_FILE),
            reason: format!(
                "{} weight rows and {} biases for {k} classes",
                files.weight.nrows(),
                files.bias.len()
            ),
        });
    }
    Ok(())
}

/// A classification head, ready to run.
#[derive(Clone, Debug)]
pub struct Classifier {
    files: HeadFiles,
    linear: LinearClassifier,
}

impl Classifier {
    /// Wraps loaded head files; they must describe a classification head.
    pub fn new(files: HeadFiles) -> Result<Self, HeadError> {
        if files.spec.task != Task::Classify || files.spec.input != HeadInput::ClsMeanPatch {
            return Err(HeadError::Format {
                path: files.path.join(SPEC_FILE),
                reason: "not a classification head on [CLS ; mean patch]".into(),
            });
        }
        check_layer(&files)?;
        Ok(Classifier {
            linear: files.linear(),
            files,
        })
    }

    /// Its description.
    pub fn spec(&self) -> &HeadSpec {
        &self.files.spec
    }

    /// Its files, as loaded.
    pub fn files(&self) -> &HeadFiles {
        &self.files
    }

    /// Class probabilities for every frame of the batch, `[N, classes]`, row `n` for frame
    /// `n`; a frame whose features cannot be read fails the whole call, naming the frame.
    pub fn probabilities(&self, features: &Features) -> Result<Array2<f32>, RunError> {
        let rows: Vec<Array1<f32>> = (0..features.batch())
            .map(|n| cls_mean_patch(features, n))
            .collect::<Result<_, _>>()?;
        if rows.is_empty() {
            return Ok(Array2::zeros((0, self.linear.classes())));
        }
        let views: Vec<_> = rows.iter().map(|r| r.view().insert_axis(Axis(0))).collect();
        let x = concatenate(Axis(0), &views).map_err(|_| RunError::Width {
            expected: self.linear.features(),
            found: rows.first().map_or(0, Array1::len),
        })?;
        self.linear.predict_proba(x.view())
    }

    /// Class probabilities of frame `n` alone, in the head's class order.
    pub fn frame_probabilities(&self, features: &Features, n: usize) -> Result<Vec<f32>, RunError> {
        let x = cls_mean_patch(features, n)?;
        let p = self
            .linear
            .predict_proba(x.view().insert_axis(Axis(0)))
            // The one row given is frame n.
            .map_err(|e| match e {
                RunError::NonFinite { .. } => RunError::NonFinite { row: n },
                e => e,
            })?;
        Ok(p.iter().copied().collect())
    }
}

/// The `k` best (class, probability) of one row, best first.
pub fn top_k(probabilities: ndarray::ArrayView1<f32>, k: usize) -> Vec<(usize, f32)> {
    let mut pairs: Vec<(usize, f32)> = probabilities.iter().copied().enumerate().collect();
    pairs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    pairs.truncate(k);
    pairs
}

/// A segmentation head, ready to run.
#[derive(Clone, Debug)]
pub struct Segmenter {
    files: HeadFiles,
    blocks: Vec<usize>,
}

impl Segmenter {
    /// Wraps loaded head files; they must describe a segmentation head.
    pub fn new(files: HeadFiles) -> Result<Self, HeadError> {
        let HeadInput::Patch { blocks } = files.spec.input.clone() else {
            return Err(HeadError::Format {
                path: files.path.join(SPEC_FILE),
                reason: "not a per-patch head".into(),
            });
        };
        if files.spec.task != Task::Segment || files.spec.classes.len() > 256 {
            return Err(HeadError::Format {
                path: files.path.join(SPEC_FILE),
                reason: "not a segmentation head of at most 256 classes".into(),
            });
        }
        check_layer(&files)?;
        Ok(Segmenter { files, blocks })
    }

    /// Its description.
    pub fn spec(&self) -> &HeadSpec {
        &self.files.spec
    }

    /// Its files, as loaded.
    pub fn files(&self) -> &HeadFiles {
        &self.files
    }

    /// Intermediate blocks the backbone must output for it.
    pub fn blocks(&self) -> &[usize] {
        &self.blocks
    }

    /// Per-class logits of frame `n` on the patch grid, `[classes, Hp, Wp]`.
    pub fn logits(&self, features: &Features, n: usize) -> Result<Array3<f32>, RunError> {
        let x = patch_features(features, n, &self.blocks)?;
        self.logits_of_patches(x.view(), features.grid())
    }

    /// Per-class logits `[classes, Hp, Wp]` of patch features `[Hp*Wp, F]` laid out as
    /// [`patch_features`] gives them (e.g. read back from a feature cache). Features of
    /// another width or row count, or holding NaN (which would argmax to class 0 unseen), are
    /// an error.
    pub fn logits_of_patches(
        &self,
        x: ArrayView2<f32>,
        (hp, wp): (usize, usize),
    ) -> Result<Array3<f32>, RunError> {
        let weight = &self.files.weight;
        let grid = RunError::Grid {
            rows: x.nrows(),
            hp,
            wp,
        };
        if x.nrows() != hp * wp || x.nrows() == 0 {
            return Err(grid);
        }
        if x.ncols() != weight.ncols() {
            return Err(RunError::Width {
                expected: weight.ncols(),
                found: x.ncols(),
            });
        }
        if weight.nrows() != self.files.bias.len() {
            return Err(RunError::Layer(format!(
                "{} weight rows but {} biases",
                weight.nrows(),
                self.files.bias.len()
            )));
        }
        if let Some(row) = linear::first_non_finite(x) {
            return Err(RunError::NonFinite { row });
        }
        let z = x.dot(&weight.t()) + &self.files.bias;
        z.t()
            .to_owned()
            .into_shape_with_order((weight.nrows(), hp, wp))
            .map_err(|_| grid)
    }

    /// The class mask of frame `n` at `width` x `height`: logits upsampled bilinearly (pixel
    /// centres aligned, as `align_corners=False`), then argmax.
    pub fn mask(
        &self,
        features: &Features,
        n: usize,
        width: usize,
        height: usize,
    ) -> Result<ClassMask, RunError> {
        let logits = self.logits(features, n)?;
        Ok(ClassMask::from_logits(logits.view(), width, height))
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Hand-made features and head files for tests of what runs heads.
    #![allow(clippy::indexing_slicing)]
    use super::*;
    use ndarray::Array3;

    /// One frame per entry of `levels`: a CLS token and a 2x2 grid of patch tokens, D = 2,
    /// every value of frame `n` equal to `levels[n]`.
    pub(crate) fn features(levels: &[f32], blocks: &[usize]) -> Features {
        let state = Array3::from_shape_fn((levels.len(), 5, 2), |(n, _, _)| levels[n]);
        let intermediates = blocks.iter().map(|&b| (b, state.clone())).collect();
        Features::from_parts(state, intermediates, 1, (2, 2))
    }

    /// A head of `weight.nrows()` classes on a D = 2 test backbone.
    pub(crate) fn files(task: Task, input: HeadInput, weight: Array2<f32>) -> HeadFiles {
        let k = weight.nrows();
        HeadFiles {
            path: "test-head".into(),
            spec: HeadSpec {
                format: FORMAT.into(),
                version: VERSION,
                task,
                multi_label: false,
                classes: (0..k).map(|c| format!("c{c}")).collect(),
                input,
                backbone: BackboneId {
                    arch: "test".into(),
                    hidden_size: 2,
                    fingerprint: "none".into(),
                    random_weights: true,
                },
                size: [32, 32],
                fit: serde_json::Value::Null,
            },
            bias: Array1::zeros(k),
            weight,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::testing::{features, files};
    use super::*;
    use ndarray::{Array3, array};

    fn classifier() -> Classifier {
        // Class 1 scores the CLS token's first value; class 0 scores nothing.
        let weight = array![[0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]];
        Classifier::new(files(Task::Classify, HeadInput::ClsMeanPatch, weight)).unwrap()
    }

    fn segmenter(blocks: Vec<usize>) -> Segmenter {
        let width = 2 * (1 + blocks.len());
        let mut weight = Array2::zeros((2, width));
        weight[[1, 0]] = 1.0;
        Segmenter::new(files(Task::Segment, HeadInput::Patch { blocks }, weight)).unwrap()
    }

    #[test]
    fn every_frame_of_a_batch_gets_its_row() {
        let c = classifier();
        let p = c.probabilities(&features(&[-3.0, 3.0], &[])).unwrap();
        assert_eq!(p.nrows(), 2);
        assert!(p[[0, 0]] > 0.9 && p[[1, 1]] > 0.9);
        let one = c
            .frame_probabilities(&features(&[-3.0, 3.0], &[]), 1)
            .unwrap();
        assert_eq!(one, p.row(1).to_vec());
    }

    #[test]
    fn a_classifier_names_the_frame_it_cannot_read() {
        let c = classifier();
        // Frame 1 of 3 holds NaN: the batch fails naming it, rather than giving two rows.
        let err = c
            .probabilities(&features(&[1.0, f32::NAN, 2.0], &[]))
            .unwrap_err();
        assert_eq!(err, RunError::NonFinite { row: 1 });
        let err = c
            .frame_probabilities(&features(&[1.0, 2.0, f32::NAN], &[]), 2)
            .unwrap_err();
        assert_eq!(err, RunError::NonFinite { row: 2 });
        let err = c
            .frame_probabilities(&features(&[1.0], &[]), 4)
            .unwrap_err();
        assert_eq!(err, RunError::FrameMissing { frame: 4, batch: 1 });
        assert!(err.to_string().contains("frame 4"), "{err}");
        // An empty batch is no frame lost.
        assert_eq!(c.probabilities(&features(&[], &[])).unwrap().dim(), (0, 2));
    }

    #[test]
    fn a_segmenter_past_the_batch_or_missing_a_block_is_an_error() {
        let s = segmenter(Vec::new());
        let mask = s.mask(&features(&[1.0], &[]), 0, 4, 4).unwrap();
        assert!(mask.data.iter().all(|&c| c == 1));
        let err = s.mask(&features(&[1.0], &[]), 1, 4, 4).unwrap_err();
        assert_eq!(err, RunError::FrameMissing { frame: 1, batch: 1 });
        assert!(err.to_string().contains("frame 1"), "{err}");

        let s = segmenter(vec![3]);
        assert!(s.mask(&features(&[1.0], &[3]), 0, 4, 4).is_ok());
        let err = s.mask(&features(&[1.0], &[2]), 0, 4, 4).unwrap_err();
        assert_eq!(err, RunError::BlockMissing { block: 3 });
        assert!(err.to_string().contains("block 3"), "{err}");
    }

    #[test]
    fn a_segmenter_refuses_patches_that_do_not_fit() {
        let s = segmenter(Vec::new());
        // Three rows for a 2x2 grid, three values where the head reads two, a NaN patch.
        assert_eq!(
            s.logits_of_patches(Array2::zeros((3, 2)).view(), (2, 2)),
            Err(RunError::Grid {
                rows: 3,
                hp: 2,
                wp: 2
            })
        );
        assert_eq!(
            s.logits_of_patches(Array2::zeros((4, 3)).view(), (2, 2)),
            Err(RunError::Width {
                expected: 2,
                found: 3
            })
        );
        let mut x = Array2::zeros((4, 2));
        x[[2, 1]] = f32::INFINITY;
        assert_eq!(
            s.logits_of_patches(x.view(), (2, 2)),
            Err(RunError::NonFinite { row: 2 })
        );
        // NaN features give an error, not a mask of class 0.
        assert_eq!(
            s.mask(&features(&[f32::NAN], &[]), 0, 4, 4),
            Err(RunError::NonFinite { row: 0 })
        );
        // Tokens that do not form the grid the features claim.
        let short = Features::from_parts(Array3::zeros((1, 4, 2)), Vec::new(), 1, (2, 2));
        assert_eq!(
            s.mask(&short, 0, 4, 4),
            Err(RunError::Tokens {
                frame: 0,
                hp: 2,
                wp: 2
            })
        );
    }

    #[test]
    fn a_layer_without_a_row_per_class_is_refused_on_loading() {
        let mut f = files(
            Task::Classify,
            HeadInput::ClsMeanPatch,
            Array2::zeros((2, 4)),
        );
        f.bias = Array1::zeros(3);
        assert!(matches!(Classifier::new(f), Err(HeadError::Format { .. })));
    }
}
