//! Finding a Hugging Face repo id (`facebook/dinov3-vits16-pretrain-lvd1689m`) in the local hub
//! cache, offline: `models--ORG--NAME/refs/REVISION` names a commit, whose files are in
//! `models--ORG--NAME/snapshots/COMMIT/`. Nothing is downloaded.

use std::path::{Path, PathBuf};

use super::BackboneError;

/// A Hugging Face hub cache folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubCache {
    root: PathBuf,
}

impl HubCache {
    /// The cache at `root` (the folder holding `models--*`).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        HubCache { root: root.into() }
    }

    /// The cache the Hugging Face libraries use: `HF_HUB_CACHE`, else `HF_HOME/hub`, else
    /// `~/.cache/huggingface/hub`; `None` when none of these can be named.
    pub fn from_env() -> Option<Self> {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        var("HF_HUB_CACHE")
            .or_else(|| var("HF_HOME").map(|h| h.join("hub")))
            .or_else(|| var("HOME").map(|h| h.join(".cache/huggingface/hub")))
            .map(HubCache::at)
    }

    /// Where the cache is.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The snapshot folder of `repo` (`ORG/NAME`, optionally `@REVISION`: a branch or tag
    /// under `refs/`, or a commit hash; `main` by default).
    pub fn snapshot(&self, repo: &str) -> Result<PathBuf, BackboneError> {
        let (id, revision) = repo.split_once('@').unwrap_or((repo, "main"));
        let not_here = |reason: String| BackboneError::NotInHubCache {
            repo: repo.to_string(),
            cache: self.root.clone(),
            reason,
        };
        // A revision or commit becomes a path component: nothing that could leave the folder.
        let plain = |s: &str| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        };
        if !plain(revision) {
            return Err(not_here(format!("{revision:?} is not a revision name")));
        }
        let repo_dir = self.root.join(format!("models--{}", id.replace('/', "--")));
        if !repo_dir.is_dir() {
            return Err(not_here("the repository is not in the cache".into()));
        }
        let refs = repo_dir.join("refs").join(revision);
        let commit = match std::fs::read_to_string(&refs) {
            Ok(c) => c.trim().to_string(),
            // Not a branch or tag: perhaps a commit itself.
            Err(_) => revision.to_string(),
        };
        let snapshot = repo_dir.join("snapshots").join(&commit);
        if !plain(&commit) || !snapshot.is_dir() {
            return Err(not_here(format!(
                "no snapshot for revision {revision:?} (looked for {})",
                snapshot.display()
            )));
        }
        Ok(snapshot)
    }
}

/// `ORG/NAME@COMMIT` (the commit shortened to 12 characters) when `dir` is a snapshot folder
/// of a hub cache (`.../models--ORG--NAME/snapshots/COMMIT`), else `None`.
pub fn repo_of_snapshot(dir: &Path) -> Option<String> {
    let commit = dir.file_name()?.to_str()?;
    let snapshots = dir.parent()?;
    if snapshots.file_name()? != "snapshots" {
        return None;
    }
    let repo = snapshots
        .parent()?
        .file_name()?
        .to_str()?
        .strip_prefix("models--")?;
    let (org, name) = repo.split_once("--")?;
    let short: String = commit.chars().take(12).collect();
    Some(format!("{org}/{name}@{short}"))
}

/// Whether a `--model` argument reads as a repo id (`ORG/NAME[@REVISION]`) rather than a
/// folder: exactly one slash, no leading `.`, `/` or `~`, and no such folder exists.
pub fn looks_like_repo_id(arg: &Path) -> bool {
    let Some(s) = arg.to_str() else {
        return false;
    };
    let id = s.split_once('@').map_or(s, |(id, _)| id);
    !arg.exists()
        && id.matches('/').count() == 1
        && !id.starts_with(['.', '/', '~'])
        && !id.ends_with('/')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
}

