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

/// Why a file meant for its owner only was not opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenPrivateError {
    /// It could not be opened, or its metadata read.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Its group or others may read or write it: whatever it holds must be taken as known.
    #[error("readable by others (mode {0:03o})")]
    ReadableByOthers(u32),
}

/// Opens `path` for reading if only its owner may read or write it (no group or other bits),
/// checking the mode of the file opened, not of whatever the path names a moment later. For
/// files that hold secrets: keys, tokens.
pub fn open_private(path: &Path) -> Result<std::fs::File, OpenPrivateError> {
    use std::os::unix::fs::PermissionsExt;
    let file = std::fs::File::open(path)?;
    let mode = file.metadata()?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(OpenPrivateError::ReadableByOthers(mode));
    }
    Ok(file)
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
