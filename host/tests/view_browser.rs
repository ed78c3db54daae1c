//! THE LIVE VIEW IN A REAL BROWSER (issue 18). NEEDS CHROMIUM (Debian package `chromium`):
//! without it the test skips with a note, except in CI (`CI=true`, which `.ci/run` exports
//! after installing it), where a missing browser fails it.
//!
//! `dinoedge replay --http` plays the shipped echo cine; headless Chromium opens the page; the
//! screenshot must show the frame (many grey levels), the segmentation overlay blended into it
//! (pixels of the class colour) and the latency chart (its orange line, `#ff8c00`). It takes
//! about 10 s; the screenshot is kept under `CARGO_TARGET_TMPDIR/view_browser/`.
//!
//! Chromium is driven over the DevTools protocol (a minimal WebSocket client below) rather
//! than with `--screenshot`: that flag shoots at the load event, a moment after opening, so
//! the chart has one point; and `--virtual-time-budget` never expires while the event stream
//! is open.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{dinoedge, fixture_model, s};

/// Whether the tests run in CI, where every tool a test needs is installed.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// A child process killed when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Pauses between the attempts of a polling loop (the loops are bounded by attempts).
fn pause() {
    std::thread::sleep(Duration::from_millis(50));
}

/// `GET path` over plain HTTP/1.1: (status, body). Reads the body by its Content-Length, so
/// servers that keep the connection open (DevTools) answer as well as those that close it.
fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut reader = BufReader::new(s);
    let mut status = 0;
    let mut length = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if status == 0 {
            status = line
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
        } else if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse::<usize>().ok();
        }
    }
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            reader.read_exact(&mut body)?;
        }
        None => {
            reader.read_to_end(&mut body)?;
        }
    }
    Ok((status, body))
}

/// Polls `GET path` until it answers `want`; panics after `attempts`.
fn wait_for(addr: SocketAddr, path: &str, want: u16, attempts: u32) {
    for _ in 0..attempts {
        if matches!(get(addr, path), Ok((status, _)) if status == want) {
            return;
        }
        pause();
    }
    panic!("GET {path} never answered {want}");
}

/// The smallest WebSocket client that talks to Chromium's DevTools: text messages only.
struct DevTools {
    stream: TcpStream,
    id: u64,
}

