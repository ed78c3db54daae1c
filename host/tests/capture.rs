//! Capture on the host (V4L2) without a device: recorded buffers (host/tests/data/v4l2, made by
//! ffmpeg, see SOURCES.md) converted and compared with ffmpeg's own conversion and with the
//! BT.601 formulas; damaged buffers counted, not panicked on; the stage feeding the whole
//! pipeline; and `dinoedge run --v4l2` refusing a missing path or a non-V4L2 file by name.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::common::{dinoedge, s, scratch};
use dinoedge::backbone::{InputSize, ModelDir};
use dinoedge::capture::{
    BufferSource, CaptureFormat, CaptureLoss, ConvertError, Layout, RecordedBuffers, Timestamp,
    convert,
};
use dinoedge::engine::EngineSetup;
use dinoedge::heads::{HeadFiles, Task};
use dinoedge::pipeline::{self, Input, Models, PipelineConfig, Policy};
use dinoedge::proto::PixelFormat;

const W: u32 = 64;
const H: u32 = 48;

fn data(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/v4l2")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn formats() -> [(&'static str, CaptureFormat); 8] {
    [
        ("yuyv", CaptureFormat::Yuyv),
        ("uyvy", CaptureFormat::Uyvy),
        ("nv12", CaptureFormat::Nv12),
        ("grey", CaptureFormat::Grey),
        ("rgb24", CaptureFormat::Rgb24),
        ("bgr24", CaptureFormat::Bgr24),
        ("mjpeg", CaptureFormat::Mjpeg),
        ("mjpeg444", CaptureFormat::Mjpeg),
    ]
}

/// The frame's RGB as the pipeline sees it (the preprocessor's own conversion).
fn rgb_of(format: CaptureFormat, raw: &[u8]) -> (PixelFormat, Vec<u8>) {
    let c = convert(&Layout::packed(format, W, H), raw).unwrap();
    assert_eq!((u32::from(c.width), u32::from(c.height)), (W, H));
    let rgb = dinoedge::preprocess::frame_rgb(c.format, W, H, &c.data).unwrap();
    (c.format, rgb)
}

/// Largest and mean absolute difference.
fn diff(a: &[u8], b: &[u8]) -> (u8, f64) {
    assert_eq!(a.len(), b.len());
    let d: Vec<u8> = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).collect();
    let max = d.iter().copied().max().unwrap_or(0);
    let mean = d.iter().map(|&v| f64::from(v)).sum::<f64>() / d.len() as f64;
    (max, mean)
}

#[test]
fn every_format_converts_to_what_ffmpeg_makes_of_the_same_buffer() {
    for (name, format) in formats() {
        let (pixel, rgb) = rgb_of(format, &data(&format!("{name}.raw")));
        let want = data(&format!("{name}.expected.rgb"));
        let (max, mean) = diff(&rgb, &want);
        let expected_pixel = match format {
            CaptureFormat::Grey => PixelFormat::Gray8,
            CaptureFormat::Rgb24 | CaptureFormat::Bgr24 | CaptureFormat::Mjpeg => {
                PixelFormat::Rgb888
            }
            _ => PixelFormat::Yuyv422,
        };
        assert_eq!(pixel, expected_pixel, "{name}");
        // YUV: the same BT.601 limited-range arithmetic, up to one level of rounding (ffmpeg
        // works in fixed point with other constants). MJPEG: two JPEG decoders; in 4:4:4 they
        // differ only by IDCT and rounding, in 4:2:2 also by how chroma is upsampled (bicubic
        // in ffmpeg, a triangle in zune-jpeg) at the blocks' sharp edges.
        let (max_allowed, mean_allowed) = match name {
            "grey" | "rgb24" | "bgr24" => (0, 0.0),
            "yuyv" | "uyvy" | "nv12" => (1, 0.1),
            "mjpeg444" => (2, 0.1),
            _ => (12, 1.0),
        };
        assert!(
            max <= max_allowed && mean <= mean_allowed,
            "{name}: max {max} mean {mean:.3} against ffmpeg"
        );
        eprintln!("{name}: max {max}, mean {mean:.3} against ffmpeg");
    }
}

