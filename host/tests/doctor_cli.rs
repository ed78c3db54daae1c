//! `dinoedge doctor --config FILE` as a person installing the service runs it: a good config
//! passes (devices, folders, disk space, engine cache each on a line), a bad one fails naming
//! the key, a low disk and a missing folder fail with what to do, and an engine cache that
//! cannot be created is reported. Free space is faked through `$DINOEDGE_FAKE_FREE_BYTES` and
//! the cache moved with `$DINOEDGE_ENGINE_CACHE`; nothing relies on file permissions, which
//! root (as these tests run) would pass anyway.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::common::{s, scratch};

/// `dinoedge doctor --json ARGS` with `env`: exit code and the report.
fn doctor(args: &[&str], env: &[(&str, &str)]) -> (i32, Value, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dinoedge"));
    command.arg("doctor").arg("--json").args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{stderr}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap_or(-1), report, stderr)
}

/// The checks named `name`.
fn checks<'a>(report: &'a Value, name: &str) -> Vec<&'a Value> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == name)
        .collect()
}

/// A service config: a serial edge at `serial`, results and a recording under `dir/data`.
fn config(dir: &Path, serial: &Path) -> String {
    format!(
        "[source]\nserial = {serial:?}\n\n[results]\nfile = {results:?}\n\n\
         [recording]\nfile = {rec:?}\nrotate_size = \"1GiB\"\nkeep_files = 10\n\n\
         [storage]\nmin_free = \"2GiB\"\n",
        serial = s(serial),
        results = s(&dir.join("data").join("results.jsonl")),
        rec = s(&dir.join("data").join("session.rec")),
    )
}

#[test]
fn a_good_config_passes_each_check_and_a_bad_one_fails_naming_the_key() {
    let tmp = scratch("doctor", "config");
    std::fs::create_dir(tmp.join("data")).unwrap();
    // A file stands in for the serial port: it opens for reading and writing like one.
    let tty = tmp.join("ttyFAKE");
    std::fs::write(&tty, b"").unwrap();
    let file = tmp.join("dinoedge.toml");
    std::fs::write(&file, config(&tmp, &tty)).unwrap();
    let cache = tmp.join("cache").join("engines");
    let env = [
        ("DINOEDGE_FAKE_FREE_BYTES", "50GiB"),
        ("DINOEDGE_ENGINE_CACHE", cache.to_str().unwrap()),
    ];
    let (code, r, err) = doctor(&["--config", &s(&file)], &env);
    assert_eq!(code, 0, "{r:#}\n{err}");
    let names: Vec<&str> = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["config", "serial", "disk", "engine cache"], "{r:#}");
    for c in r["checks"].as_array().unwrap() {
        assert_eq!(c["level"], "pass", "{c}");
    }
    // One disk check for the one folder, saying what goes there and the threshold.
    let disk = checks(&r, "disk")[0]["found"].as_str().unwrap();
    assert!(
        disk.contains("(results, recordings)") && disk.contains("50.0 GiB free"),
        "{disk}"
    );
    assert!(disk.contains("below 2.0 GiB"), "{disk}");
    assert!(cache.is_dir(), "the cache is created as run would");

    // The same as text: one line per check.
    let out = Command::new(env!("CARGO_BIN_EXE_dinoedge"))
        .args(["doctor", "--config", &s(&file)])
        .envs(env)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("PASS config"), "{text}");
    assert!(text.contains("PASS engine cache"), "{text}");

    // A misspelt key: the config check fails naming it, and doctor exits 1.
    std::fs::write(&file, config(&tmp, &tty).replace("keep_files", "keep_file")).unwrap();
    let (code, r, _) = doctor(&["--config", &s(&file)], &env);
    assert_eq!(code, 1);
    let c = checks(&r, "config")[0];
    assert_eq!(c["level"], "fail");
    assert!(
        c["found"]
            .as_str()
            .unwrap()
            .contains("unknown field `keep_file`"),
        "{c}"
    );
    // A value its flag refuses, by its key.
    std::fs::write(&file, config(&tmp, &tty).replace("2GiB", "plenty")).unwrap();
    let (code, r, _) = doctor(&["--config", &s(&file)], &env);
    assert_eq!(code, 1);
    let found = checks(&r, "config")[0]["found"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        found.contains("storage.min_free") && found.contains("plenty"),
        "{found}"
    );
}

#[test]
fn a_low_disk_a_missing_folder_and_a_missing_device_are_reported_with_what_to_do() {
    let tmp = scratch("doctor", "low");
    std::fs::create_dir(tmp.join("data")).unwrap();
    let file = tmp.join("dinoedge.toml");
    let absent = tmp.join("ttyGONE");
    std::fs::write(&file, config(&tmp, &absent)).unwrap();
    let cache = tmp.join("cache");
    let env = [
        ("DINOEDGE_FAKE_FREE_BYTES", "1GiB"),
        ("DINOEDGE_ENGINE_CACHE", cache.to_str().unwrap()),
    ];
    let (code, r, _) = doctor(&["--config", &s(&file)], &env);
    assert_eq!(code, 1, "{r:#}");
    let serial = checks(&r, "serial")[0];
    assert_eq!(serial["level"], "warn", "{serial}");
    assert!(serial["found"].as_str().unwrap().contains("not there"));
    let disk = checks(&r, "disk")[0];
    assert_eq!(disk["level"], "fail", "{disk}");
    assert!(
        disk["fix"].as_str().unwrap().contains("keep_files"),
        "{disk}"
    );

    // A folder the config names that does not exist.
    std::fs::remove_dir(tmp.join("data")).unwrap();
    let env = [
        ("DINOEDGE_FAKE_FREE_BYTES", "50GiB"),
        ("DINOEDGE_ENGINE_CACHE", cache.to_str().unwrap()),
    ];
    let (code, r, _) = doctor(&["--config", &s(&file)], &env);
    assert_eq!(code, 1);
    let disk = checks(&r, "disk")[0];
    assert!(
        disk["found"].as_str().unwrap().contains("does not exist"),
        "{disk}"
    );
    assert!(
        disk["fix"].as_str().unwrap().contains("install -d"),
        "{disk}"
    );
}

#[test]
fn an_engine_cache_that_cannot_be_created_is_reported() {
    let tmp = scratch("doctor", "cache");
    // A file where the cache's parent folder would be: no user, root included, can create it.
    std::fs::write(tmp.join("blocker"), b"").unwrap();
    let cache = tmp.join("blocker").join("engines");
    let (code, r, _) = doctor(
        &["--folder", &s(&tmp)],
        &[
            ("DINOEDGE_FAKE_FREE_BYTES", "50GiB"),
            ("DINOEDGE_ENGINE_CACHE", cache.to_str().unwrap()),
        ],
    );
    let c = checks(&r, "engine cache")[0];
    assert!(
        c["found"].as_str().unwrap().contains("cannot be written"),
        "{c}"
    );
    assert!(
        c["fix"].as_str().unwrap().contains("DINOEDGE_ENGINE_CACHE"),
        "{c}"
    );
    // Without TensorRT here the cache is unused: a warning, and doctor still succeeds; where
    // TensorRT runs, a failure.
    let usable = r["tensorrt"]["unavailable"].is_null() && !r["tensorrt"]["shim"].is_null();
    assert_eq!(c["level"], if usable { "fail" } else { "warn" }, "{c}");
    assert_eq!(code, if usable { 1 } else { 0 });
    assert_eq!(checks(&r, "disk")[0]["level"], "pass");
}
