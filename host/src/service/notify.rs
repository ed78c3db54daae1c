//! systemd's notification protocol (`sd_notify(3)`): newline-separated `KEY=VALUE` lines in
//! one datagram to the Unix socket named by `$NOTIFY_SOCKET`, a path or, starting with `@`, an
//! abstract name. Written by hand: a datagram and two environment variables do not need a
//! crate. The parsing is pure; only [`Notifier`] does I/O.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::time::Duration;

/// How long a notification may wait for room in systemd's queue: it is dropped after that
/// rather than holding up the output stage that sends it.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Why notifications cannot be sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// `$NOTIFY_SOCKET` names neither a path nor an abstract socket.
    #[error("NOTIFY_SOCKET={0:?} is neither an absolute path nor an abstract name (@name)")]
    Unsupported(OsString),
    /// The socket could not be made or written to.
    #[error("the notification socket {socket:?}: {source}")]
    Io {
        /// `$NOTIFY_SOCKET` as given.
        socket: OsString,
        /// What failed.
        source: std::io::Error,
    },
}

/// Where `$NOTIFY_SOCKET` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A socket file.
    Path(PathBuf),
    /// A Linux abstract socket: the name after the `@`.
    Abstract(Vec<u8>),
}

/// Reads `$NOTIFY_SOCKET`'s value; `None` for a form this does not speak (e.g. `vsock:`).
pub fn parse_address(value: &OsStr) -> Option<Address> {
    let bytes = value.as_bytes();
    if bytes.starts_with(b"/") {
        return Some(Address::Path(PathBuf::from(value)));
    }
    match bytes.strip_prefix(b"@") {
        Some(name) if !name.is_empty() => Some(Address::Abstract(name.to_vec())),
        _ => None,
    }
}

/// The watchdog's limit from `$WATCHDOG_USEC`, if it is meant for this process: systemd sets
/// `$WATCHDOG_PID` to the main process, and a child that inherited the variables must not
/// pet on its behalf. `None` when the watchdog is off, or a value is not a positive number.
pub fn watchdog_limit(usec: Option<&OsStr>, pid: Option<&OsStr>, own_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.to_str()?.trim().parse().ok()?;
    if usec == 0 {
        return None;
    }
    if let Some(pid) = pid {
        let pid: u32 = pid.to_str()?.trim().parse().ok()?;
        if pid != own_pid {
            return None;
        }
    }
    Some(Duration::from_micros(usec))
}

/// One notification: `lines` (`READY=1`, `STATUS=...`), with line breaks inside a value
/// turned into spaces so that a status cannot forge another key.
pub fn message<'a>(lines: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for line in lines {
        if !out.is_empty() {
            out.push('\n');
        }
        out.extend(line.chars().map(|c| if c == '\n' { ' ' } else { c }));
    }
    out
}

/// A socket to systemd's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    address: SocketAddr,
    name: OsString,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` asks for; `None` when it is not set (not run by systemd,
    /// or by a unit that is not `Type=notify`).
    pub fn from_env() -> Result<Option<Self>, NotifyError> {
        match std::env::var_os("NOTIFY_SOCKET") {
            None => Ok(None),
            Some(name) if name.is_empty() => Ok(None),
            Some(name) => Self::to(&name).map(Some),
        }
    }

    /// A notifier to the socket `name` (as `$NOTIFY_SOCKET` would give it).
    pub fn to(name: &OsStr) -> Result<Self, NotifyError> {
        let io = |source| NotifyError::Io {
            socket: name.to_owned(),
            source,
        };
        let address = match parse_address(name) {
            Some(Address::Path(path)) => SocketAddr::from_pathname(path).map_err(io)?,
            Some(Address::Abstract(bytes)) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(bytes).map_err(io)?
            }
            None => return Err(NotifyError::Unsupported(name.to_owned())),
        };
        let socket = UnixDatagram::unbound().map_err(io)?;
        socket.set_write_timeout(Some(SEND_TIMEOUT)).map_err(io)?;
        Ok(Notifier {
            socket,
            address,
            name: name.to_owned(),
        })
    }

    /// Sends one notification (see [`message`]).
    pub fn send(&self, message: &str) -> Result<(), NotifyError> {
        self.socket
            .send_to_addr(message.as_bytes(), &self.address)
            .map(|_| ())
            .map_err(|source| NotifyError::Io {
                socket: self.name.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn socket_addresses_are_paths_or_abstract_names() {
        assert_eq!(
            parse_address(OsStr::new("/run/systemd/notify")),
            Some(Address::Path(PathBuf::from("/run/systemd/notify")))
        );
        assert_eq!(
            parse_address(OsStr::new("@/org/x")),
            Some(Address::Abstract(b"/org/x".to_vec()))
        );
        for other in ["", "@", "vsock:2:1234", "relative/path"] {
            assert_eq!(parse_address(OsStr::new(other)), None, "{other}");
        }
        assert!(matches!(
            Notifier::to(OsStr::new("vsock:2:1")),
            Err(NotifyError::Unsupported(_))
        ));
    }

    #[test]
    fn the_watchdog_is_on_for_the_main_process_only() {
        let o = |s: &'static str| Some(OsStr::new(s));
        assert_eq!(
            watchdog_limit(o("30000000"), None, 7),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            watchdog_limit(o("30000000"), o("7"), 7),
            Some(Duration::from_secs(30))
        );
        assert_eq!(watchdog_limit(o("30000000"), o("8"), 7), None);
        assert_eq!(watchdog_limit(None, o("7"), 7), None);
        assert_eq!(watchdog_limit(o("0"), None, 7), None);
        assert_eq!(watchdog_limit(o("soon"), None, 7), None);
        assert_eq!(watchdog_limit(o("1000"), o("seven"), 7), None);
    }

    #[test]
    fn a_status_cannot_add_lines() {
        assert_eq!(
            message(["READY=1", "STATUS=a\nWATCHDOG=trigger"]),
            "READY=1\nSTATUS=a WATCHDOG=trigger"
        );
    }

    #[test]
    fn notifications_arrive_at_path_and_abstract_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        Notifier::to(path.as_os_str())
            .unwrap()
            .send("READY=1")
            .unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        // Unique per test run: abstract names are shared by the whole network namespace.
        let name = format!("dinoedge-notify-test-{}", dir.path().display());
        let abstract_listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        Notifier::to(OsStr::new(&format!("@{name}")))
            .unwrap()
            .send("WATCHDOG=1")
            .unwrap();
        let n = abstract_listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");
    }
}
