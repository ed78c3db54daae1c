//! `dinoedge record`: the link's bytes in both directions, with receive times, into a
//! recording that survives a crash.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::Args;
use dinoedge::recording::{RecordingWriter, reader::scan};

use super::link::{LinkArgs, run_recording};

#[derive(Debug, Args)]
pub struct RecordArgs {
    #[command(flatten)]
    link: LinkArgs,
    /// The recording to write.
    #[arg(short, long)]
    output: PathBuf,
    /// Continue an existing recording (an incomplete last record, from a crash, is cut off).
    #[arg(long)]
    append: bool,
}

pub fn run(args: RecordArgs) -> anyhow::Result<ExitCode> {
    let writer = if args.append && args.output.exists() {
        RecordingWriter::append(&args.output)?
    } else {
        RecordingWriter::create(&args.output)?
    };
    eprintln!("recording to {}", args.output.display());
    let shared = Arc::new(Mutex::new(writer));
    let code = run_recording(args.link, Some(shared.clone()))?;
    let writer = Arc::try_unwrap(shared)
        .map_err(|_| anyhow::anyhow!("the recording is still in use"))?
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    let (records, bytes) = (writer.records(), writer.bytes());
    writer.finish()?;
    let s =
        scan(&args.output).with_context(|| format!("reading back {}", args.output.display()))?;
    println!(
        "recorded {records} records ({bytes} bytes) to {}; the file holds {} records{}",
        args.output.display(),
        s.records.values().sum::<u64>(),
        if s.damage.is_empty() {
            String::new()
        } else {
            format!(", damage: {:?}", s.damage)
        }
    );
    Ok(code)
}
