//! Where the pipeline preprocesses frames: on the CPU, or on the GPU next to a GPU engine (cuda
//! builds). The GPU's output comes back to host memory, because tract-cuda takes its input
//! from the host: the pipeline pays that copy (measured in [`crate::cuda::GpuTimings`]) and
//! tract-cuda's upload, in exchange for the resize and normalisation leaving the CPU.

use ndarray::Array4;

use super::{FrameRef, PreprocessConfig, PreprocessError, Preprocessor};

/// A preprocessor on the CPU or the GPU, with the same output.
// One per run: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum FramePreprocessor {
    /// fast_image_resize on the CPU.
    Cpu(Preprocessor),
    /// CUDA kernels on GPU 0.
    #[cfg(feature = "cuda")]
    Gpu(crate::cuda::GpuPreprocessor),
}

impl std::fmt::Debug for FramePreprocessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.device())
    }
}

impl FramePreprocessor {
    /// On the GPU where `gpu` asks for it and the GPU preprocessor starts (its kernels compiled
    /// before the first frame); otherwise on the CPU. The second value says why a GPU that was
    /// asked for is not used.
    pub fn new(config: PreprocessConfig, gpu: bool) -> (Self, Option<String>) {
        if !gpu {
            return (FramePreprocessor::Cpu(Preprocessor::new(config)), None);
        }
        #[cfg(feature = "cuda")]
        {
            match crate::cuda::GpuPreprocessor::new(config.clone()) {
                Ok(g) => (FramePreprocessor::Gpu(g), None),
                Err(e) => (
                    FramePreprocessor::Cpu(Preprocessor::new(config)),
                    Some(format!(
                        "preprocessing on the CPU: the GPU's could not start: {e}"
                    )),
                ),
            }
        }
        #[cfg(not(feature = "cuda"))]
        {
            (
                FramePreprocessor::Cpu(Preprocessor::new(config)),
                Some("preprocessing on the CPU: this build has no CUDA support".to_owned()),
            )
        }
    }

    /// `"cpu"` or `"gpu"`.
    pub fn device(&self) -> &'static str {
        match self {
            FramePreprocessor::Cpu(_) => "cpu",
            #[cfg(feature = "cuda")]
            FramePreprocessor::Gpu(_) => "gpu",
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &PreprocessConfig {
        match self {
            FramePreprocessor::Cpu(p) => p.config(),
            #[cfg(feature = "cuda")]
            FramePreprocessor::Gpu(gpu) => gpu.config(),
        }
    }

    /// One frame as a `[1, 3, H, W]` array. A frame that cannot be preprocessed is an error
    /// wherever it runs; a GPU that fails otherwise moves preprocessing to the CPU for good
    /// (returned as the second value, with why) and the frame is done there.
    pub fn run(
        &mut self,
        frame: FrameRef,
    ) -> (Result<Array4<f32>, PreprocessError>, Option<String>) {
        match self {
            FramePreprocessor::Cpu(p) => (p.run(frame), None),
            #[cfg(feature = "cuda")]
            FramePreprocessor::Gpu(gpu) => {
                let size = gpu.config().size;
                let mut out = Array4::zeros((1, 3, size.height, size.width));
                let ran = match out.as_slice_mut() {
                    Some(slice) => gpu.run_into(frame, slice),
                    None => return (Err(PreprocessError::Resize("non-contiguous".into())), None),
                };
                match ran {
                    Ok(_) => (Ok(out), None),
                    Err(crate::cuda::GpuError::Frame(e)) => (Err(e), None),
                    Err(e) => {
                        let why = format!("GPU preprocessing failed, moved to the CPU: {e}");
                        let mut cpu = Preprocessor::new(gpu.config().clone());
                        let result = cpu.run(frame);
                        *self = FramePreprocessor::Cpu(cpu);
                        (result, Some(why))
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::backbone::InputSize;
    use dinoedge_proto::message::PixelFormat;

    #[test]
    fn a_gpu_that_cannot_start_leaves_preprocessing_on_the_cpu_saying_why() {
        let config = PreprocessConfig::new(InputSize::new(16, 16));
        let (cpu, why) = FramePreprocessor::new(config.clone(), false);
        assert_eq!((cpu.device(), why), ("cpu", None));
        let (mut asked, why) = FramePreprocessor::new(config.clone(), true);
        // Without CUDA in the build or a GPU on the machine, the CPU, with the reason.
        match why {
            Some(why) => {
                assert_eq!(asked.device(), "cpu");
                assert!(why.starts_with("preprocessing on the CPU"), "{why}");
            }
            None => assert_eq!(asked.device(), "gpu"),
        }
        // Either way the output is the CPU preprocessor's, within a grey level.
        let data: Vec<u8> = (0..40 * 30).map(|i| (i * 7 % 251) as u8).collect();
        let frame = FrameRef {
            format: PixelFormat::Gray8,
            width: 40,
            height: 30,
            data: &data,
        };
        let (out, moved) = asked.run(frame);
        assert_eq!(moved, None);
        let want = Preprocessor::new(config).run(frame).unwrap();
        let worst = out
            .unwrap()
            .iter()
            .zip(want.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        // One grey level is 1/255 before dividing by the smallest std (0.224).
        assert!(worst <= 2.0 / 255.0 / 0.224, "{worst}");
        // A frame that does not fit its size is an error wherever it runs.
        let short = FrameRef {
            data: &data[..10],
            ..frame
        };
        assert!(matches!(
            asked.run(short).0,
            Err(PreprocessError::DataLength { .. })
        ));
    }
}
