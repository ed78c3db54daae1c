//! The service's checks (`doctor --config FILE`): may this user open the serial and video
//! devices, is there room in the results and recordings folders, can the engine cache be
//! written. Each gives one pass, warn or fail line that says what to do. The decisions take
//! their look at the machine through [`Probe`], so that a test can hand them a refused
//! device or a full disk without root's permissions getting in the way.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::storage::{FreeSpace, MinFree, Space, format_bytes};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Fine.
    Pass,
    /// Works, but look at it.
    Warn,
    /// The service will not work as configured.
    Fail,
}

impl Level {
    /// Its tag in the report.
    pub fn tag(self) -> &'static str {
        match self {
            Level::Pass => "PASS",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked: `config`, `serial`, `video`, `disk`, `engine cache`.
    pub name: String,
    /// How it came out.
    pub level: Level,
    /// What was found.
    pub found: String,
    /// What to do about it, where anything is to be done.
    pub fix: Option<String>,
}

impl Check {
    fn new(name: &str, level: Level, found: String, fix: Option<String>) -> Check {
        Check {
            name: name.to_owned(),
            level,
            found,
            fix,
        }
    }

    /// The config file parsed as `run --config` reads it.
    pub fn config_ok(path: &Path) -> Check {
        Check::new(
            "config",
            Level::Pass,
            format!(
                "{} is valid (read as `run --config` reads it)",
                path.display()
            ),
            None,
        )
    }

    /// The config file was refused; `error` names the file and the key.
    pub fn config_refused(error: &str) -> Check {
        Check::new(
            "config",
            Level::Fail,
            error.to_owned(),
            Some("fix the key named above; `dinoedge run --help` says what each flag takes".into()),
        )
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:<12} {}", self.level.tag(), self.name, self.found)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n     {:<12} -> {fix}", "")?;
        }
        Ok(())
    }
}

/// A device the service opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// The edge's serial port (`dialout`).
    Serial,
    /// A V4L2 capture device (`video`).
    Video,
}

impl DeviceKind {
    /// The kind a path names: `/dev/video*` and `/dev/v4l/...` are video, anything else
    /// serial.
    pub fn of(path: &Path) -> DeviceKind {
        let video = path.starts_with("/dev/v4l")
            || path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("video"));
        if video {
            DeviceKind::Video
        } else {
            DeviceKind::Serial
        }
    }

    fn name(self) -> &'static str {
        match self {
            DeviceKind::Serial => "serial",
            DeviceKind::Video => "video",
        }
    }

    /// The group Debian and JetPack give such devices.
    fn usual_group(self) -> &'static str {
        match self {
            DeviceKind::Serial => "dialout",
            DeviceKind::Video => "video",
        }
    }
}

/// What the checks look at.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    /// Devices to open.
    pub devices: Vec<(DeviceKind, PathBuf)>,
    /// Folders written to, each with what goes there (`results`, `recordings`, `overlays`).
    pub folders: Vec<(String, PathBuf)>,
    /// The disk-space guard's threshold.
    pub min_free: MinFree,
    /// The TensorRT engine cache.
    pub engine_cache: PathBuf,
    /// Whether TensorRT can run here (an unwritable cache then fails rather than warns).
    pub tensorrt_usable: bool,
}

impl Targets {
    /// Adds the folder `dir`, where `what` goes; a folder already there gains `what` in its
    /// description instead (one check per folder).
    pub fn add_folder(&mut self, what: &str, dir: PathBuf) {
        match self.folders.iter_mut().find(|(_, d)| *d == dir) {
            Some((described, _)) => {
                described.push_str(", ");
                described.push_str(what);
            }
            None => self.folders.push((what.to_owned(), dir)),
        }
    }

    /// Adds the device at `path`.
    pub fn add_device(&mut self, kind: DeviceKind, path: &Path) {
        if !self.devices.iter().any(|(_, p)| p == path) {
            self.devices.push((kind, path.to_owned()));
        }
    }
}

