//! The recording format: round trip, a crash mid-write, damage in the middle, versions.

use std::path::{Path, PathBuf};

use dinoedge::recording::{
    Damage, FORMAT_VERSION, HEADER_LEN, RECORD_OVERHEAD, RecordKind, RecordingError,
    RecordingReader, RecordingWriter,
};

/// A path named `name` in a fresh folder of the test's own (kept while the first value lives).
fn temp(name: &str) -> (crate::common::Scratch, PathBuf) {
    let dir = crate::common::scratch("recording", name);
    let path = dir.join(name);
    (dir, path)
}

/// (kind, time, payload) of a record.
type Plain = (RecordKind, u64, Vec<u8>);

fn payloads() -> Vec<Plain> {
    (0..20u64)
        .map(|i| {
            let kind = if i % 3 == 0 {
                RecordKind::HostToEdge
            } else {
                RecordKind::EdgeToHost
            };
            // Payloads that contain the sync marker too, so resynchronisation is tested.
            let mut p: Vec<u8> = (0..(i * 37 % 500 + 1)).map(|b| (b * 7 + i) as u8).collect();
            p.extend_from_slice(&[0xD1, 0x0E, 0x5E, 0xC0]);
            (kind, 1000 * i, p)
        })
        .collect()
}

fn write_all(path: &Path) -> Vec<u64> {
    let mut w = RecordingWriter::create(path).unwrap();
    let mut ends = Vec::new();
    let mut end = HEADER_LEN as u64;
    for (kind, t, p) in payloads() {
        w.write_at(kind, t, &p).unwrap();
        end += (RECORD_OVERHEAD + p.len()) as u64;
        ends.push(end);
    }
    w.finish().unwrap();
    ends
}

fn read_all(path: &Path) -> (Vec<Plain>, Vec<Damage>) {
    let mut r = RecordingReader::open(path).unwrap();
    let mut out = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        out.push((rec.kind, rec.t_us, rec.payload));
    }
    (out, r.damage().to_vec())
}

#[test]
fn records_read_back_exactly() {
    let (_path_dir, path) = temp("roundtrip.rec");
    write_all(&path);
    let (records, damage) = read_all(&path);
    assert_eq!(records, payloads());
    assert!(damage.is_empty(), "{damage:?}");
}

#[test]
fn a_file_cut_anywhere_keeps_every_complete_record_and_reopens_for_append() {
    let (_path_dir, path) = temp("cut.rec");
    let ends = write_all(&path);
    let full = std::fs::read(&path).unwrap();
    let all = payloads();
    // Cut at every offset inside the last three records, as a kill -9 or power loss would.
    let from = ends[ends.len() - 4] as usize;
    let mut cuts: Vec<usize> = (from..full.len()).step_by(5).collect();
    cuts.extend(ends.iter().map(|&e| e as usize - 1));
    cuts.extend(ends.iter().map(|&e| e as usize));
    for cut in cuts.into_iter().filter(|&c| c >= from) {
        let (_cut_path_dir, cut_path) = temp("cut-at.rec");
        std::fs::write(&cut_path, &full[..cut]).unwrap();
        let complete = ends.iter().filter(|&&e| e as usize <= cut).count();
        let (records, damage) = read_all(&cut_path);
        assert_eq!(records, all[..complete], "cut at {cut}");
        let at_boundary = ends.contains(&(cut as u64));
        assert_eq!(
            damage.len(),
            usize::from(!at_boundary),
            "cut at {cut}: {damage:?}"
        );
        if !at_boundary {
            assert!(
                matches!(damage[0], Damage::TruncatedTail { .. }),
                "{damage:?}"
            );
        }
        // It continues without repair by hand: the incomplete record is cut off.
        let mut w = RecordingWriter::append(&cut_path).unwrap();
        w.write(RecordKind::Note, b"{\"appended\":true}").unwrap();
        w.finish().unwrap();
        let (records, damage) = read_all(&cut_path);
        assert!(damage.is_empty(), "after append, cut at {cut}: {damage:?}");
        assert_eq!(records.len(), complete + 1);
        assert_eq!(records[..complete], all[..complete]);
        let last = records.last().unwrap();
        assert_eq!(last.0, RecordKind::Note);
        assert!(
            complete == 0 || last.1 > all[complete - 1].1,
            "time goes on"
        );
    }
}

