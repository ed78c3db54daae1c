//! Link throughput with the secure link off and on, side by side in one run: the simulator
//! streams test-pattern frames as fast as credit allows over loopback TCP into the host's
//! link (no pipeline behind it, so the link is the bottleneck and the cost of sealing shows
//! at its largest). Both ends share this machine's cores, so throughput counts the edge's
//! sealing too; the host's own CPU time per frame (the process's, less the simulator
//! thread's) says what the host pays, which is what a Jetson with a separate edge sees.
//! Prints frames/s, MB/s and host CPU µs per frame per run, and the ratios.
//!
//! `cargo bench -p dinoedge-tests --bench link_throughput [-- FRAMES ROUNDS]`

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use dinoedge::link::secure::{Keyring, LinkSecurity, SecureSource, keyring};
use dinoedge::link::{LinkConfig, LinkEvent, LiveSource, Source, Transport};
use dinoedge_edge::port::SourceInfo;
use dinoedge_edge_sim::{SimConfig, SimInput, SimTarget, run_sim};
use dinoedge_proto::PixelFormat;
use dinoedge_proto::secure::{LinkKey, parse_key_block};
use nix::sys::resource::{UsageWho, getrusage};

const INFO: SourceInfo = SourceInfo {
    width: 640,
    height: 480,
    format: PixelFormat::Gray8,
    fps_milli: 0,
};

/// CPU seconds used so far by `who`.
fn cpu_s(who: UsageWho) -> f64 {
    getrusage(who).map_or(0.0, |u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 * 1e-6;
        t(u.user_time()) + t(u.system_time())
    })
}

/// What one run measured.
struct Run {
    fps: f64,
    mb_s: f64,
    /// Host CPU µs per frame: the process's CPU less the simulator thread's, over the run.
    host_cpu_us: f64,
}

/// One run of `frames` frames.
fn run(frames: u32, secure: Option<(LinkKey, LinkSecurity)>) -> Result<Run, String> {
    let process_before = cpu_s(UsageWho::RUSAGE_SELF);
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
            let report = run_sim(
                SimConfig {
                    max_frames: Some(frames),
                    duration: Some(Duration::from_secs(120)),
                    device_id: heapless::String::try_from("bench").unwrap_or_default(),
                    key,
                    ..SimConfig::new(SimInput::Pattern(INFO), SimTarget::TcpConnect(addr))
                },
                &stop,
            );
            (report, cpu_s(UsageWho::RUSAGE_THREAD))
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
        let sim_cpu = sim.join().map(|(_, cpu)| cpu).unwrap_or(0.0);
        let host_cpu = cpu_s(UsageWho::RUSAGE_SELF) - process_before - sim_cpu;
        let secs = last
            .duration_since(first.ok_or("no frame arrived")?)
            .as_secs_f64()
            .max(1e-9);
        Ok(Run {
            fps: f64::from(got) / secs,
            mb_s: bytes as f64 / 1e6 / secs,
            host_cpu_us: host_cpu * 1e6 / f64::from(frames),
        })
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
    let (mut clear_cpu, mut sealed_cpu) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let c = run(frames, None)?;
        let s = run(frames, Some((key.clone(), LinkSecurity::new(ring.clone()))))?;
        println!(
            "round {round}: clear {:7.1} frames/s {:6.1} MB/s host {:6.0} µs/frame | \
             secure {:7.1} frames/s {:6.1} MB/s host {:6.0} µs/frame",
            c.fps, c.mb_s, c.host_cpu_us, s.fps, s.mb_s, s.host_cpu_us
        );
        clear.push(c.fps);
        sealed.push(s.fps);
        clear_cpu.push(c.host_cpu_us);
        sealed_cpu.push(s.host_cpu_us);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let (c, s) = (median(&mut clear), median(&mut sealed));
    let (cc, sc) = (median(&mut clear_cpu), median(&mut sealed_cpu));
    println!(
        "median: clear {c:.1} frames/s, secure {s:.1} frames/s ({:+.1} %); host CPU per frame \
         clear {cc:.0} µs, secure {sc:.0} µs ({:+.1} %)",
        (s / c - 1.0) * 100.0,
        (sc / cc - 1.0) * 100.0
    );
    Ok(())
}
