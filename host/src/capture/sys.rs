//! The V4L2 ioctls capture uses, written out by hand after `linux/videodev2.h`: the crates
//! that bind V4L2 (`v4l` through `v4l2-sys-mit`, `v4l2r`) generate their bindings with bindgen
//! at build time, which needs libclang on the build machine and in every cross image. The
//! structures are the kernel's for 64-bit Linux (x86_64, aarch64), checked at compile time by
//! their sizes and in the tests by the request codes `videodev2.h` gives. This is the capture
//! module's only unsafe code: each ioctl behind a function that hands the kernel a live,
//! correctly sized structure, and the buffers' memory mappings.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;

use nix::errno::Errno;
use nix::libc;
use nix::sys::mman::{MapFlags, ProtFlags};

/// `V4L2_BUF_TYPE_VIDEO_CAPTURE`.
pub const BUF_TYPE_VIDEO_CAPTURE: u32 = 1;
/// `V4L2_MEMORY_MMAP`.
pub const MEMORY_MMAP: u32 = 1;
/// `V4L2_FIELD_ANY`: the driver chooses.
pub const FIELD_ANY: u32 = 0;
/// `V4L2_CAP_VIDEO_CAPTURE`.
pub const CAP_VIDEO_CAPTURE: u32 = 0x0000_0001;
/// `V4L2_CAP_VIDEO_OUTPUT`.
pub const CAP_VIDEO_OUTPUT: u32 = 0x0000_0002;
/// `V4L2_CAP_VIDEO_CAPTURE_MPLANE`.
pub const CAP_VIDEO_CAPTURE_MPLANE: u32 = 0x0000_1000;
/// `V4L2_CAP_VIDEO_M2M` and `V4L2_CAP_VIDEO_M2M_MPLANE`: a codec or converter.
pub const CAP_VIDEO_M2M: u32 = 0x0000_8000 | 0x0000_4000;
/// `V4L2_CAP_META_CAPTURE`: e.g. the second node of a UVC camera.
pub const CAP_META_CAPTURE: u32 = 0x0080_0000;
/// `V4L2_CAP_STREAMING`.
pub const CAP_STREAMING: u32 = 0x0400_0000;
/// `V4L2_CAP_DEVICE_CAPS`: `device_caps` describes this node.
pub const CAP_DEVICE_CAPS: u32 = 0x8000_0000;
/// `V4L2_CAP_TIMEPERFRAME`, in `v4l2_captureparm.capability`.
pub const CAP_TIMEPERFRAME: u32 = 0x1000;
/// `V4L2_BUF_FLAG_ERROR`: the buffer's data may be damaged.
pub const BUF_FLAG_ERROR: u32 = 0x0000_0040;
/// `V4L2_BUF_FLAG_TIMESTAMP_MASK`.
pub const BUF_FLAG_TIMESTAMP_MASK: u32 = 0x0000_e000;
/// `V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC`: the timestamp is on `CLOCK_MONOTONIC`.
pub const BUF_FLAG_TIMESTAMP_MONOTONIC: u32 = 0x0000_2000;

/// `struct v4l2_capability`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Capability {
    pub driver: [u8; 16],
    pub card: [u8; 32],
    pub bus_info: [u8; 32],
    pub version: u32,
    pub capabilities: u32,
    pub device_caps: u32,
    pub reserved: [u32; 3],
}

/// `struct v4l2_fmtdesc`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FmtDesc {
    pub index: u32,
    pub type_: u32,
    pub flags: u32,
    pub description: [u8; 32],
    pub pixelformat: u32,
    pub mbus_code: u32,
    pub reserved: [u32; 3],
}

/// `struct v4l2_pix_format`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PixFormat {
    pub width: u32,
    pub height: u32,
    pub pixelformat: u32,
    pub field: u32,
    pub bytesperline: u32,
    pub sizeimage: u32,
    pub colorspace: u32,
    pub priv_: u32,
    pub flags: u32,
    pub ycbcr_enc: u32,
    pub quantization: u32,
    pub xfer_func: u32,
}

/// `struct v4l2_format` for a single-planar capture: its union holds `pix`. The union is 200
/// bytes and pointer-aligned (one of its members, `v4l2_window`, holds pointers).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Format {
    pub type_: u32,
    pub fmt: FormatUnion,
}

