//! The look-ups behind `doctor`: files, `/proc`, and the programs NVIDIA ships (`nvidia-smi`,
//! `nvpmodel`), each failing soft: what cannot be found is reported missing, never an error.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Gpu, Jetson, Library, SerialDevice};

/// The libraries looked for: what each is for and its file names, newest first.
const LIBRARIES: &[(&str, &[&str])] = &[
    ("CUDA driver", &["libcuda.so.1", "libcuda.so"]),
    ("CUDA runtime", &["libcudart.so.13", "libcudart.so.12"]),
    ("NVRTC", &["libnvrtc.so.13", "libnvrtc.so.12"]),
    ("cuBLAS", &["libcublas.so.13", "libcublas.so.12"]),
    ("cuDNN", &["libcudnn.so.9"]),
    ("TensorRT", &["libnvinfer.so.10"]),
];

/// Folders where CUDA, JetPack and distributions put these libraries, besides the linker's
/// cache and `LD_LIBRARY_PATH`.
const LIBRARY_DIRS: &[&str] = &[
    "/usr/local/cuda/lib64",
    "/usr/local/cuda/targets/x86_64-linux/lib",
    "/usr/local/cuda/targets/aarch64-linux/lib",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu/tegra",
    "/usr/lib/aarch64-linux-gnu/nvidia",
    "/opt/nvidia/l4t-gpu-libs/openrm",
    "/usr/lib64",
];

/// The CPU's model name.
pub(crate) fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    parse_cpu_model(&info).unwrap_or_else(|| "unknown".to_owned())
}

/// The model name in `/proc/cpuinfo` text (x86's `model name`; on Arm, `Hardware` or the
/// `CPU part`).
pub(super) fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    let field = |key: &str| {
        cpuinfo.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key && !v.trim().is_empty()).then(|| v.trim().to_owned())
        })
    };
    field("model name")
        .or_else(|| field("Hardware"))
        .or_else(|| field("CPU part").map(|p| format!("Arm CPU part {p}")))
}

/// The SIMD features tract's kernels use, as this CPU offers them.
pub(super) fn simd() -> Vec<&'static str> {
    let mut found = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        for (name, present) in [
            ("sse4.1", std::arch::is_x86_feature_detected!("sse4.1")),
            ("avx", std::arch::is_x86_feature_detected!("avx")),
            ("avx2", std::arch::is_x86_feature_detected!("avx2")),
            ("fma", std::arch::is_x86_feature_detected!("fma")),
            ("f16c", std::arch::is_x86_feature_detected!("f16c")),
            ("avx512f", std::arch::is_x86_feature_detected!("avx512f")),
        ] {
            if present {
                found.push(name);
            }
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        for (name, present) in [
            ("neon", std::arch::is_aarch64_feature_detected!("neon")),
            ("fp16", std::arch::is_aarch64_feature_detected!("fp16")),
            (
                "dotprod",
                std::arch::is_aarch64_feature_detected!("dotprod"),
            ),
            ("i8mm", std::arch::is_aarch64_feature_detected!("i8mm")),
        ] {
            if present {
                found.push(name);
            }
        }
    }
    found
}

/// Where each library is, if anywhere.
pub(super) fn libraries() -> Vec<Library> {
    let cache = Command::new("ldconfig")
        .arg("-p")
        .output()
        .or_else(|_| Command::new("/sbin/ldconfig").arg("-p").output())
        .map(|o| parse_ldconfig(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::var_os("LD_LIBRARY_PATH")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    dirs.extend(LIBRARY_DIRS.iter().map(PathBuf::from));
    LIBRARIES
        .iter()
        .map(|(name, sonames)| Library {
            name,
            sonames: sonames.to_vec(),
            found: sonames.iter().find_map(|soname| {
                dirs.iter()
                    .map(|d| d.join(soname))
                    .find(|p| p.exists())
                    .or_else(|| {
                        cache
                            .iter()
                            .find(|(n, _)| n == soname)
                            .map(|(_, p)| p.clone())
                    })
            }),
        })
        .collect()
}

/// The (soname, path) pairs of `ldconfig -p` output.
pub fn parse_ldconfig(text: &str) -> Vec<(String, PathBuf)> {
    text.lines()
        .filter_map(|l| {
            let (left, path) = l.split_once("=>")?;
            let soname = left.split_whitespace().next()?;
            Some((soname.to_owned(), PathBuf::from(path.trim())))
        })
        .collect()
}

/// The first GPU as `nvidia-smi` reports it, or why there is none.
pub(super) fn gpu() -> Result<Gpu, String> {
    let out = Command::new("nvidia-smi")
        .args([
            "--query-gpu=name,compute_cap,memory.total,driver_version",
            "--format=csv,noheader,nounits",
        ])
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                "no NVIDIA driver here (nvidia-smi is not installed)".to_owned()
            }
            _ => format!("nvidia-smi could not run: {e}"),
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().next().unwrap_or("no output");
        return Err(format!("nvidia-smi failed: {first}"));
    }
    parse_nvidia_smi(&String::from_utf8_lossy(&out.stdout))
        .ok_or_else(|| "nvidia-smi listed no GPU".to_owned())
}