impl DevTools {
    fn connect(port: u16, path: &str) -> DevTools {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        // A browser that hangs fails the test instead of holding it.
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: ZGlub2VkZ2Utdmlldy10ZXN0\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        // The handshake's answer, byte by byte so nothing after it is read ahead.
        let mut head = Vec::new();
        let mut byte = [0u8];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "DevTools refused: {head}");
        DevTools { stream, id: 0 }
    }

    fn send(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mask = [0x5a, 0x17, 0xc3, 0x2e]; // a client must mask; any key will do here
        let mut frame = vec![0x81]; // FIN, text
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend((n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend((n as u64).to_be_bytes());
            }
        }
        frame.extend(mask);
        frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        self.stream.write_all(&frame).unwrap();
    }

    /// The next whole message (fragments joined; pings and pongs skipped).
    fn receive(&mut self) -> String {
        let mut message = Vec::new();
        loop {
            let mut h = [0u8; 2];
            self.stream.read_exact(&mut h).unwrap();
            let (fin, opcode) = (h[0] & 0x80 != 0, h[0] & 0x0f);
            let mut len = u64::from(h[1] & 0x7f);
            if len == 126 {
                let mut b = [0u8; 2];
                self.stream.read_exact(&mut b).unwrap();
                len = u64::from(u16::from_be_bytes(b));
            } else if len == 127 {
                let mut b = [0u8; 8];
                self.stream.read_exact(&mut b).unwrap();
                len = u64::from_be_bytes(b);
            }
            let mut payload = vec![0u8; usize::try_from(len).unwrap()];
            self.stream.read_exact(&mut payload).unwrap();
            match opcode {
                0x8 => panic!("Chromium closed the DevTools connection"),
                0x9 | 0xa => continue,
                _ => message.extend(payload),
            }
            if fin {
                return String::from_utf8(message).unwrap();
            }
        }
    }

    /// Calls `method` and returns its result; the events that arrive meanwhile are skipped.
    fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.id += 1;
        let request = serde_json::json!({"id": self.id, "method": method, "params": params});
        self.send(&request.to_string());
        loop {
            let reply: serde_json::Value = serde_json::from_str(&self.receive()).unwrap();
            if reply["id"] == self.id {
                assert!(reply.get("error").is_none(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, expression: &str) -> serde_json::Value {
        let params = serde_json::json!({"expression": expression, "returnByValue": true});
        self.call("Runtime.evaluate", params)["result"]["value"].clone()
    }
}

/// Standard base64 (the screenshot comes as such).
fn base64(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// A segmentation head that outlines the echo cine's tissue, fitted on the tiny fixture
/// backbone. The built-in demonstration heads have random weights, and on this cine their
/// mask is all background: there would be no overlay to see.
fn fit_tissue_head(dir: &Path) -> String {
    let dcm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/echo_cine.dcm");
    let (frames, _) = dinoedge::import::dicom_frames(&dcm).unwrap();
    let (images, masks) = (dir.join("images"), dir.join("masks"));
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&masks).unwrap();
    for (i, frame) in frames.into_iter().step_by(3).enumerate() {
        let frame = frame.to_gray();
        let (w, h) = (u32::from(frame.width), u32::from(frame.height));
        let image = image::GrayImage::from_raw(w, h, frame.data).unwrap();
        // Tissue: where the mean over a 17x17 box is above 25 (the cine is mostly black).
        let mut integral = vec![0u64; ((w + 1) * (h + 1)) as usize];
        for y in 0..h {
            for x in 0..w {
                let at = |x: u32, y: u32| (y * (w + 1) + x) as usize;
                integral[at(x + 1, y + 1)] = u64::from(image.get_pixel(x, y).0[0])
                    + integral[at(x, y + 1)]
                    + integral[at(x + 1, y)]
                    - integral[at(x, y)];
            }
        }
        let mask = image::GrayImage::from_fn(w, h, |x, y| {
            let (x0, y0) = (x.saturating_sub(8), y.saturating_sub(8));
            let (x1, y1) = ((x + 9).min(w), (y + 9).min(h));
            let at = |x: u32, y: u32| integral[(y * (w + 1) + x) as usize];
            let sum = at(x1, y1) + at(x0, y0) - at(x0, y1) - at(x1, y0);
            let mean = sum / u64::from((x1 - x0) * (y1 - y0));
            image::Luma([if mean > 25 { 255 } else { 0 }])
        });
        image.save(images.join(format!("{i:02}.png"))).unwrap();
        mask.save(masks.join(format!("{i:02}.png"))).unwrap();
    }
    let head = dir.join("head");
    let (code, _, err) = dinoedge(&[
        "probe",
        "fit",
        "--model",
        &fixture_model("tiny_mlp"),
        "--task",
        "segment",
        "--data",
        &s(&images),
        "--masks",
        &s(&masks),
        "--classes",
        "background,tissue",
        "--size",
        "128x128",
        "--blocks",
        "0",
        "--cache",
        &s(&dir.join("cache")),
        "-o",
        &s(&head),
    ]);
    assert_eq!(code, 0, "{err}");
    s(&head)
}

/// A rectangle of the screenshot, in its pixels: x, y, width, height.
type Area = (u32, u32, u32, u32);

/// `[left, top, width, height]` in CSS pixels, scaled to the screenshot and `inset` on each
/// side (away from borders and antialiased edges).
fn area(rect: &serde_json::Value, dpr: f64, inset: f64) -> Area {
    let v = |i: usize| rect[i].as_f64().unwrap() * dpr;
    let (x, y) = (v(0) + inset, v(1) + inset);
    let (w, h) = ((v(2) - 2.0 * inset).max(0.0), (v(3) - 2.0 * inset).max(0.0));
    (x as u32, y as u32, w as u32, h as u32)
}

fn pixels(shot: &image::RgbImage, (x, y, w, h): Area) -> impl Iterator<Item = [u8; 3]> + '_ {
    (y..(y + h).min(shot.height()))
        .flat_map(move |py| (x..(x + w).min(shot.width())).map(move |px| (px, py)))
        .map(|(px, py)| shot.get_pixel(px, py).0)
}

#[test]
fn the_page_shows_the_frame_its_overlay_and_the_latency_chart_in_chromium() {
    let version = Command::new("chromium").arg("--version").output();
    let missing = match version {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!("`chromium --version` failed ({})", out.status)),
        Err(e) => Some(format!("chromium could not be run ({e})")),
    };
    if let Some(why) = missing {
        // CI installs Chromium (.ci/run), so there a missing browser is a failure, not a skip.
        assert!(!in_ci(), "{why}; CI needs it (.ci/run installs chromium)");
        eprintln!("skipped: {why}; the live view is not checked in a browser here");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("view_browser");
    std::fs::create_dir_all(&keep).unwrap();
    let shot_path = keep.join("view.png");
    let _ = std::fs::remove_file(&shot_path);

    let rec = tmp.path().join("echo.rec");
    let dcm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/echo_cine.dcm");
    let (code, _, err) = dinoedge(&["import", "--dicom", &s(&dcm), "-o", &s(&rec)]);
    assert_eq!(code, 0, "{err}");
    let head = fit_tissue_head(&tmp.path().join("fit"));

    // About 7 s of frames at the recorded pace, the newest frame winning.
    let mut child = Command::new(env!("CARGO_BIN_EXE_dinoedge"))
        .args(["replay", &s(&rec), "--http", "127.0.0.1:0"])
        .args(["--model", &fixture_model("tiny_mlp"), "--head", &head])
        .args(["--policy", "live", "--realtime", "--speed", "0.15"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut replay = Killed(child);
    let addr: SocketAddr = loop {
        let line = lines
            .next()
            .expect("the replay ended before its view listened")
            .unwrap();
        if let Some(at) = line.strip_prefix("view at http://") {
            break at.trim_end_matches('/').parse().unwrap();
        }
    };
    // Kept drained, or the replay would block on a full pipe.
    let log = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    wait_for(addr, "/healthz", 200, 100);
    // Frames are encoded only while someone watches: the first one comes once the page has
    // opened its event stream, which the polling below waits for.

    let profile = tmp.path().join("chromium");
    let browser = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .args(["--window-size=1280,900", "--remote-debugging-port=0"])
        .args(["--no-first-run", "--no-default-browser-check"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("http://{addr}/"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _browser = Killed(browser);
    // Chromium names its DevTools port in the profile once it listens.
    let port_file = profile.join("DevToolsActivePort");
    let mut port = None;
    for _ in 0..400 {
        port = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|t| t.lines().next().and_then(|p| p.parse::<u16>().ok()));
        if port.is_some() {
            break;
        }
        pause();
    }
    let port = port.expect("Chromium never opened its DevTools port");
    let devtools: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut page_ws = None;
    for _ in 0..100 {
        if let Ok((200, body)) = get(devtools, "/json/list") {
            let targets: serde_json::Value = serde_json::from_slice(&body).unwrap();
            page_ws = targets.as_array().into_iter().flatten().find_map(|t| {
                let ours = t["type"] == "page"
                    && t["url"]
                        .as_str()
                        .is_some_and(|u| u.contains(&addr.to_string()));
                ours.then(|| t["webSocketDebuggerUrl"].as_str().map(str::to_owned))
                    .flatten()
            });
            if page_ws.is_some() {
                break;
            }
        }
        pause();
    }
    let page_ws = page_ws.expect("Chromium never listed the view's page");
    let path = &page_ws[page_ws.find("/devtools/").unwrap()..];
    let mut page = DevTools::connect(port, path);

    // The page as it runs: until the frame has loaded and the chart has points to draw (or
    // the replay has ended, after which the page keeps what it last showed).
    let probe = "(() => { const f = document.getElementById('frame'), \
        c = document.getElementById('chart'); \
        const r = (e) => { const b = e.getBoundingClientRect(); \
            return [b.left, b.top, b.width, b.height]; }; \
        return { loaded: f.complete && f.naturalWidth > 0, \
            natural: [f.naturalWidth, f.naturalHeight], frame: r(f), chart: r(c), \
            points: typeof points === 'undefined' ? -1 : points.length, \
            dpr: window.devicePixelRatio, \
            stream: document.getElementById('stream').textContent, \
            heads: document.getElementById('heads').textContent }; })()";
    let mut state = serde_json::Value::Null;
    for _ in 0..400 {
        state = page.eval(probe);
        let ready = state["loaded"] == true && state["points"].as_i64().unwrap_or(-1) >= 8;
        if ready || replay.0.try_wait().unwrap().is_some() {
            break;
        }
        pause();
    }
    let shot = page.call(
        "Page.captureScreenshot",
        serde_json::json!({"format": "png"}),
    );
    let png = base64(shot["data"].as_str().unwrap());
    std::fs::write(&shot_path, &png).unwrap();
    let shot = image::load_from_memory(&png).unwrap().to_rgb8();
    let at = format!("screenshot {}, page {state}", shot_path.display());
    assert_eq!(state["loaded"], true, "the frame never loaded; {at}");
    assert!(state["heads"].as_str().unwrap().contains("tissue"), "{at}");

    // The frame's picture inside its <img> (letterboxed: object-fit contain).
    let dpr = state["dpr"].as_f64().unwrap();
    let (bx, by, bw, bh) = area(&state["frame"], dpr, 0.0);
    let (nw, nh) = (
        state["natural"][0].as_f64().unwrap(),
        state["natural"][1].as_f64().unwrap(),
    );
    let scale = (f64::from(bw) / nw).min(f64::from(bh) / nh);
    let (cw, ch) = (nw * scale, nh * scale);
    let content = [
        f64::from(bx) + (f64::from(bw) - cw) / 2.0,
        f64::from(by) + (f64::from(bh) - ch) / 2.0,
        cw,
        ch,
    ];
    let frame = area(&serde_json::json!(content), 1.0, 2.0);
    let total = u64::from(frame.2) * u64::from(frame.3);
    // (a) The echo cine is grey ultrasound: many distinct grey levels.
    let mut levels = [false; 256];
    for [r, g, b] in pixels(&shot, frame) {
        if r.max(g).max(b) - r.min(g).min(b) <= 8 {
            levels[usize::from(g)] = true;
        }
    }
    let levels = levels.iter().filter(|&&l| l).count();
    // (b) The overlay: class 1's colour (230, 25, 75) blended at 0.45 keeps red well above
    // green and blue, whatever the grey beneath.
    let tint = pixels(&shot, frame)
        .filter(|&[r, g, b]| i32::from(r) - i32::from(g) > 40 && i32::from(r) - i32::from(b) > 20)
        .count() as u64;
    // (c) The chart's line, #ff8c00, within the canvas.
    let chart = area(&state["chart"], dpr, 1.0);
    let orange = pixels(&shot, chart)
        .filter(|&[r, g, b]| r >= 225 && (110..=170).contains(&g) && b <= 30)
        .count();
    eprintln!(
        "view_browser: frame area {frame:?} ({total} px): {levels} grey levels, {tint} overlay \
         px ({:.1} %); chart {chart:?}: {orange} line px; {} points; {at}",
        100.0 * tint as f64 / total.max(1) as f64,
        state["points"]
    );
    assert!(levels >= 64, "only {levels} grey levels in the frame; {at}");
    assert!(
        tint >= total / 100,
        "only {tint} of {total} frame pixels carry the overlay's tint; {at}"
    );
    assert!(
        orange >= 200,
        "only {orange} pixels of the chart's line; {at}"
    );

    drop(page);
    drop(replay);
    let log = log.join().unwrap().join("\n");
    assert!(!log.contains("panicked"), "{log}");
}
