//! The traits the core is generic over, besides embedded-io (the link) and embedded-hal (pins,
//! SPI): a monotonic clock and a frame source.

use dinoedge_proto::{FrameMeta, PixelFormat};

/// A monotonic clock in microseconds (e.g. a hardware timer); capture timestamps and the
/// protocol's timeouts use it.
pub trait Clock {
    /// Microseconds since an arbitrary origin; never goes backwards.
    fn now_us(&self) -> u64;
}

impl<T: Clock + ?Sized> Clock for &T {
    fn now_us(&self) -> u64 {
        (**self).now_us()
    }
}

/// What a source captures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(all(feature = "defmt", target_os = "none"), derive(defmt::Format))]
pub struct SourceInfo {
    /// Frame width in pixels.
    pub width: u16,
    /// Frame height in pixels.
    pub height: u16,
    /// Pixel layout.
    pub format: PixelFormat,
    /// Nominal frame rate in thousandths of a frame per second.
    pub fps_milli: u32,
}

impl SourceInfo {
    /// Bytes of one frame (0 for an impossible geometry).
    pub fn frame_len(&self) -> u32 {
        self.format.frame_len(self.width, self.height).unwrap_or(0)
    }
}

/// Paces a source's captures at its nominal frame rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(all(feature = "defmt", target_os = "none"), derive(defmt::Format))]
pub struct FramePacer {
    next_capture_us: u64,
}

impl FramePacer {
    /// Whether a capture is due at `now_us` at `fps_milli` thousandths of a frame per second
    /// (0: always); if so, schedules the next one. A source that was not polled for a while
    /// does not make up the frames it missed.
    pub fn due(&mut self, now_us: u64, fps_milli: u32) -> bool {
        if now_us < self.next_capture_us {
            return false;
        }
        let interval = if fps_milli == 0 {
            0
        } else {
            1_000_000_000 / u64::from(fps_milli)
        };
        self.next_capture_us = self.next_capture_us.max(now_us.saturating_sub(interval)) + interval;
        true
    }
}

/// A newly captured frame, ready to be read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewFrame {
    /// Capture time on the [`Clock`], if the source knows it better than "now".
    pub capture_us: Option<u64>,
    /// Sweep position, probe id and other metadata for the `FrameStart`.
    pub meta: FrameMeta,
}

/// The capture peripheral. A frame is read in pieces (lines, FIFO bursts), never held whole.
pub trait FrameSource {
    /// The peripheral's error.
    type Error: core::fmt::Debug;

    /// Geometry and rate.
    fn info(&self) -> SourceInfo;

    /// Whether a new frame has been captured since the last one was read or skipped; if so
    /// it becomes the current frame.
    fn poll_frame(&mut self, now_us: u64) -> Result<Option<NewFrame>, Self::Error>;

    /// Reads the next bytes of the current frame into `buf`; returns how many (0 once the
    /// frame is used up).
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error>;

    /// Abandons the current frame (no credit, or the link went down).
    fn skip(&mut self) -> Result<(), Self::Error>;
}
