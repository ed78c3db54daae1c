//! The live V4L2 device: open, check that it captures, set the format, size and frame rate,
//! map its buffers and stream them (dequeue, hand out, queue again). Single-planar capture by
//! mmap only: what UVC grabbers, HDMI capture cards and most CSI drivers offer; a device that
//! captures only multi-planar is refused by name.

use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::libc;
use nix::poll::{PollFd, PollFlags, PollTimeout};

use super::format::{CaptureFormat, ConvertError, FrameSize, Layout, fourcc_name};
use super::source::{BufferSource, Next, RawBuffer, Timestamp};
use super::sys;

/// Buffers asked of the driver: one being converted, one or two filling, one spare.
const DEFAULT_BUFFERS: u32 = 4;

/// What to ask of a device; `None` keeps what the device is set to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRequest {
    /// The pixel format (default: the device's current one if it is converted here, else the
    /// first it offers in [`CaptureFormat::ALL`]'s order).
    pub format: Option<CaptureFormat>,
    /// The frame size.
    pub size: Option<FrameSize>,
    /// Frames per second.
    pub fps: Option<u32>,
    /// Buffers to map (the driver may give more or fewer; at least 2 are needed).
    pub buffers: u32,
}

impl Default for DeviceRequest {
    fn default() -> Self {
        DeviceRequest {
            format: None,
            size: None,
            fps: None,
            buffers: DEFAULT_BUFFERS,
        }
    }
}

/// Why a device could not be opened or streamed.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The path could not be opened.
    #[error("cannot open the capture device {}: {error}", path.display())]
    Open {
        /// The device.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The path opened, but is no V4L2 device.
    #[error("{} is not a V4L2 capture device (it does not answer VIDIOC_QUERYCAP: {errno})", path.display())]
    NotV4l2 {
        /// The path.
        path: PathBuf,
        /// The ioctl's error (`ENOTTY` for a file or another kind of device).
        errno: Errno,
    },
    /// A V4L2 device that does not capture video.
    #[error(
        "{} ({card}) is a V4L2 device but not a video capture device: it is {offers} (a UVC \
         camera's capture node is usually the first of its /dev/video nodes)",
        path.display()
    )]
    NotCapture {
        /// The path.
        path: PathBuf,
        /// The device's name.
        card: String,
        /// What it does instead.
        offers: String,
    },
    /// A device that captures only through the multi-planar API.
    #[error("{} ({card}) captures only through the multi-planar API, which dinoedge does not support", path.display())]
    MultiPlanarOnly {
        /// The path.
        path: PathBuf,
        /// The device's name.
        card: String,
    },
    /// A device without streaming I/O.
    #[error("{} ({card}) does not stream (no V4L2_CAP_STREAMING)", path.display())]
    NoStreaming {
        /// The path.
        path: PathBuf,
        /// The device's name.
        card: String,
    },
    /// The device offers no format converted here, or not the one asked for.
    #[error("{} ({card}) does not offer {wanted}; it offers {offered}", path.display())]
    FormatRefused {
        /// The path.
        path: PathBuf,
        /// The device's name.
        card: String,
        /// What was asked (or "any format dinoedge converts").
        wanted: String,
        /// What the device lists.
        offered: String,
    },
    /// The device set another size than the one asked for.
    #[error("{} ({card}): {wanted} asked, the nearest the device offers in {format} is {got}", path.display())]
    SizeRefused {
        /// The path.
        path: PathBuf,
        /// The device's name.
        card: String,
        /// The format.
        format: CaptureFormat,
        /// The size asked.
        wanted: FrameSize,
        /// The size set.
        got: FrameSize,
    },
    /// The device cannot set its frame rate, or not near the one asked for.
    #[error("{} ({card}): {wanted} frames/s asked; {got}", path.display())]
    FpsRefused {
        /// The path.
        path: PathBuf,
        /// The device's name.
        card: String,
        /// The rate asked.
        wanted: u32,
        /// What the device did instead.
        got: String,
    },
    /// The format the device set cannot be converted.
    #[error("{}: {reason}", path.display())]
    Layout {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: ConvertError,
    },
    /// Another program is capturing from the device.
    #[error("{} is busy: another program is capturing from it", path.display())]
    Busy {
        /// The path.
        path: PathBuf,
    },
    /// The device went away (unplugged).
    #[error("{} is gone ({errno}): unplugged, or its driver stopped", path.display())]
    Gone {
        /// The path.
        path: PathBuf,
        /// The error that said so.
        errno: Errno,
    },
    /// Any other failed call.
    #[error("{}: {call}: {errno}", path.display())]
    Call {
        /// The path.
        path: PathBuf,
        /// The ioctl or system call.
        call: &'static str,
        /// Its error.
        errno: Errno,
    },
}

