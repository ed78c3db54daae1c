//! `dinoedge record` killed with SIGKILL mid-stream: every complete record is readable, the
//! recorded edge bytes are exactly a prefix of what the edge sent, the file reopens for append
//! without repair, and it replays; the same for a recording encrypted with `--recording-key`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dinoedge::recording::reader::scan_with;
use dinoedge::recording::{
    Damage, RecordKind, RecordingError, RecordingKey, RecordingReader, RecordingWriter,
    create_key_file,
};

#[test]
fn a_recording_killed_mid_stream_keeps_everything_complete() {
    killed_mid_stream(false);
}

#[test]
fn an_encrypted_recording_killed_mid_stream_keeps_everything_complete() {
    killed_mid_stream(true);
}

fn killed_mid_stream(encrypted: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let file = dir.join("crash.rec");
    let key_file = dir.join("recording.key");
    let key: Option<RecordingKey> = encrypted.then(|| create_key_file(&key_file).unwrap());
    let mut command = Command::new(env!("CARGO_BIN_EXE_dinoedge"));
    command
        .args([
            "record",
            "--listen",
            "127.0.0.1:0",
            "--link-cleartext",
            "-o",
        ])
        .arg(&file);
    if encrypted {
        command.arg("--recording-key").arg(&key_file);
    }
    let mut recorder = command
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // The recorder says where it listens.
    let mut lines = BufReader::new(recorder.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(a) = line.strip_prefix("listening on ") {
            break a.trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let sent = crate::common::edge_session_bytes("crash-test", 2000);
    let mut edge = TcpStream::connect(&addr).unwrap();
    // Send in uneven pieces until a good part is on disk, then kill the recorder mid-stream.
    let started = Instant::now();
    let mut offset = 0;
    while offset < sent.len() {
        let n = (offset % 7919 + 1000).min(sent.len() - offset);
        if edge.write_all(&sent[offset..offset + n]).is_err() {
            break;
        }
        offset += n;
        let on_disk = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        if on_disk > sent.len() as u64 / 3 || started.elapsed() > Duration::from_secs(30) {
            break;
        }
    }
    recorder.kill().unwrap();
    recorder.wait().unwrap();
    drop(edge);

    // Owner only, from the start.
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
    }
    if encrypted {
        // Sealed: no key, no records.
        assert!(matches!(
            RecordingReader::open(&file),
            Err(RecordingError::KeyRequired { .. })
        ));
    }

    // Everything complete reads back; at most the record being written is incomplete.
    let summary = scan_with(&file, key.as_ref()).unwrap();
    assert!(
        summary
            .damage
            .iter()
            .all(|d| matches!(d, Damage::TruncatedTail { .. }))
            && summary.damage.len() <= 1,
        "{:?}",
        summary.damage
    );
    let mut reader = RecordingReader::open_with(&file, key.as_ref()).unwrap();
    let mut recorded = Vec::new();
    while let Some(r) = reader.next_record().unwrap() {
        if r.kind == RecordKind::EdgeToHost {
            recorded.extend_from_slice(&r.payload);
        }
    }
    assert!(
        recorded.len() > 100_000,
        "{} bytes recorded",
        recorded.len()
    );
    assert_eq!(
        recorded[..],
        sent[..recorded.len()],
        "recorded bytes are the sent bytes, bit for bit"
    );

    // The file reopens without repair: appending cuts off the incomplete record only.
    let mut writer = RecordingWriter::append_with(&file, key.as_ref()).unwrap();
    writer
        .write(RecordKind::Note, b"{\"resumed\":true}")
        .unwrap();
    writer.finish().unwrap();
    assert!(scan_with(&file, key.as_ref()).unwrap().damage.is_empty());

    // And it replays: frames come out of the link.
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/fixtures/tiny_mlp");
    let results = dir.join("results.jsonl");
    let mut args = vec![
        "replay",
        file.to_str().unwrap(),
        "--model",
        model,
        "--size",
        "64x64",
        "--results",
        results.to_str().unwrap(),
    ];
    if encrypted {
        args.extend(["--recording-key", key_file.to_str().unwrap()]);
    }
    let (code, _, err) = crate::common::dinoedge(&args);
    assert!(code == 0 || code == 1, "{err}");
    let frames = std::fs::read_to_string(&results).unwrap().lines().count();
    assert!(frames >= 10, "{frames} frames replayed; {err}");
}
