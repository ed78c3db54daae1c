//! Build script of `dinoedge-tensorrt`: where TensorRT's and CUDA's headers and libraries are
//! found, compiles the TensorRT shim (`shim/shim.cpp`) into `libdinoedge_trt.so` in `OUT_DIR` and
//! tells the crate where (`DINOEDGE_TRT_SHIM_BUILT`); elsewhere (most machines) it says why not
//! (`DINOEDGE_TRT_SHIM_SKIPPED`) and the crate builds all the same, loading a shim at run time.
//!
//! Looked at: `$TENSORRT_ROOT`, the target's multiarch directories (JetPack's layout), and CUDA's
//! `$CUDA_HOME`, `$CUDA_PATH` and `/usr/local/cuda`. `DINOEDGE_NO_TENSORRT_SHIM=1` skips the shim.

use std::collections::HashMap;
use std::env;
use std::path::{Path, PathBuf};

/// The oldest TensorRT the shim compiles against (JetPack 6.1's).
const MIN_TENSORRT: (u32, u32) = (10, 3);

/// What the shim is compiled against.
struct Toolkit {
    include_dirs: Vec<PathBuf>,
    lib_dirs: Vec<PathBuf>,
    /// The headers whose change should rebuild the shim (a TensorRT or CUDA upgrade).
    watched: Vec<PathBuf>,
}

/// A directory searched, with the environment variable it came from, if any.
struct Candidate {
    dir: PathBuf,
    from: Option<&'static str>,
}

impl Candidate {
    fn fixed(dir: &str) -> Self {
        Candidate {
            dir: PathBuf::from(dir),
            from: None,
        }
    }

    fn label(&self) -> String {
        match self.from {
            Some(var) => format!("{} (${var})", self.dir.display()),
            None => self.dir.display().to_string(),
        }
    }
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=shim/shim.cpp");
    println!("cargo:rerun-if-changed=shim/dinoedge_trt.h");
    for var in [
        "TENSORRT_ROOT",
        "CUDA_HOME",
        "CUDA_PATH",
        "DINOEDGE_NO_TENSORRT_SHIM",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    // Both variables are always set, so the crate can read them with `env!`.
    match find_toolkit().and_then(|kit| out_dir().map(|dir| (dir, kit))) {
        Ok((out_dir, kit)) => {
            for path in &kit.watched {
                println!("cargo:rerun-if-changed={}", path.display());
            }
            let shim = compile(&kit, &out_dir);
            println!("cargo:rustc-env=DINOEDGE_TRT_SHIM_BUILT={}", shim.display());
            println!("cargo:rustc-env=DINOEDGE_TRT_SHIM_SKIPPED=");
        }
        Err(why) => {
            println!("cargo:rustc-env=DINOEDGE_TRT_SHIM_BUILT=");
            println!(
                "cargo:rustc-env=DINOEDGE_TRT_SHIM_SKIPPED={}",
                why.replace(['\n', '\r'], " ")
            );
        }
    }
}

fn out_dir() -> Result<PathBuf, String> {
    env::var_os("OUT_DIR")
        .map(PathBuf::from)
        .ok_or_else(|| "cargo set no OUT_DIR".to_string())
}

/// An environment variable's value, if set and not empty.
fn env_dir(var: &'static str, sub: &str) -> Option<Candidate> {
    env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(|v| Candidate {
            dir: PathBuf::from(v).join(sub),
            from: Some(var),
        })
}

/// The first of `candidates` that holds `file`, or the message saying none did.
fn find(file: &str, candidates: &[Candidate]) -> Result<PathBuf, String> {
    candidates
        .iter()
        .map(|c| &c.dir)
        .find(|dir| dir.join(file).is_file())
        .cloned()
        .ok_or_else(|| {
            let searched: Vec<String> = candidates.iter().map(Candidate::label).collect();
            format!("no {file} in {}", searched.join(", "))
        })
}

fn find_toolkit() -> Result<Toolkit, String> {
    if env::var_os("DINOEDGE_NO_TENSORRT_SHIM").is_some_and(|v| !v.is_empty()) {
        return Err("DINOEDGE_NO_TENSORRT_SHIM is set".to_string());
    }
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os != "linux" {
        return Err(format!("the target OS is {os}, not Linux"));
    }
    // Only the target's own multiarch directories: a cross build must not pick up the host's.
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let multiarch = format!("{arch}-linux-gnu");

    let trt_includes: Vec<Candidate> = env_dir("TENSORRT_ROOT", "include")
        .into_iter()
        .chain([
            Candidate::fixed(&format!("/usr/include/{multiarch}")),
            Candidate::fixed("/usr/include"),
        ])
        .collect();
    let cuda_includes: Vec<Candidate> = env_dir("CUDA_HOME", "include")
        .into_iter()
        .chain(env_dir("CUDA_PATH", "include"))
        .chain([
            Candidate::fixed("/usr/local/cuda/include"),
            Candidate::fixed(&format!("/usr/local/cuda/targets/{arch}-linux/include")),
        ])
        .collect();
    let lib_candidates: Vec<Candidate> = env_dir("TENSORRT_ROOT", "lib")
        .into_iter()
        .chain([Candidate::fixed(&format!("/usr/lib/{multiarch}"))])
        .chain(env_dir("CUDA_HOME", "lib64"))
        .chain(env_dir("CUDA_PATH", "lib64"))
        .chain([
            Candidate::fixed("/usr/local/cuda/lib64"),
            Candidate::fixed(&format!("/usr/local/cuda/targets/{arch}-linux/lib")),
        ])
        .collect();

    let mut missing = Vec::new();
    let mut include_dirs = Vec::new();
    let mut watched = Vec::new();
    for (file, candidates) in [
        ("NvInfer.h", &trt_includes),
        ("NvOnnxParser.h", &trt_includes),
        ("cuda_runtime_api.h", &cuda_includes),
    ] {
        match find(file, candidates) {
            Ok(dir) => {
                watched.push(dir.join(file));
                if !include_dirs.contains(&dir) {
                    include_dirs.push(dir);
                }
            }
            Err(why) => missing.push(why),
        }
    }
    let mut lib_dirs = Vec::new();
    for lib in ["libnvinfer.so", "libnvonnxparser.so", "libcudart.so"] {
        match find(lib, &lib_candidates) {
            Ok(dir) => {
                if !lib_dirs.contains(&dir) {
                    lib_dirs.push(dir);
                }
            }
            Err(why) => missing.push(why),
        }
    }
    if !missing.is_empty() {
        // Without TensorRT (the usual case) the rest is noise.
        if missing[0].starts_with("no NvInfer.h ") {
            missing.truncate(1);
        }
        return Err(missing.join("; "));
    }

    // An older TensorRT (JetPack 5's 8.5, say) is a reason to skip, not a build failure.
    if let Some(dir) = include_dirs.first() {
        let header = dir.join("NvInferVersion.h");
        if let Some((major, minor, patch)) = tensorrt_version(&header) {
            if (major, minor) < MIN_TENSORRT {
                return Err(format!(
                    "TensorRT {major}.{minor}.{patch} in {}; the shim needs {}.{} or newer",
                    dir.display(),
                    MIN_TENSORRT.0,
                    MIN_TENSORRT.1
                ));
            }
            watched.push(header);
        }
    }
    Ok(Toolkit {
        include_dirs,
        lib_dirs,
        watched,
    })
}

/// NV_TENSORRT_MAJOR/MINOR/PATCH from NvInferVersion.h, following one level of indirection or more
/// (TensorRT 11 defines them as other macros).
fn tensorrt_version(header: &Path) -> Option<(u32, u32, u32)> {
    let text = std::fs::read_to_string(header).ok()?;
    let mut defines = HashMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("#define")
            && let (Some(name), Some(value)) = (words.next(), words.next())
        {
            defines.insert(name, value);
        }
    }
    let resolve = |name: &str| -> Option<u32> {
        let mut value = *defines.get(name)?;
        for _ in 0..4 {
            if let Ok(n) = value.parse() {
                return Some(n);
            }
            value = defines.get(value)?;
        }
        None
    };
    Some((
        resolve("NV_TENSORRT_MAJOR")?,
        resolve("NV_TENSORRT_MINOR")?,
        resolve("NV_TENSORRT_PATCH")?,
    ))
}

