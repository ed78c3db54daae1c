//! The host's integration tests: the library's public API and the `dinoedge` binary as users run it.
// One test binary per crate: each binary links the whole host with tract (about 150 MB in a
// debug build), so one per file filled CI's disk and spent minutes linking.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

mod backbone_inputs;
mod backbone_parity;
mod capture;
mod cli;
mod common;
mod config_cli;
mod doctor_cli;
mod engine_cli;
mod keys_cli;
mod meta_import;
mod pipeline;
mod pipeline_cli;
mod probe_cli;
mod probe_sklearn;
mod probe_volume;
mod promises;
mod record_crash;
mod recording;
mod references;
mod replay_source;
mod service_notify;
mod storage;
mod sweep_cli;
mod telemetry;
mod view_browser;
mod view_cli;
