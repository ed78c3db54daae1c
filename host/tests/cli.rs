//! The `dinoedge` binary as users run it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::process::Command;

fn dinoedge(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dinoedge"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn synth_then_inspect() {
    let dir = std::env::temp_dir().join(format!("dinoedge-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let capture = dir.join("demo.wire");
    let capture = capture.to_str().unwrap();
    let (code, out, err) = dinoedge(&[
        "wire", "synth", "-o", capture, "--frames", "5", "--size", "128x96",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("5 frames"), "{out}");
    let (code, out, _) = dinoedge(&["wire", "inspect", capture]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("frames delivered 5 (61440 bytes), lost 0"),
        "{out}"
    );

    // Damage one byte in the middle: the frame it belongs to is lost, named, and the exit
    // code says trouble was found.
    let mut bytes = std::fs::read(capture).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(capture, &bytes).unwrap();
    let (code, out, _) = dinoedge(&["wire", "inspect", capture]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("lost 1"), "{out}");
    assert!(out.contains("frame 2 lost: MissingChunk"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_arguments_are_named() {
    let (code, _, err) = dinoedge(&["wire", "synth", "-o", "/dev/null", "--size", "640by480"]);
    assert_eq!(code, 2);
    assert!(err.contains("not WIDTHxHEIGHT"), "{err}");
    let (code, _, err) = dinoedge(&["wire", "synth", "-o", "/dev/null", "--packet", "100"]);
    assert_eq!(code, 2);
    assert!(err.contains("below the protocol minimum"), "{err}");
    let (code, _, err) = dinoedge(&["wire", "inspect", "/nonexistent/capture"]);
    assert_eq!(code, 2);
    assert!(err.contains("opening /nonexistent/capture"), "{err}");
}

#[test]
fn link_needs_to_know_where_the_edge_is() {
    let (code, _, err) = dinoedge(&["link"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--serial PATH, --tcp ADDR or --listen ADDR"),
        "{err}"
    );
    let (code, _, err) = dinoedge(&["link", "--serial", "/nonexistent/tty", "--seconds", "0.5"]);
    // A device that cannot be opened is named and retried (it may be plugged in later); the
    // run ends at its deadline with nothing received.
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("cannot open the link") && err.contains("/nonexistent/tty"),
        "{err}"
    );
}
