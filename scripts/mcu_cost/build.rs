//! Puts memory.x where the linker (cortex-m-rt's link.x) finds it.
use std::{env, error::Error, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn Error>> {
    let out = PathBuf::from(env::var_os("OUT_DIR").ok_or("cargo sets OUT_DIR")?);
    fs::copy("memory.x", out.join("memory.x"))
        .map_err(|e| format!("memory.x (beside Cargo.toml): {e}"))?;
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    Ok(())
}