/// BT.601, limited range, in floating point: independent of the preprocessor's integer form.
fn bt601(y: u8, u: u8, v: u8) -> [f64; 3] {
    let (y, u, v) = (
        f64::from(y) - 16.0,
        f64::from(u) - 128.0,
        f64::from(v) - 128.0,
    );
    let k = 255.0 / 219.0;
    let c = 255.0 / 224.0;
    [
        k * y + c * 1.402 * v,
        k * y - c * (1.772 * 0.114 / 0.587) * u - c * (1.402 * 0.299 / 0.587) * v,
        k * y + c * 1.772 * u,
    ]
    .map(|x| x.clamp(0.0, 255.0))
}

#[test]
fn yuv_pixels_follow_bt601_limited_range() {
    let yuyv = data("yuyv.raw");
    let uyvy = data("uyvy.raw");
    let nv12 = data("nv12.raw");
    let (_, from_yuyv) = rgb_of(CaptureFormat::Yuyv, &yuyv);
    let (_, from_uyvy) = rgb_of(CaptureFormat::Uyvy, &uyvy);
    let (_, from_nv12) = rgb_of(CaptureFormat::Nv12, &nv12);
    let (w, h) = (W as usize, H as usize);
    // Corners, the middle, and a pixel inside each saturated block.
    for (x, y) in [
        (0, 0),
        (63, 0),
        (0, 47),
        (63, 47),
        (31, 24),
        (20, 12),
        (40, 30),
        (55, 15),
    ] {
        let at = |rgb: &[u8]| -> [f64; 3] {
            let i = (y * w + x) * 3;
            [rgb[i], rgb[i + 1], rgb[i + 2]].map(f64::from)
        };
        let pair = (y * w + x / 2 * 2) * 2;
        let cases = [
            (
                "yuyv",
                bt601(yuyv[(y * w + x) * 2], yuyv[pair + 1], yuyv[pair + 3]),
                at(&from_yuyv),
            ),
            (
                "uyvy",
                bt601(uyvy[(y * w + x) * 2 + 1], uyvy[pair], uyvy[pair + 2]),
                at(&from_uyvy),
            ),
            (
                "nv12",
                bt601(
                    nv12[y * w + x],
                    nv12[w * h + (y / 2) * w + x / 2 * 2],
                    nv12[w * h + (y / 2) * w + x / 2 * 2 + 1],
                ),
                at(&from_nv12),
            ),
        ];
        for (name, want, got) in cases {
            for c in 0..3 {
                assert!(
                    (want[c] - got[c]).abs() <= 1.0,
                    "{name} ({x}, {y}) channel {c}: formula {:.2}, converted {}",
                    want[c],
                    got[c]
                );
            }
        }
    }
}

#[test]
fn nv12_and_uyvy_repack_to_yuyv_exactly() {
    let nv12 = data("nv12.raw");
    let c = convert(&Layout::packed(CaptureFormat::Nv12, W, H), &nv12).unwrap();
    let (w, h) = (W as usize, H as usize);
    for y in 0..h {
        for x in 0..w {
            let out = (y * w + x) * 2;
            assert_eq!(c.data[out], nv12[y * w + x], "luma ({x}, {y})");
            let chroma = w * h + (y / 2) * w + x / 2 * 2;
            // Y0 U Y1 V: U after an even pixel's luma, V after an odd one's.
            let want = if x % 2 == 0 {
                nv12[chroma]
            } else {
                nv12[chroma + 1]
            };
            assert_eq!(c.data[out + 1], want, "chroma ({x}, {y})");
        }
    }
    // UYVY and YUYV made by ffmpeg from the same picture hold the same samples.
    let uyvy = convert(
        &Layout::packed(CaptureFormat::Uyvy, W, H),
        &data("uyvy.raw"),
    )
    .unwrap();
    assert_eq!(uyvy.data, data("yuyv.raw"));
}

/// `raw`'s rows (of `row` bytes; `rows` of them) spread to `stride` bytes each, the padding
/// filled with a value no conversion should show.
fn padded(raw: &[u8], row: usize, rows: usize, stride: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for r in 0..rows {
        out.extend_from_slice(&raw[r * row..(r + 1) * row]);
        out.resize(out.len() + stride - row, 0xA5);
    }
    out
}

