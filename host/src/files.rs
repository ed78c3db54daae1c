//! Files written whole or not at all: a reader (or a crash) never sees half of one.

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
