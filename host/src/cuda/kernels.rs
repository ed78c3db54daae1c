//! The preprocessing kernels' source, compiled to PTX with NVRTC once per process and compute
//! capability.
//!
//! They are compiled at run time for the device's own compute capability rather than shipped as
//! binaries: Tegra GPUs (Orin is sm_87) run only code built for their exact version.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use cudarc::nvrtc::{CompileError, CompileOptions};

use super::{GpuError, ffi};

/// The CUDA C source of the kernels (no headers).
pub const PREPROCESS_SOURCE: &str = include_str!("preprocess.cu");

/// Kernel 1: decode, mask and filter horizontally.
pub const ROWS_KERNEL: &str = "dinoedge_preprocess_rows";
/// Kernel 2, f32 output: filter vertically and normalise.
pub const COLUMNS_F32_KERNEL: &str = "dinoedge_preprocess_columns_f32";
/// Kernel 2, f16 output.
pub const COLUMNS_F16_KERNEL: &str = "dinoedge_preprocess_columns_f16";
/// Every kernel in [`PREPROCESS_SOURCE`].
pub const KERNEL_NAMES: [&str; 3] = [ROWS_KERNEL, COLUMNS_F32_KERNEL, COLUMNS_F16_KERNEL];

/// `sm_87`, `compute_87` or `87` as NVRTC's virtual architecture `compute_87`.
fn virtual_arch(arch: &str) -> Result<String, GpuError> {
    let digits = arch
        .strip_prefix("sm_")
        .or_else(|| arch.strip_prefix("compute_"))
        .unwrap_or(arch);
    // A suffix such as the `a` of sm_90a names architecture-specific features, kept as given.
    let (number, suffix) = digits.split_at(
        digits
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(digits.len()),
    );
    if number.len() < 2 || !matches!(suffix, "" | "a" | "f") {
        return Err(GpuError::Arch(arch.to_string()));
    }
    Ok(format!("compute_{number}{suffix}"))
}

/// Compiles [`PREPROCESS_SOURCE`] for `arch` (`sm_87`, `compute_87` or `87`) and returns the PTX
/// text. Needs NVRTC, not a GPU.
pub fn compile_preprocess_ptx(arch: &str) -> Result<String, GpuError> {
    let arch = virtual_arch(arch)?;
    if !ffi::nvrtc_present() {
        return Err(GpuError::LibraryMissing {
            library: "libnvrtc (NVRTC, the CUDA runtime compiler)",
            hint: "it comes with the CUDA toolkit, JetPack, or the nvidia-cuda-nvrtc pip wheels",
        });
    }
    let options = CompileOptions {
        options: vec![format!("--gpu-architecture={arch}")],
        name: Some("preprocess.cu".to_string()),
        ..Default::default()
    };
    let ptx =
        cudarc::nvrtc::compile_ptx_with_opts(PREPROCESS_SOURCE, options).map_err(|e| match e {
            CompileError::CompileError { log, .. } => GpuError::Compile {
                arch: arch.clone(),
                log: log.to_string_lossy().into_owned(),
            },
            other => GpuError::Nvrtc(other.to_string()),
        })?;
    Ok(ptx.to_src())
}

/// The kernels as a CUBIN for a device of compute capability `major.minor` (its own, e.g. 8.7
/// for Orin: Tegra runs no machine code built for another minor version), compiled once per
/// process and capability.
pub(crate) fn cubin_for(major: i32, minor: i32) -> Result<Vec<u8>, GpuError> {
    /// CUBINs by compute capability.
    type Cubins = HashMap<(i32, i32), Vec<u8>>;
    static CACHE: OnceLock<Mutex<Cubins>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(cubin) = map.get(&(major, minor)) {
        return Ok(cubin.clone());
    }
    let cubin = compile_preprocess_cubin(&format!("sm_{major}{minor}"))?;
    map.insert((major, minor), cubin.clone());
    Ok(cubin)
}

/// Compiles every kernel with NVRTC to a CUBIN for the real architecture `arch` (`sm_87`), as
/// [`GpuPreprocessor`](super::GpuPreprocessor) does for its device; needs NVRTC, no GPU.
pub fn compile_preprocess_cubin(arch: &str) -> Result<Vec<u8>, GpuError> {
    let real = virtual_arch(arch)?.replacen("compute_", "sm_", 1);
    if !ffi::nvrtc_present() {
        return Err(GpuError::LibraryMissing {
            library: "libnvrtc (NVRTC, the CUDA runtime compiler)",
            hint: "it comes with the CUDA toolkit, JetPack, or the nvidia-cuda-nvrtc pip wheels",
        });
    }
    ffi::compile_cubin(PREPROCESS_SOURCE, "preprocess.cu", &real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architecture_names() {
        assert_eq!(virtual_arch("sm_87").unwrap(), "compute_87");
        assert_eq!(virtual_arch("compute_90a").unwrap(), "compute_90a");
        assert_eq!(virtual_arch("121").unwrap(), "compute_121");
        for bad in ["sm_", "gfx90a", "sm_8", "sm_87x", ""] {
            assert!(matches!(virtual_arch(bad), Err(GpuError::Arch(_))), "{bad}");
        }
    }

    #[test]
    fn the_source_defines_every_kernel_without_headers() {
        for name in KERNEL_NAMES {
            assert!(
                PREPROCESS_SOURCE.contains(&format!("__global__ void {name}(")),
                "{name}"
            );
        }
        assert!(!PREPROCESS_SOURCE.contains("#include"));
    }
}
