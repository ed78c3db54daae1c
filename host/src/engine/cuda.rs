//! The CUDA engine: tract-cuda runs the graph on GPU 0 (cuBLAS matmuls, kernels compiled at
//! run time by NVRTC for the device's own compute capability, cached per process and on disk).
//!
//! CUDA is loaded at run time. cudarc aborts on a missing library rather than returning an
//! error, and tract-cuda panics on missing toolkit headers, so every library and header is
//! probed before the first call, and preparation runs behind `catch_unwind` as a last guard.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::runtime::{Runnable, Runtime, runtime_for_name};

use super::{EngineError, EngineKind};

/// Why CUDA cannot run here, or `None`.
pub(super) fn unavailable() -> Option<String> {
    let runtime = match cuda_runtime() {
        Ok(rt) => rt,
        Err(reason) => return Some(reason),
    };
    // tract-cuda's own check opens the driver by hand (no cudarc), checks its version against
    // the CUDA API this build was made for, then probes cudart, NVRTC, cuBLAS and cuDNN.
    if let Err(e) = runtime.check() {
        return Some(format!("{e:#}"));
    }
    if let Err(reason) = toolkit_headers() {
        return Some(reason);
    }
    None
}

/// tract-cuda's runtime, registered when the crate is linked.
fn cuda_runtime() -> Result<&'static dyn Runtime, String> {
    // Naming a type of the crate keeps it linked, and with it its runtime's registration.
    let _ = std::any::type_name::<tract_cuda::CudaTransform>();
    match runtime_for_name("cuda") {
        Ok(Some(rt)) => Ok(rt),
        Ok(None) => Err("tract-cuda's runtime is not registered in this build".to_owned()),
        Err(e) => Err(format!("{e:#}")),
    }
}

/// The toolkit root tract-cuda compiles its kernels against, found as tract-cuda finds it:
/// the first of `$CUDA_HOME`, `$CUDA_PATH`, `/usr/local/cuda`, then the folder above `nvcc`'s.
fn cuda_home() -> Option<PathBuf> {
    if let Some(v) = std::env::var_os("CUDA_HOME").or_else(|| std::env::var_os("CUDA_PATH")) {
        return Some(PathBuf::from(v));
    }
    let default = Path::new("/usr/local/cuda");
    if default.exists() {
        return Some(default.to_path_buf());
    }
    let nvcc = std::process::Command::new("which")
        .arg("nvcc")
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let nvcc = PathBuf::from(String::from_utf8_lossy(&nvcc.stdout).trim());
    nvcc.parent()?.parent().map(Path::to_path_buf)
}

/// The include folder with the headers tract-cuda's kernels need (`cuda_fp16.h`,
/// `math_constants.h`, CCCL's `cuda/std/cstdint`), in the toolkit root it will use, or why
/// there is none: tract-cuda panics where one is missing, so this is checked first.
fn toolkit_headers() -> Result<PathBuf, String> {
    let install = "install cuda-cudart-dev and cuda-cccl for your CUDA version, or set CUDA_HOME";
    let Some(home) = cuda_home() else {
        return Err(format!(
            "no CUDA toolkit found for the kernels' headers (no CUDA_HOME, CUDA_PATH, \
             /usr/local/cuda or nvcc): {install}"
        ));
    };
    let mut candidates = vec![home.join("include")];
    if let Ok(entries) = std::fs::read_dir(home.join("targets")) {
        candidates.extend(entries.flatten().map(|e| e.path().join("include")));
    }
    let Some(include) = candidates.iter().find(|d| d.join("cuda_fp16.h").exists()) else {
        return Err(format!(
            "the CUDA toolkit headers are missing: no cuda_fp16.h under {}: {install}",
            home.display()
        ));
    };
    if !include.join("math_constants.h").exists() {
        return Err(format!(
            "the CUDA toolkit headers are incomplete: no math_constants.h in {}: {install}",
            include.display()
        ));
    }
    let cccl = [
        include.join("cccl"),
        include.join("libcudacxx").join("include"),
        include.clone(),
    ];
    if !cccl.iter().any(|d| has_cccl(d)) {
        return Err(format!(
            "the CCCL headers are missing: no cuda/std/cstdint under {}: {install}",
            include.display()
        ));
    }
    Ok(include.clone())
}

fn has_cccl(dir: &Path) -> bool {
    dir.join("cuda").join("std").join("cstdint").exists()
}

/// Prepares `model` on GPU 0, compiling its kernels: the plan and the device's description.
pub(super) fn prepare(model: TypedModel) -> Result<(Arc<dyn Runnable>, String), EngineError> {
    let fail = |reason: String| EngineError::Prepare {
        engine: EngineKind::Cuda,
        reason,
    };
    let runtime = cuda_runtime().map_err(fail)?;
    let device = device_name().map_err(fail)?;
    let prepared =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.prepare(model)))
            .map_err(|panic| fail(format!("tract-cuda panicked: {}", panic_message(&*panic))))?
            .map_err(|e| fail(format!("{e:#}")))?;
    Ok((Arc::from(prepared), device))
}

/// `cuda: NVIDIA H200 (sm_90, 143771 MiB)`.
fn device_name() -> Result<String, String> {
    let ctx = cudarc::driver::CudaContext::new(0).map_err(|e| format!("GPU 0: {e}"))?;
    let name = ctx.name().map_err(|e| format!("GPU 0's name: {e}"))?;
    let (major, minor) = ctx
        .compute_capability()
        .map_err(|e| format!("GPU 0's compute capability: {e}"))?;
    let mib = ctx.total_mem().map_or(0, |b| b >> 20);
    Ok(format!("cuda: {name} (sm_{major}{minor}, {mib} MiB)"))
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "no message".to_owned())
}
