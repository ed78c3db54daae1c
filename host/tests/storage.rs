//! Recordings and results over a long run (`dinoedge::storage`): a recording rotated by size
//! leaves files that each read back whole and together hold every byte (or, with retention,
//! the newest ones); a low disk stops the recording with its file complete while results go
//! on; `run` does both through its flags, with the free space faked through
//! `$DINOEDGE_FAKE_FREE_BYTES`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dinoedge::recording::reader::scan_with;
use dinoedge::recording::{RecordKind, RecordingKey, RecordingReader, RecordingWriter};
use dinoedge::storage::{
    FreeSpace, MinFree, Policy, Retention, Rotation, Space, StopReason, StorageConfig, snapshot,
};

use crate::common::{fixture_model, gray_frame, read_json, s, scratch, write_recording};

const GIB: u64 = 1 << 30;

fn driven(free: &Arc<AtomicU64>) -> Arc<dyn FreeSpace> {
    let free = free.clone();
    Arc::new(move |_: &Path| {
        Ok(Space {
            available: free.load(Ordering::Relaxed),
            total: 100 * GIB,
        })
    })
}

/// The numbered files in `dir` whose names start with `stem`, in order.
fn numbered(dir: &Path, stem: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(&format!("{stem}."))
        })
        .collect();
    files.sort();
    files
}

/// Every record of `path`, checked to be undamaged.
fn records(path: &Path, key: Option<&RecordingKey>) -> Vec<(RecordKind, Vec<u8>)> {
    let scan = scan_with(path, key).unwrap();
    assert!(
        scan.damage.is_empty(),
        "{}: {:?}",
        path.display(),
        scan.damage
    );
    let mut reader = RecordingReader::open_with(path, key).unwrap();
    let mut out = Vec::new();
    while let Some(r) = reader.next_record().unwrap() {
        out.push((r.kind, r.payload));
    }
    assert!(reader.damage().is_empty());
    out
}

fn note(payload: &[u8]) -> serde_json::Value {
    serde_json::from_slice(payload).unwrap()
}

/// 300 edge reads of 200 bytes each, numbered, through a writer rotating at 8 KiB.
fn rotate_recording(key: Option<RecordingKey>, keep_files: Option<usize>) {
    let tmp = scratch("storage", "rotate");
    let base = tmp.join("session.rec");
    let free = Arc::new(AtomicU64::new(50 * GIB));
    let config = StorageConfig {
        policy: Policy {
            rotation: Rotation {
                max_bytes: Some(8 * 1024),
                max_age: None,
            },
            retention: Retention {
                max_files: keep_files,
                max_bytes: None,
            },
        },
        min_free: MinFree::Bytes(GIB),
        space: driven(&free),
    };
    let mut w = RecordingWriter::create_rotating(&base, key.as_ref(), &config).unwrap();
    let report = w.storage_report().unwrap();
    w.write(RecordKind::Connected, b"tcp 127.0.0.1:7000")
        .unwrap();
    let mut sent = Vec::new();
    for i in 0..300u32 {
        let payload: Vec<u8> = (0..200u32).map(|b| ((i * 7 + b) % 251) as u8).collect();
        w.write(RecordKind::EdgeToHost, &payload).unwrap();
        sent.push(payload);
    }
    w.finish().unwrap();

    let files = numbered(&tmp, "session");
    let r = snapshot(&report);
    assert_eq!(r.files.len() as u64, r.rotations + 1);
    assert!(r.rotations >= 7, "{r:?}");
    assert!(
        !base.exists(),
        "a numbered set never writes the base name itself"
    );
    // Each file reads back whole on its own; the notes name the files before and after.
    let mut edge = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let recs = records(file, key.as_ref());
        assert!(
            std::fs::metadata(file).unwrap().len() <= 8 * 1024 + 300,
            "{}",
            file.display()
        );
        let name = |p: &Path| p.file_name().unwrap().to_str().unwrap().to_owned();
        let (first, last) = (&recs[0], recs.last().unwrap());
        if file != &r.files[0] {
            assert_eq!(first.0, RecordKind::Note);
            let previous = note(&first.1)["continues"].as_str().unwrap().to_owned();
            assert!(previous < name(file), "{previous}");
        }
        if i + 1 < files.len() {
            assert_eq!(last.0, RecordKind::Note);
            assert_eq!(note(&last.1)["rotated_to"], name(&files[i + 1]));
        }
        if key.is_some() {
            assert!(
                RecordingReader::open(file).is_err(),
                "sealed without the key"
            );
        }
        edge.extend(
            recs.into_iter()
                .filter(|(k, _)| *k == RecordKind::EdgeToHost)
                .map(|(_, p)| p),
        );
    }
    match keep_files {
        // Nothing lost: every read, in order, across the files.
        None => {
            assert_eq!(files.len(), r.files.len());
            assert_eq!(edge, sent);
            assert!(r.deleted.is_empty());
        }
        // The newest files, whole: a tail of what was sent.
        Some(n) => {
            assert_eq!(files.len(), n);
            assert_eq!(files, r.files[r.files.len() - n..]);
            assert_eq!(r.deleted, r.files[..r.files.len() - n]);
            assert!(!edge.is_empty() && edge.len() < sent.len());
            assert_eq!(edge[..], sent[sent.len() - edge.len()..]);
        }
    }
}

