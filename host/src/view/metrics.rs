//! `/metrics` in the Prometheus text exposition format (version 0.0.4): counters, gauges and
//! histograms, rendered from the view's own tallies.
//!
//! Written here rather than through a metrics crate: the view already keeps its numbers, the
//! format is a few lines of text per family, and a registry would be one more copy of them.

use std::collections::BTreeMap;
use std::fmt::Write;

/// Bucket upper bounds for latencies, milliseconds.
pub const LATENCY_BUCKETS_MS: [f64; 14] = [
    1.0, 2.5, 5.0, 10.0, 20.0, 35.0, 50.0, 75.0, 100.0, 150.0, 250.0, 500.0, 1000.0, 2500.0,
];

/// A cumulative histogram over [`LATENCY_BUCKETS_MS`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations at or below each bound (not yet cumulative).
    counts: [u64; LATENCY_BUCKETS_MS.len()],
    /// Observations above the last bound.
    over: u64,
    sum: f64,
}

impl Histogram {
    /// Counts one observation.
    pub fn observe(&mut self, value_ms: f64) {
        if !value_ms.is_finite() {
            return;
        }
        self.sum += value_ms;
        match LATENCY_BUCKETS_MS.iter().position(|&b| value_ms <= b) {
            Some(i) => {
                if let Some(c) = self.counts.get_mut(i) {
                    *c += 1;
                }
            }
            None => self.over += 1,
        }
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum::<u64>() + self.over
    }
}

/// What `/metrics` reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// Frames that came out of the link.
    pub frames_received: u64,
    /// Frames processed.
    pub frames_processed: u64,
    /// Dropped by the host, by reason.
    pub frames_dropped: BTreeMap<String, u64>,
    /// Lost on the link, by reason.
    pub frames_lost: BTreeMap<String, u64>,
    /// Dropped at the edge for lack of credit.
    pub frames_dropped_at_edge: u64,
    /// Latency, capture (or arrival) to result sent.
    pub latency: Histogram,
    /// Time per stage.
    pub stages: BTreeMap<String, Histogram>,
    /// Link counters by name (connections, sessions, packets, ...).
    pub link: BTreeMap<String, u64>,
    /// The edge clock's offset from the host's, µs, when known.
    pub clock_offset_us: Option<i64>,
    /// `engine`, `precision`, `model` labels of the info gauge.
    pub info: BTreeMap<String, String>,
    /// CPU seconds the process used.
    pub cpu_seconds: f64,
    /// Resident memory, bytes.
    pub resident_bytes: f64,
    /// Viewers connected to the event stream.
    pub viewers: u64,
    /// Frames encoded for the view, and updates skipped because a newer one took their place.
    pub view_frames_encoded: u64,
}

impl Metrics {
    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        counter(
            &mut out,
            "dinoedge_frames_received_total",
            "Frames that came out of the link.",
            &[],
            self.frames_received,
        );
        counter(
            &mut out,
            "dinoedge_frames_processed_total",
            "Frames that went through the backbone and heads.",
            &[],
            self.frames_processed,
        );
        family(
            &mut out,
            "dinoedge_frames_dropped_total",
            "counter",
            "Frames dropped by the host, by reason.",
        );
        for (reason, n) in &self.frames_dropped {
            sample(
                &mut out,
                "dinoedge_frames_dropped_total",
                &[("reason", reason)],
                *n as f64,
            );
        }
        family(
            &mut out,
            "dinoedge_frames_lost_total",
            "counter",
            "Frames lost on the link, by reason.",
        );
        for (reason, n) in &self.frames_lost {
            sample(
                &mut out,
                "dinoedge_frames_lost_total",
                &[("reason", reason)],
                *n as f64,
            );
        }
        counter(
            &mut out,
            "dinoedge_frames_dropped_at_edge_total",
            "Frames the edge dropped for lack of credit.",
            &[],
            self.frames_dropped_at_edge,
        );
        family(
            &mut out,
            "dinoedge_latency_ms",
            "histogram",
            "Latency from capture (or arrival) to the result sent, ms.",
        );
        histogram(&mut out, "dinoedge_latency_ms", &[], &self.latency);
        family(
            &mut out,
            "dinoedge_stage_ms",
            "histogram",
            "Time per pipeline stage, ms.",
        );
        for (stage, h) in &self.stages {
            histogram(&mut out, "dinoedge_stage_ms", &[("stage", stage)], h);
        }
        family(
            &mut out,
            "dinoedge_link_total",
            "counter",
            "Link counters, by name.",
        );
        for (name, n) in &self.link {
            sample(
                &mut out,
                "dinoedge_link_total",
                &[("counter", name)],
                *n as f64,
            );
        }
        if let Some(offset) = self.clock_offset_us {
            family(
                &mut out,
                "dinoedge_clock_offset_us",
                "gauge",
                "The edge clock minus the host clock, µs.",
            );
            sample(&mut out, "dinoedge_clock_offset_us", &[], offset as f64);
        }
        family(
            &mut out,
            "dinoedge_info",
            "gauge",
            "The engine and model in use (value 1).",
        );
        let labels: Vec<(&str, &str)> = self
            .info
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        sample(&mut out, "dinoedge_info", &labels, 1.0);
        family(
            &mut out,
            "process_cpu_seconds_total",
            "counter",
            "CPU time the process used, seconds.",
        );
        sample(&mut out, "process_cpu_seconds_total", &[], self.cpu_seconds);
        family(
            &mut out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory, bytes.",
        );
        sample(
            &mut out,
            "process_resident_memory_bytes",
            &[],
            self.resident_bytes,
        );
        family(
            &mut out,
            "dinoedge_view_viewers",
            "gauge",
            "Viewers connected to the live view's event stream.",
        );
        sample(&mut out, "dinoedge_view_viewers", &[], self.viewers as f64);
        counter(
            &mut out,
            "dinoedge_view_frames_encoded_total",
            "Frames the live view encoded (once for all viewers).",
            &[],
            self.view_frames_encoded,
        );
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, labels: &[(&str, &str)], value: u64) {
    family(out, name, "counter", help);
    sample(out, name, labels, value as f64);
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {}", number(value));
}

