//! Hardware telemetry for every run and bench: power mode, clocks, temperatures, power rails
//! and throttling, read from sysfs.
//!
//! On a Jetson, [`sample`] reads what JetPack exposes ([`jetson`]'s notes name the documents);
//! elsewhere the same kinds of fields from cpufreq, thermal zones and hwmon where present
//! ([`sysfs`]'s notes). Everything is read under a root folder, `/` in production and a
//! fixture tree in tests, and nothing here fails: a missing or unreadable file leaves its
//! field out. One sample reads some tens of small files, cheap enough once a second.

mod jetson;
mod sysfs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The environment variable that moves the root telemetry reads under (a fixture tree in
/// tests); `/` when unset.
pub const ROOT_ENV: &str = "DINOEDGE_SYSFS_ROOT";

/// The root to read under: `$DINOEDGE_SYSFS_ROOT`, else `/`.
pub fn root() -> PathBuf {
    std::env::var_os(ROOT_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

/// A Jetson power mode (nvpmodel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PowerMode {
    /// Its id, as `nvpmodel -m` takes it.
    pub id: u32,
    /// Its name in `/etc/nvpmodel.conf` (`MAXN`, `15W`, ...), where found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl std::fmt::Display for PowerMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{name} ({})", self.id),
            None => write!(f, "{}", self.id),
        }
    }
}

/// One power rail.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rail {
    /// Volts, where the monitor measures them (INA3221).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volts: Option<f64>,
    /// Amperes, where the monitor measures them (INA3221).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amps: Option<f64>,
    /// Watts.
    pub watts: f64,
}

/// One reading of everything there is to read; what could not be read is left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Sample {
    /// The Jetson power mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power_mode: Option<PowerMode>,
    /// Each CPU core's clock, kHz, by core number (cpufreq `scaling_cur_freq`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub cpu_khz: BTreeMap<u32, u64>,
    /// The GPU's clock, Hz (its devfreq `cur_freq`; Jetson).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_hz: Option<u64>,
    /// Temperatures, °C: thermal zones by type (`gpu-thermal`), hwmon sensors as `name/label`
    /// (`coretemp/Core 0`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub temperatures_c: BTreeMap<String, f64>,
    /// Power rails by label (`VDD_GPU_SOC`): the INA3221 monitors, and hwmon power inputs.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub rails: BTreeMap<String, Rail>,
    /// Thermal zones at or above their first passive trip point: throttled, or about to be.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub throttled_zones: Vec<String>,
    /// Over-current and under-voltage throttle events since boot (Jetson `soctherm_oc`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttle_events: Option<u64>,
}

impl Sample {
    /// Whether nothing at all could be read.
    pub fn is_empty(&self) -> bool {
        *self == Sample::default()
    }

    /// Whether any thermal zone was at or above its first passive trip point.
    pub fn throttled(&self) -> bool {
        !self.throttled_zones.is_empty()
    }
}

/// Reads everything under `root` (`/` in production). Never fails: what is missing,
/// unreadable or malformed is left out.
pub fn sample(root: &Path) -> Sample {
    let zones = sysfs::thermal_zones(root);
    let hwmon = sysfs::hwmon(root);
    let mut temperatures_c = zones.temperatures_c;
    for (name, c) in hwmon.temperatures_c {
        sysfs::insert_unique(&mut temperatures_c, name, "hwmon", c);
    }
    Sample {
        power_mode: jetson::power_mode(root),
        cpu_khz: sysfs::cpu_khz(root),
        gpu_hz: jetson::gpu_hz(root),
        temperatures_c,
        rails: hwmon.rails,
        throttled_zones: zones.throttled,
        throttle_events: hwmon.throttle_events,
    }
}

/// The largest of each quantity over a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Maxima {
    /// Each CPU core's highest clock, kHz.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub cpu_khz: BTreeMap<u32, u64>,
    /// The GPU's highest clock, Hz.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_hz: Option<u64>,
    /// Each sensor's highest temperature, °C.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub temperatures_c: BTreeMap<String, f64>,
    /// Each rail's highest power, W.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub rail_watts: BTreeMap<String, f64>,
}

