//! [`GpuPreprocessor`]: the CPU [`Preprocessor`](crate::preprocess::Preprocessor)'s work done by
//! two CUDA kernels, with the frame staged in page-locked memory and every buffer reused from
//! frame to frame.

use std::sync::Arc;

use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{
    CudaContext, CudaEvent, CudaFunction, CudaSlice, CudaStream, PinnedHostSlice,
};
use half::f16;

use super::GpuError;
use super::ffi::{self, ColumnsOutput, ColumnsPass, RowsPass};
use super::kernels::{self, COLUMNS_F16_KERNEL, COLUMNS_F32_KERNEL, ROWS_KERNEL};
use crate::preprocess::resample::{MaskParams, ResamplePlan, format_code};
use crate::preprocess::{FrameRef, PreprocessConfig, PreprocessError, check_output, checked_rect};

/// Where one frame's time went on the GPU, in milliseconds (CUDA events on the stream).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct GpuTimings {
    /// Frame bytes, page-locked host memory to the device.
    pub h2d_ms: f32,
    /// Both kernels.
    pub kernels_ms: f32,
    /// The NCHW output, device to page-locked host memory.
    pub d2h_ms: f32,
}

impl GpuTimings {
    /// All three together.
    pub fn total_ms(&self) -> f32 {
        self.h2d_ms + self.kernels_ms + self.d2h_ms
    }
}

/// The plan tables on the device, for one crop rectangle.
struct DevicePlan {
    plan: ResamplePlan,
    h_starts: CudaSlice<u32>,
    h_weights: CudaSlice<f32>,
    v_starts: CudaSlice<u32>,
    v_weights: CudaSlice<f32>,
}

/// The frame's bytes: page-locked staging on the host and its copy on the device.
struct FrameBuffers {
    staging: PinnedHostSlice<u8>,
    device: CudaSlice<u8>,
}

/// The output in one element type: on the device and page-locked on the host.
struct OutputBuffers<T> {
    device: CudaSlice<T>,
    host: PinnedHostSlice<T>,
}

/// Turns frames into normalised NCHW on GPU 0, on its own stream.
pub struct GpuPreprocessor {
    config: PreprocessConfig,
    affine: [(f32, f32); 3],
    mask: MaskParams,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    rows_fn: CudaFunction,
    f32_fn: CudaFunction,
    f16_fn: CudaFunction,
    frame: Option<FrameBuffers>,
    plan: Option<DevicePlan>,
    rows: Option<CudaSlice<f32>>,
    out_f32: Option<OutputBuffers<f32>>,
    out_f16: Option<OutputBuffers<u16>>,
    /// Before the upload, after it, after the kernels, after the download.
    events: [CudaEvent; 4],
}

impl std::fmt::Debug for GpuPreprocessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuPreprocessor")
            .field("config", &self.config)
            .field("device", &self.ctx.ordinal())
            .finish_non_exhaustive()
    }
}

/// The output element type of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Precision {
    F32,
    F16,
}

impl GpuPreprocessor {
    /// A preprocessor on GPU 0 for one model size and region of interest; compiles the kernels
    /// for the device on first use in the process.
    pub fn new(config: PreprocessConfig) -> Result<Self, GpuError> {
        if config.size.height == 0 || config.size.width == 0 {
            return Err(
                PreprocessError::Resize(format!("empty output size {}", config.size)).into(),
            );
        }
        if !ffi::driver_present() {
            return Err(GpuError::LibraryMissing {
                library: "libcuda (the CUDA driver)",
                hint: "it comes with the NVIDIA driver or JetPack",
            });
        }
        let ctx = CudaContext::new(0).map_err(GpuError::driver("opening GPU 0"))?;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(GpuError::driver("compute capability"))?;
        let cubin = kernels::cubin_for(major, minor)?;
        let module = ctx
            .load_module(cudarc::nvrtc::Ptx::from_binary(cubin))
            .map_err(GpuError::driver("loading the kernels' CUBIN"))?;
        let load = |name| {
            module
                .load_function(name)
                .map_err(GpuError::driver("finding a kernel"))
        };
        let (rows_fn, f32_fn, f16_fn) = (
            load(ROWS_KERNEL)?,
            load(COLUMNS_F32_KERNEL)?,
            load(COLUMNS_F16_KERNEL)?,
        );
        let stream = ctx
            .new_stream()
            .map_err(GpuError::driver("creating a stream"))?;
        let event = || {
            ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                .map_err(GpuError::driver("creating a timing event"))
        };
        let events = [event()?, event()?, event()?, event()?];
        Ok(GpuPreprocessor {
            affine: config.affine(),
            mask: MaskParams::of(config.roi.as_ref()),
            config,
            ctx,
            stream,
            rows_fn,
            f32_fn,
            f16_fn,
            frame: None,
            plan: None,
            rows: None,
            out_f32: None,
            out_f16: None,
            events,
        })
    }

