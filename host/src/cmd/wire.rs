//! `dinoedge wire synth` and `dinoedge wire inspect`.

use std::fs::File;
use std::io::{BufWriter, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use dinoedge::proto::reassembly::ReassemblerConfig;
use dinoedge::proto::{PixelFormat, wire as proto_wire};
use dinoedge::wire_tools::{self, SynthConfig, inspect::InspectEvent};

#[derive(Debug, Subcommand)]
pub enum WireCommand {
    /// Write a synthetic capture: test-pattern frames framed as an edge sends them.
    Synth(SynthArgs),
    /// Decode a capture (raw bytes from the edge) and explain every packet, frame and loss.
    Inspect(InspectArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Gray8,
    Rgb565,
    Rgb888,
    Yuyv422,
}

impl From<Format> for PixelFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::Gray8 => PixelFormat::Gray8,
            Format::Rgb565 => PixelFormat::Rgb565,
            Format::Rgb888 => PixelFormat::Rgb888,
            Format::Yuyv422 => PixelFormat::Yuyv422,
        }
    }
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Where to write the capture.
    #[arg(short, long)]
    output: PathBuf,
    /// Number of frames.
    #[arg(long, default_value_t = 30)]
    frames: u32,
    /// Frame size, WIDTHxHEIGHT.
    #[arg(long, default_value = "640x480", value_parser = parse_size)]
    size: (u16, u16),
    /// Pixel format.
    #[arg(long, value_enum, default_value_t = Format::Gray8)]
    format: Format,
    /// Packet size of the link in bytes (message plus CRC).
    #[arg(long, default_value_t = 4096)]
    packet: usize,
    /// Frames per second (sets the capture timestamps).
    #[arg(long, default_value_t = 30.0)]
    fps: f64,
    /// Probability of each bit on the line being flipped, e.g. 1e-5.
    #[arg(long, default_value_t = 0.0)]
    bit_error_rate: f64,
    /// Seed of the pattern and of the bit errors.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Send frame CRCs in a FrameEnd, as an edge streaming line by line does.
    #[arg(long)]
    crc_at_end: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The capture, or - for standard input.
    input: PathBuf,
    /// Largest packet to accept, in bytes.
    #[arg(long, default_value_t = 65536)]
    max_packet: usize,
    /// Largest frame to accept, in bytes.
    #[arg(long, default_value_t = 32 << 20)]
    max_frame: u32,
    /// Print every packet, damaged packet and frame, not only losses and the summary.
    #[arg(short, long)]
    verbose: bool,
}

fn parse_size(s: &str) -> Result<(u16, u16), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("size {s:?} is not WIDTHxHEIGHT"))?;
    let w = w
        .parse()
        .map_err(|_| format!("width {w:?} is not a number up to 65535"))?;
    let h = h
        .parse()
        .map_err(|_| format!("height {h:?} is not a number up to 65535"))?;
    Ok((w, h))
}

pub fn run(cmd: WireCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        WireCommand::Synth(args) => synth(args),
        WireCommand::Inspect(args) => inspect(args),
    }
}

fn synth(args: SynthArgs) -> anyhow::Result<ExitCode> {
    if !(args.fps > 0.0 && args.fps.is_finite()) {
        bail!("--fps {} must be a positive number", args.fps);
    }
    let config = SynthConfig {
        frames: args.frames,
        width: args.size.0,
        height: args.size.1,
        format: args.format.into(),
        packet: args.packet,
        interval_us: (1e6 / args.fps).round() as u64,
        bit_error_rate: args.bit_error_rate,
        seed: args.seed,
        crc_at_end: args.crc_at_end,
    };
    let file = File::create(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let report = wire_tools::synthesize(&config, &mut BufWriter::new(file))
        .with_context(|| format!("writing {}", args.output.display()))?;
    println!(
        "wrote {}: {} frames, {} packets, {} frame bytes in {} wire bytes (overhead {:.2} %), {} bits flipped",
        args.output.display(),
        report.frames,
        report.packets,
        report.frame_bytes,
        report.wire_bytes,
        (report.wire_bytes as f64 / report.frame_bytes.max(1) as f64 - 1.0) * 100.0,
        report.flipped_bits
    );
    Ok(ExitCode::SUCCESS)
}

fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let mut input: Box<dyn Read> = if args.input.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(
            File::open(&args.input).with_context(|| format!("opening {}", args.input.display()))?,
        )
    };
    let config = ReassemblerConfig {
        max_frame_len: args.max_frame,
        max_chunk_len: proto_wire::chunk_capacity(args.max_packet) as u32,
        ..ReassemblerConfig::default()
    };
    let verbose = args.verbose;
    let summary = wire_tools::inspect(
        &mut input,
        args.max_packet,
        config,
        &mut |event| match event {
            InspectEvent::Packet {
                end_offset,
                message,
            } if verbose => {
                println!("@{end_offset:>10} {:?}", message.kind());
            }
            InspectEvent::Packet { .. } => {}
            InspectEvent::Damaged { end_offset, error } if verbose => {
                println!("@{end_offset:>10} damaged: {error}");
            }
            InspectEvent::Damaged { .. } => {}
            InspectEvent::Frame(frame) if verbose => println!(
                "frame {} delivered: {}x{} {:?}, {} bytes, crc {:#010x}",
                frame.start.seq,
                frame.start.width,
                frame.start.height,
                frame.start.format,
                frame.data.len(),
                frame.crc
            ),
            InspectEvent::Frame(_) => {}
            InspectEvent::Lost(loss) => println!("frame {} lost: {:?}", loss.seq, loss.reason),
        },
    )
    .with_context(|| format!("reading {}", args.input.display()))?;

    let d = &summary.decoder;
    println!("--- {}", args.input.display());
    println!(
        "bytes {}  packets {}  damaged {} (cobs {}, crc {}, short {}, oversize {}, malformed {})",
        d.bytes,
        d.packets,
        d.rejected(),
        d.cobs_errors,
        d.crc_errors,
        d.too_short,
        d.oversize,
        d.malformed
    );
    let kinds: Vec<String> = summary
        .packets
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    println!("by kind: {}", kinds.join(", "));
    println!(
        "frames delivered {} ({} bytes), lost {}{}",
        summary.frames_delivered,
        summary.frame_bytes,
        summary.lost_total(),
        dinoedge::pipeline::counts_by_name(&summary.frames_lost)
    );
    if summary.truncated_tail > 0 {
        println!(
            "capture ends inside a packet ({} bytes)",
            summary.truncated_tail
        );
    }
    if d.other_version_hellos > 0 {
        println!(
            "Hellos of another protocol version (this dinoedge speaks {}): {}",
            dinoedge::proto::PROTOCOL_VERSION,
            d.other_version_hellos
        );
    }
    // A Hello this host cannot parse is no damage, but the capture is not one it can use.
    let clean = d.rejected() == 0
        && d.other_version_hellos == 0
        && summary.lost_total() == 0
        && summary.truncated_tail == 0;
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
