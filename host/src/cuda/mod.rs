//! The GPU: preprocessing in CUDA kernels compiled at run time with NVRTC (only with a `cuda-*`
//! feature).
//!
//! CUDA is loaded at run time: [`GpuPreprocessor::new`] and [`compile_preprocess_ptx`] first
//! check that the driver and NVRTC libraries can be opened, and say which one is missing rather
//! than letting cudarc panic. [`ffi`] is the only module with unsafe code.

mod ffi;
pub mod kernels;
pub mod preprocess;

use cudarc::driver::DriverError;
use cudarc::driver::sys::CUresult;

use crate::preprocess::PreprocessError;
pub use kernels::{
    KERNEL_NAMES, PREPROCESS_SOURCE, compile_preprocess_cubin, compile_preprocess_ptx,
};
pub use preprocess::{GpuPreprocessor, GpuTimings};

/// Why the GPU could not do its part.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// A CUDA library could not be loaded.
    #[error(
        "{library} could not be loaded: {hint} (searched the loader's path; set LD_LIBRARY_PATH to its folder)"
    )]
    LibraryMissing {
        /// The library, e.g. "libcuda (the CUDA driver)".
        library: &'static str,
        /// What provides it.
        hint: &'static str,
    },
    /// The driver refused a call.
    #[error("CUDA driver, {what}: {source}")]
    Driver {
        /// What was being done.
        what: &'static str,
        /// The driver's error code.
        source: DriverError,
    },
    /// The device has no room for a buffer.
    #[error("GPU out of memory ({what})")]
    OutOfMemory {
        /// What was being allocated or run.
        what: &'static str,
    },
    /// NVRTC rejected the kernel source.
    #[error("NVRTC could not compile the preprocessing kernels for {arch}:\n{log}")]
    Compile {
        /// The `--gpu-architecture` it was asked for.
        arch: String,
        /// NVRTC's log.
        log: String,
    },
    /// NVRTC failed other than by a compile error (creating the program, reading the PTX).
    #[error("NVRTC: {0}")]
    Nvrtc(String),
    /// Not an architecture name NVRTC takes.
    #[error("{0:?} is not a GPU architecture: expected e.g. sm_87, compute_87 or 87")]
    Arch(String),
    /// A kernel launch whose buffers do not fit its arguments (a bug: they are sized before).
    #[error("kernel launch refused: {0}")]
    Launch(String),
    /// The frame or the output buffer was refused before any GPU work.
    #[error(transparent)]
    Frame(#[from] PreprocessError),
}

impl GpuError {
    /// A driver error while doing `what`, out-of-memory told apart.
    pub(crate) fn driver(what: &'static str) -> impl Fn(DriverError) -> GpuError {
        move |source| {
            if source.0 == CUresult::CUDA_ERROR_OUT_OF_MEMORY {
                GpuError::OutOfMemory { what }
            } else {
                GpuError::Driver { what, source }
            }
        }
    }
}
