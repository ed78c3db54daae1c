//! The crate's only unsafe code: cudarc's library probes, page-locked host memory and kernel
//! launches, each behind a function that checks what the unsafe call relies on.
#![allow(unsafe_code)]

use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, LaunchConfig, PinnedHostSlice,
    PushKernelArg, ValidAsZeroBits,
};

use super::GpuError;
use crate::preprocess::Rect;
use crate::preprocess::resample::{AxisPlan, MaskParams};

/// Threads per block along x (output columns) and y (rows).
const BLOCK: (u32, u32) = (32, 8);

/// Whether the CUDA driver library (libcuda) can be opened.
pub(crate) fn driver_present() -> bool {
    // SAFETY: the probe only tries to dlopen each candidate name and closes what it opened; it
    // runs no library code besides the loaders' initialisers, which libcuda's are safe to run.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// Whether NVRTC can be opened.
pub(crate) fn nvrtc_present() -> bool {
    // SAFETY: as in `driver_present`, a dlopen and close of each candidate name.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Compiles `source` with NVRTC for the real architecture `arch` (`sm_87`) to a CUBIN, the
/// machine code the device runs. Unlike PTX, which the driver must JIT-compile and refuses when
/// NVRTC is newer than the driver, a CUBIN loads on any driver of the same CUDA major version.
/// Errors carry NVRTC's log.
pub(crate) fn compile_cubin(source: &str, name: &str, arch: &str) -> Result<Vec<u8>, GpuError> {
    use cudarc::nvrtc::{result, sys};
    let nvrtc = |what: &str, e: result::NvrtcError| GpuError::Nvrtc(format!("{what}: {e:?}"));
    let (src, name) = (
        std::ffi::CString::new(source).map_err(|e| GpuError::Nvrtc(e.to_string()))?,
        std::ffi::CString::new(name).map_err(|e| GpuError::Nvrtc(e.to_string()))?,
    );
    let prog = result::create_program(&src, Some(&name)).map_err(|e| nvrtc("create", e))?;
    let options = [format!("--gpu-architecture={arch}")];
    // SAFETY: `prog` was just created and is destroyed only at the end of this function.
    let compiled = unsafe { result::compile_program(prog, &options) };
    let out = match compiled {
        Err(_) => {
            // SAFETY: as above; the log exists once compilation was attempted.
            let log = unsafe { result::get_program_log(prog) }
                .map(|l| {
                    let bytes: Vec<u8> =
                        l.iter().map(|&c| c as u8).take_while(|&b| b != 0).collect();
                    String::from_utf8_lossy(&bytes).into_owned()
                })
                .unwrap_or_default();
            Err(GpuError::Compile {
                arch: arch.to_owned(),
                log,
            })
        }
        Ok(()) => {
            let mut size = 0usize;
            // SAFETY: `prog` compiled successfully; NVRTC writes the CUBIN's size into `size`.
            unsafe { sys::nvrtcGetCUBINSize(prog, &mut size) }
                .result()
                .map_err(|e| nvrtc("CUBIN size", e))
                .and_then(|()| {
                    let mut cubin = vec![0u8; size];
                    // SAFETY: `cubin` holds exactly the `size` bytes NVRTC said it will write.
                    unsafe { sys::nvrtcGetCUBIN(prog, cubin.as_mut_ptr().cast()) }
                        .result()
                        .map_err(|e| nvrtc("CUBIN", e))?;
                    Ok(cubin)
                })
        }
    };
    // SAFETY: `prog` is still alive and is not used after this.
    let destroyed = unsafe { result::destroy_program(prog) };
    let cubin = out?;
    destroyed.map_err(|e| nvrtc("destroy", e))?;
    Ok(cubin)
}

/// `len` zeroed values of page-locked host memory (at least one value: the driver refuses
/// empty allocations). Write-combined memory is fast for the host to write and the device to
/// read, and very slow for the host to read: use it for uploads only.
pub(crate) fn alloc_pinned<T: DeviceRepr + ValidAsZeroBits>(
    ctx: &Arc<CudaContext>,
    len: usize,
    write_combined: bool,
) -> Result<PinnedHostSlice<T>, GpuError> {
    let len = len.max(1);
    let flags = if write_combined {
        cudarc::driver::sys::CU_MEMHOSTALLOC_WRITECOMBINED
    } else {
        0
    };
    // SAFETY: the allocation is uninitialised; it is zeroed below before anything reads it.
    let mut slice = unsafe { ctx.alloc_pinned_with_flags::<T>(len, flags) }
        .map_err(GpuError::driver("page-locked host buffer"))?;
    let ptr = slice
        .as_mut_ptr()
        .map_err(GpuError::driver("page-locked host buffer"))?;
    // SAFETY: `ptr` points to `len` values of T just allocated for us alone, and all-zero bytes
    // are a valid T (`ValidAsZeroBits`).
    unsafe { std::ptr::write_bytes(ptr, 0, len) };
    Ok(slice)
}

/// What kernel 1 (`dinoedge_preprocess_rows`) reads and writes.
pub(crate) struct RowsPass<'a> {
    /// The frame's bytes on the device.
    pub data: &'a CudaSlice<u8>,
    /// Bytes the frame's format and size need (checked against `data`).
    pub frame_len: usize,
    /// `resample::format_code` of the frame.
    pub format: u32,
    /// Frame width and height.
    pub frame_size: (u32, u32),
    /// The crop.
    pub rect: Rect,
    /// The region's mask.
    pub mask: MaskParams,
    /// The horizontal plan, as uploaded into `starts` and `weights`.
    pub plan: &'a AxisPlan,
    /// Its starts on the device.
    pub starts: &'a CudaSlice<u32>,
    /// Its weights on the device.
    pub weights: &'a CudaSlice<f32>,
    /// `[rect.height, plan.output, 3]` floats.
    pub rows: &'a mut CudaSlice<f32>,
}

/// Queues kernel 1 on `stream`, after checking that every index it computes lies inside its
/// buffers.
pub(crate) fn launch_rows(
    stream: &Arc<CudaStream>,
    func: &CudaFunction,
    pass: RowsPass<'_>,
) -> Result<(), GpuError> {
    let RowsPass {
        data,
        frame_len,
        format,
        frame_size: (frame_w, frame_h),
        rect,
        mask,
        plan,
        starts,
        weights,
        rows,
    } = pass;
    let out_w = plan.output;
    let rect_inside = rect
        .x
        .checked_add(rect.width)
        .is_some_and(|x1| x1 <= frame_w)
        && rect
            .y
            .checked_add(rect.height)
            .is_some_and(|y1| y1 <= frame_h);
    let plan_fits = plan.input == rect.width
        && plan
            .starts
            .iter()
            .all(|&s| s as usize + plan.taps <= rect.width as usize);
    let rows_len = rect.height as usize * out_w as usize * 3;
    if !(data.len() >= frame_len
        && rect_inside
        && plan_fits
        && starts.len() == plan.starts.len()
        && weights.len() == plan.weights.len()
        && starts.len() == out_w as usize
        && rows.len() >= rows_len)
    {
        return Err(GpuError::Launch(format!(
            "rows pass: frame {frame_w}x{frame_h} ({} of {frame_len} bytes), {rect:?}, \
             plan {}->{} x{}, rows {} of {rows_len}",
            data.len(),
            plan.input,
            plan.output,
            plan.taps,
            rows.len()
        )));
    }
    let taps = u32::try_from(plan.taps).map_err(|_| GpuError::Launch("taps".into()))?;
    let [m0, m1, m2, m3, m4, m5] = mask.p;
    let cfg = LaunchConfig {
        grid_dim: (out_w.div_ceil(BLOCK.0), rect.height.div_ceil(BLOCK.1), 1),
        block_dim: (BLOCK.0, BLOCK.1, 1),
        shared_mem_bytes: 0,
    };
    let mut launch = stream.launch_builder(func);
    launch
        .arg(data)
        .arg(&format)
        .arg(&frame_w)
        .arg(&rect.x)
        .arg(&rect.y)
        .arg(&rect.height)
        .arg(&mask.kind)
        .arg(&m0)
        .arg(&m1)
        .arg(&m2)
        .arg(&m3)
        .arg(&m4)
        .arg(&m5)
        .arg(starts)
        .arg(weights)
        .arg(&taps)
        .arg(&out_w)
        .arg(rows);
    // SAFETY: the arguments match the kernel's parameters in number, order and type (see
    // preprocess.cu). The kernel reads frame pixels only inside `rect`, which lies inside the
    // frame, whose bytes `data` holds (a frame of this format and size takes `frame_len`
    // bytes); it reads `starts[ox]` and `weights[ox * taps + k]` for ox < out_w, k < taps, and
    // start + k < rect.width; it writes `rows` only below rect.height * out_w * 3. All checked
    // above.
    unsafe { launch.launch(cfg) }.map_err(GpuError::driver("rows kernel"))?;
    Ok(())
}

/// What kernel 2 (`dinoedge_preprocess_columns_f32` or `_f16`) reads and writes.
pub(crate) struct ColumnsPass<'a, T> {
    /// Kernel 1's output, `[plan.input, out_w, 3]` floats.
    pub rows: &'a CudaSlice<f32>,
    /// Output width.
    pub out_w: u32,
    /// The vertical plan, as uploaded into `starts` and `weights`.
    pub plan: &'a AxisPlan,
    /// Its starts on the device.
    pub starts: &'a CudaSlice<u32>,
    /// Its weights on the device.
    pub weights: &'a CudaSlice<f32>,
    /// (scale, offset) per channel.
    pub affine: [(f32, f32); 3],
    /// `[3, plan.output, out_w]` values: f32, or u16 holding IEEE half bits.
    pub out: &'a mut CudaSlice<T>,
}

