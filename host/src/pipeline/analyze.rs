//! What the pipeline runs on each frame: the backbone and every head, loaded and checked
//! against each other once, before the first frame.

use std::path::{Path, PathBuf};

use crate::backbone::{Backbone, BackboneError, Features, InputSize, ModelDir, RuntimeOptions};
use crate::engine::{EngineKind, EngineRequest, EngineSetup, GpuFaultPolicy};
use crate::heads::{ClassMask, Classifier, HeadError, HeadFiles, RunError, Segmenter, Task, top_k};

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
    /// The same backbone on the CPU, where a GPU fault may fall back to it
    /// ([`GpuFaultPolicy::Cpu`] with a GPU engine).
    pub fallback: Option<Backbone>,
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
    /// `size` (by default the heads' size, else 224x224) with the blocks the heads need, on the
    /// engine `setup` names, warmed up (see [`Backbone::warm_up`]).
    pub fn load(
        model: &ModelDir,
        model_path: &Path,
        size: Option<InputSize>,
        head_dirs: &[PathBuf],
        setup: &EngineSetup,
    ) -> Result<Self, ModelsError> {
        let mut files = Vec::new();
        for dir in head_dirs {
            files.push((dir.clone(), HeadFiles::load(dir).map_err(head_error(dir))?));
        }
        Self::from_files(model, model_path, size, files, setup)
    }

    /// As [`Self::load`], from heads already in memory, each with the path it is named by.
    pub fn from_files(
        model: &ModelDir,
        model_path: &Path,
        size: Option<InputSize>,
        files: Vec<(PathBuf, HeadFiles)>,
        setup: &EngineSetup,
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
            threads: setup.threads,
            engine: setup.request,
            precision: setup.precision,
            ..RuntimeOptions::default()
        };
        options.graph.intermediate_blocks = blocks;
        let backbone = Backbone::load(model, size, &options)?;
        backbone.warm_up()?;
        let fallback = if setup.on_gpu_fault == GpuFaultPolicy::Cpu
            && backbone.engine().engine != EngineKind::Cpu
        {
            let cpu = Backbone::load(
                model,
                size,
                &RuntimeOptions {
                    engine: EngineRequest::Cpu,
                    // INT8 runs only on TensorRT: the CPU stands in with the FP32 it approximates.
                    precision: match options.precision {
                        crate::engine::Precision::Int8 => crate::engine::Precision::Fp32,
                        p => p,
                    },
                    ..options
                },
            )?;
            cpu.warm_up()?;
            Some(cpu)
        } else {
            None
        };
        Ok(Models {
            backbone,
            fallback,
            heads: heads.into_iter().map(|(_, h)| h).collect(),
            model_path: model_path.to_owned(),
        })
    }

    /// Runs every head on frame 0 of `features`; masks at `width` x `height`. A head that
    /// cannot read the features fails the frame, naming the head and why, rather than giving
    /// a made-up output.
    pub fn run_heads(
        &self,
        features: &Features,
        width: usize,
        height: usize,
    ) -> Result<Vec<HeadOutput>, HeadRunError> {
        run_heads(&self.heads, features, width, height)
    }
}

/// [`Models::run_heads`] on any heads: every head's output for frame 0, or the first head that
/// failed with why.
fn run_heads(
    heads: &[NamedHead],
    features: &Features,
    width: usize,
    height: usize,
) -> Result<Vec<HeadOutput>, HeadRunError> {
    heads
        .iter()
        .map(|h| {
            match &h.head {
                Head::Classify(c) => c.frame_probabilities(features, 0).map(HeadOutput::Classes),
                Head::Segment(s) => s.mask(features, 0, width, height).map(HeadOutput::Mask),
            }
            .map_err(|source| HeadRunError {
                head: h.name.clone(),
                source,
            })
        })
        .collect()
}

/// Why a head gave nothing for a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("head {head}: {source}")]
pub struct HeadRunError {
    /// The head's name (its folder's name).
    pub head: String,
    /// Why.
    pub source: RunError,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::heads::HeadInput;
    use crate::heads::testing::{features, files};
    use ndarray::Array2;

    fn heads(seg_blocks: Vec<usize>) -> Vec<NamedHead> {
        let width = 2 * (1 + seg_blocks.len());
        let classify = files(
            Task::Classify,
            HeadInput::ClsMeanPatch,
            Array2::zeros((2, 4)),
        );
        let segment = files(
            Task::Segment,
            HeadInput::Patch { blocks: seg_blocks },
            Array2::zeros((2, width)),
        );
        vec![
            NamedHead {
                name: "kind".into(),
                head: Head::Classify(Classifier::new(classify).unwrap()),
            },
            NamedHead {
                name: "organ".into(),
                head: Head::Segment(Segmenter::new(segment).unwrap()),
            },
        ]
    }

    #[test]
    fn every_head_gives_its_output() {
        let out = run_heads(&heads(Vec::new()), &features(&[1.0], &[]), 8, 6).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], HeadOutput::Classes(vec![0.5, 0.5]));
        let HeadOutput::Mask(m) = &out[1] else {
            panic!("{:?}", out[1]);
        };
        assert_eq!((m.width, m.height, m.data.len()), (8, 6, 48));
    }

    #[test]
    fn a_segmenter_that_gives_nothing_fails_the_frame_naming_it() {
        // The segmenter reads block 5, which the features lack: no all-background mask.
        let err = run_heads(&heads(vec![5]), &features(&[1.0], &[]), 8, 6).unwrap_err();
        assert_eq!(
            err,
            HeadRunError {
                head: "organ".into(),
                source: RunError::BlockMissing { block: 5 },
            }
        );
        assert!(err.to_string().starts_with("head organ:"), "{err}");
        // An empty batch fails the first head, naming it and the frame.
        let err = run_heads(&heads(Vec::new()), &features(&[], &[]), 8, 6).unwrap_err();
        assert_eq!(err.head, "kind");
        assert_eq!(err.source, RunError::FrameMissing { frame: 0, batch: 0 });
    }
}