#[test]
fn padded_rows_give_the_same_frame() {
    let w = W as usize;
    let h = H as usize;
    for (name, format, row, rows) in [
        ("yuyv", CaptureFormat::Yuyv, w * 2, h),
        ("nv12", CaptureFormat::Nv12, w, h + h / 2),
        ("bgr24", CaptureFormat::Bgr24, w * 3, h),
        ("grey", CaptureFormat::Grey, w, h),
    ] {
        let raw = data(&format!("{name}.raw"));
        let stride = row + 40;
        let layout = Layout {
            bytes_per_line: stride as u32,
            ..Layout::packed(format, W, H)
        };
        let packed = convert(&Layout::packed(format, W, H), &raw).unwrap();
        let spread = padded(&raw, row, rows, stride);
        assert_eq!(convert(&layout, &spread).unwrap(), packed, "{name}");
        // The last row's padding may be missing; one byte of its pixels may not.
        let tight = &spread[..spread.len() - 40];
        assert_eq!(convert(&layout, tight).unwrap(), packed, "{name}");
        let err = convert(&layout, &tight[..tight.len() - 1]).unwrap_err();
        assert_eq!(err.loss(), CaptureLoss::ShortBuffer, "{name}: {err}");
        assert!(
            err.to_string().contains(&format!("{} 64x48", format)),
            "{err}"
        );
    }
}

/// The JPEG without its DHT segments, as many UVC cameras send MJPEG.
fn without_huffman_tables(jpeg: &[u8]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    let mut at = 2;
    loop {
        assert_eq!(jpeg[at], 0xFF);
        let marker = jpeg[at + 1];
        if marker == 0xDA {
            out.extend_from_slice(&jpeg[at..]);
            return out;
        }
        let len = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        if marker != 0xC4 {
            out.extend_from_slice(&jpeg[at..at + 2 + len]);
        }
        at += 2 + len;
    }
}

#[test]
fn mjpeg_without_huffman_tables_decodes_with_the_standard_ones() {
    // ffmpeg wrote the frame with the standard tables (-huffman default), so leaving them out
    // must change nothing.
    let jpeg = data("mjpeg.raw");
    let bare = without_huffman_tables(&jpeg);
    assert!(
        bare.len() < jpeg.len() - 400,
        "the DHT segments were removed"
    );
    let layout = Layout::packed(CaptureFormat::Mjpeg, W, H);
    assert_eq!(
        convert(&layout, &bare).unwrap(),
        convert(&layout, &jpeg).unwrap()
    );
    // Zeros after the end-of-image marker (drivers round their buffers up) are ignored.
    let mut padded = jpeg.clone();
    padded.resize(jpeg.len() + 300, 0);
    assert_eq!(
        convert(&layout, &padded).unwrap(),
        convert(&layout, &jpeg).unwrap()
    );
}

#[test]
fn short_and_damaged_buffers_are_typed_errors() {
    for (name, format) in formats() {
        let raw = data(&format!("{name}.raw"));
        let layout = Layout::packed(format, W, H);
        let cut = convert(&layout, &raw[..raw.len() - 1]).unwrap_err();
        let want = match format {
            // The end-of-image marker went with the last byte.
            CaptureFormat::Mjpeg => ConvertError::Truncated { len: raw.len() - 1 },
            _ => ConvertError::Short {
                format,
                width: W,
                height: H,
                expected: raw.len(),
                actual: raw.len() - 1,
            },
        };
        assert_eq!(cut, want, "{name}");
        assert!(convert(&layout, &[]).is_err(), "{name}");
        // A frame from a stream of another size.
        let other = Layout::packed(format, W * 2, H);
        assert!(convert(&other, &raw).is_err(), "{name}");
    }
    // MJPEG cut in the middle of its scan, its tail replaced: whatever the decoder makes of it,
    // the result is an error or a whole frame.
    let jpeg = data("mjpeg.raw");
    let layout = Layout::packed(CaptureFormat::Mjpeg, W, H);
    let mut spliced = jpeg[..jpeg.len() / 2].to_vec();
    spliced.extend_from_slice(&[0xFF, 0xD9]);
    match convert(&layout, &spliced) {
        Ok(c) => assert_eq!(c.data.len(), (W * H * 3) as usize),
        Err(e) => assert_eq!(e.loss(), CaptureLoss::Undecodable, "{e}"),
    }
}

