//! The host's link keys: one file per key in a folder readable by the service user only,
//! made by `dinoedge keys new`, with a list of revoked key ids beside them.
//!
//! ```text
//!  KEYS/US-0042-a1b2c3d4e5f60718.key.json   the host's copy: device, id, key, retire_after
//!  KEYS/US-0042-a1b2c3d4e5f60718.keyblock   the firmware's copy (80 bytes, flashed; then
//!                                            moved off the host)
//!  KEYS/revoked.txt                         one key id per line: refused even if its file
//!                                            is still there
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use dinoedge_proto::secure::{KeyId, LinkKey, PSK_LEN, key_block};
use dinoedge_proto::{AuthRefusal, MAX_ID};
use serde::{Deserialize, Serialize};

/// What a key file says its format is.
const KEY_FORMAT: &str = "dinoedge-link-key";
/// The revocation list's name in the key folder.
pub const REVOKED_FILE: &str = "revoked.txt";

/// Why keys could not be loaded or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key file others than its owner may read.
    #[error(
        "{path} is readable by others (mode {mode:03o}); a link key must be readable by its \
         owner only: chmod 600 {path}"
    )]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file that does not parse or whose id does not match its key.
    #[error("{path} is not a valid dinoedge link key: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Two key files hold the same key.
    #[error("{first} and {second} hold the same key ({id}); remove one")]
    Duplicate {
        /// The key id.
        id: KeyId,
        /// One file.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
    /// A device id that cannot be sent in a `Hello`.
    #[error("device id {0:?} must be 1 to {MAX_ID} bytes of letters, digits, '-', '_' or '.'")]
    BadDeviceId(String),
    /// No key of this device to rotate, or no key with this id to revoke.
    #[error("{0}")]
    NotFound(String),
    /// The operating system gave no entropy for a new key.
    #[error("no OS entropy for a new key: {0}")]
    Entropy(String),
}

/// One key as its file holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyFile {
    format: String,
    version: u32,
    device_id: String,
    key_id: String,
    /// The key, hex.
    key: String,
    created_unix_s: u64,
    /// Set by a rotation: the key is refused after this time.
    retire_after_unix_s: Option<u64>,
}

/// A key the host accepts, and whose it is.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    /// The unit this key belongs to: its `Hello` must name it.
    pub device_id: String,
    /// The key's id.
    pub id: KeyId,
    /// The key.
    pub key: LinkKey,
    /// When it was made, seconds since the Unix epoch.
    pub created_unix_s: u64,
    /// After this time the key is refused (a rotation's window), seconds since the epoch.
    pub retire_after_unix_s: Option<u64>,
    /// Its file.
    pub path: PathBuf,
}

/// The keys of a key folder and its revocation list.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: BTreeMap<KeyId, KeyEntry>,
    revoked: BTreeSet<KeyId>,
}

impl Keyring {
    /// Loads every `*.key.json` of `dir` and its `revoked.txt`; refuses a key file that others
    /// may read, or one that does not parse.
    pub fn load(dir: &Path) -> Result<Keyring, KeyError> {
        let io = |source| KeyError::Io {
            path: dir.to_owned(),
            source,
        };
        let mut keyring = Keyring::default();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(".key.json"))
            .collect();
        paths.sort();
        for path in paths {
            let entry = read_key_file(&path)?;
            if let Some(first) = keyring.keys.get(&entry.id) {
                return Err(KeyError::Duplicate {
                    id: entry.id,
                    first: first.path.clone(),
                    second: path,
                });
            }
            keyring.keys.insert(entry.id, entry);
        }
        let revoked = dir.join(REVOKED_FILE);
        match std::fs::read_to_string(&revoked) {
            Ok(text) => {
                for (n, line) in text.lines().enumerate() {
                    let id = line.split('#').next().unwrap_or_default().trim();
                    if id.is_empty() {
                        continue;
                    }
                    let id = parse_key_id(id).ok_or_else(|| KeyError::Malformed {
                        path: revoked.clone(),
                        reason: format!("line {}: {id:?} is not a 16-digit hex key id", n + 1),
                    })?;
                    keyring.revoked.insert(id);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(KeyError::Io {
                    path: revoked,
                    source,
                });
            }
        }
        Ok(keyring)
    }

    /// The key `id` names, if the host accepts it at `now_unix_s`; otherwise why not.
    pub fn lookup(&self, id: KeyId, now_unix_s: u64) -> Result<&KeyEntry, AuthRefusal> {
        if self.revoked.contains(&id) {
            return Err(AuthRefusal::RevokedKey);
        }
        let entry = self.keys.get(&id).ok_or(AuthRefusal::UnknownKey)?;
        if entry.retire_after_unix_s.is_some_and(|t| now_unix_s > t) {
            return Err(AuthRefusal::RetiredKey);
        }
        Ok(entry)
    }