#[test]
fn a_recording_rotated_by_size_reads_back_file_by_file_and_loses_nothing() {
    rotate_recording(None, None);
}

#[test]
fn an_encrypted_recording_rotates_with_its_key_and_keeps_the_newest_files() {
    let tmp = scratch("storage", "key");
    let key = dinoedge::recording::create_key_file(&tmp.join("recording.key")).unwrap();
    rotate_recording(Some(key), Some(3));
}

#[test]
fn a_low_disk_stops_the_recording_with_its_file_complete() {
    let tmp = scratch("storage", "low");
    let base = tmp.join("session.rec");
    let free = Arc::new(AtomicU64::new(50 * GIB));
    let config = StorageConfig {
        policy: Policy::default(),
        min_free: MinFree::Bytes(GIB),
        space: driven(&free),
    };
    let mut w = RecordingWriter::create_rotating(&base, None, &config).unwrap();
    let report = w.storage_report().unwrap();
    w.write(RecordKind::Connected, b"serial /dev/ttyACM0")
        .unwrap();
    // 4 MiB in, the guard reads again: the disk has filled from elsewhere.
    let chunk = vec![7u8; 64 * 1024];
    for _ in 0..60 {
        w.write(RecordKind::EdgeToHost, &chunk).unwrap();
    }
    assert!(!w.stopped());
    free.store(GIB / 2, Ordering::Relaxed);
    for _ in 0..20 {
        // The tap goes on handing bytes over; none is written, none fails.
        w.write(RecordKind::EdgeToHost, &chunk).unwrap();
    }
    assert!(w.stopped());
    let records_written = w.records();
    w.finish().unwrap();

    let recs = records(&base, None);
    assert_eq!(recs.len() as u64, records_written);
    let (kind, last) = recs.last().unwrap();
    assert_eq!(*kind, RecordKind::Note);
    let last = note(last);
    assert_eq!(last["stopped"], "disk_low");
    assert_eq!(last["free_bytes"], GIB / 2);
    let edge: usize = recs
        .iter()
        .filter(|(k, _)| *k == RecordKind::EdgeToHost)
        .map(|(_, p)| p.len())
        .sum();
    // Everything before the stop is there.
    assert!(edge >= 60 * chunk.len(), "{edge}");
    let r = snapshot(&report);
    let stopped = r.stopped.unwrap();
    assert_eq!(stopped.reason, StopReason::DiskLow);
    assert_eq!(stopped.file, base);
    assert!(r.bytes_not_written > 0);
    assert_eq!(
        r.bytes_written,
        std::fs::metadata(&base).unwrap().len() - 24
    );
}

// ---- through the binary ----