impl Maxima {
    fn add(&mut self, s: &Sample) {
        for (&core, &khz) in &s.cpu_khz {
            let max = self.cpu_khz.entry(core).or_insert(khz);
            *max = (*max).max(khz);
        }
        self.gpu_hz = self.gpu_hz.max(s.gpu_hz);
        for (name, &c) in &s.temperatures_c {
            let max = self.temperatures_c.entry(name.clone()).or_insert(c);
            *max = max.max(c);
        }
        for (name, rail) in &s.rails {
            let max = self.rail_watts.entry(name.clone()).or_insert(rail.watts);
            *max = max.max(rail.watts);
        }
    }
}

/// Telemetry over a run: the first and last samples, the maxima, and how often it throttled.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TelemetryReport {
    /// Samples taken that held anything (one a second, and one at the end).
    pub samples: u64,
    /// The first.
    pub first: Sample,
    /// The last.
    pub last: Sample,
    /// The largest of each quantity.
    pub max: Maxima,
    /// Samples in which any thermal zone was at or above its first passive trip point.
    pub throttled_samples: u64,
    /// Over-current and under-voltage throttle events during the run (Jetson).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttle_events: Option<u64>,
}

impl TelemetryReport {
    /// A report of one sample.
    pub fn new(first: Sample) -> Self {
        let mut max = Maxima::default();
        max.add(&first);
        TelemetryReport {
            samples: 1,
            throttled_samples: u64::from(first.throttled()),
            throttle_events: first.throttle_events.map(|_| 0),
            last: first.clone(),
            first,
            max,
        }
    }

    /// Adds a sample.
    pub fn add(&mut self, s: Sample) {
        self.samples += 1;
        self.throttled_samples += u64::from(s.throttled());
        self.max.add(&s);
        // The counters run from boot; the run's events are the difference.
        if let (Some(first), Some(now)) = (self.first.throttle_events, s.throttle_events) {
            self.throttle_events = Some(now.saturating_sub(first));
        }
        self.last = s;
    }

    /// Adds a sample to the report in `slot`, starting one if there is none; an empty sample
    /// (a machine that exposes nothing) is not counted, so that a run with nothing to read
    /// has no report.
    pub fn add_to(slot: &mut Option<TelemetryReport>, s: Sample) {
        if s.is_empty() {
            return;
        }
        match slot {
            Some(report) => report.add(s),
            None => *slot = Some(TelemetryReport::new(s)),
        }
    }

    /// One line for the end-of-run summary, e.g. `telemetry: power mode MAXN (0); max GPU
    /// 1300 MHz; max temp 61.5 °C (gpu-thermal); max power 12.4 W (VDD_GPU_SOC); throttled in
    /// 0 of 20 samples`. Parts with nothing measured are left out.
    pub fn summary_line(&self) -> String {
        let mut parts = Vec::new();
        match (&self.first.power_mode, &self.last.power_mode) {
            (Some(a), Some(b)) if a != b => parts.push(format!("power mode {a} -> {b}")),
            (_, Some(m)) | (Some(m), None) => parts.push(format!("power mode {m}")),
            (None, None) => {}
        }
        if let Some(khz) = self.max.cpu_khz.values().max() {
            parts.push(format!("max CPU {} MHz", khz / 1000));
        }
        if let Some(hz) = self.max.gpu_hz {
            parts.push(format!("max GPU {} MHz", hz / 1_000_000));
        }
        if let Some((name, c)) = largest(&self.max.temperatures_c) {
            parts.push(format!("max temp {c:.1} °C ({name})"));
        }
        if let Some((name, w)) = largest(&self.max.rail_watts) {
            parts.push(format!("max power {w:.1} W ({name})"));
        }
        parts.push(format!(
            "throttled in {} of {} samples",
            self.throttled_samples, self.samples
        ));
        if let Some(events) = self.throttle_events {
            parts.push(format!("{events} over-current events"));
        }
        format!("telemetry: {}", parts.join("; "))
    }
}

/// The entry with the largest value (the first by name among equals).
fn largest(map: &BTreeMap<String, f64>) -> Option<(&str, f64)> {
    map.iter()
        .fold(None, |best: Option<(&str, f64)>, (k, &v)| match best {
            Some((_, b)) if b >= v => best,
            _ => Some((k.as_str(), v)),
        })
}

#[cfg(test)]
mod tests;
