//! The engine cache: serialized TensorRT engines with what they were built from and for, and
//! their gate's verdict.
//!
//! An engine is only valid for the TensorRT, CUDA and GPU that built it, so its key hashes those
//! with the graph's bytes and the build options. Each entry is two files, `KEY.engine` and
//! `KEY.json`, each written whole or not at all (a temporary file renamed into place, the JSON
//! last, so an entry without its JSON is never listed). Loading recomputes what it can: a
//! foreign entry (another TensorRT, CUDA or GPU) or a corrupt or truncated engine is refused
//! with the reason, never handed to TensorRT. The builder's timing cache is kept per TensorRT
//! version and GPU, so a rebuild is faster.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::TensorrtError;

/// The entry format this dinoedge writes and reads.
pub const FORMAT: u32 = 1;

/// Where engines are kept: `$DINOEDGE_ENGINE_CACHE`, else `$XDG_CACHE_HOME/dinoedge/engines`,
/// else `~/.cache/dinoedge/engines`.
pub fn default_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DINOEDGE_ENGINE_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("dinoedge").join("engines")
}

/// What an engine is valid for: the TensorRT, CUDA and GPU that built it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    /// TensorRT, e.g. `10.3.0`.
    pub tensorrt: String,
    /// The CUDA runtime, e.g. `12.6`.
    pub cuda: String,
    /// The GPU's name.
    pub gpu: String,
    /// Its compute capability, e.g. `8.7`.
    pub compute_capability: String,
    /// Its streaming multiprocessors (Orin AGX, NX and Nano share a name and capability, and an
    /// engine tuned for one is not meant for another).
    pub multiprocessors: i32,
}

impl Environment {
    /// `TensorRT 10.3.0, CUDA 12.6, Orin (sm_87, 16 SMs)`.
    pub fn summary(&self) -> String {
        format!(
            "TensorRT {}, CUDA {}, {} (sm_{}, {} SMs)",
            self.tensorrt,
            self.cuda,
            self.gpu,
            self.compute_capability.replace('.', ""),
            self.multiprocessors
        )
    }

    /// A file-name-safe form for the timing cache.
    fn slug(&self) -> String {
        let raw = format!(
            "trt{}-cuda{}-{}-sm{}-{}sms",
            self.tensorrt, self.cuda, self.gpu, self.compute_capability, self.multiprocessors
        );
        raw.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    }
}

/// How an engine was built.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildSettings {
    /// Frames per run.
    pub batch: usize,
    /// The builder's optimisation level (`None`: TensorRT's default).
    pub opt_level: Option<i32>,
    /// The workspace limit in MiB (`None`: TensorRT's default).
    pub workspace_mib: Option<u64>,
    /// `built` (by dinoedge through the shim) or `trtexec` (imported).
    pub source: String,
}

/// The gate's figures for one output part.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartCosine {
    /// The output (`last_hidden_state`, `block_3`).
    pub output: String,
    /// `cls` or `patch` (the registers are not gated: no head reads them).
    pub part: String,
    /// The lowest cosine over the frames.
    pub min: f64,
    /// The mean cosine.
    pub mean: f64,
}

/// Whether an engine may be used: its outputs on real frames against the CPU reference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Whether every part's lowest cosine reached the threshold.
    pub passed: bool,
    /// The threshold.
    pub threshold: f64,
    /// Frames compared.
    pub frames: usize,
    /// Where they came from.
    pub frames_from: Vec<String>,
    /// Each output part's figures.
    pub cosines: Vec<PartCosine>,
    /// One line: why it failed, or what it reached.
    pub summary: String,
}

/// Everything known about a cached engine (`KEY.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EngineMeta {
    /// [`FORMAT`].
    pub format: u32,
    /// The entry's key.
    pub key: String,
    /// The content fingerprint of the model's weights (what `auto` matches on), if built from
    /// a model folder.
    pub model_fingerprint: Option<String>,
    /// Which weights, for people.
    pub weights: String,
    /// The hash of the ONNX graph built from (see [`crate::engine::graph_hash`]; a file's bytes).
    pub graph_hash: String,
    /// The graph file, if built from one.
    pub graph_file: Option<String>,
    /// Input height and width.
    pub size: [usize; 2],
    /// `fp32`, `fp16` or `int8`.
    pub precision: String,
    /// The engine's outputs, in the graph's order.
    pub outputs: Vec<String>,
    /// How it was built.
    pub build: BuildSettings,
    /// What it is valid for.
    pub environment: Environment,
    /// The engine file's length.
    pub engine_bytes: u64,
    /// SHA-256 of the engine file.
    pub engine_sha256: String,
    /// Seconds since the Unix epoch at which it was stored.
    pub created_unix: u64,
    /// How long the build took.
    pub build_seconds: f64,
    /// The gate's verdict.
    pub verdict: Verdict,
}