/// The union `fmt` of `struct v4l2_format`, as its `pix` member.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FormatUnion {
    pub pix: PixFormat,
    rest: [u8; 200 - std::mem::size_of::<PixFormat>()],
    align: [usize; 0],
}

/// `struct v4l2_requestbuffers`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestBuffers {
    pub count: u32,
    pub type_: u32,
    pub memory: u32,
    pub capabilities: u32,
    pub flags: u8,
    pub reserved: [u8; 3],
}

/// `struct v4l2_timecode`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Timecode {
    pub type_: u32,
    pub flags: u32,
    pub frames: u8,
    pub seconds: u8,
    pub minutes: u8,
    pub hours: u8,
    pub userbits: [u8; 4],
}

/// The union `m` of `struct v4l2_buffer`; capture by mmap uses `offset`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union BufferMemory {
    pub offset: u32,
    pub userptr: libc::c_ulong,
    pub planes: *mut c_void,
    pub fd: i32,
}

/// `struct v4l2_buffer`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Buffer {
    pub index: u32,
    pub type_: u32,
    pub bytesused: u32,
    pub flags: u32,
    pub field: u32,
    pub timestamp: libc::timeval,
    pub timecode: Timecode,
    pub sequence: u32,
    pub memory: u32,
    pub m: BufferMemory,
    pub length: u32,
    pub reserved2: u32,
    pub request_fd: i32,
}

/// `struct v4l2_fract`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Fract {
    pub numerator: u32,
    pub denominator: u32,
}

/// `struct v4l2_captureparm`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct CaptureParm {
    pub capability: u32,
    pub capturemode: u32,
    pub timeperframe: Fract,
    pub extendedmode: u32,
    pub readbuffers: u32,
    pub reserved: [u32; 4],
}

/// `struct v4l2_streamparm` for capture: its 200-byte union holds `capture`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct StreamParm {
    pub type_: u32,
    pub capture: CaptureParm,
    rest: [u8; 200 - std::mem::size_of::<CaptureParm>()],
}

// The kernel's sizes on 64-bit Linux (gcc's sizeof against linux/videodev2.h); the request
// codes below encode them, so a wrong size would reach no ioctl at all.
#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(std::mem::size_of::<Capability>() == 104);
    assert!(std::mem::size_of::<FmtDesc>() == 64);
    assert!(std::mem::size_of::<PixFormat>() == 48);
    assert!(std::mem::size_of::<Format>() == 208);
    assert!(std::mem::size_of::<RequestBuffers>() == 20);
    assert!(std::mem::size_of::<Timecode>() == 16);
    assert!(std::mem::size_of::<Buffer>() == 88);
    assert!(std::mem::offset_of!(Buffer, timestamp) == 24);
    assert!(std::mem::offset_of!(Buffer, sequence) == 56);
    assert!(std::mem::offset_of!(Buffer, m) == 64);
    assert!(std::mem::offset_of!(Buffer, length) == 72);
    assert!(std::mem::offset_of!(Format, fmt) == 8);
    assert!(std::mem::size_of::<StreamParm>() == 204);
};

impl Capability {
    fn zeroed() -> Self {
        Capability {
            driver: [0; 16],
            card: [0; 32],
            bus_info: [0; 32],
            version: 0,
            capabilities: 0,
            device_caps: 0,
            reserved: [0; 3],
        }
    }

    /// What this node does: `device_caps` when the driver fills it, else the whole device's.
    pub fn node_caps(&self) -> u32 {
        if self.capabilities & CAP_DEVICE_CAPS != 0 {
            self.device_caps
        } else {
            self.capabilities
        }
    }
}

impl FmtDesc {
    fn new(index: u32) -> Self {
        FmtDesc {
            index,
            type_: BUF_TYPE_VIDEO_CAPTURE,
            flags: 0,
            description: [0; 32],
            pixelformat: 0,
            mbus_code: 0,
            reserved: [0; 3],
        }
    }
}