/// The first line of `nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version
/// --format=csv,noheader,nounits`.
pub fn parse_nvidia_smi(text: &str) -> Option<Gpu> {
    let line = text.lines().find(|l| !l.trim().is_empty())?;
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    let [name, cc, memory, driver] = fields.as_slice() else {
        return None;
    };
    Some(Gpu {
        name: (*name).to_owned(),
        compute_capability: (*cc).to_owned(),
        memory_mib: memory.parse().ok(),
        driver_version: (*driver).to_owned(),
    })
}

/// The folder holding the toolkit headers tract-cuda compiles against (`cuda_fp16.h`).
pub(super) fn cuda_headers() -> Option<PathBuf> {
    let mut roots: Vec<PathBuf> = ["CUDA_HOME", "CUDA_PATH"]
        .iter()
        .filter_map(std::env::var_os)
        .map(|v| PathBuf::from(v).join("include"))
        .collect();
    roots.extend(
        [
            "/usr/local/cuda/include",
            "/usr/local/cuda/targets/x86_64-linux/include",
            "/usr/local/cuda/targets/aarch64-linux/include",
            "/usr/include",
        ]
        .iter()
        .map(PathBuf::from),
    );
    roots.into_iter().find(|r| r.join("cuda_fp16.h").exists())
}

/// The Jetson's release, board and power mode, where this is one.
pub(super) fn jetson() -> Option<Jetson> {
    let release = std::fs::read_to_string("/etc/nv_tegra_release").ok()?;
    let model = std::fs::read_to_string("/proc/device-tree/model")
        .ok()
        .map(|m| m.trim_end_matches('\0').trim().to_owned());
    let power_mode = Command::new("nvpmodel")
        .arg("-q")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find(|l| l.contains("Power Mode"))
                .map(|l| l.trim().to_owned())
        });
    Some(Jetson {
        model,
        l4t: parse_nv_tegra_release(&release).unwrap_or_else(|| release.trim().to_owned()),
        power_mode,
    })
}

/// "R36 (release), REVISION: 4.3" from `/etc/nv_tegra_release`'s first line.
pub fn parse_nv_tegra_release(text: &str) -> Option<String> {
    let line = text.lines().next()?.trim().trim_start_matches('#').trim();
    let mut parts = line.split(',');
    let release = parts.next()?.trim();
    let revision = parts.next()?.trim();
    release
        .starts_with('R')
        .then(|| format!("{release}, {revision}"))
}

/// Serial devices an edge may sit behind, and whether this user may open them.
pub(super) fn serial_devices() -> Vec<SerialDevice> {
    let Ok(entries) = std::fs::read_dir("/dev") else {
        return Vec::new();
    };
    let mut found: Vec<SerialDevice> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                ["ttyACM", "ttyUSB", "ttyTHS"]
                    .iter()
                    .any(|prefix| n.starts_with(prefix))
            })
        })
        .map(|path| SerialDevice {
            accessible: may_open(&path),
            path,
        })
        .collect();
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found
}

/// Whether this user may read and write `path` (asked of the kernel, nothing is opened).
fn may_open(path: &Path) -> bool {
    nix::unistd::access(
        path,
        nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK,
    )
    .is_ok()
}