fn histogram(out: &mut String, name: &str, labels: &[(&str, &str)], h: &Histogram) {
    let mut cumulative = 0;
    let bucket = format!("{name}_bucket");
    for (bound, n) in LATENCY_BUCKETS_MS.iter().zip(h.counts) {
        cumulative += n;
        let le = number(*bound);
        let mut with_le = labels.to_vec();
        with_le.push(("le", &le));
        sample(out, &bucket, &with_le, cumulative as f64);
    }
    let mut with_le = labels.to_vec();
    with_le.push(("le", "+Inf"));
    sample(out, &bucket, &with_le, h.count() as f64);
    sample(out, &format!("{name}_sum"), labels, h.sum);
    sample(out, &format!("{name}_count"), labels, h.count() as f64);
}

/// Label values escape backslash, double quote and line feed.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    /// Parses the exposition back: (name with labels, value) per sample line; every sample's
    /// family was declared before it with HELP and TYPE.
    pub(crate) fn parse(text: &str) -> Vec<(String, f64)> {
        let mut declared = std::collections::BTreeSet::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap().to_owned());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (key, value) = line.rsplit_once(' ').unwrap();
            let name = key.split('{').next().unwrap();
            let family = name
                .strip_suffix("_bucket")
                .or_else(|| name.strip_suffix("_sum"))
                .or_else(|| name.strip_suffix("_count"))
                .filter(|f| declared.contains(*f))
                .unwrap_or(name);
            assert!(declared.contains(family), "{name} has no TYPE line");
            samples.push((key.to_owned(), value.parse().unwrap()));
        }
        samples
    }

    #[test]
    fn the_exposition_parses_back_with_cumulative_buckets() {
        let mut m = Metrics {
            frames_received: 10,
            frames_processed: 9,
            ..Metrics::default()
        };
        m.frames_lost.insert("MissingChunk".into(), 1);
        m.info.insert("engine".into(), "cpu \"tract\"".into());
        for v in [0.5, 3.0, 40.0, 40.0, 9000.0] {
            m.latency.observe(v);
        }
        m.stages.entry("backbone".into()).or_default().observe(12.0);
        let samples = parse(&m.render());
        let get = |k: &str| samples.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
        assert_eq!(get("dinoedge_frames_received_total"), Some(10.0));
        assert_eq!(
            get("dinoedge_frames_lost_total{reason=\"MissingChunk\"}"),
            Some(1.0)
        );
        assert_eq!(get("dinoedge_latency_ms_bucket{le=\"1\"}"), Some(1.0));
        assert_eq!(get("dinoedge_latency_ms_bucket{le=\"5\"}"), Some(2.0));
        assert_eq!(get("dinoedge_latency_ms_bucket{le=\"50\"}"), Some(4.0));
        assert_eq!(get("dinoedge_latency_ms_bucket{le=\"+Inf\"}"), Some(5.0));
        assert_eq!(get("dinoedge_latency_ms_count"), Some(5.0));
        assert_eq!(
            get("dinoedge_stage_ms_count{stage=\"backbone\"}"),
            Some(1.0)
        );
        assert_eq!(
            get("dinoedge_info{engine=\"cpu \\\"tract\\\"\"}"),
            Some(1.0)
        );
    }
}
