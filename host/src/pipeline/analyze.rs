//! What the pipeline runs on each frame: the backbone and every head, loaded and checked
//! against each other once, before the first frame.

use std::path::{Path, PathBuf};

use crate::backbone::{Backbone, BackboneError, Features, InputSize, ModelDir, RuntimeOptions};
use crate::heads::{ClassMask, Classifier, HeadError, HeadFiles, Segmenter, Task, top_k};

/// A head as the pipeline runs it.
#[derive(Debug, Clone)]
pub enum Head {
    /// Classes of the whole frame.
    Classify(Classifier),
    /// A class per pixel.
    Segment(Segmenter),
}

/// A head with the name results use for it (its folder's name).
#[derive(Debug, Clone)]
pub struct NamedHead {
    /// The folder's name.
    pub name: String,
    /// The head.
    pub head: Head,
}

impl NamedHead {
    /// Its class names.
    pub fn classes(&self) -> &[String] {
        match &self.head {
            Head::Classify(c) => &c.spec().classes,
            Head::Segment(s) => &s.spec().classes,
        }
    }
}

/// What one head made of one frame.
#[derive(Debug, Clone, PartialEq)]
pub enum HeadOutput {
    /// Class probabilities, in the head's class order.
    Classes(Vec<f32>),
    /// The class mask over the model's view of the frame (the region of interest's bounding
    /// box, or the whole frame).
    Mask(ClassMask),
}

/// The backbone and heads of a run.
#[derive(Debug, Clone)]
pub struct Models {
    /// The backbone, prepared for one input size.
    pub backbone: Backbone,
    /// The heads, in the order given.
    pub heads: Vec<NamedHead>,
    /// The model folder.
    pub model_path: PathBuf,
}

/// Why the models could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    /// The backbone failed to load or prepare.
    #[error(transparent)]
    Backbone(#[from] BackboneError),
    /// A head failed to load, or does not fit the backbone.
    #[error("head {path}: {source}")]
    Head {
        /// The head's folder.
        path: PathBuf,
        /// Why.
        source: HeadError,
    },
    /// Heads were fitted at different input sizes.
    #[error("head {path} was fitted at {found}, but the run uses {expected}")]
    SizeMismatch {
        /// The head's folder.
        path: PathBuf,
        /// The run's size.
        expected: InputSize,
        /// The head's size.
        found: InputSize,
    },
}

impl Models {
    /// Loads heads from `head_dirs`, checks each against `model`, and prepares the backbone at
    /// `size` (by default the heads' size, else 224x224) with the blocks the heads need.
    pub fn load(
        model: &ModelDir,
        model_path: &Path,
        size: Option<InputSize>,
        head_dirs: &[PathBuf],
        threads: usize,
    ) -> Result<Self, ModelsError> {
        let mut files = Vec::new();
        for dir in head_dirs {
            files.push((dir.clone(), HeadFiles::load(dir).map_err(head_error(dir))?));
        }
        Self::from_files(model, model_path, size, files, threads)
    }

    /// As [`Self::load`], from heads already in memory, each with the path it is named by.
    pub fn from_files(
        model: &ModelDir,
        model_path: &Path,
        size: Option<InputSize>,
        files: Vec<(PathBuf, HeadFiles)>,
        threads: usize,
    ) -> Result<Self, ModelsError> {
        let size = match size {
            Some(s) => s,
            None => files
                .first()
                .map(|(_, f)| InputSize::new(f.spec.size[0], f.spec.size[1]))
                .unwrap_or(InputSize::new(224, 224)),
        };
        let mut blocks: Vec<usize> = Vec::new();
        let mut heads = Vec::new();
        for (dir, f) in files {
            let found = InputSize::new(f.spec.size[0], f.spec.size[1]);
            if found != size {
                return Err(ModelsError::SizeMismatch {
                    path: dir,
                    expected: size,
                    found,
                });
            }
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| dir.display().to_string());
            let head = match f.spec.task {
                Task::Classify => Head::Classify(Classifier::new(f).map_err(head_error(&dir))?),
                Task::Segment => {
                    let s = Segmenter::new(f).map_err(head_error(&dir))?;
                    blocks.extend(s.blocks());
                    Head::Segment(s)
                }
            };
            heads.push((dir, NamedHead { name, head }));
        }
        blocks.sort_unstable();
        blocks.dedup();
        for (dir, h) in &heads {
            let files = match &h.head {
                Head::Classify(c) => c.files(),
                Head::Segment(s) => s.files(),
            };
            files
                .check_fits(model, size, &blocks)
                .map_err(head_error(dir))?;
        }
        let mut options = RuntimeOptions {
            threads,
            ..RuntimeOptions::default()
        };
        options.graph.intermediate_blocks = blocks;
        let backbone = Backbone::load(model, size, &options)?;
        Ok(Models {
            backbone,
            heads: heads.into_iter().map(|(_, h)| h).collect(),
            model_path: model_path.to_owned(),
        })
    }

    /// Runs every head on frame 0 of `features`; masks at `width` x `height`.
    pub fn run_heads(&self, features: &Features, width: usize, height: usize) -> Vec<HeadOutput> {
        self.heads
            .iter()
            .map(|h| match &h.head {
                Head::Classify(c) => HeadOutput::Classes(c.probabilities(features).row(0).to_vec()),
                Head::Segment(s) => {
                    HeadOutput::Mask(s.mask(features, 0, width, height).unwrap_or_else(|| {
                        ClassMask {
                            width,
                            height,
                            data: vec![0; width * height],
                        }
                    }))
                }
            })
            .collect()
    }
}

/// Wraps a head's error with the folder it came from.
fn head_error(path: &Path) -> impl FnOnce(HeadError) -> ModelsError {
    let path = path.to_owned();
    move |source| ModelsError::Head { path, source }
}

/// The `k` best classes of `probabilities` as (class index, probability).
pub fn best(probabilities: &[f32], k: usize) -> Vec<(usize, f32)> {
    top_k(ndarray::ArrayView1::from(probabilities), k)
}
