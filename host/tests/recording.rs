//! The recording format: round trip, a crash mid-write, damage in the middle, versions.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use dinoedge::recording::{
    Damage, FORMAT_VERSION, HEADER_LEN, RECORD_OVERHEAD, RecordKind, RecordingError,
    RecordingReader, RecordingWriter,
};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dinoedge-recording-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
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
    let path = temp("roundtrip.rec");
    write_all(&path);
    let (records, damage) = read_all(&path);
    assert_eq!(records, payloads());
    assert!(damage.is_empty(), "{damage:?}");
}

#[test]
fn a_file_cut_anywhere_keeps_every_complete_record_and_reopens_for_append() {
    let path = temp("cut.rec");
    let ends = write_all(&path);
    let full = std::fs::read(&path).unwrap();
    let all = payloads();
    // Cut at every offset inside the last three records, as a kill -9 or power loss would.
    let from = ends[ends.len() - 4] as usize;
    let mut cuts: Vec<usize> = (from..full.len()).step_by(5).collect();
    cuts.extend(ends.iter().map(|&e| e as usize - 1));
    cuts.extend(ends.iter().map(|&e| e as usize));
    for cut in cuts.into_iter().filter(|&c| c >= from) {
        let cut_path = temp("cut-at.rec");
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
    let path = temp("damaged.rec");
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
    let path = temp("version.rec");
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