/// How the checks look at the machine.
pub trait Probe {
    /// Opens `path` for reading and writing, as the service would, and closes it.
    fn open_read_write(&self, path: &Path) -> std::io::Result<()>;
    /// The name of the group that owns `path`, where known.
    fn group_of(&self, path: &Path) -> Option<String>;
    /// The space of the filesystem holding `dir`.
    fn space(&self, dir: &Path) -> std::io::Result<Space>;
    /// Creates and removes a file in `dir` (creating `dir` first when `create` is set).
    fn write_in(&self, dir: &Path, create: bool) -> std::io::Result<()>;
    /// Whether `dir` is an existing folder.
    fn is_dir(&self, dir: &Path) -> bool;
}

/// The machine itself; free space as the storage guards read it (`$DINOEDGE_FAKE_FREE_BYTES`
/// included).
pub struct System {
    space: Arc<dyn FreeSpace>,
}

impl Default for System {
    fn default() -> Self {
        System {
            space: crate::storage::space::system(),
        }
    }
}

impl Probe for System {
    fn open_read_write(&self, path: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        // Non-blocking: a serial port without carrier must not hang the doctor; no
        // controlling terminal taken.
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
            .open(path)
            .map(drop)
    }

    fn group_of(&self, path: &Path) -> Option<String> {
        use std::os::unix::fs::MetadataExt;
        let gid = std::fs::metadata(path).ok()?.gid();
        let groups = std::fs::read_to_string("/etc/group").ok()?;
        group_name(&groups, gid)
    }

    fn space(&self, dir: &Path) -> std::io::Result<Space> {
        self.space.space(dir)
    }

    fn write_in(&self, dir: &Path, create: bool) -> std::io::Result<()> {
        if create {
            std::fs::create_dir_all(dir)?;
        }
        tempfile::Builder::new()
            .prefix(".dinoedge-doctor-")
            .tempfile_in(dir)
            .map(drop)
    }

    fn is_dir(&self, dir: &Path) -> bool {
        dir.is_dir()
    }
}

/// The name of group `gid` in `/etc/group` text.
pub fn group_name(etc_group: &str, gid: u32) -> Option<String> {
    etc_group.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id: u32 = fields.nth(1)?.parse().ok()?;
        (id == gid && !name.is_empty()).then(|| name.to_owned())
    })
}

/// The user the checks run as, for the fixes they suggest.
fn user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "$USER".to_owned())
}

/// May this user open the device at `path`?
pub fn device(kind: DeviceKind, path: &Path, probe: &dyn Probe) -> Check {
    let name = kind.name();
    let shown = path.display();
    match probe.open_read_write(path) {
        Ok(()) => Check::new(
            name,
            Level::Pass,
            format!("{shown} opens for reading and writing"),
            None,
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => Check::new(
            name,
            Level::Warn,
            format!("{shown} is not there"),
            Some(format!(
                "connect the {} device, or correct the path (a udev rule gives it a stable name)",
                if kind == DeviceKind::Serial {
                    "edge's serial"
                } else {
                    "capture"
                }
            )),
        ),
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            let group = probe
                .group_of(path)
                .unwrap_or_else(|| kind.usual_group().to_owned());
            Check::new(
                name,
                Level::Fail,
                format!(
                    "{shown}: permission denied to this user (the device belongs to group {group})"
                ),
                Some(format!(
                    "add the service user to the {group} group: `sudo usermod -aG {group} {}`, then log in again or restart the service",
                    user()
                )),
            )
        }
        Err(e) => Check::new(
            name,
            Level::Warn,
            format!("{shown} could not be opened: {e}"),
            Some(
                "another program may hold it (ModemManager, a terminal): stop that program".into(),
            ),
        ),
    }
}

