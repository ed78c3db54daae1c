//! The `dinoedge` command: a thin layer over the `dinoedge` library.

mod cmd;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cmd::Cli::parse();
    init_logging();
    match cmd::run(cli) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) if is_gpu_fault(&e) => {
            eprintln!("dinoedge: {e:#}");
            ExitCode::from(dinoedge::engine::GPU_FAULT_EXIT_CODE)
        }
        Err(e) => {
            eprintln!("dinoedge: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Log to the journal, with levels and fields, when systemd connected stderr to it; plain
/// lines on stderr otherwise (or when the journal's socket cannot be reached).
fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    let journal = if dinoedge::service::journal::stderr_is_journal() {
        tracing_journald::layer().ok()
    } else {
        None
    };
    if let Some(journal) = journal {
        tracing_subscriber::registry()
            .with(filter())
            .with(journal)
            .init();
        return;
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in a service's log or a file.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// A GPU left unusable: a distinct exit code, so that a service manager restarts the process
/// and `auto` chooses again.
fn is_gpu_fault(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<dinoedge::pipeline::PipelineError>(),
            Some(dinoedge::pipeline::PipelineError::GpuFault { .. })
        )
    })
}

/// Output piped into `head` and closed early is not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