/// Queues kernel 2 on `stream`, after checking that every index it computes lies inside its
/// buffers. `func` must be the f32 kernel for `T = f32` and the f16 one for `T = u16`.
pub(crate) fn launch_columns<T: ColumnsOutput>(
    stream: &Arc<CudaStream>,
    func: &CudaFunction,
    pass: ColumnsPass<'_, T>,
) -> Result<(), GpuError> {
    let ColumnsPass {
        rows,
        out_w,
        plan,
        starts,
        weights,
        affine,
        out,
    } = pass;
    let out_h = plan.output;
    let plan_fits = plan
        .starts
        .iter()
        .all(|&s| s as usize + plan.taps <= plan.input as usize);
    let rows_len = plan.input as usize * out_w as usize * 3;
    let out_len = 3 * out_h as usize * out_w as usize;
    if !(plan_fits
        && starts.len() == plan.starts.len()
        && weights.len() == plan.weights.len()
        && starts.len() == out_h as usize
        && rows.len() >= rows_len
        && out.len() >= out_len)
    {
        return Err(GpuError::Launch(format!(
            "columns pass: plan {}->{} x{}, rows {} of {rows_len}, out {} of {out_len}",
            plan.input,
            plan.output,
            plan.taps,
            rows.len(),
            out.len()
        )));
    }
    let taps = u32::try_from(plan.taps).map_err(|_| GpuError::Launch("taps".into()))?;
    let [(s0, o0), (s1, o1), (s2, o2)] = affine;
    let cfg = LaunchConfig {
        grid_dim: (out_w.div_ceil(BLOCK.0), out_h.div_ceil(BLOCK.1), 1),
        block_dim: (BLOCK.0, BLOCK.1, 1),
        shared_mem_bytes: 0,
    };
    let mut launch = stream.launch_builder(func);
    launch
        .arg(rows)
        .arg(&out_w)
        .arg(&out_h)
        .arg(starts)
        .arg(weights)
        .arg(&taps)
        .arg(&s0)
        .arg(&s1)
        .arg(&s2)
        .arg(&o0)
        .arg(&o1)
        .arg(&o2)
        .arg(out);
    // SAFETY: the arguments match the kernel's parameters in number, order and type (the
    // output's element type by `ColumnsOutput`, the caller pairing it with its kernel). The
    // kernel reads `starts[oy]`, `weights[oy * taps + k]` for oy < out_h, k < taps, and rows
    // start + k < plan.input of `rows`; it writes `out` below 3 * out_h * out_w. All checked
    // above.
    unsafe { launch.launch(cfg) }.map_err(GpuError::driver("columns kernel"))?;
    Ok(())
}

/// The element types kernel 2 writes: f32, or u16 holding half-precision bits.
pub(crate) trait ColumnsOutput: DeviceRepr {}

impl ColumnsOutput for f32 {}
impl ColumnsOutput for u16 {}
