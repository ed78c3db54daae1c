//! Telemetry read from the fixture trees in `host/tests/data/sysfs/` and from broken trees
//! made in temporary folders.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/sysfs")
        .join(name)
}

/// Writes `text` at `root/rel`, making the folders.
fn put(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn temps(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

#[test]
fn the_jetson_fixture_reads_exactly() {
    let s = sample(&fixture("jetson_orin"));
    assert_eq!(
        s.power_mode,
        Some(PowerMode {
            id: 0,
            name: Some("MAXN".to_owned())
        })
    );
    assert_eq!(
        s.cpu_khz,
        BTreeMap::from([(0, 2_201_600), (1, 1_984_000), (2, 729_600), (3, 2_201_600)])
    );
    // The GPU, not the DLA beside it.
    assert_eq!(s.gpu_hz, Some(1_300_500_000));
    // cv0-thermal reads -256 °C, a sensor that is off: left out.
    assert_eq!(
        s.temperatures_c,
        temps(&[
            ("cpu-thermal", 48.5),
            ("gpu-thermal", 61.5),
            ("tj-thermal", 61.5)
        ])
    );
    // Three rails; the shunt voltages, their sum and the current sum are not rails.
    let rail = |v: f64, a: f64, w: f64| Rail {
        volts: Some(v),
        amps: Some(a),
        watts: w,
    };
    assert_eq!(
        s.rails,
        BTreeMap::from([
            ("VDD_GPU_SOC".to_owned(), rail(5.008, 2.476, 12.399808)),
            ("VDD_CPU_CV".to_owned(), rail(5.008, 0.798, 3.996384)),
            ("VIN_SYS_5V0".to_owned(), rail(5.0, 1.23, 6.15)),
        ])
    );
    assert!(s.throttled_zones.is_empty());
    assert_eq!(s.throttle_events, Some(3));
}

#[test]
fn the_pc_fixture_reads_exactly() {
    let s = sample(&fixture("pc"));
    assert_eq!(s.power_mode, None);
    assert_eq!(s.cpu_khz, BTreeMap::from([(0, 3_600_000), (1, 800_000)]));
    assert_eq!(s.gpu_hz, None);
    assert_eq!(
        s.temperatures_c,
        temps(&[
            ("x86_pkg_temp", 45.0),
            ("acpitz/temp1", 27.8),
            ("coretemp/Package id 0", 45.0),
            ("coretemp/Core 0", 43.0),
            ("coretemp/Core 1", 44.0),
        ])
    );
    assert!(s.rails.is_empty());
    // Passive trip points at 0 are unset ones, not throttling.
    assert!(s.throttled_zones.is_empty());
    assert_eq!(s.throttle_events, None);
}

#[test]
fn an_empty_root_gives_an_empty_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let s = sample(tmp.path());
    assert!(s.is_empty());
    assert_eq!(serde_json::to_string(&s).unwrap(), "{}");
    let s = sample(&tmp.path().join("not-there"));
    assert!(s.is_empty());
    let mut report = None;
    TelemetryReport::add_to(&mut report, s);
    assert_eq!(report, None);
}

#[test]
fn malformed_fields_are_left_out() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    put(root, "var/lib/nvpmodel/status", "pmode:zero\n");
    put(
        root,
        "etc/nvpmodel.conf",
        "< POWER_MODEL ID=0 NAME=MAXN >\n",
    );
    put(
        root,
        "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq",
        "fast\n",
    );
    put(
        root,
        "sys/devices/system/cpu/cpu1/cpufreq/scaling_cur_freq",
        "1200000\n",
    );
    put(
        root,
        "sys/devices/system/cpu/cpufreq/policy0",
        "not a core\n",
    );
    put(root, "sys/class/devfreq/17000000.gpu/cur_freq", "\n");
    put(
        root,
        "sys/class/thermal/thermal_zone0/type",
        "gpu-thermal\n",
    );
    put(root, "sys/class/thermal/thermal_zone0/temp", "hot\n");
    put(
        root,
        "sys/class/thermal/thermal_zone1/type",
        "cpu-thermal\n",
    );
    put(root, "sys/class/thermal/thermal_zone1/temp", "50000\n");
    put(
        root,
        "sys/class/thermal/thermal_zone1/trip_point_0_type",
        "passive\n",
    );
    put(
        root,
        "sys/class/thermal/thermal_zone1/trip_point_0_temp",
        "soon\n",
    );
    // No type: named by its folder.
    put(root, "sys/class/thermal/thermal_zone2/temp", "30000\n");
    put(root, "sys/class/hwmon/hwmon0/name", "ina3221\n");
    // A rail without a label, one with a non-number, one whole.
    put(root, "sys/class/hwmon/hwmon0/in1_input", "5000\n");
    put(root, "sys/class/hwmon/hwmon0/curr1_input", "1000\n");
    put(root, "sys/class/hwmon/hwmon0/in2_label", "VDD_IN\n");
    put(root, "sys/class/hwmon/hwmon0/in2_input", "5V\n");
    put(root, "sys/class/hwmon/hwmon0/curr2_input", "1000\n");
    put(root, "sys/class/hwmon/hwmon0/in3_label", "VDD_SOC\n");
    put(root, "sys/class/hwmon/hwmon0/in3_input", "5000\n");
    put(root, "sys/class/hwmon/hwmon0/curr3_input", "400\n");
    put(root, "sys/class/hwmon/hwmon1/name", "soctherm_oc\n");
    put(root, "sys/class/hwmon/hwmon1/oc1_event_cnt", "many\n");
    put(root, "sys/class/hwmon/hwmon2/name", "nvme\n");
    put(root, "sys/class/hwmon/hwmon2/temp1_label", "Composite\n");
    put(root, "sys/class/hwmon/hwmon2/temp1_input", "-\n");
    put(root, "sys/class/hwmon/hwmon2/power1_input", "2500000\n");
    let s = sample(root);
    assert_eq!(s.power_mode, None);
    assert_eq!(s.cpu_khz, BTreeMap::from([(1, 1_200_000)]));
    assert_eq!(s.gpu_hz, None);
    assert_eq!(
        s.temperatures_c,
        temps(&[("cpu-thermal", 50.0), ("thermal_zone2", 30.0)])
    );
    assert_eq!(
        s.rails,
        BTreeMap::from([
            (
                "VDD_SOC".to_owned(),
                Rail {
                    volts: Some(5.0),
                    amps: Some(0.4),
                    watts: 2.0
                }
            ),
            (
                "nvme/power1".to_owned(),
                Rail {
                    volts: None,
                    amps: None,
                    watts: 2.5
                }
            ),
        ])
    );
    assert!(s.throttled_zones.is_empty());
    assert_eq!(s.throttle_events, None);
}