/// A `--model` argument as a folder: itself, or a repo id's snapshot in `cache`.
pub fn resolve_model_arg(arg: &Path, cache: Option<&HubCache>) -> Result<PathBuf, BackboneError> {
    if !looks_like_repo_id(arg) {
        return Ok(arg.to_path_buf());
    }
    let repo = arg.to_string_lossy();
    match cache {
        Some(cache) => cache.snapshot(&repo),
        None => Err(BackboneError::NotInHubCache {
            repo: repo.into_owned(),
            cache: PathBuf::new(),
            reason: "no cache folder: set HF_HUB_CACHE or HF_HOME".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const REPO: &str = "facebook/dinov3-vits16-pretrain-lvd1689m";

    /// A cache holding `REPO` at two commits, `main` naming the second.
    fn cache(dir: &Path) -> HubCache {
        let repo = dir.join("models--facebook--dinov3-vits16-pretrain-lvd1689m");
        for commit in ["aaa111", "bbb222"] {
            std::fs::create_dir_all(repo.join("snapshots").join(commit)).unwrap();
        }
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "bbb222\n").unwrap();
        HubCache::at(dir)
    }

    #[test]
    fn a_repo_id_finds_the_snapshot_its_ref_names() {
        let tmp = tempfile::tempdir().unwrap();
        let c = cache(tmp.path());
        let snap = resolve_model_arg(Path::new(REPO), Some(&c)).unwrap();
        assert!(snap.ends_with("snapshots/bbb222"), "{}", snap.display());
        assert_eq!(repo_of_snapshot(&snap), Some(format!("{REPO}@bbb222")));
        assert_eq!(repo_of_snapshot(tmp.path()), None);
        let pinned = resolve_model_arg(Path::new(&format!("{REPO}@aaa111")), Some(&c)).unwrap();
        assert!(pinned.ends_with("snapshots/aaa111"));
    }

    #[test]
    fn what_is_not_cached_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let c = cache(tmp.path());
        let e = resolve_model_arg(Path::new("facebook/dinov3-vitl16"), Some(&c)).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("facebook/dinov3-vitl16"), "{text}");
        assert!(text.contains("not in the cache"), "{text}");
        assert!(text.contains("huggingface-cli download"), "{text}");
        let e = resolve_model_arg(Path::new(&format!("{REPO}@ccc333")), Some(&c)).unwrap_err();
        assert!(e.to_string().contains("ccc333"), "{e}");
        assert!(resolve_model_arg(Path::new(&format!("{REPO}@../x")), Some(&c)).is_err());
        assert!(resolve_model_arg(Path::new(&format!("{REPO}@..")), Some(&c)).is_err());
        assert!(resolve_model_arg(Path::new(&format!("{REPO}@.")), Some(&c)).is_err());
        assert!(resolve_model_arg(Path::new(REPO), None).is_err());
    }

    #[test]
    fn weights_from_the_cache_are_named_by_repo_and_commit() {
        let tmp = tempfile::tempdir().unwrap();
        let c = cache(tmp.path());
        let snap = c.snapshot(REPO).unwrap();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures/tiny_mlp");
        for f in ["config.json", "model.safetensors"] {
            std::fs::copy(fixture.join(f), snap.join(f)).unwrap();
        }
        let model = crate::backbone::ModelDir::load(&snap).unwrap();
        let label = model.weights_label();
        assert!(
            label.starts_with(&format!("weights {REPO}@bbb222 (crc32:")),
            "{label}"
        );
        // The same weights from a plain folder are named by the folder.
        let plain = crate::backbone::ModelDir::load(&fixture).unwrap();
        assert!(
            plain.weights_label().contains("tiny_mlp"),
            "{}",
            plain.weights_label()
        );
        assert_eq!(
            crate::backbone::ModelDir::tiny_random(32, 1, 0).weights_label(),
            "random weights"
        );
    }

    #[test]
    fn folders_stay_folders() {
        let tmp = tempfile::tempdir().unwrap();
        // An existing folder shaped like a repo id is a folder.
        let org = tmp.path().join("org");
        std::fs::create_dir_all(org.join("name")).unwrap();
        assert!(!looks_like_repo_id(&org.join("name")));
        for folder in [
            "./models/vits16",
            "/opt/models/vits16",
            "target/vits16/",
            "vits16",
        ] {
            assert!(!looks_like_repo_id(Path::new(folder)), "{folder}");
            assert_eq!(
                resolve_model_arg(Path::new(folder), None).unwrap(),
                Path::new(folder)
            );
        }
        assert!(looks_like_repo_id(Path::new(REPO)));
    }
}
