//! `dinoedge bench` reports the hardware's telemetry: pointed at the Jetson fixture tree
//! through `DINOEDGE_SYSFS_ROOT`, report.json holds its power mode, rails and temperatures.

use std::path::Path;
use std::process::Command;

use crate::common::{fixture_model, read_json, s};

#[test]
fn bench_reports_the_jetson_fixtures_telemetry() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("bench");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sysfs/jetson_orin");
    // The shipped cine, five frames, the tiny fixture model.
    let out = Command::new(env!("CARGO_BIN_EXE_dinoedge"))
        .args([
            "bench",
            "--model",
            &fixture_model("tiny_mlp"),
            "--size",
            "32x32",
            "--frames",
            "5",
            "--out",
            &s(&out_dir),
        ])
        .env("DINOEDGE_SYSFS_ROOT", &root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Stopping the 30-frame cine after 5 counts the rest as lost on the link (`HostStopped`),
    // and bench exits 1 on losses; telemetry is reported either way.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{stdout}\n{stderr}"
    );

    let report = read_json(&out_dir.join("report.json"));
    let t = &report["telemetry"];
    // A sample at the start and one at the end, at least; the fixture never changes.
    assert!(t["samples"].as_u64().unwrap() >= 2, "{t}");
    assert_eq!(t["throttled_samples"], 0, "{t}");
    assert_eq!(t["throttle_events"], 0, "{t}");
    for which in ["first", "last"] {
        let sample = &t[which];
        assert_eq!(
            sample["power_mode"],
            serde_json::json!({"id": 0, "name": "MAXN"}),
            "{which}: {sample}"
        );
        assert_eq!(sample["gpu_hz"], 1_300_500_000u64, "{which}: {sample}");
        assert_eq!(
            sample["temperatures_c"],
            serde_json::json!({"cpu-thermal": 48.5, "gpu-thermal": 61.5, "tj-thermal": 61.5}),
            "{which}: {sample}"
        );
        assert_eq!(
            sample["rails"]["VDD_GPU_SOC"],
            serde_json::json!({"volts": 5.008, "amps": 2.476, "watts": 12.399808}),
            "{which}: {sample}"
        );
        let rails: Vec<&str> = sample["rails"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            rails,
            ["VDD_CPU_CV", "VDD_GPU_SOC", "VIN_SYS_5V0"],
            "{sample}"
        );
        assert_eq!(sample["throttle_events"], 3, "{which}: {sample}");
    }
    assert_eq!(t["max"]["rail_watts"]["VIN_SYS_5V0"], 6.15, "{t}");
    assert_eq!(t["max"]["temperatures_c"]["gpu-thermal"], 61.5, "{t}");
    assert_eq!(t["max"]["gpu_hz"], 1_300_500_000u64, "{t}");
}
