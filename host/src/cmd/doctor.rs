//! `dinoedge doctor`: what this machine offers and what dinoedge will do with it; with
//! `--config FILE`, whether the service those settings describe can run here (the file valid,
//! its devices openable by this user, room in its folders, the engine cache writable).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use dinoedge::doctor::Report;
use dinoedge::doctor::checks::{self, Check, Targets};

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Check the service's config file: read as `run --config` reads it; its serial device and
    /// its results, overlay and recording folders are checked too.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check that this user may open this device for reading and writing (a serial port, or
    /// /dev/videoN); any number.
    #[arg(long = "device", value_name = "PATH")]
    devices: Vec<PathBuf>,
    /// Check the free space of this folder too; any number.
    #[arg(long = "folder", value_name = "DIR")]
    folders: Vec<PathBuf>,
    /// The free space the disk checks ask for, as `run --min-free` (a config's
    /// [storage] min_free takes its place).
    #[arg(long, value_name = "SIZE|PCT", default_value = "1GiB")]
    min_free: dinoedge::storage::MinFree,
}

pub fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let mut report = Report::gather();
    let mut targets = Targets {
        devices: Vec::new(),
        folders: Vec::new(),
        min_free: args.min_free,
        engine_cache: dinoedge::engine::tensorrt::cache::default_dir(),
        tensorrt_usable: report.tensorrt_usable(),
    };
    let mut found = Vec::new();
    if let Some(path) = &args.config {
        match super::run::from_config(path) {
            Ok(run) => {
                found.push(Check::config_ok(path));
                run.doctor_targets(&mut targets);
            }
            Err(e) => found.push(Check::config_refused(&format!("{e:#}"))),
        }
    }
    for device in &args.devices {
        targets.add_device(checks::DeviceKind::of(device), device);
    }
    for folder in &args.folders {
        targets.add_folder("given", folder.clone());
    }
    found.extend(checks::run(&targets, &checks::System::default()));
    report.checks = found;
    if args.json {
        let text = serde_json::to_string_pretty(&report).context("writing the report as JSON")?;
        println!("{text}");
    } else {
        println!("{report}");
    }
    Ok(
        if report.default_pipeline_runs && !report.any_check_failed() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        },
    )
}
