//! What any Linux machine exposes: cpufreq, thermal zones and hwmon.
//!
//! The formats are the kernel's own, from its documentation:
//! - cpufreq, `Documentation/admin-guide/pm/cpufreq.rst` ("CPU Performance Scaling"):
//!   `/sys/devices/system/cpu/cpuN/cpufreq/scaling_cur_freq`, the current clock in kHz;
//! - thermal zones, `Documentation/driver-api/thermal/sysfs-api.rst` ("Generic Thermal Sysfs
//!   driver How To"): `/sys/class/thermal/thermal_zoneN/{type,temp}`, `temp` in millidegrees
//!   Celsius, and `trip_point_M_{type,temp}`, the type one of `critical`, `hot`, `passive`,
//!   `active`;
//! - hwmon, `Documentation/hwmon/sysfs-interface.rst` ("Naming and data format standards for
//!   sysfs files"): `/sys/class/hwmon/hwmonN/name`, `tempM_input` in millidegrees Celsius with
//!   `tempM_label`, `powerM_input` in microwatts with `powerM_label`.
//!
//! Every reader returns `None` (or leaves an entry out) for a missing, unreadable or malformed
//! file: telemetry describes the run, it never stops it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::{Rail, jetson};

/// The most of one file read: sysfs attributes are a page at most; `/etc/nvpmodel.conf` is
/// tens of kilobytes. The cap keeps a wrong root (a huge file where an attribute should be)
/// cheap.
const READ_MAX: u64 = 1 << 20;

/// Below this, a temperature is a sensor that is off, not a reading: Orin reports -256 °C for
/// a powered-down sensor (tegrastats prints it as `cv0@-256C`, per reports on NVIDIA's
/// developer forum; not from NVIDIA's documentation). Nothing here runs at -100 °C.
const COLDEST_C: f64 = -100.0;

/// The file's text, trimmed; `None` when it is missing, unreadable, not UTF-8 or empty.
pub(super) fn read_text(path: &Path) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(READ_MAX).read_to_string(&mut text).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// The file's text as a number; `None` when it is not one.
pub(super) fn read_num<T: FromStr>(path: &Path) -> Option<T> {
    read_text(path)?.parse().ok()
}

/// The entries of `dir` named `PREFIX<n>`, by `n`, in order.
pub(super) fn numbered(dir: &Path, prefix: &str) -> Vec<(u32, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(u32, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name();
            let n = name.to_str()?.strip_prefix(prefix)?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// The `n` of the files in `dir` named `PREFIX<n>SUFFIX` (`temp<n>_input`), in order.
pub(super) fn channels(dir: &Path, prefix: &str, suffix: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<u32> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name();
            name.to_str()?
                .strip_prefix(prefix)?
                .strip_suffix(suffix)?
                .parse()
                .ok()
        })
        .collect();
    found.sort_unstable();
    found
}

/// Millidegrees Celsius as °C; `None` for a sensor that is off.
fn celsius(milli: i64) -> Option<f64> {
    let c = milli as f64 / 1000.0;
    (c > COLDEST_C).then_some(c)
}

/// Inserts under `key`, or under `key (alt)` when a sensor of the same name came first.
pub(super) fn insert_unique<V>(map: &mut BTreeMap<String, V>, key: String, alt: &str, v: V) {
    if map.contains_key(&key) {
        map.insert(format!("{key} ({alt})"), v);
    } else {
        map.insert(key, v);
    }
}

/// The current clock of each CPU core with cpufreq, kHz, by core number.
pub(super) fn cpu_khz(root: &Path) -> BTreeMap<u32, u64> {
    numbered(&root.join("sys/devices/system/cpu"), "cpu")
        .into_iter()
        .filter_map(|(n, dir)| Some((n, read_num(&dir.join("cpufreq/scaling_cur_freq"))?)))
        .collect()
}

/// What the thermal zones say: temperatures by zone type, and the zones at or above their
/// first passive trip point.
pub(super) struct Zones {
    /// °C by zone type.
    pub temperatures_c: BTreeMap<String, f64>,
    /// Zones at or above their first passive trip point.
    pub throttled: Vec<String>,
}