#[test]
fn a_zone_at_its_first_passive_trip_point_is_throttled() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let zone = "sys/class/thermal/thermal_zone0";
    put(root, &format!("{zone}/type"), "cpu-thermal");
    put(root, &format!("{zone}/temp"), "96000");
    // The first trip point is critical; the first passive one is the second.
    put(root, &format!("{zone}/trip_point_0_type"), "critical");
    put(root, &format!("{zone}/trip_point_0_temp"), "104500");
    put(root, &format!("{zone}/trip_point_1_type"), "passive");
    put(root, &format!("{zone}/trip_point_1_temp"), "96000");
    put(root, &format!("{zone}/trip_point_2_type"), "passive");
    put(root, &format!("{zone}/trip_point_2_temp"), "99000");
    let hot = sample(root);
    assert_eq!(hot.throttled_zones, vec!["cpu-thermal".to_owned()]);
    put(root, &format!("{zone}/temp"), "95999");
    let cool = sample(root);
    assert!(cool.throttled_zones.is_empty());

    let mut report = None;
    TelemetryReport::add_to(&mut report, cool.clone());
    TelemetryReport::add_to(&mut report, hot.clone());
    TelemetryReport::add_to(&mut report, cool);
    let report = report.unwrap();
    assert_eq!(report.samples, 3);
    assert_eq!(report.throttled_samples, 1);
    assert_eq!(report.max.temperatures_c, temps(&[("cpu-thermal", 96.0)]));
}

#[test]
fn the_report_keeps_first_last_and_maxima() {
    let jetson = sample(&fixture("jetson_orin"));
    let mut later = jetson.clone();
    later.gpu_hz = Some(306_000_000);
    later.temperatures_c.insert("gpu-thermal".to_owned(), 70.3);
    later.cpu_khz.insert(2, 2_201_600);
    if let Some(r) = later.rails.get_mut("VDD_CPU_CV") {
        r.watts = 20.0;
    }
    later.throttle_events = Some(10);

    let mut slot = None;
    TelemetryReport::add_to(&mut slot, jetson.clone());
    TelemetryReport::add_to(&mut slot, later.clone());
    let report = slot.unwrap();
    assert_eq!(report.samples, 2);
    assert_eq!(report.first, jetson);
    assert_eq!(report.last, later);
    assert_eq!(report.max.gpu_hz, Some(1_300_500_000));
    assert_eq!(report.max.temperatures_c["gpu-thermal"], 70.3);
    assert_eq!(report.max.temperatures_c["cpu-thermal"], 48.5);
    assert_eq!(report.max.cpu_khz[&2], 2_201_600);
    assert_eq!(report.max.rail_watts["VDD_CPU_CV"], 20.0);
    assert_eq!(report.max.rail_watts["VDD_GPU_SOC"], 12.399808);
    assert_eq!(report.throttled_samples, 0);
    // The counters run from boot: the run saw 10 - 3.
    assert_eq!(report.throttle_events, Some(7));
    assert_eq!(
        report.summary_line(),
        "telemetry: power mode MAXN (0); max CPU 2201 MHz; max GPU 1300 MHz; \
         max temp 70.3 °C (gpu-thermal); max power 20.0 W (VDD_CPU_CV); \
         throttled in 0 of 2 samples; 7 over-current events"
    );
}

#[test]
fn the_summary_line_of_the_fixtures() {
    let jetson = TelemetryReport::new(sample(&fixture("jetson_orin")));
    assert_eq!(
        jetson.summary_line(),
        "telemetry: power mode MAXN (0); max CPU 2201 MHz; max GPU 1300 MHz; \
         max temp 61.5 °C (gpu-thermal); max power 12.4 W (VDD_GPU_SOC); \
         throttled in 0 of 1 samples; 0 over-current events"
    );
    let pc = TelemetryReport::new(sample(&fixture("pc")));
    assert_eq!(
        pc.summary_line(),
        "telemetry: max CPU 3600 MHz; max temp 45.0 °C (coretemp/Package id 0); \
         throttled in 0 of 1 samples"
    );
}

#[test]
fn the_root_comes_from_the_environment_only_when_set() {
    // Read, not set: the variable is the process's, and tests run in parallel.
    match std::env::var_os(ROOT_ENV) {
        Some(v) if !v.is_empty() => assert_eq!(root(), PathBuf::from(v)),
        _ => assert_eq!(root(), PathBuf::from("/")),
    }
}