    /// Its configuration.
    pub fn config(&self) -> &PreprocessConfig {
        &self.config
    }

    /// The device's name, e.g. "Orin".
    pub fn device_name(&self) -> Result<String, GpuError> {
        self.ctx.name().map_err(GpuError::driver("device name"))
    }

    /// The device's compute capability, e.g. (8, 7) for Orin.
    pub fn compute_capability(&self) -> Result<(i32, i32), GpuError> {
        self.ctx
            .compute_capability()
            .map_err(GpuError::driver("compute capability"))
    }

    /// Writes one frame as `[3, H, W]` f32 into `out` (one item of a batch).
    pub fn run_into(&mut self, frame: FrameRef, out: &mut [f32]) -> Result<GpuTimings, GpuError> {
        check_output(self.config.size, out.len())?;
        let timings = self.run(frame, Precision::F32)?;
        let host = self.out_f32.as_ref().map(|o| &o.host);
        let values = host
            .ok_or_else(|| GpuError::Launch("no f32 output".into()))?
            .as_slice()
            .map_err(GpuError::driver("reading the output"))?;
        let values = values
            .get(..out.len())
            .ok_or_else(|| GpuError::Launch("short f32 output".into()))?;
        out.copy_from_slice(values);
        Ok(timings)
    }

    /// Writes one frame as `[3, H, W]` half-precision values into `out`, for an f16 model.
    pub fn run_into_f16(
        &mut self,
        frame: FrameRef,
        out: &mut [f16],
    ) -> Result<GpuTimings, GpuError> {
        check_output(self.config.size, out.len())?;
        let timings = self.run(frame, Precision::F16)?;
        let host = self.out_f16.as_ref().map(|o| &o.host);
        let bits = host
            .ok_or_else(|| GpuError::Launch("no f16 output".into()))?
            .as_slice()
            .map_err(GpuError::driver("reading the output"))?;
        for (o, &b) in out.iter_mut().zip(bits) {
            *o = f16::from_bits(b);
        }
        Ok(timings)
    }

    /// Uploads the frame, runs both kernels and downloads the output into the page-locked
    /// buffer of `precision`, waiting for the end.
    fn run(&mut self, frame: FrameRef, precision: Precision) -> Result<GpuTimings, GpuError> {
        let rect = checked_rect(self.config.roi.as_ref(), frame)?;
        let (out_h, out_w) = (self.config.size.height, self.config.size.width);
        let out_len = 3 * out_h * out_w;

        // Buffers sized by the frame and the crop, kept while those stay the same.
        if self
            .frame
            .as_ref()
            .is_none_or(|f| f.device.len() != frame.data.len())
        {
            // The old buffers go first so that both never hold memory at once.
            self.frame = None;
            self.frame = Some(FrameBuffers {
                staging: ffi::alloc_pinned(&self.ctx, frame.data.len(), true)?,
                device: self
                    .stream
                    .alloc_zeros(frame.data.len())
                    .map_err(GpuError::driver("frame buffer"))?,
            });
        }
        if self.plan.as_ref().is_none_or(|p| p.plan.rect != rect) {
            self.plan = Some(self.upload_plan(rect)?);
        }
        let rows_len = rect.height as usize * out_w * 3;
        if self.rows.as_ref().is_none_or(|r| r.len() < rows_len) {
            self.rows = None;
            self.rows = Some(
                self.stream
                    .alloc_zeros(rows_len)
                    .map_err(GpuError::driver("intermediate rows"))?,
            );
        }
        match precision {
            Precision::F32 if self.out_f32.is_none() => {
                self.out_f32 = Some(self.output_buffers(out_len)?);
            }
            Precision::F16 if self.out_f16.is_none() => {
                self.out_f16 = Some(self.output_buffers(out_len)?);
            }
            _ => {}
        }

        let (Some(buffers), Some(plan), Some(rows)) =
            (self.frame.as_mut(), self.plan.as_ref(), self.rows.as_mut())
        else {
            return Err(GpuError::Launch("buffers missing after allocation".into()));
        };
        // Waits for the previous upload from the staging buffer before overwriting it.
        let staging = buffers
            .staging
            .as_mut_slice()
            .map_err(GpuError::driver("staging the frame"))?;
        staging
            .get_mut(..frame.data.len())
            .ok_or_else(|| GpuError::Launch("staging buffer too short".into()))?
            .copy_from_slice(frame.data);

        let stream = &self.stream;
        let [before, uploaded, computed, downloaded] = &self.events;
        before
            .record(stream)
            .map_err(GpuError::driver("timing event"))?;
        stream
            .memcpy_htod(&buffers.staging, &mut buffers.device)
            .map_err(GpuError::driver("copying the frame to the GPU"))?;
        uploaded
            .record(stream)
            .map_err(GpuError::driver("timing event"))?;
        ffi::launch_rows(
            stream,
            &self.rows_fn,
            RowsPass {
                data: &buffers.device,
                frame_len: frame.data.len(),
                format: format_code(frame.format),
                frame_size: (frame.width, frame.height),
                rect,
                mask: self.mask,
                plan: &plan.plan.horizontal,
                starts: &plan.h_starts,
                weights: &plan.h_weights,
                rows,
            },
        )?;
        let out_w = out_w as u32;
        match precision {
            Precision::F32 => columns_pass(
                stream,
                &self.f32_fn,
                (rows, out_w, plan, self.affine),
                self.out_f32.as_mut(),
                computed,
            )?,
            Precision::F16 => columns_pass(
                stream,
                &self.f16_fn,
                (rows, out_w, plan, self.affine),
                self.out_f16.as_mut(),
                computed,
            )?,
        }
        downloaded
            .record(stream)
            .map_err(GpuError::driver("timing event"))?;
        downloaded
            .synchronize()
            .map_err(GpuError::driver("waiting for the GPU"))?;
        let ms = |a: &CudaEvent, b: &CudaEvent| {
            a.elapsed_ms(b).map_err(GpuError::driver("timing event"))
        };
        Ok(GpuTimings {
            h2d_ms: ms(before, uploaded)?,
            kernels_ms: ms(uploaded, computed)?,
            d2h_ms: ms(computed, downloaded)?,
        })
    }