#[test]
fn damage_in_the_middle_skips_only_the_damaged_record() {
    let (_path_dir, path) = temp("damaged.rec");
    let ends = write_all(&path);
    let mut bytes = std::fs::read(&path).unwrap();
    let all = payloads();
    // A flipped bit inside record 5's payload, and record 11's length field overwritten.
    bytes[ends[4] as usize + 20] ^= 0x10;
    bytes[ends[10] as usize + 5] = 0xFF;
    std::fs::write(&path, &bytes).unwrap();
    let (records, damage) = read_all(&path);
    let expected: Vec<_> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 5 && *i != 11)
        .map(|(_, r)| r.clone())
        .collect();
    assert_eq!(records, expected);
    assert_eq!(damage.len(), 2, "{damage:?}");
    for (d, at) in damage.iter().zip([ends[4], ends[10]]) {
        match d {
            Damage::Corrupt { offset, bytes } => {
                assert_eq!(*offset, at);
                assert!(*bytes > 0);
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }
}

#[test]
fn headers_are_checked() {
    let (_path_dir, path) = temp("version.rec");
    write_all(&path);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8..10].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    match RecordingReader::open(&path) {
        Err(RecordingError::NewerVersion {
            found, supported, ..
        }) => {
            assert_eq!((found, supported), (FORMAT_VERSION + 1, FORMAT_VERSION));
        }
        other => panic!("expected NewerVersion, got {other:?}"),
    }
    std::fs::write(&path, b"not a recording at all, just text").unwrap();
    assert!(matches!(
        RecordingReader::open(&path),
        Err(RecordingError::NotARecording { .. })
    ));
    std::fs::write(&path, &bytes[..10]).unwrap();
    assert!(matches!(
        RecordingReader::open(&path),
        Err(RecordingError::TruncatedHeader { len: 10, .. })
    ));
    // An existing file is never overwritten.
    assert!(matches!(
        RecordingWriter::create(&path),
        Err(RecordingError::Exists { .. })
    ));
}

// ---- Patient data: owner-only files, encryption at rest, key files, imports ----

use std::os::unix::fs::PermissionsExt;

use dinoedge::recording::reader::{scan, scan_with};
use dinoedge::recording::{
    ENCRYPTED_FORMAT_VERSION, ENCRYPTED_HEADER_LEN, PLAIN_FORMAT_VERSION, RECORD_SYNC,
    RecordingKey, SEAL_OVERHEAD, create_key_file,
};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn key(byte: u8) -> RecordingKey {
    RecordingKey::from_bytes([byte; 32])
}

/// Writes [`payloads`] encrypted with `key`; the end offset of each record.
fn write_sealed(path: &Path, key: &RecordingKey) -> Vec<u64> {
    let mut w = RecordingWriter::create_with(path, Some(key)).unwrap();
    assert!(w.encrypted());
    let mut ends = Vec::new();
    let mut end = ENCRYPTED_HEADER_LEN as u64;
    for (kind, t, p) in payloads() {
        w.write_at(kind, t, &p).unwrap();
        end += (RECORD_OVERHEAD + SEAL_OVERHEAD + p.len()) as u64;
        ends.push(end);
    }
    w.finish().unwrap();
    ends
}

fn read_sealed(path: &Path, key: &RecordingKey) -> (Vec<Plain>, Vec<Damage>) {
    let mut r = RecordingReader::open_with(path, Some(key)).unwrap();
    assert_eq!(r.key_id(), Some(key.id()));
    let mut out = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        out.push((rec.kind, rec.t_us, rec.payload));
    }
    (out, r.damage().to_vec())
}

