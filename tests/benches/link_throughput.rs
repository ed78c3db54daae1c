//! Link throughput with the secure link off and on, side by side in one run: the simulator
//! streams test-pattern frames as fast as credit allows over loopback TCP into the host's
//! link (no pipeline behind it, so the link is the bottleneck and the cost of sealing shows
//! at its largest). Prints frames/s and MB/s per run and the ratio.
//!
//! `cargo bench -p dinoedge-tests --bench link_throughput [-- FRAMES ROUNDS]`

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use dinoedge::link::secure::{Keyring, LinkSecurity, SecureSource, keyring};
use dinoedge::link::{LinkConfig, LinkEvent, LiveSource, Source, Transport};
use dinoedge_edge::port::SourceInfo;
use dinoedge_edge_sim::link::Faults;
use dinoedge_edge_sim::{SimConfig, SimInput, SimTarget, run_sim};
use dinoedge_proto::PixelFormat;
use dinoedge_proto::secure::{LinkKey, parse_key_block};

const INFO: SourceInfo = SourceInfo {
    width: 640,
    height: 480,
    format: PixelFormat::Gray8,
    fps_milli: 0,
};

/// Frames/s and MB/s of one run of `frames` frames.
fn run(frames: u32, secure: Option<(LinkKey, LinkSecurity)>) -> Result<(f64, f64), String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let loopback: SocketAddr = "127.0.0.1:0".parse().map_err(|_| "address")?;
        let live = LiveSource::new(Transport::TcpListen(loopback)).map_err(|e| e.to_string())?;
        let addr = live.local_addr().ok_or("no address")?;
        let (key, source): (Option<LinkKey>, Box<dyn Source>) = match secure {
            Some((key, security)) => (
                Some(key),
                Box::new(SecureSource::new(Box::new(live), security)),
            ),
            None => (None, Box::new(live)),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let sim = std::thread::spawn(move || {
            run_sim(
                SimConfig {
                    input: SimInput::Pattern(INFO),
                    target: SimTarget::TcpConnect(addr),
                    faults: Faults::default(),
                    pause: None,
                    disconnect_at: None,
                    max_frames: Some(frames),
                    duration: Some(Duration::from_secs(120)),
                    device_id: heapless::String::try_from("bench").unwrap_or_default(),
                    key,
                },
                &stop,
            )
        });
        let config = LinkConfig {
            credit_window: 8,
            ..LinkConfig::default()
        };
        let dinoedge::link::Link { mut events, handle } =
            dinoedge::link::spawn(source, config, Instant::now(), 16);
        let mut got = 0u32;
        let mut bytes = 0u64;
        let mut first: Option<Instant> = None;
        let mut last = Instant::now();
        while got < frames {
            match events.recv().await {
                Some(LinkEvent::Frame(f)) => {
                    // Timed from the first frame: the handshake is not throughput.
                    let now = Instant::now();
                    if first.is_none() {
                        first = Some(now);
                    } else {
                        got += 1;
                        bytes += f.frame.data.len() as u64;
                    }
                    last = now;
                    if got + 1 >= frames {
                        break;
                    }
                }
                Some(_) => {}
                None => break,
            }
        }
        handle.stop();
        while events.recv().await.is_some() {}
        let _ = handle.finish().await;
        let _ = sim.join();
        let secs = last
            .duration_since(first.ok_or("no frame arrived")?)
            .as_secs_f64()
            .max(1e-9);
        Ok((f64::from(got) / secs, bytes as f64 / 1e6 / secs))
    })
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let frames: u32 = args.first().and_then(|a| a.parse().ok()).unwrap_or(600);
    let rounds: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let new = keyring::new_key(dir.path(), "bench", 0).map_err(|e| e.to_string())?;
    let block = std::fs::read(&new.firmware_file).map_err(|e| e.to_string())?;
    let (key, _) = parse_key_block(&block).map_err(|e| e.to_string())?;
    let ring = Keyring::load(dir.path()).map_err(|e| e.to_string())?;
    println!("{frames} frames of 640x480 Gray8 over loopback TCP, link only, {rounds} rounds");
    let (mut clear, mut sealed) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let c = run(frames, None)?;
        let s = run(frames, Some((key.clone(), LinkSecurity::new(ring.clone()))))?;
        println!(
            "round {round}: clear {:7.1} frames/s {:7.1} MB/s | secure {:7.1} frames/s {:7.1} MB/s",
            c.0, c.1, s.0, s.1
        );
        clear.push(c.0);
        sealed.push(s.0);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let (c, s) = (median(&mut clear), median(&mut sealed));
    println!(
        "median: clear {c:.1} frames/s, secure {s:.1} frames/s: secure is {:.1} % {}",
        (1.0 - s / c).abs() * 100.0,
        if s <= c { "lower" } else { "higher" }
    );
    Ok(())
}
