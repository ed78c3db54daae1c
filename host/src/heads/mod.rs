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

mod mask;
mod spec;
pub mod volume;

use ndarray::{Array1, Array2, Array3, Axis, concatenate};

use crate::backbone::Features;
use crate::probe::logreg::{LinearClassifier, Link};
pub use mask::{ClassMask, SegmentStats, dice, iou, overlap};
pub use spec::{
    BackboneId, FORMAT, HeadError, HeadFiles, HeadInput, HeadSpec, SPEC_FILE, Task, VERSION,
    WEIGHTS_FILE,
};

/// `[CLS ; mean of the patch tokens]` of frame `n`, the classification features; `None` past
/// the batch.
pub fn cls_mean_patch(features: &Features, n: usize) -> Option<Array1<f32>> {
    let grid = features.patch_grid(n)?;
    let d = grid.len_of(Axis(2));
    let mean = grid
        .to_shape((grid.len() / d.max(1), d))
        .ok()?
        .mean_axis(Axis(0))?;
    let cls = features.cls().row(n).to_owned();
    concatenate(Axis(0), &[cls.view(), mean.view()]).ok()
}

/// The patch features of frame `n`, `[Hp*Wp, D*(1+blocks)]`, row-major over the grid: the last
/// block's normed tokens, then each requested intermediate block's. `None` past the batch or
/// for a block the features lack.
pub fn patch_features(features: &Features, n: usize, blocks: &[usize]) -> Option<Array2<f32>> {
    let mut parts = vec![features.patch_grid(n)?];
    for &b in blocks {
        parts.push(features.intermediate_grid(b, n)?);
    }
    let flat: Vec<Array2<f32>> = parts
        .iter()
        .map(|g| {
            let (hp, wp, d) = g.dim();
            g.to_shape((hp * wp, d)).map(|a| a.to_owned())
        })
        .collect::<Result<_, _>>()
        .ok()?;
    let views: Vec<_> = flat.iter().map(|a| a.view()).collect();
    concatenate(Axis(1), &views).ok()
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

    /// Class probabilities for every frame of the batch, `[N, classes]`.
    pub fn probabilities(&self, features: &Features) -> Array2<f32> {
        let rows: Vec<Array1<f32>> = (0..features.batch())
            .filter_map(|n| cls_mean_patch(features, n))
            .collect();
        let views: Vec<_> = rows.iter().map(|r| r.view().insert_axis(Axis(0))).collect();
        match concatenate(Axis(0), &views) {
            Ok(x) => self.linear.predict_proba(x.view()),
            Err(_) => Array2::zeros((0, self.linear.classes())),
        }
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
    pub fn logits(&self, features: &Features, n: usize) -> Option<Array3<f32>> {
        let x = patch_features(features, n, &self.blocks)?;
        self.logits_of_patches(x.view(), features.grid())
    }

    /// Per-class logits `[classes, Hp, Wp]` of patch features `[Hp*Wp, F]` laid out as
    /// [`patch_features`] gives them (e.g. read back from a feature cache).
    pub fn logits_of_patches(
        &self,
        x: ndarray::ArrayView2<f32>,
        (hp, wp): (usize, usize),
    ) -> Option<Array3<f32>> {
        if x.ncols() != self.files.weight.ncols() {
            return None;
        }
        let z = x.dot(&self.files.weight.t()) + &self.files.bias;
        z.t()
            .to_owned()
            .into_shape_with_order((self.files.weight.nrows(), hp, wp))
            .ok()
    }

    /// The class mask of frame `n` at `width` x `height`: logits upsampled bilinearly (pixel
    /// centres aligned, as `align_corners=False`), then argmax.
    pub fn mask(
        &self,
        features: &Features,
        n: usize,
        width: usize,
        height: usize,
    ) -> Option<ClassMask> {
        let logits = self.logits(features, n)?;
        Some(ClassMask::from_logits(logits.view(), width, height))
    }
}