/// Gives the record that starts at `start` (and ends at `end`) a CRC that matches its bytes
/// again, as someone altering it on purpose would.
fn recompute_crc(bytes: &mut [u8], start: usize, end: usize) {
    let crc = crc32fast::hash(&bytes[start + RECORD_SYNC.len()..end - 4]);
    bytes[end - 4..end].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn new_recordings_are_owner_only_from_the_start_and_append_keeps_the_mode() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, k) in [("plain.rec", None), ("sealed.rec", Some(key(1)))] {
        let path = tmp.path().join(name);
        let mut w = RecordingWriter::create_with(&path, k.as_ref()).unwrap();
        // While it is being written, not only once it is done.
        assert_eq!(mode(&path), 0o600, "{name} while open");
        w.write(RecordKind::Note, b"{}").unwrap();
        w.finish().unwrap();
        assert_eq!(mode(&path), 0o600, "{name}");
        let mut w = RecordingWriter::append_with(&path, k.as_ref()).unwrap();
        w.write(RecordKind::Note, b"{}").unwrap();
        w.finish().unwrap();
        assert_eq!(mode(&path), 0o600, "{name} after append");
    }
    // Appending changes no mode, not even one its owner chose to widen.
    let path = tmp.path().join("shared.rec");
    let mut w = RecordingWriter::create(&path).unwrap();
    w.write(RecordKind::Note, b"{}").unwrap();
    w.finish().unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let mut w = RecordingWriter::append(&path).unwrap();
    w.write(RecordKind::Note, b"{}").unwrap();
    w.finish().unwrap();
    assert_eq!(mode(&path), 0o640);
}

#[test]
fn plain_recordings_are_still_version_1_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("plain.rec");
    let mut w = RecordingWriter::create(&path).unwrap();
    w.write_at(RecordKind::EdgeToHost, 7, b"abc").unwrap();
    w.write_at(RecordKind::Note, 9, b"").unwrap();
    w.finish().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    // Version 1 as host/RECORDING.md lays it out (the creation time comes from the clock).
    let mut want = b"DNEDGREC".to_vec();
    want.extend_from_slice(&PLAIN_FORMAT_VERSION.to_le_bytes());
    want.extend_from_slice(&[0, 0]);
    want.extend_from_slice(&bytes[12..20]);
    want.extend_from_slice(&[0; 4]);
    for (kind, t, payload) in [(1u8, 7u64, &b"abc"[..]), (5, 9, &b""[..])] {
        let start = want.len();
        want.extend_from_slice(&RECORD_SYNC);
        want.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        want.push(kind);
        want.extend_from_slice(&t.to_le_bytes());
        want.extend_from_slice(payload);
        let crc = crc32fast::hash(&want[start + 4..]);
        want.extend_from_slice(&crc.to_le_bytes());
    }
    assert_eq!(PLAIN_FORMAT_VERSION, 1);
    assert_eq!(bytes, want);
    // A key changes nothing in how a plain recording reads.
    let mut r = RecordingReader::open_with(&path, Some(&key(1))).unwrap();
    assert_eq!(r.key_id(), None);
    assert_eq!(r.next_record().unwrap().unwrap().payload, b"abc");
}

#[test]
fn encrypted_records_read_back_exactly_and_the_file_holds_no_plaintext_or_key() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("sealed.rec");
    let k = key(0x5A);
    let secret = b"PIXELS OF A PATIENT, NEVER IN THE CLEAR";
    let ends = write_sealed(&path, &k);
    let mut w = RecordingWriter::append_with(&path, Some(&k)).unwrap();
    w.write_at(RecordKind::EdgeToHost, 1_000_000, secret)
        .unwrap();
    w.finish().unwrap();
    let (records, damage) = read_sealed(&path, &k);
    assert!(damage.is_empty(), "{damage:?}");
    let mut want = payloads();
    want.push((RecordKind::EdgeToHost, 1_000_000, secret.to_vec()));
    assert_eq!(records, want);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        bytes.len() as u64,
        ends[19] + (RECORD_OVERHEAD + SEAL_OVERHEAD + secret.len()) as u64
    );
    assert_eq!(&bytes[..8], b"DNEDGREC");
    assert_eq!(bytes[8..10], ENCRYPTED_FORMAT_VERSION.to_le_bytes());
    assert_eq!(bytes[10..12], 1u16.to_le_bytes(), "the encrypted flag");
    assert_eq!(bytes[24..32], k.id().0, "the key id");
    assert!(!bytes.windows(secret.len()).any(|w| w == secret));
    assert!(
        !bytes.windows(32).any(|w| w == [0x5A; 32]),
        "the key itself"
    );
    // Two files under one key share no salt (so no record key, and no keystream).
    let other = tmp.path().join("other.rec");
    write_sealed(&other, &k);
    let other_bytes = std::fs::read(&other).unwrap();
    assert_ne!(bytes[32..48], other_bytes[32..48]);
    assert_ne!(
        bytes[ENCRYPTED_HEADER_LEN..ends[0] as usize],
        other_bytes[ENCRYPTED_HEADER_LEN..ends[0] as usize]
    );
}

