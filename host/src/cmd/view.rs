//! The `--http` flags of `run`, `replay` and `bench`: the live view (`dinoedge::view`).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use dinoedge::pipeline::Models;
use dinoedge::view::{CertSource, LiveView, ViewConfig, ViewInfo};

/// Where and how the live view is served.
#[derive(Debug, Args, Clone, Default)]
pub struct ViewArgs {
    /// Serve the live view here (off by default): the latest frame with its overlay, classes,
    /// latency, drops, link state; `/metrics` and `/healthz`. 127.0.0.1:PORT watches from this
    /// machine; any other address needs --http-token and serves over TLS.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// The access token's file (readable by its owner only): a browser signs in with it once
    /// and gets a session cookie. Required off loopback (`dinoedge keys view-token -o FILE`).
    #[arg(long, value_name = "FILE")]
    pub http_token: Option<PathBuf>,
    /// Names browsers use for this machine (e.g. jetson.local); requests naming any other
    /// `Host` are refused.
    #[arg(long = "http-host", value_name = "NAME")]
    pub http_hosts: Vec<String>,
    /// The TLS certificate chain (PEM); default: a self-signed one made at first start.
    #[arg(long, value_name = "FILE", requires = "http_key")]
    pub http_cert: Option<PathBuf>,
    /// The TLS certificate's key (PEM).
    #[arg(long, value_name = "FILE", requires = "http_cert")]
    pub http_key: Option<PathBuf>,
    /// Serve `/metrics` and `/healthz` without the token (they carry no images).
    #[arg(long)]
    pub http_open_metrics: bool,
}

impl ViewArgs {
    /// Starts the view if asked for.
    pub fn start(&self, models: &Models, replay: bool) -> anyhow::Result<Option<LiveView>> {
        let Some(addr) = self.http else {
            if self.http_token.is_some() || !self.http_hosts.is_empty() {
                bail!("--http-token and --http-host go with --http ADDR");
            }
            return Ok(None);
        };
        // The self-signed certificate is kept beside the token: the service's private folder.
        let state = self
            .http_token
            .as_ref()
            .and_then(|t| t.parent().map(|p| p.join("view-tls")))
            .unwrap_or_else(|| PathBuf::from("view-tls"));
        let mut config = ViewConfig::new(addr, state);
        config.hosts = self.http_hosts.clone();
        config.token_file = self.http_token.clone();
        config.open_metrics = self.http_open_metrics;
        if let (Some(cert), Some(key)) = (&self.http_cert, &self.http_key) {
            config.cert = CertSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            };
        }
        let backbone = &models.backbone;
        let info = ViewInfo {
            model: format!("{} at {}", backbone.config().arch_name(), backbone.size()),
            engine: backbone.engine().summary(),
            random_weights: backbone.random_weights(),
            replay,
        };
        LiveView::start(config, info)
            .map(Some)
            .context("starting the live view")
    }
}
