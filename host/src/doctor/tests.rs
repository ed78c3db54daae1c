#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use super::probe::parse_cpu_model;
use super::*;

#[test]
fn ldconfig_output_gives_sonames_and_paths() {
    let text = "1234 libs found in cache `/etc/ld.so.cache'\n\
                \tlibcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1\n\
                \tlibz.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libz.so.1\n";
    assert_eq!(
        parse_ldconfig(text),
        vec![
            (
                "libcuda.so.1".to_owned(),
                PathBuf::from("/usr/lib/x86_64-linux-gnu/libcuda.so.1")
            ),
            (
                "libz.so.1".to_owned(),
                PathBuf::from("/lib/x86_64-linux-gnu/libz.so.1")
            ),
        ]
    );
}

#[test]
fn nvidia_smi_csv_gives_the_gpu_and_garbage_gives_none() {
    let gpu = parse_nvidia_smi("NVIDIA H200, 9.0, 143771, 580.95.05\n").unwrap();
    assert_eq!(gpu.name, "NVIDIA H200");
    assert_eq!(gpu.compute_capability, "9.0");
    assert_eq!(gpu.memory_mib, Some(143_771));
    assert_eq!(gpu.driver_version, "580.95.05");
    // Orin's nvidia-smi reports no memory figure.
    let orin = parse_nvidia_smi("Orin (nvgpu), 8.7, [N/A], 540.4.0").unwrap();
    assert_eq!(orin.memory_mib, None);
    assert_eq!(parse_nvidia_smi(""), None);
    assert_eq!(parse_nvidia_smi("No devices were found"), None);
}

#[test]
fn the_l4t_release_is_read_from_its_first_line() {
    let text = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64\n\
                # KERNEL_VARIANT: oot\n";
    assert_eq!(
        parse_nv_tegra_release(text).as_deref(),
        Some("R36 (release), REVISION: 4.3")
    );
    assert_eq!(parse_nv_tegra_release("nonsense"), None);
    assert_eq!(parse_nv_tegra_release(""), None);
}

#[test]
fn the_cpu_model_comes_from_x86_or_arm_cpuinfo() {
    let x86 = "processor\t: 0\nmodel name\t: AMD EPYC 9654 96-Core Processor\n";
    assert_eq!(
        parse_cpu_model(x86).as_deref(),
        Some("AMD EPYC 9654 96-Core Processor")
    );
    let arm = "processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xd42\n";
    assert_eq!(parse_cpu_model(arm).as_deref(), Some("Arm CPU part 0xd42"));
    assert_eq!(parse_cpu_model(""), None);
}

#[test]
fn auto_takes_the_cpu_and_says_what_the_gpu_engines_lack() {
    let libraries = vec![
        Library {
            name: "CUDA driver",
            sonames: vec!["libcuda.so.1"],
            found: Some(PathBuf::from("/usr/lib/libcuda.so.1")),
        },
        Library {
            name: "TensorRT",
            sonames: vec!["libnvinfer.so.10"],
            found: None,
        },
    ];
    let passed_over = vec![
        NotTaken {
            engine: "tensorrt",
            reason: "no TensorRT engine".into(),
        },
        NotTaken {
            engine: "cuda",
            reason: "no CUDA in this build".into(),
        },
    ];
    let choice = choose_engine((EngineKind::Cpu, passed_over), &libraries, None);
    assert_eq!(choice.engine, "cpu");
    let names: Vec<&str> = choice.not_taken.iter().map(|(e, _)| *e).collect();
    assert_eq!(names, vec!["tensorrt", "cuda"]);
    let (_, tensorrt) = &choice.not_taken[0];
    assert!(tensorrt.starts_with("no TensorRT engine;"), "{tensorrt}");
    assert!(tensorrt.contains("missing: TensorRT"), "{tensorrt}");
    assert!(!tensorrt.contains("CUDA driver"), "{tensorrt}");
    assert!(tensorrt.contains("no NVIDIA GPU answered"), "{tensorrt}");
    let (_, cuda) = &choice.not_taken[1];
    assert!(cuda.starts_with("no CUDA in this build;"), "{cuda}");
    assert!(cuda.contains("NVRTC") && cuda.contains("cuDNN"), "{cuda}");
    // Where CUDA is taken, nothing is said against it.
    let gpu = Gpu {
        name: "Orin".into(),
        compute_capability: "8.7".into(),
        memory_mib: None,
        driver_version: "540".into(),
    };
    let choice = choose_engine(
        (
            EngineKind::Cuda,
            vec![NotTaken {
                engine: "tensorrt",
                reason: "no TensorRT engine".into(),
            }],
        ),
        &libraries,
        Some(&gpu),
    );
    assert_eq!(choice.engine, "cuda");
    assert_eq!(choice.not_taken.len(), 1);
}