impl EngineMeta {
    /// Why this entry cannot be used in `env`, or `None`.
    pub fn foreign_to(&self, env: &Environment) -> Option<String> {
        (self.environment != *env).then(|| {
            format!(
                "built for {}, this machine has {}",
                self.environment.summary(),
                env.summary()
            )
        })
    }
}

/// The key of an engine: what it was built from (the graph, and the weights: a graph file with
/// external data could otherwise hash alike for two models), how, and for what.
pub fn key(
    graph_hash: &str,
    model_fingerprint: &str,
    build: &BuildSettings,
    precision: &str,
    env: &Environment,
) -> String {
    let mut h = Sha256::new();
    for part in [
        graph_hash,
        model_fingerprint,
        precision,
        &build.batch.to_string(),
        &format!("{:?}", build.opt_level),
        &format!("{:?}", build.workspace_mib),
        &build.source,
        &env.tensorrt,
        &env.cuda,
        &env.gpu,
        &env.compute_capability,
        &env.multiprocessors.to_string(),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex(&h.finalize(), 20)
}

fn hex(bytes: &[u8], digits: usize) -> String {
    let mut s: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    s.truncate(digits);
    s
}

/// SHA-256 of `bytes`, all 64 hex digits.
pub fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes), 64)
}

/// A cache folder.
#[derive(Clone, Debug)]
pub struct EngineCache {
    dir: PathBuf,
}

