//! The live view as users run it: `dinoedge replay --http` serves the frames of a replay,
//! its results on the event stream and the frame as JPEG; a viewer that stops reading holds
//! nothing up; `/metrics` counts what the replay did.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};

use crate::common::fixture_model;

/// The replay process, killed if the test ends early.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = String::from_utf8_lossy(&all[..split])
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    (status, all[split + 4..].to_vec())
}

#[test]
fn a_replay_with_the_view_on_serves_its_frames_and_a_stalled_viewer_blocks_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let rec = crate::common::import_echo_cine(tmp.path());
    let results = tmp.path().join("results.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dinoedge"))
        .args(["replay", rec.to_str().unwrap(), "--http", "127.0.0.1:0"])
        .args(["--model", &fixture_model("tiny_mlp"), "--size", "64x64"])
        .args(["--policy", "offline", "--realtime", "--speed", "0.5"])
        .args(["--results", results.to_str().unwrap()])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let addr: SocketAddr = loop {
        let line = lines
            .next()
            .expect("the replay ended before its view")
            .unwrap();
        if let Some(url) = line.strip_prefix("view at http://") {
            break url.trim_end_matches('/').parse().unwrap();
        }
    };
    let summary = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    let child = Child(child);

    // A viewer that asks for the stream and never reads a byte of it.
    let mut stalled = TcpStream::connect(addr).unwrap();
    write!(stalled, "GET /events HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();

    // A viewer that reads: updates until one carries a frame and its JPEG.
    let mut viewer = TcpStream::connect(addr).unwrap();
    write!(viewer, "GET /events HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut reader = BufReader::new(viewer);
    let update = loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the stream ended");
        if let Some(json) = line.strip_prefix("data: ") {
            let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
            if v["jpeg"].is_string() && v["frame"]["seq"].is_u64() {
                break v;
            }
        }
    };
    assert!(update["random_weights"].is_boolean());
    assert_eq!(update["random_weights"], update["frame"]["random_weights"]);
    assert_eq!(update["link"]["state"], "replay");
    assert!(update["frame"]["latency_ms"].as_f64().unwrap() > 0.0);
    let (status, jpeg) = get(addr, update["jpeg"].as_str().unwrap());
    assert_eq!(status, 200);
    assert_eq!(&jpeg[..3], &[0xff, 0xd8, 0xff], "a JPEG");
    let decoded = image::load_from_memory(&jpeg).unwrap();
    assert_eq!(
        (decoded.width(), decoded.height()),
        (320, 240),
        "the whole frame"
    );
    let (status, metrics) = get(addr, "/metrics");
    assert_eq!(status, 200);
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(metrics.contains("dinoedge_view_viewers 2"), "{metrics}");
    assert!(metrics.contains("dinoedge_latency_ms_bucket{le=\"+Inf\"}"));
    drop(reader);

    // The replay goes on to the end with the stalled viewer still connected.
    let mut child = child;
    let status = child.0.wait().unwrap();
    let summary = summary.join().unwrap().join("\n");
    assert!(status.success(), "{summary}");
    assert!(
        summary.contains("30 frames received, 30 processed"),
        "{summary}"
    );
    let lines = std::fs::read_to_string(&results).unwrap().lines().count();
    assert_eq!(lines, 30);
    drop(stalled);
}