/// `dinoedge run --tcp` against an edge played by this test: it sends a session of 40
/// frames, reads whatever the host answers, and waits for the run (which stops after 6
/// processed frames) to end. Returns (exit code, stdout, stderr).
fn live_run(extra: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let model = fixture_model("tiny_mlp");
    let mut command = Command::new(env!("CARGO_BIN_EXE_dinoedge"));
    command
        .args(["run", "--tcp", &addr, "--link-cleartext", "--model", &model])
        .args(["--size", "32x32", "--policy", "offline", "--frames", "6"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let child = command.spawn().unwrap();
    let (mut edge, _) = listener.accept().unwrap();
    let mut answers = edge.try_clone().unwrap();
    // The host's answers are drained so that it never waits on a full socket.
    let drain = std::thread::spawn(move || {
        let mut sink = [0u8; 4096];
        while matches!(answers.read(&mut sink), Ok(n) if n > 0) {}
    });
    // The host may hang up once it has its frames: a failed write ends the session early.
    let _ = edge.write_all(&crate::common::edge_session_bytes("storage-test", 40));
    let out = child.wait_with_output().unwrap();
    let _ = edge.shutdown(std::net::Shutdown::Both);
    drop::<TcpStream>(edge);
    drain.join().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn run_rotates_its_recording_and_keeps_the_newest_files() {
    let tmp = scratch("storage", "run-rotate");
    let base = tmp.join("session.rec");
    let report = tmp.join("report.json");
    let (code, _, err) = live_run(
        &[
            "--record",
            &s(&base),
            "--record-rotate-size",
            "64KiB",
            "--record-keep-files",
            "3",
            "--report",
            &s(&report),
        ],
        &[],
    );
    assert!(code == 0 || code == 1, "{err}");
    let r = read_json(&report);
    let rec = &r["storage"]["recording"];
    let rotations = rec["rotations"].as_u64().unwrap();
    assert!(rotations >= 3, "{r}");
    assert_eq!(rec["files"].as_array().unwrap().len() as u64, rotations + 1);
    assert_eq!(
        rec["deleted"].as_array().unwrap().len() as u64,
        rotations + 1 - 3
    );
    assert!(rec["stopped"].is_null(), "{r}");
    let files = numbered(&tmp, "session");
    assert_eq!(files.len(), 3, "{files:?}");
    for file in &files {
        records(file, None);
    }
    assert!(err.contains("recording: "), "{err}");
}

#[test]
fn run_stops_recording_on_a_low_disk_and_goes_on_with_results() {
    let tmp = scratch("storage", "run-low");
    let base = tmp.join("session.rec");
    let report = tmp.join("report.json");
    let (code, out, err) = live_run(
        &[
            "--record",
            &s(&base),
            "--min-free",
            "1GiB",
            "--results",
            "-",
            "--report",
            &s(&report),
        ],
        &[("DINOEDGE_FAKE_FREE_BYTES", "100MiB")],
    );
    assert!(code == 0 || code == 1, "{err}");
    // Results went on: one line per processed frame.
    let r = read_json(&report);
    assert_eq!(
        out.lines().count() as u64,
        r["frames_processed"].as_u64().unwrap()
    );
    assert!(r["frames_processed"].as_u64().unwrap() >= 6, "{r}");
    let stopped = &r["storage"]["recording"]["stopped"];
    assert_eq!(stopped["reason"], "disk_low", "{r}");
    assert_eq!(stopped["free_bytes"], 100 << 20);
    assert_eq!(stopped["min_free_bytes"], GIB);
    assert_eq!(stopped["file"], s(&base));
    // The file is complete: its header and the note saying why it ends.
    let recs = records(&base, None);
    let (kind, last) = recs.last().unwrap();
    assert_eq!(*kind, RecordKind::Note);
    assert_eq!(note(last)["stopped"], "disk_low");
    assert!(err.contains("disk space low"), "{err}");
    assert!(err.contains("STOPPED"), "{err}");
}

#[test]
fn replay_results_rotate_and_stop_on_a_low_disk() {
    let tmp = scratch("storage", "results");
    let rec = write_recording(
        &tmp.join("frames.rec"),
        (0..12).map(|i| gray_frame(64, 48, i)).collect(),
    );
    let model = fixture_model("tiny_mlp");
    let base = tmp.join("out").join("results.jsonl");
    std::fs::create_dir(tmp.join("out")).unwrap();
    let report = tmp.join("report.json");
    let args = |base: &Path, report: &Path| {
        vec![
            "run".to_owned(),
            "--replay".into(),
            s(&rec),
            "--model".into(),
            model.clone(),
            "--size".into(),
            "32x32".into(),
            "--policy".into(),
            "offline".into(),
            "--results".into(),
            s(base),
            "--results-rotate-size".into(),
            "2KB".into(),
            "--report".into(),
            s(report),
        ]
    };
    let out = Command::new(env!("CARGO_BIN_EXE_dinoedge"))
        .args(args(&base, &report))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files = numbered(&tmp.join("out"), "results");
    assert!(files.len() >= 2, "{files:?}");
    let mut lines = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(
            text.len() <= 2000 && text.ends_with('\n'),
            "{}",
            f.display()
        );
        for line in text.lines() {
            serde_json::from_str::<serde_json::Value>(line).unwrap();
            lines += 1;
        }
    }
    assert_eq!(lines, 12);
    let r = read_json(&report);
    assert_eq!(
        r["storage"]["results"]["files"].as_array().unwrap().len(),
        files.len()
    );

    // The same on a disk with too little free: the first file stays empty and complete, the
    // run still succeeds, and the report says why.
    let base = tmp.join("low.jsonl");
    let report = tmp.join("low-report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_dinoedge"))
        .args(args(&base, &report))
        .env("DINOEDGE_FAKE_FREE_BYTES", "10MiB")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = read_json(&report);
    assert_eq!(r["frames_processed"], 12);
    assert_eq!(
        r["storage"]["results"]["stopped"]["reason"], "disk_low",
        "{r}"
    );
    let first = numbered(&tmp, "low");
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(std::fs::read_to_string(&first[0]).unwrap(), "");
}