/// A V4L2 capture device, set up and ready to stream (streaming starts at the first
/// [`BufferSource::next`], so that nothing piles up while the model loads).
pub struct Device {
    path: PathBuf,
    card: String,
    driver: String,
    layout: Layout,
    fps: Option<f64>,
    // Declared before `file`: the mappings are undone before the descriptor closes.
    buffers: Vec<sys::Mapping>,
    held: Option<u32>,
    streaming: bool,
    file: File,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// A NUL-padded C string field as text.
fn c_text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(bytes.get(..end).unwrap_or_default())
        .trim()
        .to_owned()
}

/// What a V4L2 node that does not capture video does, for an error message.
fn describe_caps(caps: u32) -> String {
    let mut what = Vec::new();
    for (bit, name) in [
        (sys::CAP_META_CAPTURE, "a metadata node"),
        (sys::CAP_VIDEO_OUTPUT, "a video output"),
        (
            sys::CAP_VIDEO_M2M,
            "a memory-to-memory device (a codec or converter)",
        ),
    ] {
        if caps & bit != 0 {
            what.push(name);
        }
    }
    if what.is_empty() {
        format!("a device with capabilities {caps:#010x}")
    } else {
        what.join(" and ")
    }
}

impl Device {
    /// Opens `path` and sets it up as `request` asks. Fails, naming the device, on a path
    /// that does not exist or is no V4L2 capture device, and on a format, size or rate the
    /// device does not give.
    pub fn open(path: &Path, request: &DeviceRequest) -> Result<Self, DeviceError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|error| DeviceError::Open {
                path: path.to_owned(),
                error,
            })?;
        let fd = file.as_fd();
        let owned = || path.to_owned();
        let call = |call: &'static str| {
            move |errno: Errno| match errno {
                Errno::EBUSY => DeviceError::Busy { path: owned() },
                Errno::ENODEV => DeviceError::Gone {
                    path: owned(),
                    errno,
                },
                errno => DeviceError::Call {
                    path: owned(),
                    call,
                    errno,
                },
            }
        };
        let cap = sys::query_cap(fd).map_err(|errno| DeviceError::NotV4l2 {
            path: owned(),
            errno,
        })?;
        let card = c_text(&cap.card);
        let driver = c_text(&cap.driver);
        let caps = cap.node_caps();
        if caps & sys::CAP_VIDEO_CAPTURE == 0 {
            return Err(if caps & sys::CAP_VIDEO_CAPTURE_MPLANE != 0 {
                DeviceError::MultiPlanarOnly {
                    path: owned(),
                    card,
                }
            } else {
                DeviceError::NotCapture {
                    path: owned(),
                    card,
                    offers: describe_caps(caps),
                }
            });
        }
        if caps & sys::CAP_STREAMING == 0 {
            return Err(DeviceError::NoStreaming {
                path: owned(),
                card,
            });
        }

        let mut offered = Vec::new();
        for index in 0..64 {
            match sys::enum_format(fd, index).map_err(call("VIDIOC_ENUM_FMT"))? {
                Some(desc) => offered.push(desc.pixelformat),
                None => break,
            }
        }
        let offered_text = || {
            if offered.is_empty() {
                "no formats".to_owned()
            } else {
                offered
                    .iter()
                    .map(|&c| fourcc_name(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let offers = |f: CaptureFormat| {
            offered
                .iter()
                .any(|&c| CaptureFormat::from_fourcc(c) == Some(f))
        };
        let current = sys::get_format(fd).map_err(call("VIDIOC_G_FMT"))?.fmt.pix;
        let format = match request.format {
            Some(f) => f,
            None => CaptureFormat::from_fourcc(current.pixelformat)
                .or_else(|| CaptureFormat::ALL.into_iter().find(|&f| offers(f)))
                .ok_or_else(|| DeviceError::FormatRefused {
                    path: owned(),
                    card: card.clone(),
                    wanted: "any format dinoedge converts (yuyv, uyvy, nv12, grey, rgb24, \
                             bgr24, mjpeg)"
                        .into(),
                    offered: offered_text(),
                })?,
        };
        // Some drivers list nothing; then the driver's answer to S_FMT decides.
        if !offered.is_empty() && !offers(format) {
            return Err(DeviceError::FormatRefused {
                path: owned(),
                card,
                wanted: format.to_string(),
                offered: offered_text(),
            });
        }
        let size = request.size.unwrap_or(FrameSize {
            width: current.width,
            height: current.height,
        });
        // The device's fourcc for the format (`JPEG` where it names MJPEG so).
        let fourcc = offered
            .iter()
            .copied()
            .find(|&c| CaptureFormat::from_fourcc(c) == Some(format))
            .unwrap_or(format.fourcc());
        let mut set = sys::Format::capture(sys::PixFormat {
            width: size.width,
            height: size.height,
            pixelformat: fourcc,
            field: sys::FIELD_ANY,
            ..sys::PixFormat::default()
        });
        sys::set_format(fd, &mut set).map_err(call("VIDIOC_S_FMT"))?;
        let got = set.fmt.pix;
        if CaptureFormat::from_fourcc(got.pixelformat) != Some(format) {
            return Err(DeviceError::FormatRefused {
                path: owned(),
                card,
                wanted: format.to_string(),
                offered: format!("{} instead", fourcc_name(got.pixelformat)),
            });
        }
        let got_size = FrameSize {
            width: got.width,
            height: got.height,
        };
        if request.size.is_some_and(|s| s != got_size) {
            return Err(DeviceError::SizeRefused {
                path: owned(),
                card,
                format,
                wanted: size,
                got: got_size,
            });
        }
        let packed = Layout::packed(format, got.width, got.height);
        let layout = Layout {
            // A driver that leaves it 0 packs its rows.
            bytes_per_line: if format == CaptureFormat::Mjpeg || got.bytesperline == 0 {
                packed.bytes_per_line
            } else {
                got.bytesperline
            },
            ..packed
        };
        layout.check().map_err(|reason| DeviceError::Layout {
            path: owned(),
            reason,
        })?;
        let fps = frame_rate(fd, request.fps).map_err(|e| match e {
            RateError::Call(errno) => call("VIDIOC_S_PARM")(errno),
            RateError::Refused { wanted, got } => DeviceError::FpsRefused {
                path: owned(),
                card: card.clone(),
                wanted,
                got,
            },
        })?;

        let count =
            sys::request_buffers(fd, request.buffers.max(2)).map_err(call("VIDIOC_REQBUFS"))?;
        if count < 2 {
            return Err(DeviceError::Call {
                path: owned(),
                call: "VIDIOC_REQBUFS (fewer than 2 buffers given)",
                errno: Errno::ENOMEM,
            });
        }
        let mut buffers = Vec::with_capacity(count as usize);
        for index in 0..count {
            let buf = sys::query_buffer(fd, index).map_err(call("VIDIOC_QUERYBUF"))?;
            buffers.push(sys::Mapping::new(fd, buf.offset(), buf.length).map_err(call("mmap"))?);
        }
        tracing::debug!(device = %path.display(), %card, %driver, %layout, buffers = count, "capture device set up");
        Ok(Device {
            path: path.to_owned(),
            card,
            driver,
            layout,
            fps,
            buffers,
            held: None,
            streaming: false,
            file,
        })
    }

    fn error(&self, call: &'static str) -> impl Fn(Errno) -> DeviceError + '_ {
        move |errno| match errno {
            Errno::ENODEV | Errno::EIO | Errno::EPIPE => DeviceError::Gone {
                path: self.path.clone(),
                errno,
            },
            errno => DeviceError::Call {
                path: self.path.clone(),
                call,
                errno,
            },
        }
    }

    fn start(&mut self) -> Result<(), DeviceError> {
        let fd = self.file.as_fd();
        for index in 0..self.buffers.len() as u32 {
            sys::queue_buffer(fd, index).map_err(self.error("VIDIOC_QBUF"))?;
        }
        sys::stream(fd, true).map_err(self.error("VIDIOC_STREAMON"))?;
        self.streaming = true;
        Ok(())
    }
}

/// Why the frame rate was not set.
enum RateError {
    Call(Errno),
    Refused { wanted: u32, got: String },
}

/// Sets the frame rate if asked (refusing one the device rounds by more than 1 %); returns
/// the rate the device runs at, where it says.
fn frame_rate(
    fd: std::os::fd::BorrowedFd<'_>,
    wanted: Option<u32>,
) -> Result<Option<f64>, RateError> {
    let rate = |p: &sys::StreamParm| {
        let t = p.capture.timeperframe;
        (t.numerator > 0 && t.denominator > 0)
            .then(|| f64::from(t.denominator) / f64::from(t.numerator))
    };
    let Some(wanted) = wanted else {
        return Ok(sys::get_parm(fd).ok().as_ref().and_then(rate));
    };
    let mut parm = sys::get_parm(fd).map_err(RateError::Call)?;
    if parm.capture.capability & sys::CAP_TIMEPERFRAME == 0 {
        return Err(RateError::Refused {
            wanted,
            got: "the device cannot set its frame rate".into(),
        });
    }
    parm.capture.timeperframe = sys::Fract {
        numerator: 1,
        denominator: wanted,
    };
    sys::set_parm(fd, &mut parm).map_err(RateError::Call)?;
    let got = rate(&parm);
    match got {
        Some(fps) if (fps - f64::from(wanted)).abs() <= 0.01 * f64::from(wanted) => Ok(Some(fps)),
        Some(fps) => Err(RateError::Refused {
            wanted,
            got: format!("the nearest the device offers is {fps:.2}"),
        }),
        None => Err(RateError::Refused {
            wanted,
            got: "the device did not say which rate it set".into(),
        }),
    }
}

impl BufferSource for Device {
    fn layout(&self) -> Layout {
        self.layout
    }

    fn describe(&self) -> String {
        let fps = self
            .fps
            .map(|f| format!(" at {f:.2} frames/s"))
            .unwrap_or_default();
        format!(
            "v4l2 {} ({}, {}): {}{fps}",
            self.path.display(),
            self.card,
            self.driver,
            self.layout
        )
    }

    fn next(&mut self, timeout: Duration) -> Result<Next<'_>, DeviceError> {
        self.release()?;
        if !self.streaming {
            self.start()?;
        }
        let ready = {
            let mut fds = [PollFd::new(self.file.as_fd(), PollFlags::POLLIN)];
            let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
            match nix::poll::poll(&mut fds, timeout) {
                Ok(n) => n > 0,
                Err(Errno::EINTR) => false,
                Err(errno) => return Err(self.error("poll")(errno)),
            }
        };
        if !ready {
            return Ok(Next::Timeout);
        }
        let buf = match sys::dequeue_buffer(self.file.as_fd()) {
            Ok(buf) => buf,
            Err(Errno::EAGAIN) => return Ok(Next::Timeout),
            Err(errno) => return Err(self.error("VIDIOC_DQBUF")(errno)),
        };
        self.held = Some(buf.index);
        let Some(mapping) = self.buffers.get(buf.index as usize) else {
            return Err(DeviceError::Call {
                path: self.path.clone(),
                call: "VIDIOC_DQBUF (a buffer index that was never mapped)",
                errno: Errno::EINVAL,
            });
        };
        let timestamp =
            if buf.flags & sys::BUF_FLAG_TIMESTAMP_MASK == sys::BUF_FLAG_TIMESTAMP_MONOTONIC {
                let (s, us) = (buf.timestamp.tv_sec, buf.timestamp.tv_usec);
                match (u64::try_from(s), u32::try_from(us)) {
                    (Ok(s), Ok(us)) if us < 1_000_000 => {
                        Timestamp::Monotonic(Duration::new(s, us * 1000))
                    }
                    _ => Timestamp::Unknown,
                }
            } else {
                Timestamp::Unknown
            };
        Ok(Next::Buffer(RawBuffer {
            data: mapping.bytes(buf.bytesused as usize),
            sequence: buf.sequence,
            timestamp,
            driver_error: buf.flags & sys::BUF_FLAG_ERROR != 0,
        }))
    }

    fn release(&mut self) -> Result<(), DeviceError> {
        if let Some(index) = self.held.take() {
            sys::queue_buffer(self.file.as_fd(), index).map_err(self.error("VIDIOC_QBUF"))?;
        }
        Ok(())
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        if self.streaming {
            let _ = sys::stream(self.file.as_fd(), false);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn open_err(path: &Path) -> DeviceError {
        match Device::open(path, &DeviceRequest::default()) {
            Ok(d) => panic!("{} opened as {d:?}", path.display()),
            Err(e) => e,
        }
    }

    #[test]
    fn a_missing_path_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("video9");
        let err = open_err(&path);
        assert!(matches!(err, DeviceError::Open { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("No such file"), "{text}");
    }

    #[test]
    fn a_file_or_dev_null_is_not_a_v4l2_device() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frames.raw");
        std::fs::write(&path, [0u8; 64]).unwrap();
        for path in [path.as_path(), Path::new("/dev/null")] {
            let err = open_err(path);
            assert!(
                matches!(
                    err,
                    DeviceError::NotV4l2 {
                        errno: Errno::ENOTTY,
                        ..
                    }
                ),
                "{err:?}"
            );
            let text = err.to_string();
            assert!(
                text.contains(&path.display().to_string())
                    && text.contains("not a V4L2 capture device"),
                "{text}"
            );
        }
    }

    #[test]
    fn capability_bits_name_what_a_node_is() {
        assert_eq!(describe_caps(sys::CAP_META_CAPTURE), "a metadata node");
        assert!(describe_caps(sys::CAP_VIDEO_M2M).contains("codec"));
        assert_eq!(describe_caps(0x10), "a device with capabilities 0x00000010");
        assert_eq!(c_text(b"Cam Link 4K\0\0\0"), "Cam Link 4K");
        assert_eq!(c_text(b"full"), "full");
    }
}
