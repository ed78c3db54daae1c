//! Helpers shared by the tests that run the `dinoedge` binary.
// Each test binary that includes this module uses only some of it.
#![allow(dead_code)]

use std::process::Command;

/// Runs `dinoedge ARGS`; returns (exit code, stdout, stderr).
pub fn dinoedge(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dinoedge"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A JSON file, parsed.
pub fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
