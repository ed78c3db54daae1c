//! Files written whole or not at all: a reader (or a crash) never sees half of one; and files
//! that hold patient data, created for their owner only.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path`, creating its folder: into a temporary `.partial-*` file beside it,
/// synced, then renamed into place, so `path` holds the old content or the new, never a part.
pub fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".partial-")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Creates `path` for writing, readable and writable by its owner only (mode 0600) from the
/// moment it exists, so that no other user can open it before a `chmod` would run; an existing
/// file is never opened or changed (`ErrorKind::AlreadyExists`). For files that hold patient
/// data: recordings, frames, keys.
pub fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}