impl Format {
    /// A capture format with `pix`.
    pub fn capture(pix: PixFormat) -> Self {
        Format {
            type_: BUF_TYPE_VIDEO_CAPTURE,
            fmt: FormatUnion {
                pix,
                rest: [0; 200 - std::mem::size_of::<PixFormat>()],
                align: [],
            },
        }
    }
}

impl Buffer {
    /// A capture buffer by mmap, `index` (0 for a dequeue, which the driver fills).
    pub fn mmap(index: u32) -> Self {
        Buffer {
            index,
            type_: BUF_TYPE_VIDEO_CAPTURE,
            bytesused: 0,
            flags: 0,
            field: 0,
            timestamp: libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
            timecode: Timecode::default(),
            sequence: 0,
            memory: MEMORY_MMAP,
            m: BufferMemory { userptr: 0 },
            length: 0,
            reserved2: 0,
            request_fd: 0,
        }
    }

    /// Where the buffer lies in the device's memory, for mmap.
    pub fn offset(&self) -> u32 {
        // SAFETY: every member of the union is plain data, and the whole union was
        // initialised (zeroed through `userptr`, then written by the kernel), so reading its
        // first four bytes as `offset` reads initialised memory; for MMAP buffers the kernel
        // writes `offset` there.
        unsafe { self.m.offset }
    }
}

impl StreamParm {
    /// Capture parameters, empty.
    pub fn capture() -> Self {
        StreamParm {
            type_: BUF_TYPE_VIDEO_CAPTURE,
            capture: CaptureParm::default(),
            rest: [0; 200 - std::mem::size_of::<CaptureParm>()],
        }
    }
}

nix::ioctl_read!(vidioc_querycap, b'V', 0, Capability);
nix::ioctl_readwrite!(vidioc_enum_fmt, b'V', 2, FmtDesc);
nix::ioctl_readwrite!(vidioc_g_fmt, b'V', 4, Format);
nix::ioctl_readwrite!(vidioc_s_fmt, b'V', 5, Format);
nix::ioctl_readwrite!(vidioc_reqbufs, b'V', 8, RequestBuffers);
nix::ioctl_readwrite!(vidioc_querybuf, b'V', 9, Buffer);
nix::ioctl_readwrite!(vidioc_qbuf, b'V', 15, Buffer);
nix::ioctl_readwrite!(vidioc_dqbuf, b'V', 17, Buffer);
nix::ioctl_write_ptr!(vidioc_streamon, b'V', 18, libc::c_int);
nix::ioctl_write_ptr!(vidioc_streamoff, b'V', 19, libc::c_int);
nix::ioctl_readwrite!(vidioc_g_parm, b'V', 21, StreamParm);
nix::ioctl_readwrite!(vidioc_s_parm, b'V', 22, StreamParm);

/// Calls `f` again while it is interrupted by a signal.
fn retry(mut f: impl FnMut() -> nix::Result<libc::c_int>) -> nix::Result<()> {
    loop {
        match f() {
            Err(Errno::EINTR) => continue,
            other => return other.map(drop),
        }
    }
}

/// `VIDIOC_QUERYCAP`: fails with `ENOTTY` on anything that is not a V4L2 device.
pub fn query_cap(fd: BorrowedFd<'_>) -> nix::Result<Capability> {
    let mut cap = Capability::zeroed();
    // SAFETY: `cap` is a writable `v4l2_capability` of the kernel's size (asserted above),
    // alive for the whole call; `fd` is an open descriptor borrowed for the call.
    retry(|| unsafe { vidioc_querycap(fd.as_raw_fd(), &mut cap) })?;
    Ok(cap)
}

