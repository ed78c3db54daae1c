//! Helpers shared by the tests that run the `dinoedge` binary.

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