    /// Every key, by id.
    pub fn entries(&self) -> impl Iterator<Item = &KeyEntry> {
        self.keys.values()
    }

    /// Whether `id` is on the revocation list.
    pub fn is_revoked(&self, id: KeyId) -> bool {
        self.revoked.contains(&id)
    }

    /// How many keys are loaded.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The files a new key was written to.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// The key's id.
    pub id: KeyId,
    /// The host's copy.
    pub host_file: PathBuf,
    /// The firmware's copy (the key block to flash).
    pub firmware_file: PathBuf,
}

/// Makes a new key for `device_id` in `dir` (created owner-only if missing): the host's key
/// file and the firmware's key block, both owner-only; never overwrites a file.
pub fn new_key(dir: &Path, device_id: &str, now_unix_s: u64) -> Result<NewKey, KeyError> {
    check_device_id(device_id)?;
    create_private_dir(dir)?;
    let mut psk = [0u8; PSK_LEN];
    getrandom::fill(&mut psk).map_err(|e| KeyError::Entropy(e.to_string()))?;
    let key = LinkKey::new(psk);
    psk.fill(0);
    let id = key.id();
    let stem = format!("{device_id}-{id}");
    let file = KeyFile {
        format: KEY_FORMAT.to_owned(),
        version: 1,
        device_id: device_id.to_owned(),
        key_id: id.to_string(),
        key: hex(key.bytes()),
        created_unix_s: now_unix_s,
        retire_after_unix_s: None,
    };
    let host_file = dir.join(format!("{stem}.key.json"));
    let firmware_file = dir.join(format!("{stem}.keyblock"));
    let json = serde_json::to_vec_pretty(&file).map_err(|e| KeyError::Malformed {
        path: host_file.clone(),
        reason: e.to_string(),
    })?;
    let block =
        key_block(&key, device_id).ok_or_else(|| KeyError::BadDeviceId(device_id.into()))?;
    write_private(&host_file, &json)?;
    write_private(&firmware_file, &block)?;
    Ok(NewKey {
        id,
        host_file,
        firmware_file,
    })
}

/// Rotates `device_id`'s key: a new key, and every current key of the device accepted only
/// until `now + window_s` (so a unit still on the old key keeps working while it is
/// reflashed). Returns the new key and the ids set to retire.
pub fn rotate_key(
    dir: &Path,
    device_id: &str,
    now_unix_s: u64,
    window_s: u64,
) -> Result<(NewKey, Vec<KeyId>), KeyError> {
    let keyring = Keyring::load(dir)?;
    let current: Vec<&KeyEntry> = keyring
        .entries()
        .filter(|e| e.device_id == device_id && e.retire_after_unix_s.is_none())
        .collect();
    if current.is_empty() {
        return Err(KeyError::NotFound(format!(
            "no current key of {device_id:?} in {}; make one with `dinoedge keys new`",
            dir.display()
        )));
    }
    let new = new_key(dir, device_id, now_unix_s)?;
    let mut retired = Vec::new();
    for entry in current {
        let text = std::fs::read(&entry.path).map_err(|source| KeyError::Io {
            path: entry.path.clone(),
            source,
        })?;
        let mut file: KeyFile = serde_json::from_slice(&text).map_err(|e| KeyError::Malformed {
            path: entry.path.clone(),
            reason: e.to_string(),
        })?;
        file.retire_after_unix_s = Some(now_unix_s.saturating_add(window_s));
        let json = serde_json::to_vec_pretty(&file).map_err(|e| KeyError::Malformed {
            path: entry.path.clone(),
            reason: e.to_string(),
        })?;
        replace_private(&entry.path, &json)?;
        retired.push(entry.id);
    }
    Ok((new, retired))
}

/// Adds `id` to the folder's revocation list (a key listed there is refused from the next
/// handshake on, whether or not its file is still in the folder).
pub fn revoke_key(dir: &Path, id: KeyId, note: &str) -> Result<(), KeyError> {
    let path = dir.join(REVOKED_FILE);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)
        .map_err(|source| KeyError::Io {
            path: path.clone(),
            source,
        })?;
    let note = note.replace(['\n', '\r'], " ");
    writeln!(file, "{id}  # {note}")
        .and_then(|()| file.sync_all())
        .map_err(|source| KeyError::Io { path, source })
}

/// Reads a key id as `dinoedge keys` prints it (16 hex digits).
pub fn parse_key_id(text: &str) -> Option<KeyId> {
    let bytes = unhex(text.trim())?;
    Some(KeyId(bytes.try_into().ok()?))
}

