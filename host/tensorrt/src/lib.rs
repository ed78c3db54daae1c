//! dinoedge's TensorRT shim, seen from Rust.
//!
//! No maintained Rust binding covers TensorRT 10 on a Jetson, so this crate holds a small C++
//! shim (`shim/shim.cpp`) with a C ABI (`shim/dinoedge_trt.h`) over TensorRT's builder and
//! runtime. Its build script compiles the shim into its own shared library where TensorRT's
//! headers are found; the host opens that library at run time ([`Shim::open`]), so one
//! `dinoedge` binary runs with or without TensorRT, and a machine without it gets an error that
//! says so instead of a loader failure at start. `shim/fake.c` implements the same ABI without a
//! GPU, for the host's tests.
//!
//! This module is safe to use: every call into the library goes through [`ffi`], the crate's
//! only unsafe code.

mod ffi;

use std::path::{Path, PathBuf};

pub use ffi::{Context, Engine, Shim};

/// The C ABI version this crate speaks (`DTRT_ABI_VERSION`).
pub const ABI_VERSION: i32 = 1;

/// The oldest TensorRT the shim supports: 10.3, JetPack 6.1's.
pub const MIN_TENSORRT: i32 = 10_03_00;

/// The shim's file name.
pub const SHIM_FILE: &str = "libdinoedge_trt.so";

/// The environment variable that names the shim library to load.
pub const SHIM_ENV: &str = "DINOEDGE_TENSORRT_SHIM";

/// Where this build's own shim was written, if TensorRT was found when it was built.
pub fn built_shim() -> Option<&'static Path> {
    option_env!("DINOEDGE_TRT_SHIM_BUILT")
        .filter(|p| !p.is_empty())
        .map(Path::new)
}

/// Why this build compiled no shim (no TensorRT headers where the build looked), if it did not.
pub fn why_not_built() -> Option<&'static str> {
    option_env!("DINOEDGE_TRT_SHIM_SKIPPED").filter(|s| !s.is_empty())
}

/// The shim library to load: `$DINOEDGE_TENSORRT_SHIM`, else the first of `libdinoedge_trt.so`
/// beside the executable, in `../lib/dinoedge/` from it (the Debian package's layout), and the
/// one this build compiled.
pub fn locate() -> Result<PathBuf, ShimError> {
    if let Some(path) = std::env::var_os(SHIM_ENV) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(ShimError::NotFound {
                searched: vec![path],
                hint: format!("{SHIM_ENV} names no file"),
            })
        };
    }
    let mut searched = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        searched.push(dir.join(SHIM_FILE));
        searched.push(dir.join("../lib/dinoedge").join(SHIM_FILE));
    }
    searched.extend(built_shim().map(Path::to_path_buf));
    match searched.iter().find(|p| p.is_file()) {
        Some(found) => Ok(found.clone()),
        None => Err(ShimError::NotFound {
            searched,
            hint: match why_not_built() {
                Some(why) => format!(
                    "this build compiled no shim ({why}): build on a machine with TensorRT 10.3+ \
                     (JetPack 6.1+) or set TENSORRT_ROOT, or point {SHIM_ENV} at the library"
                ),
                None => format!("point {SHIM_ENV} at the library"),
            },
        }),
    }
}

/// What went wrong with TensorRT or its shim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShimError {
    /// No shim library where it was looked for.
    #[error(
        "TensorRT is not available: no {SHIM_FILE} (looked at {}); {hint}",
        list(searched)
    )]
    NotFound {
        /// The paths looked at.
        searched: Vec<PathBuf>,
        /// What to do about it.
        hint: String,
    },
    /// The library or one of its dependencies (`libnvinfer.so.10`, `libcudart`) did not load.
    #[error("TensorRT is not available: {} did not load: {reason}", path.display())]
    Load {
        /// The shim.
        path: PathBuf,
        /// The loader's message (it names a missing dependency).
        reason: String,
    },
    /// The library speaks another ABI than this dinoedge.
    #[error("{} speaks shim ABI {found}, this dinoedge speaks {ABI_VERSION}: rebuild the shim from the same source", path.display())]
    Abi {
        /// The shim.
        path: PathBuf,
        /// Its ABI version.
        found: i32,
    },
    /// The TensorRT loaded is not the one the shim was compiled for, or is too old.
    #[error("TensorRT version mismatch: {reason}")]
    Version {
        /// Which versions, and why they do not go together.
        reason: String,
    },
    /// A call failed.
    #[error("TensorRT {call} failed ({code}): {message}")]
    Call {
        /// The call (`build`, `engine load`, `run`, ...).
        call: &'static str,
        /// The kind of failure.
        code: Code,
        /// The shim's message (parser errors, TensorRT's log, CUDA error names).
        message: String,
    },
}