#[test]
fn no_key_or_the_wrong_key_is_a_typed_error_naming_the_file_and_the_key_id() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("sealed.rec");
    let k = key(3);
    write_sealed(&path, &k);
    let id = k.id().to_string();
    match RecordingReader::open(&path) {
        Err(e @ RecordingError::KeyRequired { .. }) => {
            let shown = e.to_string();
            assert!(shown.contains(&path.display().to_string()), "{shown}");
            assert!(shown.contains(&id), "{shown}");
            assert!(shown.contains("--recording-key FILE"), "{shown}");
        }
        other => panic!("expected KeyRequired, got {other:?}"),
    }
    match RecordingReader::open_with(&path, Some(&key(4))) {
        Err(e @ RecordingError::WrongKey { .. }) => {
            let shown = e.to_string();
            assert!(shown.contains(&id), "{shown}");
            assert!(shown.contains(&key(4).id().to_string()), "{shown}");
        }
        other => panic!("expected WrongKey, got {other:?}"),
    }
    assert!(matches!(
        scan(&path),
        Err(RecordingError::KeyRequired { .. })
    ));
    assert!(matches!(
        RecordingWriter::append(&path),
        Err(RecordingError::KeyRequired { .. })
    ));
    assert!(matches!(
        RecordingWriter::append_with(&path, Some(&key(4))),
        Err(RecordingError::WrongKey { .. })
    ));
    // A plain file is never continued with sealed records.
    let plain = tmp.path().join("plain.rec");
    write_all(&plain);
    assert!(matches!(
        RecordingWriter::append_with(&plain, Some(&k)),
        Err(RecordingError::NotEncrypted { .. })
    ));
    // None of this touched the files.
    assert_eq!(read_sealed(&path, &k).0, payloads());
    assert_eq!(read_all(&plain).0, payloads());
}

#[test]
fn a_flipped_ciphertext_byte_costs_only_that_record() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("sealed.rec");
    let k = key(9);
    let ends = write_sealed(&path, &k);
    let mut bytes = std::fs::read(&path).unwrap();
    // Inside record 5's ciphertext (past its 17-byte head and 4-byte writer tag).
    bytes[ends[4] as usize + 17 + 4 + 2] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let (records, damage) = read_sealed(&path, &k);
    let want: Vec<_> = payloads()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != 5)
        .map(|(_, r)| r)
        .collect();
    assert_eq!(records, want);
    assert_eq!(
        damage,
        vec![Damage::Corrupt {
            offset: ends[4],
            bytes: ends[5] - ends[4]
        }]
    );
}

#[test]
fn an_altered_record_with_a_fresh_crc_fails_its_tag_and_only_it_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("sealed.rec");
    let k = key(11);
    let ends = write_sealed(&path, &k);
    let mut bytes = std::fs::read(&path).unwrap();
    let span = |i: usize| (ends[i - 1] as usize, ends[i] as usize);
    // Record 3: a ciphertext byte. Record 7: its kind swapped (1 and 2 are both byte kinds).
    // Record 12: its time. Each with its CRC made whole again.
    let (s3, e3) = span(3);
    bytes[s3 + 17 + 4] ^= 0x80;
    recompute_crc(&mut bytes, s3, e3);
    let (s7, e7) = span(7);
    bytes[s7 + 8] = if bytes[s7 + 8] == 1 { 2 } else { 1 };
    recompute_crc(&mut bytes, s7, e7);
    let (s12, e12) = span(12);
    bytes[s12 + 9] ^= 0x01;
    recompute_crc(&mut bytes, s12, e12);
    std::fs::write(&path, &bytes).unwrap();
    let (records, damage) = read_sealed(&path, &k);
    let want: Vec<_> = payloads()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| ![3, 7, 12].contains(i))
        .map(|(_, r)| r)
        .collect();
    assert_eq!(records, want);
    let unauthenticated = |i: usize| Damage::Unauthenticated {
        offset: ends[i - 1],
        bytes: ends[i] - ends[i - 1],
    };
    assert_eq!(
        damage,
        vec![unauthenticated(3), unauthenticated(7), unauthenticated(12)]
    );
    // Two whole records swapped, alike in kind, time and length: each has moved away from the
    // offset its nonce was made for.
    let moved = tmp.path().join("moved.rec");
    let mut w = RecordingWriter::create_with(&moved, Some(&k)).unwrap();
    w.write_at(RecordKind::EdgeToHost, 5, b"first").unwrap();
    w.write_at(RecordKind::EdgeToHost, 5, b"later").unwrap();
    w.finish().unwrap();
    let mut bytes = std::fs::read(&moved).unwrap();
    let len = RECORD_OVERHEAD + SEAL_OVERHEAD + 5;
    let a = ENCRYPTED_HEADER_LEN;
    let first = bytes[a..a + len].to_vec();
    bytes.copy_within(a + len..a + 2 * len, a);
    bytes[a + len..a + 2 * len].copy_from_slice(&first);
    std::fs::write(&moved, &bytes).unwrap();
    let (records, damage) = read_sealed(&moved, &k);
    assert!(records.is_empty(), "{records:?}");
    assert_eq!(
        damage,
        vec![
            Damage::Unauthenticated {
                offset: a as u64,
                bytes: len as u64
            },
            Damage::Unauthenticated {
                offset: (a + len) as u64,
                bytes: len as u64
            }
        ]
    );
}

