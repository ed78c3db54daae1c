//! `dinoedge-edge-sim`: the firmware core on Linux, for bench tests of the host.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use dinoedge_edge::port::SourceInfo;
use dinoedge_edge_sim::link::Faults;
use dinoedge_edge_sim::source::{FrameList, load_dicom, load_image_folder};
use dinoedge_edge_sim::{SimConfig, SimInput, SimTarget, run_sim};
use dinoedge_proto::PixelFormat;

/// Run the dinoedge firmware core on Linux, streaming to a host.
#[derive(Debug, Parser)]
#[command(name = "dinoedge-edge-sim", version, about)]
struct Cli {
    /// Serial device to talk on (e.g. one end of a pseudo-terminal pair).
    #[arg(long, conflicts_with_all = ["tcp", "listen"])]
    serial: Option<PathBuf>,
    /// Baud rate for --serial.
    #[arg(long, default_value_t = 115_200)]
    baud: u32,
    /// Connect to a host listening at this TCP address.
    #[arg(long, conflicts_with = "listen")]
    tcp: Option<std::net::SocketAddr>,
    /// Listen at this TCP address for the host.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// A multi-frame DICOM (e.g. an ultrasound cine), sent as Gray8 luminance.
    #[arg(long, conflicts_with = "images")]
    dicom: Option<PathBuf>,
    /// A folder of PNG/JPEG frames (sent as Gray8, in name order); default: a test pattern.
    #[arg(long)]
    images: Option<PathBuf>,
    /// Test-pattern size, WIDTHxHEIGHT.
    #[arg(long, default_value = "640x480")]
    size: String,
    /// Test-pattern pixel format: gray8, rgb565, rgb888 or yuyv422.
    #[arg(long, default_value = "gray8", value_parser = parse_format)]
    format: PixelFormat,
    /// Frames per second; 0 sends as fast as credit allows [default: the DICOM's rate, or 30].
    #[arg(long)]
    fps: Option<f64>,
    /// Play the images once instead of looping.
    #[arg(long)]
    once: bool,
    /// Stop after this many frames.
    #[arg(long)]
    frames: Option<u32>,
    /// Stop after this many seconds.
    #[arg(long)]
    seconds: Option<f64>,
    /// Probability that each bit sent is flipped.
    #[arg(long, default_value_t = 0.0)]
    bit_error_rate: f64,
    /// Probability that each byte sent is dropped.
    #[arg(long, default_value_t = 0.0)]
    byte_drop_rate: f64,
    /// Pause (send and read nothing) at this second, for --pause-for seconds.
    #[arg(long)]
    pause_at: Option<f64>,
    /// Length of the pause, seconds.
    #[arg(long, default_value_t = 1.0)]
    pause_for: f64,
    /// Drop the connection once at this second, then reconnect.
    #[arg(long)]
    disconnect_at: Option<f64>,
    /// Seed of the faults.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Device id sent in Hello [default: the key block's, or sim-0001].
    #[arg(long)]
    device_id: Option<String>,
    /// Run a secure link under this key block (from `dinoedge keys new`, the file that would
    /// be flashed into the firmware); without it the link is in the clear.
    #[arg(long, value_name = "FILE.keyblock")]
    key: Option<std::path::PathBuf>,
}

fn parse_format(s: &str) -> Result<PixelFormat, String> {
    match s.to_ascii_lowercase().as_str() {
        "gray8" => Ok(PixelFormat::Gray8),
        "rgb565" => Ok(PixelFormat::Rgb565),
        "rgb888" => Ok(PixelFormat::Rgb888),
        "yuyv422" => Ok(PixelFormat::Yuyv422),
        _ => Err(format!("{s:?} is not gray8, rgb565, rgb888 or yuyv422")),
    }
}

