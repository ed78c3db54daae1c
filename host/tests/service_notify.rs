//! `dinoedge run` as systemd runs it (`packaging/dinoedge.service`, `Type=notify`): the
//! notifications it sends to `$NOTIFY_SOCKET`, read from a datagram socket in a test folder,
//! and the packaged config file, which must be one `run --config` accepts.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::{dinoedge, fixture_model, gray_frame, s, scratch};

/// `frames` 64x64 frames recorded at `fps`, as an edge would have sent them.
fn recording(dir: &Path, frames: u32, fps: f64) -> PathBuf {
    let path = dir.join("frames.rec");
    let mut w = dinoedge::recording::RecordingWriter::create(&path).unwrap();
    let config = dinoedge::import::ImportConfig {
        fps,
        packet: 2048,
        ..dinoedge::import::ImportConfig::default()
    };
    let source = (0..frames).map(|i| Ok(gray_frame(64, 64, i)));
    let report = dinoedge::import::import(source, "test", &config, &mut w).unwrap();
    assert_eq!(report.frames, frames);
    w.finish().unwrap();
    path
}

/// Runs `dinoedge ARGS` with `env`, with `$NOTIFY_SOCKET` pointing at a socket in `dir`;
/// returns (exit code, stderr, every notification in the order sent).
fn run_notified(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, Vec<String>) {
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    // Read while the child runs: the kernel queues only a few datagrams per socket. The
    // timeout only lets the reader see that the child has ended; nothing depends on its value.
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut messages = Vec::new();
            let mut buf = vec![0u8; 4096];
            loop {
                // Read the flag before the socket: a message sent before the child ended is
                // in the queue by the time the flag is seen set.
                let finished = done.load(Ordering::SeqCst);
                match socket.recv(&mut buf) {
                    Ok(n) => messages.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                    Err(_) if finished => return messages,
                    Err(_) => {}
                }
            }
        })
    };
    let mut command = Command::new(env!("CARGO_BIN_EXE_dinoedge"));
    command
        .args(args)
        .env("NOTIFY_SOCKET", &socket_path)
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    done.store(true, Ordering::SeqCst);
    let messages = reader.join().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        messages,
    )
}

fn position(messages: &[String], line: &str) -> Vec<usize> {
    messages
        .iter()
        .enumerate()
        .filter(|(_, m)| m.lines().any(|l| l == line))
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn a_run_says_ready_once_pets_the_watchdog_after_it_and_says_when_it_stops() {
    let tmp = scratch("service", "notify");
    // 30 frames at 20 frames/s, replayed at the recorded pace: the run lasts at least 1.45 s,
    // so the pipeline's half-second status tick comes at least twice.
    let rec = recording(&tmp, 30, 20.0);
    let model = fixture_model("tiny_mlp");
    let (code, err, messages) = run_notified(
        &tmp,
        &[
            "run",
            "--replay",
            &s(&rec),
            "--model",
            &model,
            "--size",
            "64x64",
            "--realtime",
        ],
        &[("WATCHDOG_USEC", "60000000")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        messages
            .first()
            .is_some_and(|m| m.starts_with("STATUS=loading")),
        "{messages:?}"
    );
    let ready = position(&messages, "READY=1");
    assert_eq!(ready.len(), 1, "{messages:?}");
    let pets = position(&messages, "WATCHDOG=1");
    assert!(!pets.is_empty(), "no watchdog pet: {messages:?}");
    assert!(pets.iter().all(|&p| p > ready[0]), "{messages:?}");
    // A status goes with each pet.
    for &p in &pets {
        assert!(messages[p].contains("STATUS="), "{}", messages[p]);
    }
    let stopping = position(&messages, "STOPPING=1");
    assert_eq!(stopping, vec![messages.len() - 1], "{messages:?}");
    // Nothing a status says can be read as another key.
    for m in &messages {
        for line in m.lines() {
            assert!(
                ["READY=1", "WATCHDOG=1", "STOPPING=1"].contains(&line)
                    || line.starts_with("STATUS="),
                "unexpected line {line:?} in {m:?}"
            );
        }
    }
}

#[test]
fn a_watchdog_meant_for_another_process_is_not_petted_and_a_foreign_journal_stream_is_ignored() {
    let tmp = scratch("service", "other-pid");
    let rec = recording(&tmp, 3, 200.0);
    let model = fixture_model("tiny_mlp");
    let (code, err, messages) = run_notified(
        &tmp,
        &[
            "run",
            "--replay",
            &s(&rec),
            "--model",
            &model,
            "--size",
            "64x64",
            "--policy",
            "offline",
        ],
        // PID 1 is never the test's child. A JOURNAL_STREAM that is not this stderr (a pipe
        // here) leaves the log on stderr.
        &[
            ("WATCHDOG_USEC", "60000000"),
            ("WATCHDOG_PID", "1"),
            ("JOURNAL_STREAM", "1:1"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(position(&messages, "READY=1").len(), 1, "{messages:?}");
    assert!(position(&messages, "WATCHDOG=1").is_empty(), "{messages:?}");
    assert!(
        err.contains("frames received"),
        "the summary on stderr: {err}"
    );
}

#[test]
fn a_run_without_a_notify_socket_sends_nothing_and_runs_as_before() {
    let tmp = scratch("service", "plain");
    let rec = recording(&tmp, 3, 200.0);
    let model = fixture_model("tiny_mlp");
    let (code, _, err) = dinoedge(&[
        "run",
        "--replay",
        &s(&rec),
        "--model",
        &model,
        "--size",
        "64x64",
        "--policy",
        "offline",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("notifying systemd"), "{err}");
}

#[test]
fn the_packaged_config_is_accepted_by_run_config() {
    let packaged = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/dinoedge.toml");
    let text = std::fs::read_to_string(packaged).unwrap();
    // The same file, with its keys folder pointing at an empty one of the test's: the run
    // then gets past the config (its keys and every flag they stand for) and stops at the
    // first thing the file cannot provide, the link keys.
    let tmp = scratch("service", "config");
    let keys = tmp.join("keys");
    std::fs::create_dir(&keys).unwrap();
    assert_eq!(text.matches("\"/etc/dinoedge/keys\"").count(), 1);
    let config = tmp.join("dinoedge.toml");
    std::fs::write(
        &config,
        text.replace("\"/etc/dinoedge/keys\"", &format!("{:?}", s(&keys))),
    )
    .unwrap();
    let (code, _, err) = dinoedge(&["run", "--config", &s(&config)]);
    assert_eq!(code, 2, "{err}");
    assert!(!err.contains("is refused"), "{err}");
    assert!(err.contains("holds no link keys"), "{err}");
    assert!(err.contains(&s(&keys)), "{err}");
}
