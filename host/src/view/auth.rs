//! Who may see the view: the `Host` every request names (no DNS rebinding), the `Origin` of
//! the event stream, and, off loopback, an access token exchanged once for a session cookie
//! (HttpOnly, Secure, SameSite=Strict), never carried in a URL.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The session cookie's name.
pub const COOKIE: &str = "dinoedge_view";

/// Why a token file was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// It could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Others may read it.
    #[error(
        "{path} is readable by others (mode {mode:03o}); the view's token must be readable by \
         its owner only: chmod 600 {path}"
    )]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Too short to be a secret.
    #[error("{path} holds {len} characters; a view token needs at least 16")]
    TooShort {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
}

/// Reads a token file: its first line, trimmed; refused when others can read it or it is
/// shorter than 16 characters.
pub fn load_token(path: &Path) -> Result<String, TokenError> {
    let io = |source| TokenError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = crate::files::open_private(path).map_err(|e| match e {
        crate::files::OpenPrivateError::Io(e) => io(e),
        crate::files::OpenPrivateError::ReadableByOthers(mode) => TokenError::TooOpen {
            path: path.to_owned(),
            mode: mode & 0o777,
        },
    })?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut file, &mut text).map_err(io)?;
    let token = text.lines().next().unwrap_or_default().trim().to_owned();
    if token.len() < 16 {
        return Err(TokenError::TooShort {
            path: path.to_owned(),
            len: token.len(),
        });
    }
    Ok(token)
}

/// Whether `host` (a `Host` header) names one of `allowed` (names without port; the port, if
/// any, must be `port`).
pub fn host_allowed(host: &str, allowed: &[String], port: u16) -> bool {
    let (name, host_port) = split_host(host);
    if host_port.is_some_and(|p| p != port) {
        return false;
    }
    allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
}

/// Whether an `Origin` header is this view's own: `scheme://allowed-name[:port]`.
pub fn origin_allowed(origin: &str, scheme: &str, allowed: &[String], port: u16) -> bool {
    let Some(rest) = origin
        .strip_prefix(scheme)
        .and_then(|r| r.strip_prefix("://"))
    else {
        return false;
    };
    let default_port = if scheme == "https" { 443 } else { 80 };
    let (name, p) = split_host(rest);
    p.unwrap_or(default_port) == port && allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
}

/// `name` and port of `host[:port]`, `[v6]:port` included.
fn split_host(host: &str) -> (&str, Option<u16>) {
    if let Some(rest) = host.strip_prefix('[') {
        let (name, after) = rest.split_once(']').unwrap_or((rest, ""));
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return (name, port);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name, port.parse().ok()),
        _ => (host, None),
    }
}

/// The session cookie's value in a `Cookie` header, if present.
pub fn cookie_value(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

/// Sessions issued for the token: random ids, held in memory (a restart logs everyone out).
#[derive(Debug, Default)]
pub struct Sessions {
    ids: HashSet<String>,
}

impl Sessions {
    /// A new session id (256 random bits, hex).
    pub fn issue(&mut self) -> Option<String> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).ok()?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        // Bounded: an attacker with the token gains nothing by filling memory, but a bug
        // that logs in in a loop should not either.
        if self.ids.len() >= 1024 {
            self.ids.clear();
        }
        self.ids.insert(id.clone());
        Some(id)
    }

    /// Whether `id` was issued here.
    pub fn valid(&self, id: &str) -> bool {
        self.ids.contains(id)
    }
}

/// Compares a presented token with the real one in time independent of where they differ.
pub fn token_matches(presented: &str, token: &str) -> bool {
    let (a, b) = (presented.as_bytes(), token.as_bytes());
    let mut diff = u8::from(a.len() != b.len());
    for (i, byte) in b.iter().enumerate() {
        diff |= byte ^ a.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn names() -> Vec<String> {
        vec![
            "localhost".into(),
            "127.0.0.1".into(),
            "::1".into(),
            "jetson.local".into(),
        ]
    }

    #[test]
    fn hosts_and_origins_must_be_the_views_own() {
        let n = names();
        assert!(host_allowed("localhost:8080", &n, 8080));
        assert!(host_allowed("JETSON.local:8080", &n, 8080));
        assert!(host_allowed("[::1]:8080", &n, 8080));
        assert!(
            host_allowed("127.0.0.1", &n, 8080),
            "no port: the name decides"
        );
        assert!(
            !host_allowed("evil.example:8080", &n, 8080),
            "DNS rebinding"
        );
        assert!(!host_allowed("localhost:9999", &n, 8080));
        assert!(origin_allowed("http://localhost:8080", "http", &n, 8080));
        assert!(origin_allowed("https://jetson.local", "https", &n, 443));
        assert!(!origin_allowed(
            "http://jetson.local:8080",
            "https",
            &n,
            8080
        ));
        assert!(!origin_allowed(
            "https://evil.example:8080",
            "https",
            &n,
            8080
        ));
        assert!(!origin_allowed("null", "http", &n, 8080));
    }

    #[test]
    fn cookies_tokens_and_sessions() {
        assert_eq!(cookie_value("a=1; dinoedge_view=abc; b=2"), Some("abc"));
        assert_eq!(cookie_value("dinoedge_viewer=abc"), None);
        assert!(token_matches("0123456789abcdef", "0123456789abcdef"));
        assert!(!token_matches("0123456789abcdeX", "0123456789abcdef"));
        assert!(!token_matches("0123456789abcdef0", "0123456789abcdef"));
        let mut s = Sessions::default();
        let id = s.issue().unwrap();
        assert!(s.valid(&id) && !s.valid("nope"));
    }

    #[test]
    fn a_token_file_must_be_private_and_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "short\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            load_token(&path),
            Err(TokenError::TooShort { len: 5, .. })
        ));
        std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
        assert_eq!(load_token(&path).unwrap(), "0123456789abcdef0123");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(load_token(&path), Err(TokenError::TooOpen { .. })));
    }
}
