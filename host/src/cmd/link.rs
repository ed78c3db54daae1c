//! `dinoedge link`: connect to an edge and show what arrives.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use dinoedge::link::secure::{LinkSecurity, SecureSource};
use dinoedge::link::{LinkConfig, LinkEvent, LinkStats, LiveSource, Source, Transport};
use dinoedge::recording::{SharedRecording, TappedSource};

#[derive(Debug, Args)]
pub struct LinkArgs {
    /// Serial device of the edge (UART, USB CDC-ACM, a pseudo-terminal).
    #[arg(long, conflicts_with_all = ["tcp", "listen"])]
    serial: Option<PathBuf>,
    /// Baud rate for --serial.
    #[arg(long, default_value_t = 115_200)]
    baud: u32,
    /// Connect to an edge listening at this TCP address.
    #[arg(long, conflicts_with = "listen")]
    tcp: Option<SocketAddr>,
    /// Listen at this TCP address for the edge to connect.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Frames in flight (the credit window).
    #[arg(long, default_value_t = 4)]
    window: u32,
    /// Stop after this many frames were received or lost.
    #[arg(long)]
    frames: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    seconds: Option<f64>,
    #[command(flatten)]
    security: super::keys::LinkSecurityArgs,
}

pub fn run(args: LinkArgs) -> anyhow::Result<ExitCode> {
    run_recording(args, None)
}

/// Runs the link, recording its bytes into `recording` if given.
pub fn run_recording(
    args: LinkArgs,
    recording: Option<SharedRecording>,
) -> anyhow::Result<ExitCode> {
    let transport = match (args.serial, args.tcp, args.listen) {
        (Some(path), None, None) => Transport::Serial {
            path,
            baud: args.baud,
        },
        (None, Some(addr), None) => Transport::TcpConnect(addr),
        (None, None, Some(addr)) => Transport::TcpListen(addr),
        _ => bail!("say where the edge is: --serial PATH, --tcp ADDR or --listen ADDR"),
    };
    if args.window == 0 {
        bail!("--window must be at least 1");
    }
    let security = args.security.resolve(&transport)?;
    let duration = args
        .seconds
        .map(|s| {
            Duration::try_from_secs_f64(s)
                .with_context(|| format!("--seconds {s} is not a duration"))
        })
        .transpose()?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let stats = runtime.block_on(serve(
        transport,
        args.window,
        args.frames,
        duration,
        recording,
        security.clone(),
    ))?;
    println!("{}", summary(&stats));
    if let Some(security) = &security {
        println!("{}", super::run::security_summary(&security.snapshot()));
    }
    Ok(if stats.lost_total() == 0 && stats.resyncs == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn serve(
    transport: Transport,
    window: u32,
    max_frames: Option<u64>,
    duration: Option<Duration>,
    recording: Option<SharedRecording>,
    security: Option<LinkSecurity>,
) -> anyhow::Result<LinkStats> {
    let live =
        LiveSource::new(transport.clone()).with_context(|| format!("opening {transport}"))?;
    if let Some(addr) = live.local_addr() {
        eprintln!("listening on {addr}");
    }
    // Sealing sits below the tap, so a recording holds the clear protocol.
    let live: Box<dyn Source> = match security {
        Some(security) => Box::new(SecureSource::new(Box::new(live), security)),
        None => Box::new(live),
    };
    let source: Box<dyn Source> = match recording {
        Some(rec) => Box::new(TappedSource::new(live, rec)),
        None => live,
    };
    let config = LinkConfig {
        credit_window: window,
        ..LinkConfig::default()
    };
    let dinoedge::link::Link {
        mut events,
        handle: link,
    } = dinoedge::link::spawn(source, config, Instant::now(), window as usize);
    let mut stats_rx = link.watch_stats();
    let started = Instant::now();
    let live = std::io::stderr().is_terminal();
    let mut told = 0u64;
    let mut progress = tokio::time::interval(Duration::from_millis(500));
    let deadline = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(LinkEvent::Frame(_)) | Some(LinkEvent::Lost(_)) => {
                    told += 1;
                    if max_frames.is_some_and(|n| told >= n) {
                        break;
                    }
                }
                Some(LinkEvent::SessionStarted { session_id, hello }) => {
                    eprintln!(
                        "{}session {session_id}: {} firmware {}.{}.{}, {}x{} {:?} at {:.1} fps",
                        if live { "\r\x1b[K" } else { "" },
                        hello.device_id,
                        hello.firmware_version.major,
                        hello.firmware_version.minor,
                        hello.firmware_version.patch,
                        hello.sensor.width,
                        hello.sensor.height,
                        hello.sensor.format,
                        f64::from(hello.sensor.fps_milli) / 1000.0
                    );
                }
                Some(LinkEvent::Disconnected { reason }) => {
                    eprintln!("{}link lost: {reason}", if live { "\r\x1b[K" } else { "" });
                }
                Some(_) => {}
                None => break,
            },
            _ = progress.tick() => {
                if live {
                    let stats = stats_rx.borrow_and_update().clone();
                    let secs = started.elapsed().as_secs_f64().max(1e-9);
                    eprint!(
                        "\r\x1b[K{:.1} s | {:.1} frames/s | {}",
                        secs,
                        stats.frames_received as f64 / secs,
                        stats.progress_line()
                    );
                    let _ = std::io::stderr().flush();
                }
            }
            _ = &mut deadline => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    if live {
        eprintln!();
    }
    // Frames still queued are part of the run: they are taken (and counted by the link as
    // received) while it winds down, so that it never waits on a consumer that stopped reading.
    let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
    let stats = link.finish().await.context("the link task failed")?;
    drain.await.context("draining the link's events")?;
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    eprintln!(
        "{:.1} s, {:.1} frames/s, {:.2} MB/s of frame data",
        elapsed,
        stats.frames_received as f64 / elapsed,
        stats.frame_bytes as f64 / 1e6 / elapsed
    );
    Ok(stats)
}

fn summary(stats: &LinkStats) -> String {
    format!(
        "frames received {} ({} bytes), lost {}{}, dropped at the edge {}\n\
         bytes {}, packets {}, resyncs {} (crc {}), out-of-session packets {}\n\
         connections {}, sessions {}, clock offset {}",
        stats.frames_received,
        stats.frame_bytes,
        stats.lost_total(),
        dinoedge::pipeline::counts_by_name(&stats.frames_lost),
        stats.dropped_at_edge,
        stats.bytes,
        stats.packets,
        stats.resyncs,
        stats.crc_errors,
        stats.out_of_session,
        stats.connections,
        stats.sessions,
        match (stats.clock_offset_us, stats.clock_rtt_us) {
            (Some(o), Some(r)) => format!(
                "{:.3} ms (± {:.3} ms)",
                o as f64 / 1000.0,
                r as f64 / 2000.0
            ),
            _ => "unknown".to_owned(),
        }
    )
}
