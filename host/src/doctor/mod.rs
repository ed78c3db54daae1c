//! What this machine offers dinoedge and what dinoedge will do with it: the CPU, the NVIDIA
//! driver and GPU, which CUDA libraries and toolkit headers are present (found by looking for
//! their files, never by loading them, so a machine without CUDA cannot crash it), the Jetson
//! release and power mode, serial devices, and the engine `auto` picks, with why (from
//! [`crate::engine::auto_choice`], which in a CUDA build opens the driver through a check that
//! returns an error rather than aborting).

pub mod checks;
mod probe;

use std::path::PathBuf;

use serde::Serialize;

use crate::engine::{EngineKind, NotTaken};

pub(crate) use probe::cpu_model;
pub use probe::{parse_ldconfig, parse_nv_tegra_release, parse_nvidia_smi};

/// One library dinoedge may use, and where it was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Library {
    /// What it is for.
    pub name: &'static str,
    /// The file names looked for, in order of preference.
    pub sonames: Vec<&'static str>,
    /// Where the first of them was found, if anywhere.
    pub found: Option<PathBuf>,
}

/// The GPU as the driver reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gpu {
    /// Its name.
    pub name: String,
    /// Compute capability, e.g. "8.7".
    pub compute_capability: String,
    /// Memory, MiB.
    pub memory_mib: Option<u64>,
    /// The driver's version.
    pub driver_version: String,
}

/// A Jetson's identity and power mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Jetson {
    /// The board, from the device tree.
    pub model: Option<String>,
    /// The L4T release, e.g. "R36 (release), REVISION: 4.3".
    pub l4t: String,
    /// The power mode as `nvpmodel -q` says it, if it could be asked.
    pub power_mode: Option<String>,
}

/// A serial device and whether this user may open it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SerialDevice {
    /// Its path.
    pub path: PathBuf,
    /// Whether this user may read and write it.
    pub accessible: bool,
}

/// The engine `auto` picks, and why each other one was not taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EngineChoice {
    /// The engine taken.
    pub engine: &'static str,
    /// Why it was taken.
    pub reason: String,
    /// Engines not taken, each with why.
    pub not_taken: Vec<(&'static str, String)>,
}

/// A cached TensorRT engine as `doctor` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CachedEngine {
    /// Its cache key.
    pub key: String,
    /// `fp16 224x224 batch 1, weights ...`.
    pub what: String,
    /// Whether its gate passed.
    pub passed: bool,
    /// The gate's one-line verdict.
    pub verdict: String,
    /// Why it cannot run on this machine (another TensorRT, CUDA or GPU), if so.
    pub foreign: Option<String>,
}

/// TensorRT on this machine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorrtStatus {
    /// The shim loaded, where one was.
    pub shim: Option<PathBuf>,
    /// `TensorRT 10.3.0 (headers 10.3.0), CUDA 12.6 (driver 12.6)`, where the shim loaded.
    pub versions: Option<String>,
    /// Why TensorRT cannot be used, where it cannot.
    pub unavailable: Option<String>,
    /// The engine cache.
    pub cache: PathBuf,
    /// Its engines.
    pub engines: Vec<CachedEngine>,
}

impl TensorrtStatus {
    /// Opens the shim (a failure is reported, not raised) and reads the cache.
    pub fn gather() -> TensorrtStatus {
        use crate::engine::tensorrt::{self, EngineCache, Environment, Listed};
        let cache = EngineCache::new(tensorrt::cache::default_dir());
        let (shim, versions, env, unavailable) = match tensorrt::open_shim() {
            Ok(shim) => {
                let versions = shim.versions().ok().map(|v| v.summary());
                match Environment::current(&shim) {
                    Ok(env) => (Some(shim.path().to_path_buf()), versions, Some(env), None),
                    Err(e) => (
                        Some(shim.path().to_path_buf()),
                        versions,
                        None,
                        Some(e.to_string()),
                    ),
                }
            }
            Err(e) => (None, None, None, Some(e.to_string())),
        };
        let engines = cache
            .list()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|l| match l {
                Listed::Entry(meta) => Some(CachedEngine {
                    key: meta.key.clone(),
                    what: format!(
                        "{} {}x{} batch {}, {}",
                        meta.precision, meta.size[0], meta.size[1], meta.build.batch, meta.weights
                    ),
                    passed: meta.verdict.passed,
                    verdict: meta.verdict.summary.clone(),
                    foreign: env.as_ref().and_then(|e| meta.foreign_to(e)),
                }),
                Listed::Unreadable { .. } => None,
            })
            .collect();
        TensorrtStatus {
            shim,
            versions,
            unavailable,
            cache: cache.dir().to_path_buf(),
            engines,
        }
    }
}