#[cfg(not(feature = "cuda"))]
#[test]
fn a_build_without_cuda_passes_it_over_saying_how_to_get_it() {
    let (engine, passed_over) = crate::engine::auto_choice();
    assert_eq!(engine, EngineKind::Cpu);
    let cuda = passed_over.iter().find(|n| n.engine == "cuda").unwrap();
    assert!(
        cuda.reason.contains("--features cuda-12060"),
        "{}",
        cuda.reason
    );
}

#[test]
fn this_machine_is_reported_without_failing() {
    let report = Report::gather();
    assert!(report.cores >= 1);
    assert!(report.default_pipeline_runs);
    assert_eq!(report.engine_auto.engine, "cpu");
    assert_eq!(report.libraries.len(), 6);
    // Either a GPU answered or the report says why none did.
    assert!(report.gpu.is_some() != report.gpu_missing.is_some());
    let text = report.to_string();
    assert!(text.contains("auto picks cpu"), "{text}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["engine_auto"]["engine"], "cpu");
}

// ---- the service's checks, through a probe the test controls ----

mod service_checks {
    use std::io::ErrorKind;
    use std::path::{Path, PathBuf};

    use super::super::checks::*;
    use crate::storage::{MinFree, Space};

    const GIB: u64 = 1 << 30;

    /// A machine whose answers the test sets: errors by kind, the space, which folders exist.
    struct Fake {
        open: Option<ErrorKind>,
        group: Option<String>,
        space: std::io::Result<Space>,
        write: Option<ErrorKind>,
        dirs: Vec<PathBuf>,
    }

    impl Default for Fake {
        fn default() -> Self {
            Fake {
                open: None,
                group: None,
                space: Ok(Space {
                    available: 50 * GIB,
                    total: 100 * GIB,
                }),
                write: None,
                dirs: vec![PathBuf::from("/var/lib/dinoedge")],
            }
        }
    }

    impl Probe for Fake {
        fn open_read_write(&self, _: &Path) -> std::io::Result<()> {
            self.open.map_or(Ok(()), |k| Err(k.into()))
        }
        fn group_of(&self, _: &Path) -> Option<String> {
            self.group.clone()
        }
        fn space(&self, _: &Path) -> std::io::Result<Space> {
            match &self.space {
                Ok(s) => Ok(*s),
                Err(e) => Err(e.kind().into()),
            }
        }
        fn write_in(&self, _: &Path, _: bool) -> std::io::Result<()> {
            self.write.map_or(Ok(()), |k| Err(k.into()))
        }
        fn is_dir(&self, dir: &Path) -> bool {
            self.dirs.iter().any(|d| d == dir)
        }
    }

    #[test]
    fn a_refused_device_names_the_group_to_join_and_a_missing_one_warns() {
        let serial = Path::new("/dev/ttyACM0");
        let ok = device(DeviceKind::Serial, serial, &Fake::default());
        assert_eq!(ok.level, Level::Pass);
        assert!(ok.fix.is_none());

        let refused = Fake {
            open: Some(ErrorKind::PermissionDenied),
            ..Fake::default()
        };
        let c = device(DeviceKind::Serial, serial, &refused);
        assert_eq!(c.level, Level::Fail);
        assert!(c.found.contains("permission denied"), "{c}");
        assert!(
            c.fix.as_deref().unwrap().contains("usermod -aG dialout"),
            "{c}"
        );
        // The device's own group wins over the usual one.
        let uucp = Fake {
            open: Some(ErrorKind::PermissionDenied),
            group: Some("uucp".into()),
            ..Fake::default()
        };
        let c = device(DeviceKind::Serial, serial, &uucp);
        assert!(
            c.fix.as_deref().unwrap().contains("usermod -aG uucp"),
            "{c}"
        );
        let video = device(
            DeviceKind::of(Path::new("/dev/video0")),
            Path::new("/dev/video0"),
            &refused,
        );
        assert!(
            video.fix.as_deref().unwrap().contains("-aG video"),
            "{video}"
        );
        assert_eq!(video.name, "video");

        let absent = Fake {
            open: Some(ErrorKind::NotFound),
            ..Fake::default()
        };
        let c = device(DeviceKind::Serial, serial, &absent);
        assert_eq!(c.level, Level::Warn);
        assert!(c.found.contains("not there"), "{c}");
        let busy = Fake {
            open: Some(ErrorKind::ResourceBusy),
            ..Fake::default()
        };
        assert_eq!(device(DeviceKind::Serial, serial, &busy).level, Level::Warn);
    }

    #[test]
    fn disk_space_is_judged_against_the_guards_threshold() {
        let dir = Path::new("/var/lib/dinoedge");
        let min = MinFree::Bytes(2 * GIB);
        let at = |available: u64| Fake {
            space: Ok(Space {
                available,
                total: 100 * GIB,
            }),
            ..Fake::default()
        };
        assert_eq!(disk("results", dir, min, &at(50 * GIB)).level, Level::Pass);
        let c = disk("results", dir, min, &at(3 * GIB));
        assert_eq!(c.level, Level::Warn, "{c}");
        let c = disk("results", dir, min, &at(GIB));
        assert_eq!(c.level, Level::Fail, "{c}");
        assert!(
            c.found.contains("1.0 GiB free") && c.found.contains("2.0 GiB"),
            "{c}"
        );
        assert!(c.fix.as_deref().unwrap().contains("keep_files"), "{c}");
        // A share of the disk.
        let c = disk("results", dir, MinFree::Percent(5.0), &at(4 * GIB));
        assert_eq!(c.level, Level::Fail, "{c}");
        // The guard off: a warning, whatever the space.
        assert_eq!(
            disk("results", dir, MinFree::Bytes(0), &at(50 * GIB)).level,
            Level::Warn
        );
        // A folder that is not there, or not writable, fails before the space is read.
        let c = disk("recordings", Path::new("/nowhere"), min, &Fake::default());
        assert_eq!(c.level, Level::Fail);
        assert!(
            c.found.contains("does not exist") && c.fix.as_deref().unwrap().contains("install -d"),
            "{c}"
        );
        let locked = Fake {
            write: Some(ErrorKind::PermissionDenied),
            ..Fake::default()
        };
        let c = disk("recordings", dir, min, &locked);
        assert_eq!(c.level, Level::Fail);
        assert!(c.found.contains("not writable"), "{c}");
        // An unreadable space is a warning: the guard could not work.
        let blind = Fake {
            space: Err(ErrorKind::Unsupported.into()),
            ..Fake::default()
        };
        assert_eq!(disk("results", dir, min, &blind).level, Level::Warn);
    }

    #[test]
    fn an_unwritable_engine_cache_fails_where_tensorrt_runs_and_warns_elsewhere() {
        let dir = Path::new("/var/cache/dinoedge/engines");
        assert_eq!(engine_cache(dir, true, &Fake::default()).level, Level::Pass);
        let locked = Fake {
            write: Some(ErrorKind::PermissionDenied),
            ..Fake::default()
        };
        let c = engine_cache(dir, true, &locked);
        assert_eq!(c.level, Level::Fail);
        assert!(
            c.fix.as_deref().unwrap().contains("DINOEDGE_ENGINE_CACHE"),
            "{c}"
        );
        assert_eq!(engine_cache(dir, false, &locked).level, Level::Warn);
    }

    #[test]
    fn targets_check_each_folder_and_device_once() {
        let mut t = Targets {
            devices: Vec::new(),
            folders: Vec::new(),
            min_free: MinFree::default(),
            engine_cache: PathBuf::from("/c"),
            tensorrt_usable: false,
        };
        t.add_folder("results", PathBuf::from("/var/lib/dinoedge"));
        t.add_folder("recordings", PathBuf::from("/var/lib/dinoedge"));
        t.add_device(DeviceKind::Serial, Path::new("/dev/ttyACM0"));
        t.add_device(DeviceKind::Serial, Path::new("/dev/ttyACM0"));
        t.add_device(
            DeviceKind::Video,
            Path::new("/dev/v4l/by-id/usb-grabber-index0"),
        );
        let checks = run(&t, &Fake::default());
        let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["serial", "video", "disk", "engine cache"]);
        assert!(
            checks[2].found.contains("(results, recordings)"),
            "{}",
            checks[2]
        );
        assert_eq!(folder_of(Path::new("results.jsonl")), PathBuf::from("."));
    }

    #[test]
    fn group_names_come_from_etc_group() {
        let text = "root:x:0:\ndialout:x:20:alice\nvideo:x:44:bob,carol\nbroken\n";
        assert_eq!(group_name(text, 20).as_deref(), Some("dialout"));
        assert_eq!(group_name(text, 44).as_deref(), Some("video"));
        assert_eq!(group_name(text, 99), None);
    }
}