fn tiny_models() -> Models {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures/tiny_mlp");
    let model = ModelDir::load(&dir).unwrap();
    let size = InputSize::new(64, 64);
    let head = HeadFiles::random(
        &model,
        Task::Classify,
        vec!["a".into(), "b".into()],
        size,
        3,
    );
    Models::from_files(
        &model,
        &dir,
        Some(size),
        vec![(PathBuf::from("classify"), head)],
        &EngineSetup::cpu(1),
    )
    .unwrap()
}

#[test]
fn recorded_buffers_feed_the_pipeline_with_every_buffer_accounted_for() {
    let models = tiny_models();
    let yuyv = data("yuyv.raw");
    let mut buffers =
        RecordedBuffers::new(Layout::packed(CaptureFormat::Yuyv, W, H)).stamped_when_handed_out();
    // Ten buffers: two damaged (the driver's flag; short), and the driver skipped 7 and 8.
    let mut good = Vec::new();
    for seq in [0u32, 1, 2, 3, 4, 5, 6, 9, 10, 11] {
        match seq {
            2 => buffers.push(yuyv.clone(), seq, Timestamp::Unknown, true),
            5 => buffers.push(yuyv[..100].to_vec(), seq, Timestamp::Unknown, false),
            _ => {
                buffers.push(yuyv.clone(), seq, Timestamp::Unknown, false);
                good.push(u64::from(seq));
            }
        }
    }
    assert!(buffers.describe().contains("YUYV 64x48"));
    let config = PipelineConfig {
        policy: Policy::Offline,
        workers: 1,
        ..PipelineConfig::default()
    };
    let stop = AtomicBool::new(false);
    let mut seqs = Vec::new();
    let report = pipeline::run(
        &models,
        &config,
        Input::Capture(Box::new(buffers)),
        &stop,
        |record| {
            assert!(record.failure().is_none(), "{:?}", record.failure());
            assert_eq!(record.frame.start.format, PixelFormat::Yuyv422);
            assert_eq!(record.frame.data.len(), yuyv.len());
            seqs.push(u64::from(record.frame.start.seq));
        },
        |_| {},
    )
    .unwrap();
    seqs.sort_unstable();
    assert_eq!(seqs, good);
    assert_eq!(report.frames_received, 8);
    assert_eq!(report.frames_processed, 8);
    assert!(report.dropped.is_empty(), "{:?}", report.dropped);
    assert_eq!(
        report.lost,
        [
            ("CaptureDriverError".to_owned(), 1),
            ("CaptureShortBuffer".to_owned(), 1)
        ]
        .into()
    );
    assert_eq!(report.dropped_at_edge, 2);
    // Stamped at capture (the driver's monotonic stamp), so latency runs from there.
    assert!(report.latency_from_capture);
    let capture = report.capture.clone().unwrap();
    assert_eq!(
        (capture.buffers, capture.frames, capture.undelivered),
        (10, 8, 0)
    );
    assert_eq!(
        (capture.stamped_by_driver, capture.stamped_at_dequeue),
        (8, 0)
    );
    assert_eq!(capture.skipped_by_driver, 2);
    assert_eq!(capture.error, None);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["capture"]["lost"]["CaptureShortBuffer"], 1);
    assert!(
        capture.summary_line().contains("2 lost"),
        "{}",
        capture.summary_line()
    );
}

#[test]
fn a_run_stopped_early_loses_no_captured_frame() {
    let models = tiny_models();
    let grey = data("grey.raw");
    let mut buffers = RecordedBuffers::new(Layout::packed(CaptureFormat::Grey, W, H));
    for seq in 0..40 {
        buffers.push(grey.clone(), seq, Timestamp::Unknown, false);
    }
    let config = PipelineConfig {
        policy: Policy::Offline,
        max_frames: Some(3),
        ..PipelineConfig::default()
    };
    let stop = AtomicBool::new(false);
    let report = pipeline::run(
        &models,
        &config,
        Input::Capture(Box::new(buffers)),
        &stop,
        |_| {},
        |_| {},
    )
    .unwrap();
    let capture = report.capture.clone().unwrap();
    assert!(report.frames_processed >= 3, "{}", report.frames_processed);
    assert!(capture.buffers < 40, "the capture stopped with the run");
    // Nothing lost: every buffer read became a frame the pipeline took (processed, or dropped
    // as the run stopped), or one made as it stopped, counted apart.
    assert!(report.lost.is_empty(), "{:?}", report.lost);
    assert_eq!(capture.buffers, capture.frames + capture.undelivered);
    assert_eq!(report.frames_received, capture.frames);
    assert_eq!(
        report.frames_received,
        report.frames_processed + report.dropped_total(),
        "{:?}",
        report.dropped
    );
    // Stamped at dequeue: these buffers carry no timestamp.
    assert_eq!(
        capture.stamped_at_dequeue,
        capture.frames + capture.undelivered
    );
}