/// An entry as listed: its metadata, or why it could not be read.
#[derive(Clone, Debug)]
pub enum Listed {
    /// A readable entry.
    Entry(Box<EngineMeta>),
    /// A `KEY.json` that could not be read (or was written by a newer dinoedge), and why.
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Hex digits of a key.
const KEY_DIGITS: usize = 20;

/// Whether `name` is an entry's metadata file name (`KEY.json`): only those are listed, read or
/// ever removed, so a cache pointed at a folder holding other files leaves them alone.
fn entry_key(name: &str) -> Option<&str> {
    name.strip_suffix(".json")
        .filter(|k| k.len() == KEY_DIGITS && k.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl EngineCache {
    /// The cache in `dir` (created when first written).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        EngineCache { dir: dir.into() }
    }

    /// Its folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn engine_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.engine"))
    }

    fn meta_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// The timing cache for `env`.
    pub fn timing_cache_path(&self, env: &Environment) -> PathBuf {
        self.dir.join(format!("timing-{}.cache", env.slug()))
    }

    /// The timing cache for `env`, or nothing (a missing or unreadable one only slows a build).
    pub fn timing_cache(&self, env: &Environment) -> Vec<u8> {
        std::fs::read(self.timing_cache_path(env)).unwrap_or_default()
    }

    /// Keeps the builder's timing cache for `env`.
    pub fn store_timing_cache(&self, env: &Environment, bytes: &[u8]) -> Result<(), TensorrtError> {
        if bytes.is_empty() {
            return Ok(());
        }
        write_atomically(&self.timing_cache_path(env), bytes)
    }

    /// Stores an engine and its metadata (the engine's length and hash are filled in here).
    pub fn store(&self, meta: &mut EngineMeta, engine: &[u8]) -> Result<PathBuf, TensorrtError> {
        meta.engine_bytes = engine.len() as u64;
        meta.engine_sha256 = sha256(engine);
        let engine_path = self.engine_path(&meta.key);
        write_atomically(&engine_path, engine)?;
        self.store_meta(meta)?;
        Ok(engine_path)
    }

    /// Rewrites an entry's metadata (e.g. its verdict).
    pub fn store_meta(&self, meta: &EngineMeta) -> Result<(), TensorrtError> {
        let json = serde_json::to_vec_pretty(meta).map_err(|e| TensorrtError::Cache {
            path: self.meta_path(&meta.key),
            reason: e.to_string(),
        })?;
        write_atomically(&self.meta_path(&meta.key), &json)
    }

    /// Every entry, in key order (none if the folder does not exist).
    pub fn list(&self) -> Result<Vec<Listed>, TensorrtError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(TensorrtError::Cache {
                    path: self.dir.clone(),
                    reason: e.to_string(),
                });
            }
        };
        let mut paths: Vec<(PathBuf, String)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name();
                let key = entry_key(name.to_str()?)?.to_owned();
                Some((e.path(), key))
            })
            .collect();
        paths.sort();
        Ok(paths
            .into_iter()
            .map(|(path, key)| match read_meta(&path) {
                Ok(meta) if meta.key == key => Listed::Entry(Box::new(meta)),
                Ok(meta) => Listed::Unreadable {
                    path,
                    reason: format!("it names key {}, not its own", meta.key),
                },
                Err(reason) => Listed::Unreadable { path, reason },
            })
            .collect())
    }

    /// The entry `key`'s metadata.
    pub fn meta(&self, key: &str) -> Result<EngineMeta, TensorrtError> {
        let path = self.meta_path(key);
        let meta = read_meta(&path).map_err(|reason| TensorrtError::Cache {
            path: path.clone(),
            reason,
        })?;
        if meta.key != key {
            return Err(TensorrtError::Cache {
                path,
                reason: format!("it names key {}, not its own", meta.key),
            });
        }
        Ok(meta)
    }

    /// The engine bytes of `meta`'s entry, checked: usable in `env`, the whole file, unchanged.
    pub fn engine_bytes(
        &self,
        meta: &EngineMeta,
        env: &Environment,
    ) -> Result<Vec<u8>, TensorrtError> {
        let path = self.engine_path(&meta.key);
        if let Some(reason) = meta.foreign_to(env) {
            return Err(TensorrtError::Refused { path, reason });
        }
        let bytes = std::fs::read(&path).map_err(|e| TensorrtError::Cache {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if bytes.len() as u64 != meta.engine_bytes {
            return Err(TensorrtError::Refused {
                path,
                reason: format!(
                    "truncated or changed: {} bytes, {} were stored",
                    bytes.len(),
                    meta.engine_bytes
                ),
            });
        }
        if sha256(&bytes) != meta.engine_sha256 {
            return Err(TensorrtError::Refused {
                path,
                reason: "corrupt: its SHA-256 is not the one stored with it".into(),
            });
        }
        Ok(bytes)
    }

    /// Removes the entries `remove` picks; returns the keys removed.
    pub fn remove_where(
        &self,
        mut remove: impl FnMut(&Listed) -> bool,
    ) -> Result<Vec<String>, TensorrtError> {
        let mut removed = Vec::new();
        for listed in self.list()? {
            if !remove(&listed) {
                continue;
            }
            // Only listed files are removed, and a listed file's name is its key (see
            // `entry_key`), so nothing outside the cache or not made by it is touched.
            let meta_path = match &listed {
                Listed::Entry(meta) => self.meta_path(&meta.key),
                Listed::Unreadable { path, .. } => path.clone(),
            };
            let Some(key) = meta_path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(entry_key)
                .map(str::to_owned)
            else {
                continue;
            };
            // The JSON goes first, so that a half-removed entry is never listed as whole.
            for path in [meta_path, self.engine_path(&key)] {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(TensorrtError::Cache {
                            path,
                            reason: e.to_string(),
                        });
                    }
                }
            }
            removed.push(key);
        }
        Ok(removed)
    }
}

impl EngineCache {
    /// Removes what interrupted builds left behind (`.graph-*` folders, `.partial-*` files)
    /// untouched for longer than `older_than`: a build takes minutes, so an old one is dead,
    /// while a build still running is left alone. Returns what was removed.
    pub fn remove_stale_scratch(
        &self,
        older_than: std::time::Duration,
    ) -> Result<Vec<PathBuf>, TensorrtError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(TensorrtError::Cache {
                    path: self.dir.clone(),
                    reason: e.to_string(),
                });
            }
        };
        let now = std::time::SystemTime::now();
        let mut removed = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            if !(name.starts_with(".graph-") || name.starts_with(".partial-")) {
                continue;
            }
            let path = entry.path();
            let age = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok());
            if age.is_none_or(|a| a < older_than) {
                continue;
            }
            let done = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            done.map_err(|e| TensorrtError::Cache {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            removed.push(path);
        }
        removed.sort();
        Ok(removed)
    }
}