/// Is there room in `folder` (where `what` goes), above the guard's threshold, and may this
/// user write there?
pub fn disk(what: &str, folder: &Path, min_free: MinFree, probe: &dyn Probe) -> Check {
    let shown = folder.display();
    if !probe.is_dir(folder) {
        return Check::new(
            "disk",
            Level::Fail,
            format!("{shown} ({what}) does not exist"),
            Some(format!(
                "create it for the service user: `sudo install -d -o {} -m 0750 {shown}`",
                user()
            )),
        );
    }
    if let Err(e) = probe.write_in(folder, false) {
        return Check::new(
            "disk",
            Level::Fail,
            format!("{shown} ({what}) is not writable by this user: {e}"),
            Some(format!(
                "give it to the service user: `sudo chown {} {shown}`",
                user()
            )),
        );
    }
    let space = match probe.space(folder) {
        Ok(space) => space,
        Err(e) => {
            return Check::new(
                "disk",
                Level::Warn,
                format!("{shown} ({what}): the free space cannot be read: {e}"),
                Some(
                    "the disk-space guard will not be able to stop writing before the disk fills"
                        .into(),
                ),
            );
        }
    };
    let min = min_free.bytes(space.total);
    let free = format!(
        "{shown} ({what}): {} free of {}",
        format_bytes(space.available),
        format_bytes(space.total)
    );
    if min_free.is_off() {
        return Check::new(
            "disk",
            Level::Warn,
            format!("{free}; the disk-space guard is off (min_free 0)"),
            Some("set [storage] min_free (or --min-free) so that writing stops before the disk fills".into()),
        );
    }
    if space.available < min {
        Check::new(
            "disk",
            Level::Fail,
            format!("{free}, below the {} the guard keeps free: nothing would be written", format_bytes(min)),
            Some("free space there, or set a retention policy (keep_files, keep_size) for recordings and results".into()),
        )
    } else if space.available < min.saturating_mul(2) {
        Check::new(
            "disk",
            Level::Warn,
            format!("{free}, less than twice the {} the guard keeps free", format_bytes(min)),
            Some("free space there, or set a retention policy (keep_files, keep_size) for recordings and results".into()),
        )
    } else {
        Check::new(
            "disk",
            Level::Pass,
            format!(
                "{free}; the guard stops writing below {}",
                format_bytes(min)
            ),
            None,
        )
    }
}

/// Can the engine cache be created and written?
pub fn engine_cache(dir: &Path, tensorrt_usable: bool, probe: &dyn Probe) -> Check {
    let shown = dir.display();
    match probe.write_in(dir, true) {
        Ok(()) => Check::new(
            "engine cache",
            Level::Pass,
            format!("{shown} is writable"),
            None,
        ),
        Err(e) => Check::new(
            "engine cache",
            if tensorrt_usable {
                Level::Fail
            } else {
                Level::Warn
            },
            format!(
                "{shown} cannot be written: {e}{}",
                if tensorrt_usable {
                    ""
                } else {
                    " (only TensorRT engines are kept there, and TensorRT cannot run here)"
                }
            ),
            Some(format!(
                "give the folder to the service user (`sudo install -d -o {} {shown}`), or point \
                 DINOEDGE_ENGINE_CACHE at a folder it may write",
                user()
            )),
        ),
    }
}

/// Every check of `targets`: devices, then folders, then the engine cache.
pub fn run(targets: &Targets, probe: &dyn Probe) -> Vec<Check> {
    let mut checks: Vec<Check> = targets
        .devices
        .iter()
        .map(|(kind, path)| device(*kind, path, probe))
        .collect();
    checks.extend(
        targets
            .folders
            .iter()
            .map(|(what, folder)| disk(what, folder, targets.min_free, probe)),
    );
    checks.push(engine_cache(
        &targets.engine_cache,
        targets.tensorrt_usable,
        probe,
    ));
    checks
}

/// The folder a file goes into (`.` for a bare name).
pub fn folder_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}