fn seconds(s: f64, what: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s)
        .with_context(|| format!("{what} {s} is not a duration in seconds"))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let target = match (cli.serial, cli.tcp, cli.listen) {
        (Some(path), None, None) => SimTarget::Serial {
            path,
            baud: cli.baud,
        },
        (None, Some(addr), None) => SimTarget::TcpConnect(addr),
        (None, None, Some(addr)) => SimTarget::TcpListen(addr),
        _ => bail!("say where the host is: --serial PATH, --tcp ADDR or --listen ADDR"),
    };
    if let Some(fps) = cli.fps
        && !(fps >= 0.0 && fps.is_finite())
    {
        bail!("--fps {fps} must be 0 or more");
    }
    for (name, p) in [
        ("--bit-error-rate", cli.bit_error_rate),
        ("--byte-drop-rate", cli.byte_drop_rate),
    ] {
        if !(0.0..=1.0).contains(&p) {
            bail!("{name} {p} is not a probability");
        }
    }
    let fps_milli = |default: u32| cli.fps.map_or(default, |fps| (fps * 1000.0).round() as u32);
    let input = match (&cli.dicom, &cli.images) {
        (Some(path), _) => {
            let cine = load_dicom(path)?;
            let fps = fps_milli(cine.fps_milli.unwrap_or(30_000));
            SimInput::Frames(FrameList::new(
                cine.width,
                cine.height,
                cine.frames,
                fps,
                !cli.once,
            ))
        }
        (None, Some(dir)) => {
            let (w, h, frames) =
                load_image_folder(dir).with_context(|| format!("loading {}", dir.display()))?;
            SimInput::Frames(FrameList::new(w, h, frames, fps_milli(30_000), !cli.once))
        }
        (None, None) => {
            let (w, h) = cli
                .size
                .split_once('x')
                .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
                .with_context(|| format!("--size {} is not WIDTHxHEIGHT", cli.size))?;
            if cli.format.frame_len(w, h).is_none() {
                bail!(
                    "--size {} is not a valid {:?} frame size",
                    cli.size,
                    cli.format
                );
            }
            SimInput::Pattern(SourceInfo {
                width: w,
                height: h,
                format: cli.format,
                fps_milli: fps_milli(30_000),
            })
        }
    };
    let (key, key_device) = match &cli.key {
        Some(path) => {
            let block = std::fs::read(path).map_err(|e| {
                anyhow::anyhow!("cannot read the key block {}: {e}", path.display())
            })?;
            let (key, device) = dinoedge_proto::secure::parse_key_block(&block)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            (Some(key), Some(device.to_string()))
        }
        None => (None, None),
    };
    let device_id = cli
        .device_id
        .clone()
        .or(key_device)
        .unwrap_or_else(|| "sim-0001".to_owned());
    let config = SimConfig {
        input,
        target,
        faults: Faults {
            bit_error_rate: cli.bit_error_rate,
            byte_drop_rate: cli.byte_drop_rate,
            seed: cli.seed,
        },
        pause: match cli.pause_at {
            Some(at) => Some((
                seconds(at, "--pause-at")?,
                seconds(cli.pause_for, "--pause-for")?,
            )),
            None => None,
        },
        disconnect_at: cli
            .disconnect_at
            .map(|s| seconds(s, "--disconnect-at"))
            .transpose()?,
        max_frames: cli.frames,
        duration: cli.seconds.map(|s| seconds(s, "--seconds")).transpose()?,
        device_id: heapless::String::try_from(device_id.as_str()).map_err(|_| {
            anyhow::anyhow!(
                "--device-id {:?} is longer than {} bytes",
                device_id,
                dinoedge_proto::MAX_ID
            )
        })?,
        key,
        controls: Default::default(),
    };
    let stop = AtomicBool::new(false);
    let report = run_sim(config, &stop)?;
    let e = &report.edge;
    println!(
        "sent {} frames in {:.2} s ({:.1} frames/s, {:.1} MB/s); dropped {} without credit, {} outside a session; \
         packets sent {}, received {}, rejected {}; sessions {}, link losses {}, connections {}; \
         faults: {} bits flipped, {} bytes dropped",
        e.frames_sent,
        report.elapsed.as_secs_f64(),
        f64::from(e.frames_sent) / report.elapsed.as_secs_f64().max(1e-9),
        report.bytes_written as f64 / 1e6 / report.elapsed.as_secs_f64().max(1e-9),
        e.dropped_no_credit,
        e.dropped_no_session,
        e.packets_sent,
        e.packets_received,
        e.packets_rejected,
        e.sessions,
        e.link_losses,
        report.connections,
        report.faults.flipped_bits,
        report.faults.dropped_bytes,
    );
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dinoedge-edge-sim: {e:#}");
            ExitCode::from(2)
        }
    }
}
