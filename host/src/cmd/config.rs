//! `dinoedge run --config FILE`: the service's settings in TOML (`/etc/dinoedge/dinoedge.toml`
//! under systemd), turned into the same command line a person would type, so that a setting
//! means exactly what its flag means. Unknown keys are refused by name (a misspelt key must
//! never be silently ignored), as are values of the wrong kind. Secrets are never in the
//! file itself: it names the files that hold them (link keys, the view's token, the
//! recording key), each readable by the service user only.
//!
//! ```toml
//! [source]
//! listen = "0.0.0.0:7000"          # or serial = "/dev/ttyACM0" (with baud), tcp, replay,
//!                                  # or v4l2 = "/dev/video0" (v4l2_format, v4l2_size, v4l2_fps),
//!                                  # alone or with the edge's link for its controls
//! [link]
//! keys = "/etc/dinoedge/keys"      # or cleartext = true (serial, or TCP on loopback)
//! [model]
//! dir = "/var/lib/dinoedge/model"  # default: the built-in random-weight ViT-S/16
//! heads = ["/var/lib/dinoedge/heads/views"]
//! size = "224x224"
//! engine = "auto"
//! precision = "fp16"
//! [run]
//! policy = "live"
//! [results]
//! file = "/var/lib/dinoedge/results.jsonl"
//! overlays = "/var/lib/dinoedge/overlays"
//! report = "/var/lib/dinoedge/report.json"
//! rotate_age = "1d"                # rotation and retention as for [recording]
//! keep_files = 30
//! [recording]
//! file = "/var/lib/dinoedge/session.rec"
//! key = "/etc/dinoedge/private/recording.key"
//! rotate_size = "1GiB"             # numbered files session.000001.rec, ...; also rotate_age
//! keep_size = "40GiB"              # oldest finished files deleted past this; also keep_files
//! [storage]
//! min_free = "2GiB"                # or "5%": stop writing cleanly before the disk fills
//! [view]
//! http = "127.0.0.1:8080"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    source: Source,
    #[serde(default)]
    link: Link,
    #[serde(default)]
    model: Model,
    #[serde(default)]
    run: Run,
    #[serde(default)]
    results: Results,
    #[serde(default)]
    recording: Recording,
    #[serde(default)]
    storage: Storage,
    #[serde(default)]
    view: View,
}

