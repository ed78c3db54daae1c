//! What JetPack adds on a Jetson: the nvpmodel power mode, the GPU's devfreq clock, the
//! INA3221 power monitors and the over-current throttle counters.
//!
//! Paths and formats come from documents, not from a board (none was at hand):
//! - NVIDIA Jetson Linux Developer Guide r36 (JetPack 6) and r35 (JetPack 5), "Platform Power
//!   and Performance", page "Jetson Orin Nano Series, Jetson Orin NX Series and Jetson AGX Orin
//!   Series" (<https://docs.nvidia.com/jetson/archives/r36.3/DeveloperGuide/SD/PlatformPowerAndPerformance/JetsonOrinNanoSeriesJetsonOrinNxSeriesAndJetsonAgxOrinSeries.html>):
//!   power modes from `nvpmodel` and `/etc/nvpmodel.conf`; the INA3221 power monitors under
//!   `/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmonN/` (also reached as
//!   `/sys/class/hwmon/hwmonN`, which is what we scan); the over-current and under-voltage
//!   event counters `ocM_event_cnt` of the `soctherm_oc` hwmon device.
//! - NVIDIA's Jetson team's nvpmodel skill (github.com/NVIDIA/skills,
//!   `skills/jetson-customize-nvpmodel/SKILL.md`), "File format (canonical, per the BSP file
//!   header)": modes are declared as `< POWER_MODEL ID=<int> NAME=<string> >`.
//! - The mode in force is the file nvpmodel keeps in `/var/lib/nvpmodel/status`, one line
//!   `pmode:NNNN` (the id, zero-padded); that form is the one public Jetson scripts parse, not
//!   one we found spelled out by NVIDIA.
//! - Linux `Documentation/hwmon/ina3221.rst`: `in[123]_label`, `in[123]_input` (bus voltage,
//!   mV), `curr[123]_input` (mA); `in[4-7]` are shunt voltages, not rails.
//! - The `soctherm_oc` device is registered by NVIDIA's `tegra23x_oc_event` driver (L4T kernel
//!   sources) with `oc1..oc3_event_cnt` and `oc1..oc3_throt_en`.
//! - The GPU's devfreq device is `17000000.gpu` on JetPack 6 and `17000000.ga10b` on
//!   JetPack 5 (Orin's GA10B GPU at 0x17000000); `cur_freq` is in Hz (Linux
//!   `Documentation/ABI/testing/sysfs-class-devfreq`). Both are under `/sys/class/devfreq/`.
//!
//! The EMC (memory) clock is left out: the Developer Guide reads it from debugfs
//! (`/sys/kernel/debug/bpmp/debug/clk/emc/rate`), which only root can read, and documents no
//! place readable without root.

use std::collections::BTreeMap;
use std::path::Path;

use super::sysfs::{channels, read_num, read_text};
use super::{PowerMode, Rail};

/// The power mode in force: its id from `/var/lib/nvpmodel/status`, its name from
/// `/etc/nvpmodel.conf`.
pub(super) fn power_mode(root: &Path) -> Option<PowerMode> {
    let status = read_text(&root.join("var/lib/nvpmodel/status"))?;
    let id = status_id(&status)?;
    let name = read_text(&root.join("etc/nvpmodel.conf")).and_then(|conf| mode_name(&conf, id));
    Some(PowerMode { id, name })
}

/// The id in `pmode:0000` (other `key:value` words may share the file).
fn status_id(status: &str) -> Option<u32> {
    status
        .split_whitespace()
        .find_map(|word| word.strip_prefix("pmode:"))
        .and_then(|id| id.parse().ok())
}

/// The name of mode `id` in an nvpmodel.conf: `< POWER_MODEL ID=0 NAME=MAXN >`.
fn mode_name(conf: &str, id: u32) -> Option<String> {
    conf.lines().find_map(|line| {
        let line = line.trim();
        let inner = line.strip_prefix('<')?.strip_suffix('>')?;
        let mut words = inner.split_whitespace();
        if words.next()? != "POWER_MODEL" {
            return None;
        }
        let (mut this_id, mut name) = (None, None);
        for word in words {
            if let Some(v) = word.strip_prefix("ID=") {
                this_id = v.parse::<u32>().ok();
            } else if let Some(v) = word.strip_prefix("NAME=") {
                name = Some(v.to_owned());
            }
        }
        (this_id == Some(id)).then_some(name).flatten()
    })
}

/// The GPU's clock, Hz, from its devfreq device.
pub(super) fn gpu_hz(root: &Path) -> Option<u64> {
    let dir = std::fs::read_dir(root.join("sys/class/devfreq")).ok()?;
    let mut names: Vec<String> = dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| is_gpu(name))
        .collect();
    names.sort();
    names
        .iter()
        .find_map(|name| read_num(&root.join("sys/class/devfreq").join(name).join("cur_freq")))
}

/// Whether a devfreq device is a Jetson GPU: `17000000.gpu` (JetPack 6), `17000000.ga10b`
/// (JetPack 5), and the older Tegra GPUs' `*.gv11b` (Xavier) and `*.gp10b` (TX2).
fn is_gpu(name: &str) -> bool {
    let kind = name.rsplit('.').next().unwrap_or(name);
    matches!(kind, "gpu" | "ga10b" | "gv11b" | "gp10b")
}

/// The rails of one INA3221: each labelled channel with its bus voltage and current. A
/// channel without a label is left out: the driver labels every channel the board describes.
pub(super) fn ina3221_rails(dir: &Path) -> BTreeMap<String, Rail> {
    channels(dir, "in", "_label")
        .into_iter()
        .filter_map(|n| {
            let label = read_text(&dir.join(format!("in{n}_label")))?;
            let mv: i64 = read_num(&dir.join(format!("in{n}_input")))?;
            // Only channels with a current are rails; `in7_label` names the shunt sum.
            let ma: i64 = read_num(&dir.join(format!("curr{n}_input")))?;
            let rail = Rail {
                volts: Some(mv as f64 / 1000.0),
                amps: Some(ma as f64 / 1000.0),
                watts: (mv as f64 * ma as f64) / 1e6,
            };
            Some((label, rail))
        })
        .collect()
}

/// The over-current and under-voltage events since boot, all counters together; `None` when
/// no counter could be read.
pub(super) fn oc_events(dir: &Path) -> Option<u64> {
    let counts: Vec<u64> = channels(dir, "oc", "_event_cnt")
        .into_iter()
        .filter_map(|n| read_num(&dir.join(format!("oc{n}_event_cnt"))))
        .collect();
    (!counts.is_empty()).then(|| counts.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_conf_give_the_mode() {
        assert_eq!(status_id("pmode:0002"), Some(2));
        assert_eq!(status_id("pmode:0001 fmode:quiet"), Some(1));
        assert_eq!(status_id("pmode:xx"), None);
        assert_eq!(status_id("garbage"), None);
        let conf = "< POWER_MODEL ID=0 NAME=MAXN >\nCPU_ONLINE CORE_0 1\n\
                    < POWER_MODEL ID=1 NAME=MODE_15W >\n< PM_CONFIG DEFAULT=1 >\n";
        assert_eq!(mode_name(conf, 1).as_deref(), Some("MODE_15W"));
        assert_eq!(mode_name(conf, 0).as_deref(), Some("MAXN"));
        assert_eq!(mode_name(conf, 7), None);
    }

    #[test]
    fn gpu_devfreq_names() {
        assert!(is_gpu("17000000.gpu"));
        assert!(is_gpu("17000000.ga10b"));
        assert!(!is_gpu("15880000.nvdla0"));
        assert!(!is_gpu("bwmgr"));
    }
}