fn read_key_file(path: &Path) -> Result<KeyEntry, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = crate::files::open_private(path).map_err(|e| match e {
        crate::files::OpenPrivateError::Io(e) => io(e),
        crate::files::OpenPrivateError::ReadableByOthers(mode) => KeyError::TooOpen {
            path: path.to_owned(),
            mode: mode & 0o777,
        },
    })?;
    let malformed = |reason: String| KeyError::Malformed {
        path: path.to_owned(),
        reason,
    };
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut text).map_err(io)?;
    let file: KeyFile = serde_json::from_slice(&text).map_err(|e| malformed(e.to_string()))?;
    if file.format != KEY_FORMAT || file.version != 1 {
        return Err(malformed(format!(
            "format {:?} version {}; this dinoedge reads {KEY_FORMAT:?} version 1",
            file.format, file.version
        )));
    }
    check_device_id(&file.device_id).map_err(|e| malformed(e.to_string()))?;
    let psk: [u8; PSK_LEN] = unhex(&file.key)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| malformed("`key` is not 64 hex digits".into()))?;
    let key = LinkKey::new(psk);
    if parse_key_id(&file.key_id) != Some(key.id()) {
        return Err(malformed(format!(
            "`key_id` {} does not match the key (its id is {})",
            file.key_id,
            key.id()
        )));
    }
    Ok(KeyEntry {
        device_id: file.device_id,
        id: key.id(),
        key,
        created_unix_s: file.created_unix_s,
        retire_after_unix_s: file.retire_after_unix_s,
        path: path.to_owned(),
    })
}

fn check_device_id(id: &str) -> Result<(), KeyError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(KeyError::BadDeviceId(id.to_owned()))
    }
}

fn create_private_dir(dir: &Path) -> Result<(), KeyError> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| KeyError::Io {
            path: dir.to_owned(),
            source,
        })
}

/// Writes a new owner-only file; refuses to replace one.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    crate::files::create_private(path)
        .and_then(|mut file| file.write_all(bytes).and_then(|()| file.sync_all()))
        .map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })
}

/// Replaces an owner-only file whole: a new file beside it, then a rename.
fn replace_private(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let tmp = path.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    write_private(&tmp, bytes)?;
    std::fs::rename(&tmp, path).map_err(|source| KeyError::Io {
        path: path.to_owned(),
        source,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn new_keys_are_owner_only_and_load_back() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let new = new_key(&keys, "US-0042", 1_000).unwrap();
        for path in [&new.host_file, &new.firmware_file] {
            let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
        }
        let block = std::fs::read(&new.firmware_file).unwrap();
        let (key, device) = dinoedge_proto::secure::parse_key_block(&block).unwrap();
        assert_eq!(device.as_str(), "US-0042");
        let ring = Keyring::load(&keys).unwrap();
        let entry = ring.lookup(new.id, 2_000).unwrap();
        assert_eq!(entry.key.bytes(), key.bytes());
        assert_eq!(entry.device_id, "US-0042");
        assert!(new_key(&keys, "bad id!", 0).is_err());
    }

    #[test]
    fn a_key_file_others_can_read_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let new = new_key(dir.path(), "US-1", 0).unwrap();
        std::fs::set_permissions(&new.host_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Keyring::load(dir.path()).unwrap_err();
        assert!(
            matches!(err, KeyError::TooOpen { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn rotation_retires_the_old_key_after_its_window_and_revocation_is_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let old = new_key(dir.path(), "US-1", 0).unwrap();
        let (new, retired) = rotate_key(dir.path(), "US-1", 100, 50).unwrap();
        assert_eq!(retired, vec![old.id]);
        let ring = Keyring::load(dir.path()).unwrap();
        assert!(ring.lookup(old.id, 150).is_ok(), "inside the window");
        assert_eq!(
            ring.lookup(old.id, 151).unwrap_err(),
            AuthRefusal::RetiredKey
        );
        assert!(ring.lookup(new.id, 10_000).is_ok());
        revoke_key(dir.path(), new.id, "unit lost").unwrap();
        let ring = Keyring::load(dir.path()).unwrap();
        assert_eq!(
            ring.lookup(new.id, 200).unwrap_err(),
            AuthRefusal::RevokedKey
        );
        assert_eq!(
            ring.lookup(KeyId([0; 8]), 200).unwrap_err(),
            AuthRefusal::UnknownKey
        );
        assert!(rotate_key(dir.path(), "US-2", 0, 1).is_err());
    }

    #[test]
    fn a_tampered_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let new = new_key(dir.path(), "US-1", 0).unwrap();
        let text = std::fs::read_to_string(&new.host_file).unwrap();
        let tampered = text.replacen("\"key\": \"", "\"key\": \"00", 1);
        std::fs::remove_file(&new.host_file).unwrap();
        write_private(&new.host_file, tampered.as_bytes()).unwrap();
        assert!(matches!(
            Keyring::load(dir.path()).unwrap_err(),
            KeyError::Malformed { .. }
        ));
    }
}