fn read_meta(path: &Path) -> Result<EngineMeta, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let meta: EngineMeta =
        serde_json::from_slice(&bytes).map_err(|e| format!("not an engine entry: {e}"))?;
    if meta.format != FORMAT {
        return Err(format!(
            "entry format {}, this dinoedge reads {FORMAT}",
            meta.format
        ));
    }
    Ok(meta)
}

/// Writes `bytes` to `path` whole or not at all ([`crate::files::write_whole`]).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), TensorrtError> {
    crate::files::write_whole(path, bytes).map_err(|e| TensorrtError::Cache {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Environment {
        Environment {
            tensorrt: "10.3.0".into(),
            cuda: "12.6".into(),
            gpu: "Orin".into(),
            compute_capability: "8.7".into(),
            multiprocessors: 16,
        }
    }

    fn settings() -> BuildSettings {
        BuildSettings {
            batch: 1,
            opt_level: None,
            workspace_mib: None,
            source: "built".into(),
        }
    }

    #[test]
    fn the_key_is_stable_and_changes_with_everything_an_engine_depends_on() {
        let base = key("3f2a", "w", &settings(), "fp16", &env());
        assert_eq!(base, key("3f2a", "w", &settings(), "fp16", &env()));
        assert_eq!(base.len(), 20);
        let others = [
            key("3f2b", "w", &settings(), "fp16", &env()),
            key("3f2a", "w", &settings(), "int8", &env()),
            key(
                "3f2a",
                "w",
                &BuildSettings {
                    batch: 2,
                    ..settings()
                },
                "fp16",
                &env(),
            ),
            key(
                "3f2a",
                "w",
                &BuildSettings {
                    opt_level: Some(5),
                    ..settings()
                },
                "fp16",
                &env(),
            ),
            key(
                "3f2a",
                "w",
                &BuildSettings {
                    workspace_mib: Some(512),
                    ..settings()
                },
                "fp16",
                &env(),
            ),
            key(
                "3f2a",
                "w",
                &BuildSettings {
                    source: "trtexec".into(),
                    ..settings()
                },
                "fp16",
                &env(),
            ),
            key(
                "3f2a",
                "w",
                &settings(),
                "fp16",
                &Environment {
                    tensorrt: "10.3.1".into(),
                    ..env()
                },
            ),
            key(
                "3f2a",
                "w",
                &settings(),
                "fp16",
                &Environment {
                    cuda: "12.8".into(),
                    ..env()
                },
            ),
            key(
                "3f2a",
                "w",
                &settings(),
                "fp16",
                &Environment {
                    gpu: "Thor".into(),
                    ..env()
                },
            ),
            key(
                "3f2a",
                "w",
                &settings(),
                "fp16",
                &Environment {
                    multiprocessors: 8,
                    ..env()
                },
            ),
            key("3f2a", "v", &settings(), "fp16", &env()),
            key(
                "3f2a",
                "w",
                &settings(),
                "fp16",
                &Environment {
                    compute_capability: "8.9".into(),
                    ..env()
                },
            ),
        ];
        for (i, other) in others.iter().enumerate() {
            assert_ne!(&base, other, "case {i}");
        }
        // Parts are length-prefixed: moving a character from one part to the next is another key.
        assert_ne!(
            key("ab", "cw", &settings(), "fp16", &env()),
            key("abc", "w", &settings(), "fp16", &env())
        );
    }

    #[test]
    fn only_old_leftovers_of_interrupted_builds_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let cache = EngineCache::new(dir.path());
        std::fs::create_dir_all(dir.path().join(".graph-abc")).unwrap();
        std::fs::write(dir.path().join(".graph-abc/graph.onnx"), b"x").unwrap();
        std::fs::write(dir.path().join(".partial-1"), b"x").unwrap();
        std::fs::write(dir.path().join("0123456789abcdef0123.json"), b"{}").unwrap();
        // Fresh leftovers may belong to a build in progress.
        assert!(
            cache
                .remove_stale_scratch(std::time::Duration::from_secs(3600))
                .unwrap()
                .is_empty()
        );
        let removed = cache
            .remove_stale_scratch(std::time::Duration::ZERO)
            .unwrap();
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(dir.path().join("0123456789abcdef0123.json").exists());
    }

    #[test]
    fn writes_are_whole_and_leave_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("x.engine");
        write_atomically(&path, b"first").unwrap();
        write_atomically(&path, b"second, longer").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second, longer");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("x.engine")]);
    }
}
