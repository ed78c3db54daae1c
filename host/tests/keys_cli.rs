//! `dinoedge keys` and the secure-by-default link flags, as users run them.

use std::os::unix::fs::PermissionsExt;

use crate::common::dinoedge;

/// The key id `keys new` printed.
fn key_id(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("key "))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn new_list_rotate_revoke() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let dir_s = dir.to_str().unwrap();
    let (code, out, err) = dinoedge(&["keys", "new", "--device", "US-0042", "--dir", dir_s]);
    assert_eq!(code, 0, "{err}");
    let first = key_id(&out);
    assert_eq!(first.len(), 16, "{out}");
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the key folder is the owner's");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    for f in &files {
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
        let text = std::fs::read(f).unwrap();
        // The key itself is in the files, never in what the command prints.
        assert!(!out.contains(&hex_tail(&text)), "{out}");
    }

    let (code, out, err) = dinoedge(&[
        "keys", "rotate", "--device", "US-0042", "--dir", dir_s, "--window", "2d",
    ]);
    assert_eq!(code, 0, "{err}");
    let second = key_id(&out);
    assert_ne!(first, second);
    assert!(
        out.contains(&format!(
            "key {first} of US-0042 is accepted until 172800 s"
        )),
        "{out}"
    );

    let (code, _, err) = dinoedge(&["keys", "revoke", &second, "--dir", dir_s, "--note", "lost"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = dinoedge(&["keys", "list", "--dir", dir_s]);
    assert_eq!(code, 0, "{err}");
    let state = |id: &str| {
        out.lines()
            .find(|l| l.contains(id))
            .unwrap_or_else(|| panic!("{id} not listed: {out}"))
            .to_owned()
    };
    assert!(state(&first).contains("retiring in"), "{out}");
    assert!(state(&second).ends_with("revoked"), "{out}");

    // Bad input is named.
    let (code, _, err) = dinoedge(&["keys", "revoke", "xyz", "--dir", dir_s]);
    assert_eq!(code, 2);
    assert!(err.contains("not a key id"), "{err}");
    let (code, _, err) = dinoedge(&["keys", "new", "--device", "no spaces", "--dir", dir_s]);
    assert_eq!(code, 2);
    assert!(err.contains("device id"), "{err}");
    let (code, _, err) = dinoedge(&["keys", "rotate", "--device", "US-9", "--dir", dir_s]);
    assert_eq!(code, 2);
    assert!(err.contains("no current key of \"US-9\""), "{err}");
}

/// The last 8 bytes of a file, as hex: a piece of the key that must never be printed.
fn hex_tail(bytes: &[u8]) -> String {
    bytes[bytes.len().saturating_sub(8)..]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn a_live_link_is_secure_unless_told_otherwise_and_never_clear_on_a_network() {
    let tmp = tempfile::tempdir().unwrap();
    // No keys, no cleartext: refused before anything opens.
    let (code, _, err) = dinoedge(&["link", "--listen", "127.0.0.1:0", "--seconds", "0.1"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("secure by default") && err.contains("--link-keys"),
        "{err}"
    );
    // Cleartext on a network address: refused, with why.
    let (code, _, err) = dinoedge(&[
        "link",
        "--listen",
        "0.0.0.0:0",
        "--link-cleartext",
        "--seconds",
        "0.1",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("refused on 0.0.0.0:0"), "{err}");
    // Cleartext on loopback: allowed.
    let (code, _, err) = dinoedge(&[
        "link",
        "--listen",
        "127.0.0.1:0",
        "--link-cleartext",
        "--seconds",
        "0.1",
    ]);
    assert_eq!(code, 0, "{err}");
    // A key folder whose key file others can read: refused, naming the file and the fix.
    let dir = tmp.path().join("keys");
    let dir_s = dir.to_str().unwrap();
    let (code, out, err) = dinoedge(&["keys", "new", "--device", "US-1", "--dir", dir_s]);
    assert_eq!(code, 0, "{err}");
    let host_file = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("host copy:"))
        .unwrap()
        .trim()
        .to_owned();
    std::fs::set_permissions(&host_file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (code, _, err) = dinoedge(&[
        "link",
        "--listen",
        "127.0.0.1:0",
        "--link-keys",
        dir_s,
        "--seconds",
        "0.1",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("chmod 600") && err.contains(&host_file),
        "{err}"
    );
    // An empty key folder: refused, saying how to make a key.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (code, _, err) = dinoedge(&[
        "link",
        "--listen",
        "127.0.0.1:0",
        "--link-keys",
        empty.to_str().unwrap(),
        "--seconds",
        "0.1",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("keys new"), "{err}");
}

#[test]
fn a_recording_key_is_owner_only_and_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("rec.key");
    let file_s = file.to_str().unwrap();
    let (code, out, err) = dinoedge(&["keys", "recording", "-o", file_s]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("recording key"), "{out}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let before = std::fs::read(&file).unwrap();
    let (code, _, err) = dinoedge(&["keys", "recording", "-o", file_s]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), before, "the key was kept");
}
