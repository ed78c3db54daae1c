//! The calls into the shim library: its C ABI (`shim/dinoedge_trt.h`) opened with libloading,
//! each wrapped so that the rest of dinoedge never sees a raw pointer. The only unsafe code of
//! the crate.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_void};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;

use libloading::Library;

use crate::{
    ABI_VERSION, BuildOptions, Built, Code, DataType, Device, Io, Progress, ShimError, Versions,
};

const OK: i32 = 0;

#[repr(C)]
#[derive(Default)]
struct RawVersions {
    abi: i32,
    headers: i32,
    library: i32,
    parser: i32,
    cuda_runtime: i32,
    cuda_driver: i32,
}

#[repr(C)]
struct RawDevice {
    name: [c_char; 256],
    cc_major: i32,
    cc_minor: i32,
    multiprocessors: i32,
    total_bytes: u64,
}

#[repr(C)]
struct RawIo {
    name: *const c_char,
    is_input: i32,
    dtype: i32,
    nb_dims: i32,
    dims: [i64; 8],
    bytes: u64,
}

#[repr(C)]
struct RawBuildOptions {
    batch: i32,
    opt_level: i32,
    workspace_bytes: u64,
}

type WriteFn = extern "C" fn(*mut c_void, *const u8, usize);
type ProgressFn = extern "C" fn(*mut c_void, *const c_char, i32, i32, i32) -> i32;

/// The library's entry points, copied out of it; valid while `Inner::_lib` is loaded.
struct Fns {
    last_error: unsafe extern "C" fn() -> *const c_char,
    versions_get: unsafe extern "C" fn(*mut RawVersions) -> i32,
    device_get: unsafe extern "C" fn(i32, *mut RawDevice) -> i32,
    #[allow(clippy::type_complexity)]
    build: unsafe extern "C" fn(
        *const c_char,
        *const RawBuildOptions,
        *const u8,
        usize,
        Option<ProgressFn>,
        *mut c_void,
        WriteFn,
        *mut c_void,
        Option<WriteFn>,
        *mut c_void,
    ) -> i32,
    engine_load: unsafe extern "C" fn(*const u8, usize, *mut *mut c_void) -> i32,
    engine_free: unsafe extern "C" fn(*mut c_void),
    context_create: unsafe extern "C" fn(*mut c_void, *mut *mut c_void) -> i32,
    context_free: unsafe extern "C" fn(*mut c_void),
    context_io_count: unsafe extern "C" fn(*const c_void) -> i32,
    context_io: unsafe extern "C" fn(*const c_void, i32, *mut RawIo) -> i32,
    context_copy_input: unsafe extern "C" fn(*mut c_void, i32, *const c_void, usize) -> i32,
    context_bind_input: unsafe extern "C" fn(*mut c_void, i32, u64, usize) -> i32,
    context_run: unsafe extern "C" fn(*mut c_void, *mut f32) -> i32,
    context_output: unsafe extern "C" fn(*const c_void, i32, *mut *const c_void, *mut usize) -> i32,
}

struct Inner {
    fns: Fns,
    path: PathBuf,
    // Dropped last: the function pointers above point into it.
    _lib: Library,
}

/// The shim library, opened and checked: its ABI, and the TensorRT it loaded against the one
/// it was compiled for.
#[derive(Clone)]
pub struct Shim {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Shim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shim")
            .field("path", &self.inner.path)
            .finish()
    }
}

fn symbol<T: Copy>(lib: &Library, path: &Path, name: &str) -> Result<T, ShimError> {
    // SAFETY: each call names a function of dinoedge_trt.h with the Rust type this file gives
    // its C prototype; the ABI version is checked before any of them is called.
    unsafe { lib.get::<T>(name.as_bytes()) }
        .map(|s| *s)
        .map_err(|e| ShimError::Load {
            path: path.to_path_buf(),
            reason: format!("no symbol {name}: {e}"),
        })
}

