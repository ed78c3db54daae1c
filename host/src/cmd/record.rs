//! `dinoedge record`: the link's bytes in both directions, with receive times, into a
//! recording that survives a crash (readable by its owner only; encrypted with
//! `--recording-key`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::Args;
use dinoedge::recording::{RecordingKey, RecordingWriter, reader::scan_with};

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
    /// Encrypt the recording with the key in this file (each record sealed on its own; the
    /// key file must be readable by its owner only). Replays then need the same file.
    #[arg(long, value_name = "FILE")]
    recording_key: Option<PathBuf>,
}

/// The key in `--recording-key FILE`, if one was given: shared by every command that reads or
/// writes a recording.
pub fn recording_key(path: Option<&Path>) -> anyhow::Result<Option<RecordingKey>> {
    path.map(|p| {
        RecordingKey::load(p).with_context(|| format!("reading the recording key {}", p.display()))
    })
    .transpose()
}

pub fn run(args: RecordArgs) -> anyhow::Result<ExitCode> {
    let key = recording_key(args.recording_key.as_deref())?;
    let writer = if args.append && args.output.exists() {
        RecordingWriter::append_with(&args.output, key.as_ref())?
    } else {
        RecordingWriter::create_with(&args.output, key.as_ref())?
    };
    match &key {
        Some(key) => eprintln!(
            "recording to {}, encrypted with key id {}",
            args.output.display(),
            key.id()
        ),
        None => eprintln!("recording to {}", args.output.display()),
    }
    let shared = Arc::new(Mutex::new(writer));
    let code = run_recording(args.link, Some(shared.clone()))?;
    let writer = Arc::try_unwrap(shared)
        .map_err(|_| anyhow::anyhow!("the recording is still in use"))?
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    let (records, bytes) = (writer.records(), writer.bytes());
    writer.finish()?;
    let s = scan_with(&args.output, key.as_ref())
        .with_context(|| format!("reading back {}", args.output.display()))?;
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