/// Everything `doctor` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The CPU's model name.
    pub cpu_model: String,
    /// Logical cores available to this process.
    pub cores: usize,
    /// The SIMD features the CPU offers that tract's kernels use.
    pub simd: Vec<&'static str>,
    /// The machine's architecture.
    pub arch: &'static str,
    /// The GPU, where a driver answered.
    pub gpu: Option<Gpu>,
    /// Why no GPU is reported, where none is.
    pub gpu_missing: Option<String>,
    /// CUDA and TensorRT libraries.
    pub libraries: Vec<Library>,
    /// The CUDA toolkit headers tract-cuda compiles its kernels against, where found.
    pub cuda_headers: Option<PathBuf>,
    /// The Jetson, where this is one.
    pub jetson: Option<Jetson>,
    /// Serial devices.
    pub serial: Vec<SerialDevice>,
    /// TensorRT: the shim, its versions, and the cached engines with their gates' verdicts.
    pub tensorrt: TensorrtStatus,
    /// What `--engine auto` does.
    pub engine_auto: EngineChoice,
    /// Whether the default pipeline can run here.
    pub default_pipeline_runs: bool,
    /// The service's checks (config, devices, disk space, engine cache), where run.
    pub checks: Vec<checks::Check>,
}

impl Report {
    /// Whether any check failed.
    pub fn any_check_failed(&self) -> bool {
        self.checks.iter().any(|c| c.level == checks::Level::Fail)
    }

    /// Whether TensorRT can run here: its shim loaded and answered for this machine.
    pub fn tensorrt_usable(&self) -> bool {
        self.tensorrt.shim.is_some() && self.tensorrt.unavailable.is_none()
    }