/// Where frames come from: exactly one of these.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Source {
    listen: Option<SocketAddr>,
    tcp: Option<SocketAddr>,
    serial: Option<PathBuf>,
    baud: Option<u32>,
    replay: Option<PathBuf>,
    v4l2: Option<PathBuf>,
    v4l2_format: Option<String>,
    v4l2_size: Option<String>,
    v4l2_fps: Option<u32>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Link {
    keys: Option<PathBuf>,
    #[serde(default)]
    cleartext: bool,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Model {
    dir: Option<PathBuf>,
    #[serde(default)]
    heads: Vec<PathBuf>,
    size: Option<String>,
    engine: Option<String>,
    precision: Option<String>,
    workers: Option<usize>,
    threads: Option<usize>,
    roi: Option<String>,
    on_gpu_fault: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Run {
    policy: Option<String>,
    frames: Option<u64>,
    seconds: Option<f64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Results {
    file: Option<PathBuf>,
    overlays: Option<PathBuf>,
    report: Option<PathBuf>,
    rotate_size: Option<String>,
    rotate_age: Option<String>,
    keep_files: Option<u64>,
    keep_size: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Recording {
    file: Option<PathBuf>,
    key: Option<PathBuf>,
    rotate_size: Option<String>,
    rotate_age: Option<String>,
    keep_files: Option<u64>,
    keep_size: Option<String>,
}

/// The disk-space guard, for the recording, results and overlays alike.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Storage {
    min_free: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct View {
    http: Option<SocketAddr>,
    token: Option<PathBuf>,
    #[serde(default)]
    hosts: Vec<String>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    #[serde(default)]
    open_metrics: bool,
}

/// Reads and checks `path`.
pub fn load(path: &Path) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the config {}", path.display()))?;
    parse(&text).with_context(|| format!("the config {} is refused", path.display()))
}

/// Parses and checks a config's text.
pub fn parse(text: &str) -> anyhow::Result<Config> {
    // toml's message names the key, what it expected, and the line.
    let config: Config = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let s = &config.source;
    let links = [s.listen.is_some(), s.tcp.is_some(), s.serial.is_some()]
        .iter()
        .filter(|&&b| b)
        .count();
    // v4l2 with one edge link: the capture brings the frames and the edge its controls.
    match (links, s.replay.is_some(), s.v4l2.is_some()) {
        (0, false, false) => bail!("[source] needs one of listen, tcp, serial, replay or v4l2"),
        (2.., _, _) => bail!("[source] has more than one of listen, tcp and serial; keep one"),
        (_, true, true) | (1, true, false) => bail!(
            "[source] has more than one of listen, tcp, serial, replay and v4l2; keep one \
             (v4l2 may have one of listen, tcp or serial beside it, for the edge's controls)"
        ),
        _ => {}
    }
    if (s.v4l2_format.is_some() || s.v4l2_size.is_some() || s.v4l2_fps.is_some())
        && s.v4l2.is_none()
    {
        bail!("[source] v4l2_format, v4l2_size and v4l2_fps go with v4l2");
    }
    if s.baud.is_some() && s.serial.is_none() {
        bail!("[source] baud goes with serial");
    }
    Ok(config)
}

impl Config {
    /// The `dinoedge run` command line this config stands for.
    pub fn to_args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec!["run".into()];
        let mut flag = |name: &str, value: Option<String>| {
            if let Some(v) = value {
                a.push(format!("--{name}"));
                a.push(v);
            }
        };
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let s = &self.source;
        flag("listen", s.listen.map(|x| x.to_string()));
        flag("tcp", s.tcp.map(|x| x.to_string()));
        flag("serial", path(&s.serial));
        flag("baud", s.baud.map(|b| b.to_string()));
        flag("replay", path(&s.replay));
        flag("v4l2", path(&s.v4l2));
        flag("v4l2-format", s.v4l2_format.clone());
        flag("v4l2-size", s.v4l2_size.clone());
        flag("v4l2-fps", s.v4l2_fps.map(|f| f.to_string()));
        flag("link-keys", path(&self.link.keys));
        let m = &self.model;
        flag("model", path(&m.dir));
        flag("size", m.size.clone());
        flag("engine", m.engine.clone());
        flag("precision", m.precision.clone());
        flag("workers", m.workers.map(|w| w.to_string()));
        flag("threads", m.threads.map(|t| t.to_string()));
        flag("roi", m.roi.clone());
        flag("on-gpu-fault", m.on_gpu_fault.clone());
        for head in &m.heads {
            flag("head", Some(head.display().to_string()));
        }
        flag("policy", self.run.policy.clone());
        flag("frames", self.run.frames.map(|f| f.to_string()));
        flag("seconds", self.run.seconds.map(|s| s.to_string()));
        let r = &self.results;
        flag("results", path(&r.file));
        flag("overlays", path(&r.overlays));
        flag("report", path(&r.report));
        flag("results-rotate-size", r.rotate_size.clone());
        flag("results-rotate-age", r.rotate_age.clone());
        flag("results-keep-files", r.keep_files.map(|n| n.to_string()));
        flag("results-keep-size", r.keep_size.clone());
        let rec = &self.recording;
        flag("record", path(&rec.file));
        flag("recording-key", path(&rec.key));
        flag("record-rotate-size", rec.rotate_size.clone());
        flag("record-rotate-age", rec.rotate_age.clone());
        flag("record-keep-files", rec.keep_files.map(|n| n.to_string()));
        flag("record-keep-size", rec.keep_size.clone());
        flag("min-free", self.storage.min_free.clone());
        let v = &self.view;
        flag("http", v.http.map(|x| x.to_string()));
        flag("http-token", path(&v.token));
        for host in &v.hosts {
            flag("http-host", Some(host.clone()));
        }
        flag("http-cert", path(&v.cert));
        flag("http-key", path(&v.key));
        if self.link.cleartext {
            a.push("--link-cleartext".into());
        }
        if v.open_metrics {
            a.push("--http-open-metrics".into());
        }
        a
    }
}

/// Which config key a `dinoedge run` flag comes from, for errors about its value.
pub fn key_of_flag(flag: &str) -> Option<&'static str> {
    Some(match flag {
        "--listen" => "source.listen",
        "--tcp" => "source.tcp",
        "--serial" => "source.serial",
        "--baud" => "source.baud",
        "--replay" => "source.replay",
        "--v4l2" => "source.v4l2",
        "--v4l2-format" => "source.v4l2_format",
        "--v4l2-size" => "source.v4l2_size",
        "--v4l2-fps" => "source.v4l2_fps",
        "--link-keys" => "link.keys",
        "--link-cleartext" => "link.cleartext",
        "--model" => "model.dir",
        "--size" => "model.size",
        "--engine" => "model.engine",
        "--precision" => "model.precision",
        "--workers" => "model.workers",
        "--threads" => "model.threads",
        "--roi" => "model.roi",
        "--on-gpu-fault" => "model.on_gpu_fault",
        "--head" => "model.heads",
        "--policy" => "run.policy",
        "--frames" => "run.frames",
        "--seconds" => "run.seconds",
        "--results" => "results.file",
        "--overlays" => "results.overlays",
        "--report" => "results.report",
        "--record" => "recording.file",
        "--recording-key" => "recording.key",
        "--results-rotate-size" => "results.rotate_size",
        "--results-rotate-age" => "results.rotate_age",
        "--results-keep-files" => "results.keep_files",
        "--results-keep-size" => "results.keep_size",
        "--record-rotate-size" => "recording.rotate_size",
        "--record-rotate-age" => "recording.rotate_age",
        "--record-keep-files" => "recording.keep_files",
        "--record-keep-size" => "recording.keep_size",
        "--min-free" => "storage.min_free",
        "--http" => "view.http",
        "--http-token" => "view.token",
        "--http-host" => "view.hosts",
        "--http-cert" => "view.cert",
        "--http-key" => "view.key",
        "--http-open-metrics" => "view.open_metrics",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_full_config_becomes_the_command_line_it_stands_for() {
        let c = parse(
            r#"
            [source]
            listen = "0.0.0.0:7000"
            [link]
            keys = "/etc/dinoedge/keys"
            [model]
            heads = ["/h1", "/h2"]
            size = "224x224"
            precision = "fp16"
            [run]
            policy = "live"
            [results]
            file = "/var/r.jsonl"
            [view]
            http = "127.0.0.1:8080"
            open_metrics = true
            "#,
        )
        .unwrap();
        let args = c.to_args().join(" ");
        assert_eq!(
            args,
            "run --listen 0.0.0.0:7000 --link-keys /etc/dinoedge/keys --size 224x224 \
             --precision fp16 --head /h1 --head /h2 --policy live --results /var/r.jsonl \
             --http 127.0.0.1:8080 --http-open-metrics"
        );
    }

    #[test]
    fn unknown_keys_and_wrong_values_are_refused_by_name() {
        let err = parse("[source]\nlisten = \"0.0.0.0:7000\"\n[link]\nkey = \"/k\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown field `key`") && err.contains("keys"),
            "{err}"
        );
        let err = parse("[source]\nlistne = \"0.0.0.0:7000\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `listne`"), "{err}");
        let err = parse("[source]\nlisten = \"seven thousand\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen") || err.contains("socket"), "{err}");
        let err = parse("[source]\nserial = \"/dev/ttyACM0\"\nbaud = \"fast\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("baud") || err.contains("integer"), "{err}");
        let err = parse("[sourec]\nlisten = \"0.0.0.0:7000\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `sourec`"), "{err}");
        let err = parse("[model]\nsize = \"224x224\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("source"), "{err}");
        let err = parse("[source]\nlisten = \"0.0.0.0:7000\"\ntcp = \"1.2.3.4:5\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than one"), "{err}");
    }

    #[test]
    fn every_flag_the_config_writes_maps_back_to_its_key() {
        let c = parse(
            "[source]\nserial = \"/dev/x\"\nbaud = 9600\n[link]\ncleartext = true\n\
             [model]\ndir = \"/m\"\nengine = \"cpu\"\nworkers = 1\nthreads = 2\nroi = \"rect:0,0,1,1\"\n\
             on_gpu_fault = \"cpu\"\n[run]\nframes = 3\nseconds = 1.5\n[results]\noverlays = \"/o\"\n\
             report = \"/r\"\nrotate_size = \"1MB\"\nrotate_age = \"1h\"\nkeep_files = 3\n\
             keep_size = \"1GB\"\n[recording]\nfile = \"/f\"\nkey = \"/k\"\nrotate_size = \"1GiB\"\n\
             rotate_age = \"1d\"\nkeep_files = 9\nkeep_size = \"9GiB\"\n[storage]\nmin_free = \"5%\"\n\
             [view]\nhttp = \"127.0.0.1:1\"\ntoken = \"/t\"\nhosts = [\"a\"]\ncert = \"/c\"\nkey = \"/ck\"\n",
        )
        .unwrap();
        for arg in c.to_args().iter().filter(|a| a.starts_with("--")) {
            assert!(key_of_flag(arg).is_some(), "{arg} has no key");
        }
    }
}