/// `VIDIOC_ENUM_FMT`: the capture format at `index`, `None` past the last.
pub fn enum_format(fd: BorrowedFd<'_>, index: u32) -> nix::Result<Option<FmtDesc>> {
    let mut desc = FmtDesc::new(index);
    // SAFETY: `desc` is a writable `v4l2_fmtdesc` of the kernel's size, alive for the call;
    // `fd` is open.
    match retry(|| unsafe { vidioc_enum_fmt(fd.as_raw_fd(), &mut desc) }) {
        Ok(()) => Ok(Some(desc)),
        Err(Errno::EINVAL) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `VIDIOC_G_FMT` for capture.
pub fn get_format(fd: BorrowedFd<'_>) -> nix::Result<Format> {
    let mut format = Format::capture(PixFormat::default());
    // SAFETY: `format` is a writable `v4l2_format` of the kernel's size and alignment, alive
    // for the call; `fd` is open.
    retry(|| unsafe { vidioc_g_fmt(fd.as_raw_fd(), &mut format) })?;
    Ok(format)
}

/// `VIDIOC_S_FMT`: the driver adjusts `format` to what it can do and writes it back.
pub fn set_format(fd: BorrowedFd<'_>, format: &mut Format) -> nix::Result<()> {
    // SAFETY: as for `get_format`: a live, writable `v4l2_format`, an open `fd`.
    retry(|| unsafe { vidioc_s_fmt(fd.as_raw_fd(), format) })
}

/// `VIDIOC_G_PARM` for capture.
pub fn get_parm(fd: BorrowedFd<'_>) -> nix::Result<StreamParm> {
    let mut parm = StreamParm::capture();
    // SAFETY: `parm` is a writable `v4l2_streamparm` of the kernel's size, alive for the
    // call; `fd` is open.
    retry(|| unsafe { vidioc_g_parm(fd.as_raw_fd(), &mut parm) })?;
    Ok(parm)
}

/// `VIDIOC_S_PARM`: the driver writes back the frame interval it chose.
pub fn set_parm(fd: BorrowedFd<'_>, parm: &mut StreamParm) -> nix::Result<()> {
    // SAFETY: as for `get_parm`.
    retry(|| unsafe { vidioc_s_parm(fd.as_raw_fd(), parm) })
}

/// `VIDIOC_REQBUFS` for `count` mmap buffers (0 frees them); returns how many the driver
/// gave.
pub fn request_buffers(fd: BorrowedFd<'_>, count: u32) -> nix::Result<u32> {
    let mut req = RequestBuffers {
        count,
        type_: BUF_TYPE_VIDEO_CAPTURE,
        memory: MEMORY_MMAP,
        ..RequestBuffers::default()
    };
    // SAFETY: `req` is a writable `v4l2_requestbuffers` of the kernel's size, alive for the
    // call; `fd` is open.
    retry(|| unsafe { vidioc_reqbufs(fd.as_raw_fd(), &mut req) })?;
    Ok(req.count)
}

/// `VIDIOC_QUERYBUF`: where buffer `index` lies and how long it is.
pub fn query_buffer(fd: BorrowedFd<'_>, index: u32) -> nix::Result<Buffer> {
    let mut buf = Buffer::mmap(index);
    // SAFETY: `buf` is a writable `v4l2_buffer` of the kernel's size and layout (asserted
    // above), for single-planar MMAP so the kernel reads no pointer from it; `fd` is open.
    retry(|| unsafe { vidioc_querybuf(fd.as_raw_fd(), &mut buf) })?;
    Ok(buf)
}

/// `VIDIOC_QBUF`: hands buffer `index` to the driver to fill.
pub fn queue_buffer(fd: BorrowedFd<'_>, index: u32) -> nix::Result<()> {
    let mut buf = Buffer::mmap(index);
    // SAFETY: as for `query_buffer`.
    retry(|| unsafe { vidioc_qbuf(fd.as_raw_fd(), &mut buf) })
}

/// `VIDIOC_DQBUF` on a non-blocking descriptor: the next filled buffer, `EAGAIN` when none.
pub fn dequeue_buffer(fd: BorrowedFd<'_>) -> nix::Result<Buffer> {
    let mut buf = Buffer::mmap(0);
    // SAFETY: as for `query_buffer`.
    retry(|| unsafe { vidioc_dqbuf(fd.as_raw_fd(), &mut buf) })?;
    Ok(buf)
}

/// `VIDIOC_STREAMON` (`on`) or `VIDIOC_STREAMOFF`: streaming off also takes every buffer
/// back from the driver.
pub fn stream(fd: BorrowedFd<'_>, on: bool) -> nix::Result<()> {
    let kind = BUF_TYPE_VIDEO_CAPTURE as libc::c_int;
    // SAFETY: the kernel reads one int, the buffer type, from a pointer to a live local;
    // `fd` is open.
    retry(|| unsafe {
        if on {
            vidioc_streamon(fd.as_raw_fd(), &kind)
        } else {
            vidioc_streamoff(fd.as_raw_fd(), &kind)
        }
    })
}

/// One buffer's memory, mapped from the device (read-only, shared with the driver).
pub struct Mapping {
    ptr: NonNull<c_void>,
    len: NonZeroUsize,
}

// SAFETY: the mapping is memory owned by this value alone (no other handle to it exists in
// the process), so moving it to another thread moves the only access to it.
unsafe impl Send for Mapping {}

impl Mapping {
    /// Maps `len` bytes at `offset` of the device (`VIDIOC_QUERYBUF`'s `m.offset`, `length`).
    pub fn new(fd: BorrowedFd<'_>, offset: u32, len: u32) -> nix::Result<Self> {
        let len = NonZeroUsize::new(len as usize).ok_or(Errno::EINVAL)?;
        // SAFETY: a fresh shared read-only mapping at an address the kernel chooses, so it
        // overlaps no memory the program uses; the offset and length are the driver's own for
        // this buffer.
        let ptr = unsafe {
            nix::sys::mman::mmap(
                None,
                len,
                ProtFlags::PROT_READ,
                MapFlags::MAP_SHARED,
                fd,
                libc::off_t::from(offset),
            )?
        };
        Ok(Mapping { ptr, len })
    }

    /// The first `n` bytes (at most the mapping's length). Called only for a buffer the driver
    /// has handed back (dequeued and not yet queued again), while it writes no more to it.
    pub fn bytes(&self, n: usize) -> &[u8] {
        let n = n.min(self.len.get());
        // SAFETY: `ptr` points to a live mapping of `len` bytes, readable, that stays mapped
        // as long as `self` (unmapped only in `drop`); `n <= len`. The caller reads a buffer
        // only between its dequeue and its next queue, when the driver does not write to it.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<u8>(), n) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` are exactly what mmap returned and were given; nothing
        // borrows the memory any more (`bytes` borrows `self`).
        let _ = unsafe { nix::sys::mman::munmap(self.ptr, self.len.get()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request codes `linux/videodev2.h` gives on 64-bit Linux (printed by a C program
    /// against the kernel's header): they encode the structures' sizes, so a wrong layout
    /// would show here.
    #[cfg(target_pointer_width = "64")]
    #[test]
    // The request type is `c_ulong` on glibc, `c_int` on musl.
    #[allow(clippy::unnecessary_cast)]
    fn request_codes_match_the_kernel_header() {
        use std::mem::size_of;
        let rw = |nr, size| nix::request_code_readwrite!(b'V', nr, size) as u64;
        assert_eq!(
            nix::request_code_read!(b'V', 0, size_of::<Capability>()) as u64,
            0x8068_5600
        );
        assert_eq!(rw(2, size_of::<FmtDesc>()), 0xc040_5602);
        assert_eq!(rw(4, size_of::<Format>()), 0xc0d0_5604);
        assert_eq!(rw(5, size_of::<Format>()), 0xc0d0_5605);
        assert_eq!(rw(8, size_of::<RequestBuffers>()), 0xc014_5608);
        assert_eq!(rw(9, size_of::<Buffer>()), 0xc058_5609);
        assert_eq!(rw(15, size_of::<Buffer>()), 0xc058_560f);
        assert_eq!(rw(17, size_of::<Buffer>()), 0xc058_5611);
        assert_eq!(
            nix::request_code_write!(b'V', 18, size_of::<libc::c_int>()) as u64,
            0x4004_5612
        );
        assert_eq!(
            nix::request_code_write!(b'V', 19, size_of::<libc::c_int>()) as u64,
            0x4004_5613
        );
        assert_eq!(rw(21, size_of::<StreamParm>()), 0xc0cc_5615);
        assert_eq!(rw(22, size_of::<StreamParm>()), 0xc0cc_5616);
    }

    #[test]
    fn a_file_that_is_not_a_device_refuses_the_first_ioctl() {
        use std::os::fd::AsFd;
        let file = tempfile::tempfile().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(query_cap(file.as_fd()).map(|_| ()), Err(Errno::ENOTTY));
    }
}