impl ShimError {
    /// The kind of a failed call, if this is one.
    pub fn code(&self) -> Option<Code> {
        match self {
            ShimError::Call { code, .. } => Some(*code),
            _ => None,
        }
    }
}

fn list(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "nowhere".into();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The kind of a failed call (`DTRT_ERR_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Anything not below.
    Other,
    /// The ONNX parser refused the graph.
    Parse,
    /// Out of host or device memory.
    OutOfMemory,
    /// A CUDA call failed.
    Cuda,
    /// Engine bytes refused: corrupt, truncated, or made by another TensorRT or GPU.
    Deserialize,
    /// A wrong argument.
    Argument,
    /// The build was cancelled.
    Cancelled,
    /// A code this crate does not know.
    Unknown(i32),
}

impl Code {
    fn from_raw(code: i32) -> Self {
        match code {
            1 => Code::Other,
            2 => Code::Parse,
            3 => Code::OutOfMemory,
            4 => Code::Cuda,
            5 => Code::Deserialize,
            6 => Code::Argument,
            7 => Code::Cancelled,
            n => Code::Unknown(n),
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Code::Other => f.write_str("error"),
            Code::Parse => f.write_str("the ONNX parser refused the graph"),
            Code::OutOfMemory => f.write_str("out of memory"),
            Code::Cuda => f.write_str("CUDA error"),
            Code::Deserialize => f.write_str("engine refused"),
            Code::Argument => f.write_str("bad argument"),
            Code::Cancelled => f.write_str("cancelled"),
            Code::Unknown(n) => write!(f, "unknown code {n}"),
        }
    }
}

/// A TensorRT-style version number (`major * 10000 + minor * 100 + patch`) as `10.3.0`.
pub fn version_string(v: i32) -> String {
    format!("{}.{}.{}", v / 10000, v / 100 % 100, v % 100)
}

/// A CUDA version number (`major * 1000 + minor * 10`) as `12.6`.
pub fn cuda_version_string(v: i32) -> String {
    format!("{}.{}", v / 1000, v / 10 % 100)
}

/// The versions the shim reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    /// The shim's ABI.
    pub abi: i32,
    /// TensorRT of the headers the shim was compiled against.
    pub headers: i32,
    /// TensorRT of the `libnvinfer` loaded.
    pub library: i32,
    /// The ONNX parser loaded.
    pub parser: i32,
    /// The CUDA runtime.
    pub cuda_runtime: i32,
    /// The CUDA driver.
    pub cuda_driver: i32,
}

impl Versions {
    /// Why these cannot work together, or `None`: the library's major version must be the
    /// headers' (TensorRT breaks its ABI between majors) and the library no older than the
    /// headers (an older one may lack what they call), and at least [`MIN_TENSORRT`].
    pub fn mismatch(&self) -> Option<String> {
        if self.library / 10000 != self.headers / 10000 || self.library < self.headers {
            return Some(format!(
                "the shim was compiled against TensorRT {} but libnvinfer is {}: rebuild the \
                 shim on this machine",
                version_string(self.headers),
                version_string(self.library)
            ));
        }
        if self.library < MIN_TENSORRT {
            return Some(format!(
                "TensorRT {} is older than {}, the oldest dinoedge supports (JetPack 6.1)",
                version_string(self.library),
                version_string(MIN_TENSORRT)
            ));
        }
        if self.parser / 10000 != self.library / 10000 {
            return Some(format!(
                "libnvonnxparser {} does not go with libnvinfer {}",
                version_string(self.parser),
                version_string(self.library)
            ));
        }
        None
    }

    /// `TensorRT 10.3.0 (headers 10.3.0), CUDA 12.6 (driver 12.6)`.
    pub fn summary(&self) -> String {
        format!(
            "TensorRT {} (headers {}), CUDA {} (driver {})",
            version_string(self.library),
            version_string(self.headers),
            cuda_version_string(self.cuda_runtime),
            cuda_version_string(self.cuda_driver)
        )
    }
}

/// A GPU as the shim sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Its name, e.g. `Orin`.
    pub name: String,
    /// Compute capability, e.g. `(8, 7)`.
    pub compute_capability: (i32, i32),
    /// Streaming multiprocessors (Orin AGX, NX and Nano share a name and compute capability).
    pub multiprocessors: i32,
    /// Its memory in bytes.
    pub total_bytes: u64,
}

/// The element type of an engine's input or output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// 32-bit float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// Any other (TensorRT's `DataType` number); dinoedge's graphs have none at their edges.
    Other(i32),
}

impl DataType {
    fn from_raw(v: i32) -> Self {
        match v {
            0 => DataType::F32,
            1 => DataType::F16,
            n => DataType::Other(n),
        }
    }

    /// Bytes per element, where known.
    pub fn size(self) -> Option<usize> {
        match self {
            DataType::F32 => Some(4),
            DataType::F16 => Some(2),
            DataType::Other(_) => None,
        }
    }
}

/// One input or output of an execution context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Io {
    /// The tensor's name in the graph.
    pub name: String,
    /// Whether it is an input.
    pub is_input: bool,
    /// Its element type.
    pub dtype: DataType,
    /// Its dimensions.
    pub dims: Vec<i64>,
    /// Its size in bytes.
    pub bytes: usize,
}

/// How to build an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildOptions {
    /// The size of every dynamic input axis (the batch).
    pub batch: i32,
    /// The builder's optimisation level, 0-5 (`None`: TensorRT's default, 3).
    pub opt_level: Option<i32>,
    /// The workspace pool limit in bytes (`None`: TensorRT's default).
    pub workspace_bytes: Option<u64>,
}

/// A step of a build, as TensorRT's progress monitor reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress<'a> {
    /// The phase's name.
    pub phase: &'a str,
    /// 0 for a top-level phase.
    pub depth: i32,
    /// Steps done: 0 when the phase starts, `steps` when it ends.
    pub step: i32,
    /// Steps in the phase.
    pub steps: i32,
}

/// What a build produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The serialized engine.
    pub engine: Vec<u8>,
    /// The builder's timing cache after the build (to seed the next one).
    pub timing_cache: Vec<u8>,
}

/// Builds the fake shim (`shim/fake.c`: the same C ABI with no GPU, whose behaviour a control
/// file beside each graph describes) into `dir` with the system C compiler (`$CC`, else `cc`),
/// with `defines` (`NAME=VALUE`, e.g. `FAKE_LIBRARY=110400`). For tests of the host's side on
/// machines without TensorRT; returns the library's path or the compiler's complaint.
pub fn build_fake_shim(dir: &Path, defines: &[&str]) -> Result<PathBuf, String> {
    let shim_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shim");
    let tag: String = defines
        .iter()
        .flat_map(|d| d.chars())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let out = dir.join(format!("libfake_trt{tag}.so"));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let output = std::process::Command::new(&cc)
        .args(["-std=c11", "-shared", "-fPIC", "-O1", "-I"])
        .arg(&shim_dir)
        .args(defines.iter().map(|d| format!("-D{d}")))
        .arg(shim_dir.join("fake.c"))
        .arg("-o")
        .arg(&out)
        .output()
        .map_err(|e| format!("running the C compiler {cc}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{cc} failed on fake.c: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(out)
}

/// One record of the fake shim's output table (`table=` in its control file): the FNV-1a-64
/// hash of an input's bytes, then the bytes of every output the fake returns for it.
pub fn fake_table_record(input: &[u8], outputs: &[u8]) -> Vec<u8> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in input {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut record = h.to_le_bytes().to_vec();
    record.extend_from_slice(outputs);
    record
}
