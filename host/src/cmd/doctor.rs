//! `dinoedge doctor`: what this machine offers and what dinoedge will do with it.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use dinoedge::doctor::Report;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let report = Report::gather();
    if args.json {
        let text = serde_json::to_string_pretty(&report).context("writing the report as JSON")?;
        println!("{text}");
    } else {
        println!("{report}");
    }
    Ok(if report.default_pipeline_runs {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