    /// Looks at this machine.
    pub fn gather() -> Report {
        let libraries = probe::libraries();
        let (gpu, gpu_missing) = match probe::gpu() {
            Ok(gpu) => (Some(gpu), None),
            Err(why) => (None, Some(why)),
        };
        let engine_auto = choose_engine(crate::engine::auto_choice(), &libraries, gpu.as_ref());
        Report {
            cpu_model: probe::cpu_model(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            simd: probe::simd(),
            arch: std::env::consts::ARCH,
            gpu,
            gpu_missing,
            libraries,
            cuda_headers: probe::cuda_headers(),
            jetson: probe::jetson(),
            serial: probe::serial_devices(),
            tensorrt: TensorrtStatus::gather(),
            // The CPU engine needs nothing from the machine.
            default_pipeline_runs: true,
            engine_auto,
            checks: Vec::new(),
        }
    }
}

/// What `auto` does, from [`crate::engine::auto_choice`] (`auto`: the engine it takes and the
/// engines passed over before it), with what this machine lacks for each engine not taken.
pub fn choose_engine(
    auto: (EngineKind, Vec<NotTaken>),
    libraries: &[Library],
    gpu: Option<&Gpu>,
) -> EngineChoice {
    let missing = |names: &[&'static str]| -> Vec<&'static str> {
        names
            .iter()
            .filter(|n| {
                libraries
                    .iter()
                    .find(|l| l.name == **n)
                    .is_none_or(|l| l.found.is_none())
            })
            .copied()
            .collect()
    };
    let needs = |engine: &str| -> &[&'static str] {
        match engine {
            "tensorrt" => &["CUDA driver", "TensorRT"],
            _ => &["CUDA driver", "CUDA runtime", "NVRTC", "cuBLAS", "cuDNN"],
        }
    };
    let (engine, passed_over) = auto;
    let not_taken = passed_over
        .into_iter()
        .map(|n| {
            let mut parts = vec![n.reason];
            if gpu.is_none() {
                parts.push("no NVIDIA GPU answered".to_owned());
            }
            let lacking = missing(needs(n.engine));
            if !lacking.is_empty() {
                parts.push(format!("missing: {}", lacking.join(", ")));
            }
            (n.engine, parts.join("; "))
        })
        .collect();
    let reason = match engine {
        EngineKind::Cuda => "this build has CUDA, and the libraries, driver and toolkit headers \
                             it needs were found"
            .to_owned(),
        EngineKind::Cpu => "tract on the CPU runs everywhere".to_owned(),
        EngineKind::Tensorrt => "a gated TensorRT engine is cached for this machine".to_owned(),
    };
    EngineChoice {
        engine: engine.name(),
        reason,
        not_taken,
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let simd = if self.simd.is_empty() {
            "none".to_owned()
        } else {
            self.simd.join(" ")
        };
        writeln!(
            f,
            "CPU      {} ({}, {} cores; SIMD: {simd})",
            self.cpu_model, self.arch, self.cores
        )?;
        match (&self.gpu, &self.gpu_missing) {
            (Some(g), _) => writeln!(
                f,
                "GPU      {} (compute capability {}, {} MiB, driver {})",
                g.name,
                g.compute_capability,
                g.memory_mib.map_or("?".to_owned(), |m| m.to_string()),
                g.driver_version
            )?,
            (None, why) => writeln!(f, "GPU      none ({})", why.as_deref().unwrap_or("unknown"))?,
        }
        for lib in &self.libraries {
            match &lib.found {
                Some(p) => writeln!(f, "  {:<14} {}", lib.name, p.display())?,
                None => writeln!(
                    f,
                    "  {:<14} not found ({})",
                    lib.name,
                    lib.sonames.join(", ")
                )?,
            }
        }
        match &self.cuda_headers {
            Some(p) => writeln!(f, "  {:<14} {}", "CUDA headers", p.display())?,
            None => writeln!(f, "  {:<14} not found (cuda_fp16.h)", "CUDA headers")?,
        }
        if let Some(j) = &self.jetson {
            writeln!(
                f,
                "Jetson   {} | L4T {} | power mode {}",
                j.model.as_deref().unwrap_or("unknown board"),
                j.l4t,
                j.power_mode.as_deref().unwrap_or("unknown")
            )?;
        }
        if self.serial.is_empty() {
            writeln!(f, "Serial   no devices")?;
        }
        for s in &self.serial {
            writeln!(
                f,
                "Serial   {} ({})",
                s.path.display(),
                if s.accessible {
                    "can open"
                } else {
                    "no permission: add this user to the dialout group"
                }
            )?;
        }
        let trt = &self.tensorrt;
        match (&trt.versions, &trt.unavailable) {
            (Some(v), None) => writeln!(f, "TensorRT {v}")?,
            (_, Some(why)) => writeln!(f, "TensorRT {why}")?,
            (None, None) => writeln!(f, "TensorRT loaded, versions unknown")?,
        }
        writeln!(
            f,
            "         {} engine(s) in {}",
            trt.engines.len(),
            trt.cache.display()
        )?;
        for e in &trt.engines {
            writeln!(
                f,
                "         {} {} {}: {}{}",
                if e.passed { "PASSED " } else { "REFUSED" },
                e.key,
                e.what,
                e.verdict,
                e.foreign
                    .as_ref()
                    .map(|w| format!(" (foreign: {w})"))
                    .unwrap_or_default()
            )?;
        }
        writeln!(
            f,
            "Engine   auto picks {}: {}",
            self.engine_auto.engine, self.engine_auto.reason
        )?;
        for (engine, why) in &self.engine_auto.not_taken {
            writeln!(f, "         not {engine}: {why}")?;
        }
        if !self.checks.is_empty() {
            writeln!(f, "Checks")?;
            for check in &self.checks {
                writeln!(f, "  {check}")?;
            }
        }
        write!(
            f,
            "The default pipeline {}",
            if self.default_pipeline_runs {
                "runs here."
            } else {
                "cannot run here."
            }
        )
    }
}

#[cfg(test)]
mod tests;