/// Compiles and links the shim; the headers were found, so any failure fails the build.
fn compile(kit: &Toolkit, out_dir: &Path) -> PathBuf {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let shim_dir = manifest_dir.join("shim");
    let output = out_dir.join("libdinoedge_trt.so");
    let skip_hint = "set DINOEDGE_NO_TENSORRT_SHIM=1 to build without it";

    // cc picks the target's C++ compiler (a cross compiler for a cross build) and its flags.
    let tool = match cc::Build::new()
        .cpp(true)
        .cargo_metadata(false)
        .try_get_compiler()
    {
        Ok(tool) => tool,
        Err(e) => panic!("TensorRT was found but no C++ compiler for the shim: {e}; {skip_hint}"),
    };
    let mut cmd = tool.to_command();
    cmd.args(["-shared", "-fPIC", "-O2", "-std=c++17"])
        // TensorRT's headers use their own deprecated declarations; that is not the shim's doing.
        .arg("-Wno-deprecated-declarations")
        .arg("-o")
        .arg(&output)
        .arg(shim_dir.join("shim.cpp"))
        .arg(format!("-I{}", shim_dir.display()));
    for dir in &kit.include_dirs {
        cmd.arg(format!("-I{}", dir.display()));
    }
    for dir in &kit.lib_dirs {
        cmd.arg(format!("-L{}", dir.display()));
    }
    // Every symbol resolved now rather than when the host loads the library.
    cmd.args([
        "-lnvinfer",
        "-lnvonnxparser",
        "-lcudart",
        "-Wl,--no-undefined",
    ]);

    // The command line without the environment cc gives the compiler, which Debug would print.
    let line = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    match cmd.output() {
        Ok(out) if out.status.success() => output,
        Ok(out) => panic!(
            "compiling the TensorRT shim failed ({}):\n{line}\n{}{}\n{skip_hint}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            panic!("cannot run the C++ compiler for the TensorRT shim ({line}): {e}; {skip_hint}")
        }
    }
}