impl Shim {
    /// Opens the shim at `path` (see [`crate::locate`]) and checks it.
    pub fn open(path: &Path) -> Result<Shim, ShimError> {
        // RTLD_NODELETE: TensorRT keeps the first logger it is given (the shim's) for the life of
        // the process, so the shim must stay mapped even after the last handle is dropped.
        // SAFETY: loading runs the library's initialisers: the shim's own (none) and those of
        // libnvinfer and libcudart, which do not assume anything of the process.
        let lib = unsafe {
            libloading::os::unix::Library::open(
                Some(path),
                libloading::os::unix::RTLD_NOW | libc_rtld_nodelete(),
            )
        }
        .map(Library::from)
        .map_err(|e| ShimError::Load {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let abi: unsafe extern "C" fn() -> i32 = symbol(&lib, path, "dtrt_abi_version")?;
        // SAFETY: dtrt_abi_version takes nothing and cannot fail, in every ABI version.
        let found = unsafe { abi() };
        if found != ABI_VERSION {
            return Err(ShimError::Abi {
                path: path.to_path_buf(),
                found,
            });
        }
        let fns = Fns {
            last_error: symbol(&lib, path, "dtrt_last_error")?,
            versions_get: symbol(&lib, path, "dtrt_versions_get")?,
            device_get: symbol(&lib, path, "dtrt_device_get")?,
            build: symbol(&lib, path, "dtrt_build")?,
            engine_load: symbol(&lib, path, "dtrt_engine_load")?,
            engine_free: symbol(&lib, path, "dtrt_engine_free")?,
            context_create: symbol(&lib, path, "dtrt_context_create")?,
            context_free: symbol(&lib, path, "dtrt_context_free")?,
            context_io_count: symbol(&lib, path, "dtrt_context_io_count")?,
            context_io: symbol(&lib, path, "dtrt_context_io")?,
            context_copy_input: symbol(&lib, path, "dtrt_context_copy_input")?,
            context_bind_input: symbol(&lib, path, "dtrt_context_bind_input")?,
            context_run: symbol(&lib, path, "dtrt_context_run")?,
            context_output: symbol(&lib, path, "dtrt_context_output")?,
        };
        let shim = Shim {
            inner: Arc::new(Inner {
                fns,
                path: path.to_path_buf(),
                _lib: lib,
            }),
        };
        let versions = shim.versions()?;
        if let Some(reason) = versions.mismatch() {
            return Err(ShimError::Version { reason });
        }
        Ok(shim)
    }

    /// Where it was loaded from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The versions of TensorRT (headers and library) and CUDA.
    pub fn versions(&self) -> Result<Versions, ShimError> {
        let mut raw = RawVersions::default();
        // SAFETY: `raw` is a valid, writable dtrt_versions.
        let status = unsafe { (self.inner.fns.versions_get)(&mut raw) };
        self.inner.check("versions", status)?;
        Ok(Versions {
            abi: raw.abi,
            headers: raw.headers,
            library: raw.library,
            parser: raw.parser,
            cuda_runtime: raw.cuda_runtime,
            cuda_driver: raw.cuda_driver,
        })
    }

    /// GPU `index`.
    pub fn device(&self, index: i32) -> Result<Device, ShimError> {
        let mut raw = RawDevice {
            name: [0; 256],
            cc_major: 0,
            cc_minor: 0,
            multiprocessors: 0,
            total_bytes: 0,
        };
        // SAFETY: `raw` is a valid, writable dtrt_device.
        let status = unsafe { (self.inner.fns.device_get)(index, &mut raw) };
        self.inner.check("device", status)?;
        // The shim writes a NUL-terminated name; the last byte is forced to NUL in case not.
        raw.name[255] = 0;
        // SAFETY: `raw.name` is NUL-terminated within its 256 bytes (forced above).
        let name = unsafe { CStr::from_ptr(raw.name.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        Ok(Device {
            name,
            compute_capability: (raw.cc_major, raw.cc_minor),
            multiprocessors: raw.multiprocessors,
            total_bytes: raw.total_bytes,
        })
    }

    /// Builds the ONNX graph at `onnx` into an engine, seeding the builder with `timing_cache`
    /// (may be empty). `progress` sees every step and returns `false` to cancel.
    pub fn build(
        &self,
        onnx: &Path,
        options: &BuildOptions,
        timing_cache: &[u8],
        progress: &mut (dyn FnMut(&Progress<'_>) -> bool + Send),
    ) -> Result<Built, ShimError> {
        let path = std::ffi::CString::new(onnx.as_os_str().as_encoded_bytes()).map_err(|_| {
            ShimError::Call {
                call: "build",
                code: Code::Argument,
                message: format!("{}: the path holds a NUL byte", onnx.display()),
            }
        })?;
        let raw = RawBuildOptions {
            batch: options.batch,
            opt_level: options.opt_level.unwrap_or(-1),
            workspace_bytes: options.workspace_bytes.unwrap_or(0),
        };
        let mut engine: Vec<u8> = Vec::new();
        let mut cache: Vec<u8> = Vec::new();
        let mut progress: &mut (dyn FnMut(&Progress<'_>) -> bool + Send) = progress;
        // SAFETY: every pointer is valid for the call: the path is NUL-terminated, the options
        // and the cache slice live across it, and the three user pointers point at locals of
        // the types the callbacks below cast them back to. The shim calls the callbacks only
        // during this call.
        let status = unsafe {
            (self.inner.fns.build)(
                path.as_ptr(),
                &raw,
                timing_cache.as_ptr(),
                timing_cache.len(),
                Some(progress_callback),
                (&mut progress as *mut &mut (dyn FnMut(&Progress<'_>) -> bool + Send)).cast(),
                write_callback,
                (&mut engine as *mut Vec<u8>).cast(),
                Some(write_callback),
                (&mut cache as *mut Vec<u8>).cast(),
            )
        };
        self.inner.check("build", status)?;
        if engine.is_empty() {
            return Err(ShimError::Call {
                call: "build",
                code: Code::Other,
                message: "the shim reported success but wrote no engine".into(),
            });
        }
        Ok(Built {
            engine,
            timing_cache: cache,
        })
    }

    /// Deserializes an engine on GPU 0.
    pub fn load_engine(&self, bytes: &[u8]) -> Result<Engine, ShimError> {
        let mut out: *mut c_void = std::ptr::null_mut();
        // SAFETY: `bytes` is valid for its length; `out` is a valid place for the pointer.
        let status = unsafe { (self.inner.fns.engine_load)(bytes.as_ptr(), bytes.len(), &mut out) };
        self.inner.check("engine load", status)?;
        let ptr = NonNull::new(out).ok_or_else(|| ShimError::Call {
            call: "engine load",
            code: Code::Other,
            message: "the shim returned no engine".into(),
        })?;
        Ok(Engine {
            inner: Arc::new(EngineInner {
                shim: self.inner.clone(),
                ptr,
            }),
        })
    }
}

impl Inner {
    /// `Ok` for DTRT_OK, else the error with the thread's last message.
    fn check(&self, call: &'static str, status: i32) -> Result<(), ShimError> {
        if status == OK {
            return Ok(());
        }
        // SAFETY: dtrt_last_error returns a NUL-terminated string valid until this thread's
        // next call into the shim; it is copied at once.
        let message = unsafe {
            let p = (self.fns.last_error)();
            if p.is_null() {
                String::new()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        Err(ShimError::Call {
            call,
            code: Code::from_raw(status),
            message,
        })
    }
}

extern "C" fn write_callback(user: *mut c_void, data: *const u8, len: usize) {
    if user.is_null() || (data.is_null() && len > 0) {
        return;
    }
    // SAFETY: `user` is the `&mut Vec<u8>` `Shim::build` passed for this callback, alive for
    // the call; `data` is valid for `len` bytes during this callback (the ABI's promise).
    unsafe {
        let out = &mut *user.cast::<Vec<u8>>();
        if len > 0 {
            out.extend_from_slice(std::slice::from_raw_parts(data, len));
        }
    }
}

extern "C" fn progress_callback(
    user: *mut c_void,
    phase: *const c_char,
    depth: i32,
    step: i32,
    steps: i32,
) -> i32 {
    if user.is_null() {
        return 0;
    }
    let phase = if phase.is_null() {
        String::new()
    } else {
        // SAFETY: the shim passes a NUL-terminated phase name valid during the callback.
        unsafe { CStr::from_ptr(phase) }
            .to_string_lossy()
            .into_owned()
    };
    // SAFETY: `user` is the `&mut &mut dyn FnMut` `Shim::build` passed, alive for the call; the
    // closure is `Send` (it may be called on one of TensorRT's threads) and the shim never calls
    // it twice at once (the ABI's promise), so this is the only `&mut` to it.
    let progress = unsafe { &mut *user.cast::<&mut (dyn FnMut(&Progress<'_>) -> bool + Send)>() };
    // A panic must not unwind into C++: it cancels the build instead.
    let go_on = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        progress(&Progress {
            phase: &phase,
            depth,
            step,
            steps,
        })
    }))
    .unwrap_or(false);
    i32::from(!go_on)
}

struct EngineInner {
    shim: Arc<Inner>,
    ptr: NonNull<c_void>,
}

// SAFETY: a TensorRT engine may be used from several threads (the ABI's promise: contexts are
// created from it concurrently); it is freed once, by the last owner.
unsafe impl Send for EngineInner {}
// SAFETY: as above; nothing mutates the engine through a shared reference.
unsafe impl Sync for EngineInner {}

impl Drop for EngineInner {
    fn drop(&mut self) {
        // SAFETY: the pointer came from dtrt_engine_load and every context holding it is gone.
        unsafe { (self.shim.fns.engine_free)(self.ptr.as_ptr()) }
    }
}

/// A deserialized engine; contexts are made from it, one per worker.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Engine")
    }
}

impl Engine {
    /// A new execution context with its own stream and buffers.
    pub fn context(&self) -> Result<Context, ShimError> {
        let shim = &self.inner.shim;
        let mut out: *mut c_void = std::ptr::null_mut();
        // SAFETY: the engine pointer is live (held by `self`); `out` is a valid place.
        let status = unsafe { (shim.fns.context_create)(self.inner.ptr.as_ptr(), &mut out) };
        shim.check("context create", status)?;
        let ptr = NonNull::new(out).ok_or_else(|| ShimError::Call {
            call: "context create",
            code: Code::Other,
            message: "the shim returned no context".into(),
        })?;
        let mut context = Context {
            engine: self.inner.clone(),
            ptr,
            io: Vec::new(),
        };
        context.io = context.read_io()?;
        Ok(context)
    }
}

/// An execution context: one worker's stream, device buffers and page-locked output copies.
pub struct Context {
    engine: Arc<EngineInner>,
    ptr: NonNull<c_void>,
    io: Vec<Io>,
}

// SAFETY: a context is used by one thread at a time (it is not `Sync`, and every call takes
// `&mut self` or reads what the last such call left); moving it between threads is allowed.
unsafe impl Send for Context {}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: the pointer came from dtrt_context_create and is freed once; the engine it
        // was made from is still held.
        unsafe { (self.engine.shim.fns.context_free)(self.ptr.as_ptr()) }
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("io", &self.io).finish()
    }
}

impl Context {
    fn read_io(&self) -> Result<Vec<Io>, ShimError> {
        let fns = &self.engine.shim.fns;
        // SAFETY: the context pointer is live.
        let count = unsafe { (fns.context_io_count)(self.ptr.as_ptr()) };
        let mut io = Vec::new();
        for index in 0..count.max(0) {
            let mut raw = RawIo {
                name: std::ptr::null(),
                is_input: 0,
                dtype: 0,
                nb_dims: 0,
                dims: [0; 8],
                bytes: 0,
            };
            // SAFETY: the context is live and `raw` is a writable dtrt_io.
            let status = unsafe { (fns.context_io)(self.ptr.as_ptr(), index, &mut raw) };
            self.engine.shim.check("context io", status)?;
            let name = if raw.name.is_null() {
                format!("io{index}")
            } else {
                // SAFETY: the name is NUL-terminated and lives as long as the context.
                unsafe { CStr::from_ptr(raw.name) }
                    .to_string_lossy()
                    .into_owned()
            };
            let nb = usize::try_from(raw.nb_dims)
                .unwrap_or(0)
                .min(raw.dims.len());
            io.push(Io {
                name,
                is_input: raw.is_input != 0,
                dtype: DataType::from_raw(raw.dtype),
                dims: raw.dims.get(..nb).unwrap_or_default().to_vec(),
                bytes: usize::try_from(raw.bytes).unwrap_or(usize::MAX),
            });
        }
        Ok(io)
    }

    /// The inputs and outputs, in the engine's order.
    pub fn io(&self) -> &[Io] {
        &self.io
    }

    fn index(&self, index: usize, call: &'static str) -> Result<i32, ShimError> {
        if index >= self.io.len() {
            return Err(ShimError::Call {
                call,
                code: Code::Argument,
                message: format!("no tensor {index}: the engine has {}", self.io.len()),
            });
        }
        i32::try_from(index).map_err(|_| ShimError::Call {
            call,
            code: Code::Argument,
            message: format!("tensor index {index} out of range"),
        })
    }

    /// Copies `bytes` from host memory into input `index`.
    pub fn copy_input(&mut self, index: usize, bytes: &[u8]) -> Result<(), ShimError> {
        let i = self.index(index, "copy input")?;
        // SAFETY: the context is live and `bytes` valid for its length.
        let status = unsafe {
            (self.engine.shim.fns.context_copy_input)(
                self.ptr.as_ptr(),
                i,
                bytes.as_ptr().cast(),
                bytes.len(),
            )
        };
        self.engine.shim.check("copy input", status)
    }

    /// Binds input `index` to device memory the caller owns (e.g. the GPU preprocessing's
    /// output), so that runs read it there without a host round trip; `0` binds the context's
    /// own buffer again.
    ///
    /// # Safety
    /// `device_ptr` must be device memory of this process's CUDA context holding at least
    /// `bytes` bytes (the input's size), valid for every run until it is unbound.
    pub unsafe fn bind_device_input(
        &mut self,
        index: usize,
        device_ptr: u64,
        bytes: usize,
    ) -> Result<(), ShimError> {
        let i = self.index(index, "bind input")?;
        // SAFETY: the context is live; the caller vouches for the device memory.
        let status = unsafe {
            (self.engine.shim.fns.context_bind_input)(self.ptr.as_ptr(), i, device_ptr, bytes)
        };
        self.engine.shim.check("bind input", status)
    }

    /// Runs the engine on this context's stream and waits for the outputs. Returns the GPU time
    /// in milliseconds, from CUDA events around the enqueue.
    pub fn run(&mut self) -> Result<f32, ShimError> {
        let mut gpu_ms = 0.0f32;
        // SAFETY: the context is live; `gpu_ms` is a writable float.
        let status = unsafe { (self.engine.shim.fns.context_run)(self.ptr.as_ptr(), &mut gpu_ms) };
        self.engine.shim.check("run", status)?;
        Ok(gpu_ms)
    }

    /// Output `index`'s bytes from the last run.
    pub fn output(&self, index: usize) -> Result<&[u8], ShimError> {
        let i = self.index(index, "output")?;
        let mut data: *const c_void = std::ptr::null();
        let mut len = 0usize;
        // SAFETY: the context is live; `data` and `len` are writable.
        let status = unsafe {
            (self.engine.shim.fns.context_output)(self.ptr.as_ptr(), i, &mut data, &mut len)
        };
        self.engine.shim.check("output", status)?;
        if data.is_null() || len == 0 {
            return Ok(&[]);
        }
        // SAFETY: the shim's buffer holds `len` bytes and stays valid until the next run or
        // the context's free, both of which need `&mut self`, so not while this borrow lives.
        Ok(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
    }
}

/// `RTLD_NODELETE` (glibc's value on every Linux architecture dinoedge targets).
fn libc_rtld_nodelete() -> std::ffi::c_int {
    0x1000
}
