//! `dinoedge gpu`: checks of the GPU preprocessing, compiling its kernels (no GPU needed) and
//! comparing it with the CPU on images.

#[cfg(feature = "cuda")]
pub use with_cuda::{GpuCommand, run};
#[cfg(not(feature = "cuda"))]
pub use without_cuda::{GpuCommand, run};

#[cfg(not(feature = "cuda"))]
mod without_cuda {
    use std::process::ExitCode;

    use clap::Args;

    /// Whatever was asked: this build cannot do it.
    #[derive(Debug, Args)]
    pub struct GpuCommand {
        /// The subcommand and its arguments (kernels, preprocess) in a CUDA build.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        _rest: Vec<String>,
    }

    pub fn run(_cmd: GpuCommand) -> anyhow::Result<ExitCode> {
        eprintln!(
            "this build has no CUDA support: rebuild with --features cuda-12060 (JetPack 6.1+) \
             or cuda-13000"
        );
        Ok(ExitCode::from(2))
    }
}

#[cfg(feature = "cuda")]
mod with_cuda {
    use std::path::PathBuf;
    use std::process::ExitCode;
    use std::time::Instant;

    use anyhow::Context;
    use clap::{Args, Subcommand};
    use dinoedge::backbone::InputSize;
    use dinoedge::cuda::{
        GpuPreprocessor, GpuTimings, KERNEL_NAMES, compile_preprocess_cubin, compile_preprocess_ptx,
    };
    use dinoedge::preprocess::resample::{ReferencePreprocessor, textured};
    use dinoedge::preprocess::{FrameRef, PreprocessConfig, Preprocessor, load_image};
    use dinoedge::proto::message::PixelFormat;
    use half::f16;

    /// GPU checks.
    #[derive(Debug, Args)]
    pub struct GpuCommand {
        #[command(subcommand)]
        command: Sub,
    }

    #[derive(Debug, Subcommand)]
    enum Sub {
        /// Compile every preprocessing kernel with NVRTC for each architecture and print the PTX
        /// size; needs NVRTC only, no GPU. Exit 1 with NVRTC's log on failure.
        Kernels(KernelsArgs),
        /// Preprocess images on the CPU and on GPU 0, as RGB and as Gray8 frames; print the
        /// differences on the 0-255 scale and the GPU's median times, then time a 1920x1080
        /// frame. Exit 1 when the GPU differs from the CPU by more than 1 (mean) or 2 (max).
        Preprocess(PreprocessArgs),
    }

    #[derive(Debug, Args)]
    struct KernelsArgs {
        /// Architecture to compile for: sm_87 (Orin), sm_90, compute_87... Repeatable.
        #[arg(long = "arch", default_values = ["sm_87"])]
        archs: Vec<String>,
        /// Also write each architecture's PTX to DIR/preprocess_ARCH.ptx (e.g. for ptxas).
        #[arg(long, value_name = "DIR")]
        ptx_dir: Option<PathBuf>,
    }

    #[derive(Debug, Args)]
    struct PreprocessArgs {
        /// Image files (PNG, JPEG).
        #[arg(long, required = true, num_args = 1..)]
        input: Vec<PathBuf>,
        /// Model input size HxW.
        #[arg(long, default_value = "224x224")]
        size: InputSize,
        #[command(flatten)]
        region: crate::cmd::RoiArg,
        /// Runs per frame for the median times.
        #[arg(long, default_value_t = 50)]
        runs: usize,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    }

    pub fn run(cmd: GpuCommand) -> anyhow::Result<ExitCode> {
        match cmd.command {
            Sub::Kernels(args) => kernels(args),
            Sub::Preprocess(args) => preprocess(args),
        }
    }

    fn kernels(args: KernelsArgs) -> anyhow::Result<ExitCode> {
        let mut failed = false;
        for arch in &args.archs {
            let start = Instant::now();
            match compile_preprocess_ptx(arch) {
                Ok(ptx) => {
                    println!(
                        "{arch}: {} bytes of PTX, kernels {} ({:.0} ms)",
                        ptx.len(),
                        KERNEL_NAMES.join(", "),
                        start.elapsed().as_secs_f64() * 1e3
                    );
                    if let Some(dir) = &args.ptx_dir {
                        let path = dir.join(format!("preprocess_{arch}.ptx"));
                        std::fs::write(&path, &ptx)
                            .with_context(|| format!("writing {}", path.display()))?;
                    }
                }
                Err(e) => {
                    eprintln!("{arch}: {e}");
                    failed = true;
                }
            }
            // What a device loads: machine code for its own architecture.
            if arch.starts_with("sm_") {
                match compile_preprocess_cubin(arch) {
                    Ok(cubin) => println!("{arch}: {} bytes of CUBIN", cubin.len()),
                    Err(e) => {
                        eprintln!("{arch} (CUBIN): {e}");
                        failed = true;
                    }
                }
            }
        }
        Ok(if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    }

    /// Mean and max absolute difference on the 0-255 pixel scale of two normalised outputs.
    fn diff_255(std: [f32; 3], a: &[f32], b: &[f32]) -> (f32, f32) {
        let plane = (a.len() / 3).max(1);
        let (mut sum, mut max) = (0.0f64, 0.0f32);
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            let s = std.get(i / plane).copied().unwrap_or(1.0);
            let d = (x - y).abs() * s * 255.0;
            sum += f64::from(d);
            max = max.max(d);
        }
        ((sum / a.len().max(1) as f64) as f32, max)
    }

