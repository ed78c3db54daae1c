//! Capture on the host: a V4L2 device (a USB UVC grabber, an HDMI capture card, a CSI camera
//! through V4L2) as the pipeline's source of frames, instead of the edge's link.
//!
//! ```text
//!  /dev/videoN ─► Device (device.rs: open, caps, format, mmap streaming; sys.rs: the ioctls)
//!       │ RawBuffer (bytes as the driver filled them, sequence, timestamp, error flag)
//!       ▼
//!  FrameMaker (source.rs, no I/O, no clock) ─ format.rs: YUYV, UYVY, NV12, GREY, RGB24, BGR24,
//!       │ ReceivedFrame, stamped at capture        MJPEG to the protocol's Gray8/Rgb888/Yuyv422
//!       ▼
//!  capture thread ─ LinkEvent::Frame ─► the pipeline's Ingest, as a link's frames would
//! ```
//!
//! The pipeline takes a capture as [`crate::pipeline::Input::Capture`]: [`source::spawn`]
//! presents it as a [`crate::link::Link`] (events, counters, stop), so every stage after the
//! link is the same. Alone, a capture has no edge: results go to the caller (JSON lines, the
//! view) and are not sent anywhere. With the edge's link beside it (`crate::controls`,
//! [`crate::pipeline::Input::CaptureWithControls`]) the edge serves its buttons, pedal and
//! alarm, and gets every result.
//!
//! Every frame is stamped at capture on the pipeline's clock: from the driver's buffer
//! timestamp when the driver says it is `CLOCK_MONOTONIC` (the clock of [`std::time::Instant`]
//! on Linux), else at the moment the buffer was dequeued ([`source::StampSource`] says which,
//! and the run's report counts both). Every buffer is accounted for: a buffer the driver flagged
//! as damaged, one too short for its format, an MJPEG frame cut short or that does not decode
//! are each counted lost with a [`CaptureLoss`] reason, and gaps in the driver's sequence
//! numbers (frames the driver had no free buffer for, where the driver numbers them) are
//! counted as dropped at the source. A frame made as the run stops, which the pipeline no
//! longer takes, is counted apart (`undelivered`): it was not lost on the way.

pub mod device;
pub mod format;
pub mod source;
mod sys;

pub use device::{Device, DeviceError, DeviceRequest};
pub use format::{CaptureFormat, ConvertError, Converted, FrameSize, Layout, convert, fourcc_name};
pub use source::{
    BufferSource, Capture, CaptureClock, CaptureStats, FrameMaker, Next, RawBuffer,
    RecordedBuffers, StampSource, Timestamp, spawn, spawn_into,
};

/// Why a captured buffer did not become a frame, as counted (by [`CaptureLoss::name`]) in the
/// run's `lost`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CaptureLoss {
    /// The driver flagged the buffer as damaged (`V4L2_BUF_FLAG_ERROR`: a USB packet lost,
    /// a signal glitch).
    DriverError,
    /// The buffer held fewer bytes than its format and size need.
    ShortBuffer,
    /// The negotiated layout cannot be converted (an odd width in a 4:2:x format).
    BadLayout,
    /// An MJPEG frame without its end-of-image marker: cut short.
    Truncated,
    /// An MJPEG frame that does not decode.
    Undecodable,
    /// An MJPEG frame of another size than the stream's.
    SizeMismatch,
}

impl CaptureLoss {
    /// Its name in counters and reports.
    pub fn name(self) -> &'static str {
        match self {
            CaptureLoss::DriverError => "CaptureDriverError",
            CaptureLoss::ShortBuffer => "CaptureShortBuffer",
            CaptureLoss::BadLayout => "CaptureBadLayout",
            CaptureLoss::Truncated => "CaptureTruncated",
            CaptureLoss::Undecodable => "CaptureUndecodable",
            CaptureLoss::SizeMismatch => "CaptureSizeMismatch",
        }
    }
}