    /// The plan for `rect`, its tables copied to the device.
    fn upload_plan(&self, rect: crate::preprocess::Rect) -> Result<DevicePlan, GpuError> {
        let size = self.config.size;
        let plan = ResamplePlan::new(rect, size.width as u32, size.height as u32)
            .ok_or_else(|| PreprocessError::Resize(format!("empty output size {size}")))?;
        let up_u32 = |v: &Vec<u32>| {
            self.stream
                .clone_htod(v)
                .map_err(GpuError::driver("resampling tables"))
        };
        let up_f32 = |v: &Vec<f32>| {
            self.stream
                .clone_htod(v)
                .map_err(GpuError::driver("resampling tables"))
        };
        Ok(DevicePlan {
            h_starts: up_u32(&plan.horizontal.starts)?,
            h_weights: up_f32(&plan.horizontal.weights)?,
            v_starts: up_u32(&plan.vertical.starts)?,
            v_weights: up_f32(&plan.vertical.weights)?,
            plan,
        })
    }

    /// Output buffers of `len` values on the device and, page-locked and host-readable, on the
    /// host.
    fn output_buffers<T>(&self, len: usize) -> Result<OutputBuffers<T>, GpuError>
    where
        T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits,
    {
        Ok(OutputBuffers {
            device: self
                .stream
                .alloc_zeros(len)
                .map_err(GpuError::driver("output buffer"))?,
            host: ffi::alloc_pinned(&self.ctx, len, false)?,
        })
    }
}

/// Kernel 2 into `out` (f32, or u16 holding half bits, as `func` writes), then the copy back
/// to the host, with the event between them that ends the kernels' timing.
fn columns_pass<T: ColumnsOutput>(
    stream: &Arc<CudaStream>,
    func: &CudaFunction,
    (rows, out_w, plan, affine): (&CudaSlice<f32>, u32, &DevicePlan, [(f32, f32); 3]),
    out: Option<&mut OutputBuffers<T>>,
    computed: &CudaEvent,
) -> Result<(), GpuError> {
    let out = out.ok_or_else(|| GpuError::Launch("no output buffers".into()))?;
    ffi::launch_columns(
        stream,
        func,
        ColumnsPass {
            rows,
            out_w,
            plan: &plan.plan.vertical,
            starts: &plan.v_starts,
            weights: &plan.v_weights,
            affine,
            out: &mut out.device,
        },
    )?;
    computed
        .record(stream)
        .map_err(GpuError::driver("timing event"))?;
    stream
        .memcpy_dtoh(&out.device, &mut out.host)
        .map_err(GpuError::driver("copying the output from the GPU"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preprocessor_can_move_to_a_pipeline_thread() {
        fn send<T: Send>() {}
        send::<GpuPreprocessor>();
    }

    #[test]
    fn timings_add_up() {
        let t = GpuTimings {
            h2d_ms: 0.25,
            kernels_ms: 0.5,
            d2h_ms: 0.125,
        };
        assert_eq!(t.total_ms(), 0.875);
    }
}