    /// The median of each timing over `runs` runs of `frame`.
    fn median_timings(
        gpu: &mut GpuPreprocessor,
        frame: FrameRef,
        out: &mut [f32],
        runs: usize,
    ) -> anyhow::Result<(GpuTimings, f64)> {
        let mut all = Vec::with_capacity(runs);
        let mut walls = Vec::with_capacity(runs);
        for _ in 0..runs.max(1) {
            let start = Instant::now();
            all.push(gpu.run_into(frame, out)?);
            walls.push(start.elapsed().as_secs_f64() * 1e3);
        }
        let median = |mut v: Vec<f32>| {
            v.sort_by(f32::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(0.0)
        };
        walls.sort_by(f64::total_cmp);
        Ok((
            GpuTimings {
                h2d_ms: median(all.iter().map(|t| t.h2d_ms).collect()),
                kernels_ms: median(all.iter().map(|t| t.kernels_ms).collect()),
                d2h_ms: median(all.iter().map(|t| t.d2h_ms).collect()),
            },
            walls.get(walls.len() / 2).copied().unwrap_or(0.0),
        ))
    }

    /// What one frame gave.
    #[derive(serde::Serialize)]
    struct Report {
        input: String,
        format: String,
        width: u32,
        height: u32,
        /// GPU against the CPU preprocessor, 0-255 scale.
        cpu_mean_abs: Option<f32>,
        cpu_max_abs: Option<f32>,
        /// GPU against the float reference, 0-255 scale (transliteration check).
        reference_max_abs: Option<f32>,
        /// f16 output against f32, 0-255 scale.
        f16_max_abs: Option<f32>,
        median: GpuTimings,
        median_wall_ms: f64,
        runs: usize,
    }

    impl Report {
        fn print(&self, json: bool) -> anyhow::Result<()> {
            if json {
                println!("{}", serde_json::to_string(self)?);
                return Ok(());
            }
            let opt = |v: Option<f32>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
            println!(
                "{} {} {}x{}: vs CPU mean {} max {}, vs reference max {}, f16 max {} (0-255); \
                 median of {}: upload {:.3} ms, kernels {:.3} ms, download {:.3} ms, \
                 wall {:.3} ms",
                self.input,
                self.format,
                self.width,
                self.height,
                opt(self.cpu_mean_abs),
                opt(self.cpu_max_abs),
                opt(self.reference_max_abs),
                opt(self.f16_max_abs),
                self.runs,
                self.median.h2d_ms,
                self.median.kernels_ms,
                self.median.d2h_ms,
                self.median_wall_ms
            );
            Ok(())
        }
    }

    /// Runs the CPU, the reference and the GPU (f32 and f16) on `frame` and times the GPU.
    fn compare(
        config: &PreprocessConfig,
        gpu: &mut GpuPreprocessor,
        input: String,
        frame: FrameRef,
        runs: usize,
    ) -> anyhow::Result<Report> {
        let n = 3 * config.size.height * config.size.width;
        let (mut cpu, mut reference, mut out) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        let mut half = vec![f16::ZERO; n];
        Preprocessor::new(config.clone()).run_into(frame, &mut cpu)?;
        ReferencePreprocessor::new(config.clone()).run_into(frame, &mut reference)?;
        gpu.run_into(frame, &mut out)?;
        gpu.run_into_f16(frame, &mut half)?;
        let half: Vec<f32> = half.iter().map(|h| h.to_f32()).collect();
        let (mean, max) = diff_255(config.std, &out, &cpu);
        let (_, ref_max) = diff_255(config.std, &out, &reference);
        let (_, half_max) = diff_255(config.std, &out, &half);
        let (median, median_wall_ms) = median_timings(gpu, frame, &mut out, runs)?;
        Ok(Report {
            input,
            format: format!("{:?}", frame.format),
            width: frame.width,
            height: frame.height,
            cpu_mean_abs: Some(mean),
            cpu_max_abs: Some(max),
            reference_max_abs: Some(ref_max),
            f16_max_abs: Some(half_max),
            median,
            median_wall_ms,
            runs,
        })
    }

    /// How far (0-255 scale) the kernels may be from the float reference: float rounding, and a
    /// sector edge pixel that the GPU's `atan2f` puts on the other side, stay far below it.
    const REFERENCE_TOLERANCE: f32 = 0.5;

    /// BT.601 luma of RGB888, as a camera's grey output would be.
    fn to_gray(rgb: &[u8]) -> Vec<u8> {
        rgb.chunks_exact(3)
            .map(|p| {
                let [r, g, b] = [p[0], p[1], p[2]].map(u32::from);
                ((299 * r + 587 * g + 114 * b + 500) / 1000) as u8
            })
            .collect()
    }

    fn preprocess(args: PreprocessArgs) -> anyhow::Result<ExitCode> {
        let mut config = PreprocessConfig::new(args.size);
        config.roi = args.region.roi;
        let mut gpu =
            GpuPreprocessor::new(config.clone()).context("starting the GPU preprocessor")?;
        let (major, minor) = gpu.compute_capability()?;
        if !args.json {
            println!("GPU 0: {} (sm_{major}{minor})", gpu.device_name()?);
        }
        let mut outside = false;
        for path in &args.input {
            let (width, height, rgb) = load_image(path)?;
            let gray = to_gray(&rgb);
            for (format, data) in [(PixelFormat::Rgb888, &rgb), (PixelFormat::Gray8, &gray)] {
                let frame = FrameRef {
                    format,
                    width,
                    height,
                    data,
                };
                let report = compare(
                    &config,
                    &mut gpu,
                    path.display().to_string(),
                    frame,
                    args.runs,
                )
                .with_context(|| format!("{} as {format:?}", path.display()))?;
                outside |= report.cpu_mean_abs.is_some_and(|m| m > 1.0)
                    || report.cpu_max_abs.is_some_and(|m| m > 2.0);
                report.print(args.json)?;
            }
        }
        // Every pixel format and region kind on a synthetic 640x480 frame, against the CPU and
        // the float reference the kernels transliterate (which they should match to float
        // rounding: a larger difference is a bug in the kernels).
        let (sw, sh) = (640u32, 480u32);
        for roi in [
            None,
            Some("circle:320,240,200"),
            Some("sector:320,0,60,470,-45,45"),
        ] {
            let mut roi_config = PreprocessConfig::new(args.size);
            roi_config.roi = roi
                .map(str::parse)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let mut roi_gpu = GpuPreprocessor::new(roi_config.clone())?;
            for format in [
                PixelFormat::Gray8,
                PixelFormat::Rgb888,
                PixelFormat::Rgb565,
                PixelFormat::Yuyv422,
            ] {
                let data = textured(format, sw, sh);
                let frame = FrameRef {
                    format,
                    width: sw,
                    height: sh,
                    data: &data,
                };
                let report = compare(
                    &roi_config,
                    &mut roi_gpu,
                    format!("synthetic-640x480 roi {}", roi.unwrap_or("none")),
                    frame,
                    args.runs.min(5),
                )?;
                outside |= report.cpu_mean_abs.is_some_and(|m| m > 1.0)
                    || report.cpu_max_abs.is_some_and(|m| m > 2.0);
                if report
                    .reference_max_abs
                    .is_some_and(|m| m > REFERENCE_TOLERANCE)
                {
                    eprintln!(
                        "{format:?} roi {}: the kernels differ from the reference they follow",
                        roi.unwrap_or("none")
                    );
                    outside = true;
                }
                report.print(args.json)?;
            }
        }
        // The yardstick: a full-HD frame, whole, at the model size.
        let (w, h) = (1920u32, 1080u32);
        let mut hd_config = PreprocessConfig::new(args.size);
        hd_config.roi = None;
        let mut hd = GpuPreprocessor::new(hd_config.clone())?;
        let hd_rgb: Vec<u8> = (0..h)
            .flat_map(|y| {
                (0..w).flat_map(move |x| [(x % 256) as u8, (y % 256) as u8, ((x ^ y) % 256) as u8])
            })
            .collect();
        let hd_gray = to_gray(&hd_rgb);
        for (format, data) in [
            (PixelFormat::Rgb888, &hd_rgb),
            (PixelFormat::Gray8, &hd_gray),
        ] {
            let frame = FrameRef {
                format,
                width: w,
                height: h,
                data,
            };
            let report = compare(
                &hd_config,
                &mut hd,
                "synthetic-1080p".into(),
                frame,
                args.runs,
            )?;
            report.print(args.json)?;
        }
        if outside {
            eprintln!("the GPU output differs from the CPU's by more than mean 1 or max 2 (0-255)");
        }
        Ok(if outside {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    }
}
