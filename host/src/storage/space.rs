//! Reading a filesystem's free space: `statvfs` in production; a fixed figure from
//! `$DINOEDGE_FAKE_FREE_BYTES` for tests of the whole binary (no test fills a real disk); any
//! closure in library tests.

use std::path::Path;
use std::sync::Arc;

use super::guard::Space;

/// The environment variable that replaces the free space every guard and `doctor` read (the
/// filesystem's size stays the real one). For tests only, like `DINOEDGE_SYSFS_ROOT`.
pub const FAKE_FREE_ENV: &str = "DINOEDGE_FAKE_FREE_BYTES";

/// Where the guard reads free space from.
pub trait FreeSpace: Send + Sync {
    /// The space of the filesystem that holds `dir`.
    fn space(&self, dir: &Path) -> std::io::Result<Space>;
}

impl<F> FreeSpace for F
where
    F: Fn(&Path) -> std::io::Result<Space> + Send + Sync,
{
    fn space(&self, dir: &Path) -> std::io::Result<Space> {
        self(dir)
    }
}

/// The filesystem's own figures, from `statvfs`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Statvfs;

impl FreeSpace for Statvfs {
    fn space(&self, dir: &Path) -> std::io::Result<Space> {
        let s = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
        // The C types are `unsigned long` and `fsblkcnt_t`: 64 bits on the Jetson and here.
        let unit = s.fragment_size() as u64;
        Ok(Space {
            available: (s.blocks_available() as u64).saturating_mul(unit),
            total: (s.blocks() as u64).saturating_mul(unit),
        })
    }
}

/// `statvfs`, with the free space replaced by a fixed figure.
#[derive(Debug, Clone, Copy)]
pub struct FakeFree(pub u64);

impl FreeSpace for FakeFree {
    fn space(&self, dir: &Path) -> std::io::Result<Space> {
        let total = Statvfs.space(dir).map_or(self.0, |s| s.total.max(self.0));
        Ok(Space {
            available: self.0,
            total,
        })
    }
}

/// What the guards of this process read: `statvfs`, or the figure in
/// `$DINOEDGE_FAKE_FREE_BYTES` (a size, e.g. `100MiB`) when it is set.
pub fn system() -> Arc<dyn FreeSpace> {
    match std::env::var(FAKE_FREE_ENV)
        .ok()
        .filter(|v| !v.is_empty())
        .and_then(|v| super::units::parse_size(&v).ok())
    {
        Some(bytes) => Arc::new(FakeFree(bytes)),
        None => Arc::new(Statvfs),
    }
}
