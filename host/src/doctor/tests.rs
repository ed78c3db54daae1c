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