#[test]
fn an_encrypted_file_cut_anywhere_keeps_every_complete_record_and_appends_with_its_key() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("sealed.rec");
    let k = key(21);
    let ends = write_sealed(&path, &k);
    let full = std::fs::read(&path).unwrap();
    let all = payloads();
    let from = ends[ends.len() - 3] as usize;
    let cut_path = tmp.path().join("cut.rec");
    for cut in (from..full.len())
        .step_by(7)
        .chain(ends.iter().map(|&e| e as usize))
    {
        let _ = std::fs::remove_file(&cut_path);
        std::fs::write(&cut_path, &full[..cut]).unwrap();
        let complete = ends.iter().filter(|&&e| e as usize <= cut).count();
        let (records, damage) = read_sealed(&cut_path, &k);
        assert_eq!(records, all[..complete], "cut at {cut}");
        assert!(
            damage
                .iter()
                .all(|d| matches!(d, Damage::TruncatedTail { .. }))
                && damage.len() <= 1,
            "cut at {cut}: {damage:?}"
        );
        let resume = ends[complete.max(1) - 1] as usize;
        let resume = if complete == 0 {
            ENCRYPTED_HEADER_LEN
        } else {
            resume
        };
        let mut w = RecordingWriter::append_with(&cut_path, Some(&k)).unwrap();
        w.write(RecordKind::Note, b"{\"appended\":true}").unwrap();
        w.finish().unwrap();
        let (records, damage) = read_sealed(&cut_path, &k);
        assert!(damage.is_empty(), "after append, cut at {cut}: {damage:?}");
        assert_eq!(records.len(), complete + 1);
        assert_eq!(records[..complete], all[..complete]);
        // Where the cut record's writer tag was on disk, the appended record's differs: the
        // same offset never gets the same nonce twice.
        let tag_at = resume + 17..resume + 21;
        if cut >= tag_at.end {
            let now = std::fs::read(&cut_path).unwrap();
            assert_ne!(now[tag_at.clone()], full[tag_at], "cut at {cut}");
        }
    }
}

#[test]
fn a_damaged_encrypted_header_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("sealed.rec");
    let k = key(2);
    write_sealed(&path, &k);
    let good = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    bad[40] ^= 0x04; // the salt
    std::fs::write(&path, &bad).unwrap();
    assert!(matches!(
        RecordingReader::open_with(&path, Some(&k)),
        Err(RecordingError::DamagedHeader { .. })
    ));
    let mut flags = good.clone();
    flags[10] = 3;
    let crc = crc32fast::hash(&flags[..48]);
    flags[48..52].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &flags).unwrap();
    assert!(matches!(
        RecordingReader::open_with(&path, Some(&k)),
        Err(RecordingError::UnknownFlags { flags: 3, .. })
    ));
    std::fs::write(&path, &good[..30]).unwrap();
    assert!(matches!(
        RecordingReader::open_with(&path, Some(&k)),
        Err(RecordingError::TruncatedHeader { len: 30, .. })
    ));
}

