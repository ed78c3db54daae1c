//! Helpers shared by the tests that run the `dinoedge` binary.
// Each test binary that includes this module uses only some of it.
#![allow(dead_code)]

use std::process::Command;

/// Runs `dinoedge ARGS`; returns (exit code, stdout, stderr).
pub fn dinoedge(args: &[&str]) -> (i32, String, String) {
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

/// Runs `dinoedge ARGS` with `dir` as the working folder (for commands that write under a
/// default relative path); returns (exit code, stdout, stderr).
pub fn dinoedge_in(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dinoedge"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A JSON file, parsed.
pub fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A fixture model folder under `models/fixtures/`, as a string for the command line.
pub fn fixture_model(name: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// A test's own temporary folder, removed when dropped; it reads as the folder's path.
pub struct Scratch(tempfile::TempDir);

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        self.0.path()
    }
}

impl AsRef<std::path::Path> for Scratch {
    fn as_ref(&self) -> &std::path::Path {
        self.0.path()
    }
}

/// A fresh scratch folder for one test; `kind` and `tag` start its name, for a reader of /tmp.
pub fn scratch(kind: &str, tag: &str) -> Scratch {
    Scratch(
        tempfile::Builder::new()
            .prefix(&format!("dinoedge-{kind}-{tag}-"))
            .tempdir()
            .unwrap(),
    )
}

/// A path as a command-line argument.
pub fn s(p: &std::path::Path) -> String {
    p.display().to_string()
}

/// A 40x30 grey image: `level` plus a little deterministic texture.
pub fn grey(path: &std::path::Path, level: u8, seed: u32) {
    let img = image::GrayImage::from_fn(40, 30, |x, y| {
        let t = (x * 7 + y * 13 + seed * 31) % 17;
        image::Luma([level.saturating_add(t as u8)])
    });
    img.save(path).unwrap();
}

/// Image `i` of the square set and its mask, as `images/<i>.png` and `masks/<i>.png`: a
/// bright 24x24 square on a dark 64x64 frame, in a different place each time.
pub fn square(images: &std::path::Path, masks: &std::path::Path, i: u32) {
    let (x0, y0) = (4 + (i * 5) % 32, 6 + (i * 11) % 30);
    let inside = |x: u32, y: u32| (x0..x0 + 24).contains(&x) && (y0..y0 + 24).contains(&y);
    image::GrayImage::from_fn(64, 64, |x, y| {
        image::Luma([if inside(x, y) {
            220
        } else {
            30 + ((x + y) % 5) as u8
        }])
    })
    .save(images.join(format!("{i}.png")))
    .unwrap();
    image::GrayImage::from_fn(64, 64, |x, y| {
        image::Luma([if inside(x, y) { 255 } else { 0 }])
    })
    .save(masks.join(format!("{i}.png")))
    .unwrap();
}

/// A `w` x `h` Gray8 frame with a texture that differs with `seed`.
pub fn gray_frame(w: u16, h: u16, seed: u32) -> dinoedge::import::SourceFrame {
    let data = (0..u32::from(w) * u32::from(h))
        .map(|p| ((p * 7 + seed * 13) % 251) as u8)
        .collect();
    dinoedge::import::SourceFrame {
        width: w,
        height: h,
        format: dinoedge::proto::PixelFormat::Gray8,
        data,
        label: None,
    }
}

/// `frames` as an edge would have sent them (200 fps, 2 KiB packets), recorded at `path`.
pub fn write_recording(
    path: &std::path::Path,
    frames: Vec<dinoedge::import::SourceFrame>,
) -> std::path::PathBuf {
    let n = frames.len() as u32;
    let mut w = dinoedge::recording::RecordingWriter::create(path).unwrap();
    let config = dinoedge::import::ImportConfig {
        fps: 200.0,
        packet: 2048,
        ..dinoedge::import::ImportConfig::default()
    };
    let report =
        dinoedge::import::import(frames.into_iter().map(Ok), "test", &config, &mut w).unwrap();
    assert_eq!(report.frames, n);
    w.finish().unwrap();
    path.to_owned()
}

/// The echo cine shipped in tests/data, imported as a recording into `dir`; its path.
pub fn import_echo_cine(dir: &std::path::Path) -> std::path::PathBuf {
    let rec = dir.join("echo.rec");
    let dcm = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/echo_cine.dcm");
    let (code, _, err) = dinoedge(&["import", "--dicom", dcm, "-o", rec.to_str().unwrap_or("")]);
    assert_eq!(code, 0, "{err}");
    rec
}

/// The bytes of an edge session as it arrives on the link: a `Hello` from `device`, then
/// `frames` 160x120 Gray8 frames of the synthetic pattern.
pub fn edge_session_bytes(device: &str, frames: u32) -> Vec<u8> {
    use dinoedge::proto::{
        Capabilities, Hello, MIN_PACKET, Message, PROTOCOL_VERSION, PixelFormat, Sensor, Version,
        wire,
    };
    use dinoedge::wire_tools::synth::{SynthConfig, synthesize};
    let hello = Hello {
        protocol_version: PROTOCOL_VERSION,
        device_id: heapless::String::try_from(device).unwrap(),
        firmware_version: Version {
            major: 1,
            minor: 0,
            patch: 0,
        },
        sensor: Sensor {
            width: 160,
            height: 120,
            format: PixelFormat::Gray8,
            fps_milli: 30_000,
        },
        max_packet_tx: 4096,
        max_packet_rx: MIN_PACKET as u32,
        capabilities: Capabilities::default(),
        previous: None,
    };
    let mut buf = vec![0u8; wire::encode_buffer_len(4096)];
    let mut out = wire::encode_limited(&Message::Hello(hello), 4096, &mut buf)
        .unwrap()
        .to_vec();
    let config = SynthConfig {
        frames,
        width: 160,
        height: 120,
        ..SynthConfig::default()
    };
    synthesize(&config, &mut out).unwrap();
    out
}