#[test]
fn run_names_a_missing_device_and_a_file_that_is_not_one() {
    let (code, _, err) = dinoedge(&["run", "--v4l2", "/nonexistent/video0"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cannot open the capture device /nonexistent/video0")
            && err.contains("No such file"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let dir = scratch("capture", "notv4l2");
    let file = dir.join("video0");
    std::fs::write(&file, b"frames").unwrap();
    for path in [s(&file), "/dev/null".to_owned()] {
        let (code, _, err) = dinoedge(&["run", "--v4l2", &path]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains(&format!("{path} is not a V4L2 capture device")),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    // With a replay, or its options alone: refused before anything opens.
    let (code, _, err) = dinoedge(&["run", "--v4l2", "/dev/null", "--replay", "a.rec"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot be used with"), "{err}");
    // With the edge's link beside it (its controls): taken, and the device is what is refused.
    let (code, _, err) = dinoedge(&[
        "run",
        "--v4l2",
        "/dev/null",
        "--listen",
        "127.0.0.1:0",
        "--link-cleartext",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("/dev/null is not a V4L2 capture device"),
        "{err}"
    );
    let (code, _, err) = dinoedge(&["run", "--v4l2-format", "mjpeg"]);
    assert_eq!(code, 2);
    assert!(err.contains("--v4l2 <DEVICE>"), "{err}");
    let (code, _, err) = dinoedge(&["run", "--v4l2", "/dev/null", "--v4l2-format", "h264"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown capture format `h264`"), "{err}");
}

#[test]
fn the_config_file_takes_a_v4l2_source() {
    let dir = scratch("capture", "config");
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        s(&path)
    };
    let config = write(
        "dev-null.toml",
        "[source]\nv4l2 = \"/dev/null\"\nv4l2_format = \"yuyv\"\nv4l2_size = \"640x480\"\nv4l2_fps = 30\n",
    );
    let (code, _, err) = dinoedge(&["run", "--config", &config]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("/dev/null is not a V4L2 capture device"),
        "{err}"
    );

    let alone = write(
        "alone.toml",
        "[source]\nlisten = \"127.0.0.1:0\"\nv4l2_fps = 30\n",
    );
    let (code, _, err) = dinoedge(&["run", "--config", &alone]);
    assert_eq!(code, 2);
    assert!(err.contains("go with v4l2"), "{err}");

    let two = write(
        "two.toml",
        "[source]\nlisten = \"127.0.0.1:0\"\nserial = \"/dev/ttyACM0\"\n",
    );
    let (code, _, err) = dinoedge(&["run", "--config", &two]);
    assert_eq!(code, 2);
    assert!(err.contains("more than one"), "{err}");
    let replayed = write(
        "replayed.toml",
        "[source]\nreplay = \"a.rec\"\nv4l2 = \"/dev/video0\"\n",
    );
    let (code, _, err) = dinoedge(&["run", "--config", &replayed]);
    assert_eq!(code, 2);
    assert!(err.contains("more than one"), "{err}");

    // A capture with the edge's link beside it, for its controls: taken, and the device is
    // what is refused.
    let controls = write(
        "controls.toml",
        "[source]\nlisten = \"127.0.0.1:0\"\nv4l2 = \"/dev/null\"\n[link]\ncleartext = true\n",
    );
    let (code, _, err) = dinoedge(&["run", "--config", &controls]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("/dev/null is not a V4L2 capture device"),
        "{err}"
    );

    let bad = write(
        "bad.toml",
        "[source]\nv4l2 = \"/dev/video0\"\nv4l2_format = \"h264\"\n",
    );
    let (code, _, err) = dinoedge(&["run", "--config", &bad]);
    assert_eq!(code, 2);
    assert!(err.contains("source.v4l2_format"), "{err}");
}
