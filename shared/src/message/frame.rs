//! Frames: [`FrameStart`], then [`FrameChunk`]s in order, then optionally [`FrameEnd`].

use serde::{Deserialize, Serialize};

use super::{MAX_ID, MAX_META_ENTRIES, MAX_META_KEY, MAX_META_VALUE};

/// Pixel layout of a frame's bytes, rows top to bottom, no padding between rows.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PixelFormat {
    /// One byte of luminance per pixel.
    Gray8,
    /// Two bytes per pixel, little-endian `rrrrrggg gggbbbbb` as a u16.
    Rgb565,
    /// Three bytes per pixel: red, green, blue.
    Rgb888,
    /// Four bytes per two pixels: Y0, U, Y1, V. The width must be even.
    Yuyv422,
}

impl PixelFormat {
    /// Bytes a frame of this format and size takes, or `None` for an impossible size
    /// (odd width in YUYV, or a length beyond u32).
    pub fn frame_len(self, width: u16, height: u16) -> Option<u32> {
        let pixels = u32::from(width) * u32::from(height);
        match self {
            PixelFormat::Gray8 => Some(pixels),
            PixelFormat::Rgb565 => pixels.checked_mul(2),
            PixelFormat::Rgb888 => pixels.checked_mul(3),
            PixelFormat::Yuyv422 if width.is_multiple_of(2) => pixels.checked_mul(2),
            PixelFormat::Yuyv422 => None,
        }
    }
}

/// Where a frame sits in a 3D sweep or cine loop.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SweepPosition {
    /// Identifies the sweep; frames with the same id form one volume.
    pub sweep_id: u32,
    /// Index of this slice within the sweep, from 0.
    pub slice_index: u16,
    /// Number of slices in the sweep, when the edge knows it in advance.
    pub slice_count: Option<u16>,
}

/// One free-form metadata entry (e.g. `"depth_mm" = "120"`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct KeyValue {
    /// The key, at most [`MAX_META_KEY`] bytes.
    pub key: heapless::String<MAX_META_KEY>,
    /// The value, at most [`MAX_META_VALUE`] bytes.
    pub value: heapless::String<MAX_META_VALUE>,
}

/// What the edge knows about a frame besides its pixels.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FrameMeta {
    /// Sweep id and slice index, for frames that belong to a 3D sweep.
    pub sweep: Option<SweepPosition>,
    /// The probe (ultrasound) or scope (endoscopy) that produced the frame; empty if unknown.
    pub source_id: heapless::String<MAX_ID>,
    /// Up to [`MAX_META_ENTRIES`] further entries.
    pub extra: heapless::Vec<KeyValue, MAX_META_ENTRIES>,
}

/// Edge → host: a frame begins. Its bytes follow in [`FrameChunk`]s with the same `seq`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FrameStart {
    /// Frame sequence number: 0 for the first frame the edge starts in a session, then one
    /// more for each frame started (frames dropped at the source take no number).
    pub seq: u32,
    /// Capture time on the edge's clock, in microseconds.
    pub capture_us: u64,
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// Pixel layout.
    pub format: PixelFormat,
    /// Length of the frame's data in bytes; equals `format.frame_len(width, height)`.
    pub total_len: u32,
    /// CRC-32 of the frame's data, or `None` when a [`FrameEnd`] will carry it.
    pub frame_crc: Option<u32>,
    /// Frames the edge dropped at the source for lack of credit since the session began.
    pub dropped_at_source: u32,
    /// Sweep position, probe or scope id and free-form entries.
    pub meta: FrameMeta,
}

/// Edge → host: `data` is the frame's bytes `offset .. offset + data.len()`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FrameChunk<'a> {
    /// The frame's [`FrameStart::seq`].
    pub seq: u32,
    /// Offset of the first byte within the frame.
    pub offset: u32,
    /// The bytes.
    #[serde(borrow, with = "super::borrowed_bytes")]
    pub data: &'a [u8],
}

/// Edge → host, after the last chunk of a frame whose start had no CRC.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FrameEnd {
    /// The frame's [`FrameStart::seq`].
    pub seq: u32,
    /// CRC-32 of the frame's data.
    pub frame_crc: u32,
}