/// Every `thermal_zoneN` under `/sys/class/thermal`.
pub(super) fn thermal_zones(root: &Path) -> Zones {
    let mut zones = Zones {
        temperatures_c: BTreeMap::new(),
        throttled: Vec::new(),
    };
    for (n, dir) in numbered(&root.join("sys/class/thermal"), "thermal_zone") {
        let Some(c) = read_num::<i64>(&dir.join("temp")).and_then(celsius) else {
            continue;
        };
        let dir_name = format!("thermal_zone{n}");
        let name = read_text(&dir.join("type")).unwrap_or_else(|| dir_name.clone());
        // Passive cooling is the kernel slowing clocks down (sysfs-api.rst): at or above the
        // first passive trip point the zone is being throttled, or about to be. A trip point
        // at 0 °C or below is one left unset (x86_pkg_temp ships its passive trips at 0).
        let passive = channels(&dir, "trip_point_", "_type")
            .into_iter()
            .filter(|m| {
                read_text(&dir.join(format!("trip_point_{m}_type"))).as_deref() == Some("passive")
            })
            .find_map(|m| read_num::<i64>(&dir.join(format!("trip_point_{m}_temp"))))
            .filter(|&t| t > 0);
        let key = if zones.temperatures_c.contains_key(&name) {
            format!("{name} ({dir_name})")
        } else {
            name
        };
        if passive.is_some_and(|t| c >= t as f64 / 1000.0) {
            zones.throttled.push(key.clone());
        }
        zones.temperatures_c.insert(key, c);
    }
    zones
}

/// What the hwmon devices say.
#[derive(Default)]
pub(super) struct Hwmon {
    /// °C by `name/label` (`name/tempN` without a label).
    pub temperatures_c: BTreeMap<String, f64>,
    /// Power rails by label.
    pub rails: BTreeMap<String, Rail>,
    /// Over-current and under-voltage throttle events since boot (Jetson's `soctherm_oc`).
    pub throttle_events: Option<u64>,
}

/// Every `hwmonN` under `/sys/class/hwmon`.
pub(super) fn hwmon(root: &Path) -> Hwmon {
    let mut out = Hwmon::default();
    for (n, dir) in numbered(&root.join("sys/class/hwmon"), "hwmon") {
        let dir_name = format!("hwmon{n}");
        let name = read_text(&dir.join("name")).unwrap_or_else(|| dir_name.clone());
        for m in channels(&dir, "temp", "_input") {
            let Some(c) = read_num::<i64>(&dir.join(format!("temp{m}_input"))).and_then(celsius)
            else {
                continue;
            };
            // A temperature without a label is still one (acpitz has none): named by its file.
            let label = read_text(&dir.join(format!("temp{m}_label")))
                .unwrap_or_else(|| format!("temp{m}"));
            insert_unique(
                &mut out.temperatures_c,
                format!("{name}/{label}"),
                &dir_name,
                c,
            );
        }
        for m in channels(&dir, "power", "_input") {
            let Some(uw) = read_num::<i64>(&dir.join(format!("power{m}_input"))) else {
                continue;
            };
            let label = read_text(&dir.join(format!("power{m}_label")))
                .unwrap_or_else(|| format!("{name}/power{m}"));
            let rail = Rail {
                volts: None,
                amps: None,
                watts: uw as f64 / 1e6,
            };
            insert_unique(&mut out.rails, label, &dir_name, rail);
        }
        match name.as_str() {
            "ina3221" => {
                for (label, rail) in jetson::ina3221_rails(&dir) {
                    insert_unique(&mut out.rails, label, &dir_name, rail);
                }
            }
            "soctherm_oc" => {
                if let Some(events) = jetson::oc_events(&dir) {
                    out.throttle_events = Some(out.throttle_events.unwrap_or(0) + events);
                }
            }
            _ => {}
        }
    }
    out
}