#[test]
fn key_files_are_owner_only_never_overwritten_and_refused_when_others_can_read_them() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("recording.key");
    let made = create_key_file(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("dinoedge-recording-key v1 "), "{text}");
    assert_eq!(
        text.trim_end().len(),
        "dinoedge-recording-key v1 ".len() + 64
    );
    let loaded = RecordingKey::load(&path).unwrap();
    assert_eq!(loaded, made);
    // Two keys made are two different keys.
    let second = create_key_file(&tmp.path().join("second.key")).unwrap();
    assert_ne!(second.id(), made.id());
    // Never overwritten.
    assert!(matches!(
        create_key_file(&path),
        Err(RecordingError::KeyFileExists { .. })
    ));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    // Readable by the group, or by others: refused, with the fix.
    for open in [0o640, 0o604, 0o660] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(open)).unwrap();
        match RecordingKey::load(&path) {
            Err(e @ RecordingError::KeyFileReadableByOthers { .. }) => {
                let shown = e.to_string();
                assert!(
                    shown.contains(&format!("chmod 600 {}", path.display())),
                    "{shown}"
                );
            }
            other => panic!("mode {open:o}: expected KeyFileReadableByOthers, got {other:?}"),
        }
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    assert_eq!(RecordingKey::load(&path).unwrap(), made);
    // Not a key file.
    let junk = tmp.path().join("junk.key");
    std::fs::write(&junk, "dinoedge-recording-key v1 00ff\n").unwrap();
    std::fs::set_permissions(&junk, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(
        RecordingKey::load(&junk),
        Err(RecordingError::KeyFileFormat { .. })
    ));
    // The key never goes into a recording: only its id does.
    let rec = tmp.path().join("sealed.rec");
    write_sealed(&rec, &made);
    let bytes = std::fs::read(&rec).unwrap();
    let hex = text.split_whitespace().nth(2).unwrap();
    let raw: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    assert!(!bytes.windows(32).any(|w| w == raw.as_slice()));
    assert!(!bytes.windows(64).any(|w| w == hex.as_bytes()));
    assert_eq!(scan_with(&rec, Some(&loaded)).unwrap().damage, vec![]);
}

#[test]
fn imports_refuse_an_existing_output_and_write_owner_only_files() {
    use dinoedge::import::{ImportConfig, ImportError, SourceFrame, import_file, labels_path};
    use dinoedge::proto::PixelFormat;
    let tmp = tempfile::tempdir().unwrap();
    let frames = || {
        (0..3u8).map(|i| {
            Ok(SourceFrame {
                width: 8,
                height: 4,
                format: PixelFormat::Gray8,
                data: vec![i; 32],
                label: Some(format!("class{i}")),
            })
        })
    };
    let config = ImportConfig::default();
    // An existing output is refused and left exactly as it was.
    let out = tmp.path().join("taken.rec");
    std::fs::write(&out, b"someone else's file").unwrap();
    match import_file(frames(), "test", &config, &out, None) {
        Err(ImportError::Exists { path }) => assert_eq!(path, out),
        other => panic!("expected Exists, got {other:?}"),
    }
    assert_eq!(std::fs::read(&out).unwrap(), b"someone else's file");
    assert!(!labels_path(&out).exists());
    // So is an existing labels file, before the recording is made.
    let out = tmp.path().join("labels-taken.rec");
    std::fs::write(labels_path(&out), b"seq,label\n").unwrap();
    assert!(matches!(
        import_file(frames(), "test", &config, &out, None),
        Err(ImportError::Exists { .. })
    ));
    assert!(!out.exists());
    assert_eq!(std::fs::read(labels_path(&out)).unwrap(), b"seq,label\n");
    // A failed import leaves nothing behind.
    let out = tmp.path().join("failed.rec");
    let broken = frames().chain(std::iter::once(Err(ImportError::Config("broken".into()))));
    assert!(import_file(broken, "test", &config, &out, None).is_err());
    assert!(!out.exists() && !labels_path(&out).exists());
    // A new one: owner only, labels too; encrypted with a key.
    let out = tmp.path().join("new.rec");
    let k = key(7);
    let report = import_file(frames(), "test", &config, &out, Some(&k)).unwrap();
    assert_eq!(report.frames, 3);
    assert_eq!(mode(&out), 0o600);
    assert_eq!(mode(&labels_path(&out)), 0o600);
    assert!(matches!(
        RecordingReader::open(&out),
        Err(RecordingError::KeyRequired { .. })
    ));
    assert!(scan_with(&out, Some(&k)).unwrap().damage.is_empty());
}
