//! Raw V4L2 buffers to the pipeline's frames: the pixel formats capture devices deliver,
//! repacked or decoded into the protocol's Gray8, Rgb888 or Yuyv422.
//!
//! | V4L2 (fourcc)  | frame    | how                                                         |
//! |----------------|----------|-------------------------------------------------------------|
//! | GREY           | Gray8    | rows copied                                                 |
//! | YUYV           | Yuyv422  | rows copied                                                 |
//! | UYVY           | Yuyv422  | bytes of each pixel pair reordered (lossless)               |
//! | NV12           | Yuyv422  | each chroma row serves the two luma rows it covers (lossless)|
//! | RGB3 (RGB24)   | Rgb888   | rows copied                                                 |
//! | BGR3 (BGR24)   | Rgb888   | red and blue swapped                                        |
//! | MJPG (MJPEG)   | Rgb888 or Gray8 | decoded (the `image` crate's JPEG decoder)           |
//!
//! YUV stays YUV: the preprocessor turns Yuyv422 into RGB with BT.601 limited range, as
//! capture devices send it, so NV12 and UYVY go through the same arithmetic as YUYV. Rows may
//! be padded (`bytes_per_line` beyond the pixels); padding is dropped. A buffer longer than its
//! format needs is taken (drivers round `sizeimage` up); a shorter one is an error, never a
//! frame made up of what is there.

use std::fmt;
use std::io::Cursor;
use std::str::FromStr;

use dinoedge_proto::message::PixelFormat;
use image::ImageDecoder;

use super::CaptureLoss;

/// A fourcc code as V4L2 writes it: the four characters, first in the lowest byte.
pub const fn fourcc(code: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*code)
}

/// A fourcc as text: its four characters when printable, else hexadecimal.
pub fn fourcc_name(code: u32) -> String {
    let bytes = code.to_le_bytes();
    if bytes.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        bytes.iter().map(|&b| char::from(b)).collect()
    } else {
        format!("{code:#010x}")
    }
}

/// A V4L2 pixel format this host converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CaptureFormat {
    /// `YUYV`: 4:2:2, Y0 U Y1 V.
    Yuyv,
    /// `UYVY`: 4:2:2, U Y0 V Y1.
    Uyvy,
    /// `NV12`: 4:2:0, a luma plane then a plane of interleaved U V at half height.
    Nv12,
    /// `GREY`: 8-bit luminance.
    Grey,
    /// `RGB3`: red, green, blue.
    Rgb24,
    /// `BGR3`: blue, green, red.
    Bgr24,
    /// `MJPG`: each frame a JPEG (also taken as `JPEG`).
    Mjpeg,
}

impl CaptureFormat {
    /// Every format, in the order one is chosen when the device's own is not among them:
    /// uncompressed first (no decoding, no loss), then MJPEG.
    pub const ALL: [CaptureFormat; 7] = [
        CaptureFormat::Yuyv,
        CaptureFormat::Uyvy,
        CaptureFormat::Nv12,
        CaptureFormat::Grey,
        CaptureFormat::Rgb24,
        CaptureFormat::Bgr24,
        CaptureFormat::Mjpeg,
    ];

    /// Its V4L2 fourcc.
    pub fn fourcc(self) -> u32 {
        fourcc(match self {
            CaptureFormat::Yuyv => b"YUYV",
            CaptureFormat::Uyvy => b"UYVY",
            CaptureFormat::Nv12 => b"NV12",
            CaptureFormat::Grey => b"GREY",
            CaptureFormat::Rgb24 => b"RGB3",
            CaptureFormat::Bgr24 => b"BGR3",
            CaptureFormat::Mjpeg => b"MJPG",
        })
    }

    /// The format of a fourcc, if it is one of these (`JPEG` is read as MJPEG: some drivers
    /// name their motion JPEG so).
    pub fn from_fourcc(code: u32) -> Option<Self> {
        if code == fourcc(b"JPEG") {
            return Some(CaptureFormat::Mjpeg);
        }
        CaptureFormat::ALL.into_iter().find(|f| f.fourcc() == code)
    }

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            CaptureFormat::Yuyv => "yuyv",
            CaptureFormat::Uyvy => "uyvy",
            CaptureFormat::Nv12 => "nv12",
            CaptureFormat::Grey => "grey",
            CaptureFormat::Rgb24 => "rgb24",
            CaptureFormat::Bgr24 => "bgr24",
            CaptureFormat::Mjpeg => "mjpeg",
        }
    }

    /// Bytes of one row of `width` pixels without padding (for NV12, of the luma plane);
    /// `None` for MJPEG, whose frames have no rows, and for a width beyond any buffer.
    pub fn row_bytes(self, width: u32) -> Option<u32> {
        match self {
            CaptureFormat::Grey | CaptureFormat::Nv12 => Some(width),
            CaptureFormat::Yuyv | CaptureFormat::Uyvy => width.checked_mul(2),
            CaptureFormat::Rgb24 | CaptureFormat::Bgr24 => width.checked_mul(3),
            CaptureFormat::Mjpeg => None,
        }
    }

    fn subsampled_horizontally(self) -> bool {
        matches!(
            self,
            CaptureFormat::Yuyv | CaptureFormat::Uyvy | CaptureFormat::Nv12
        )
    }
}

impl fmt::Display for CaptureFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&fourcc_name(self.fourcc()))
    }
}

/// Why a `--v4l2-format` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown capture format `{0}`: one of yuyv, uyvy, nv12, grey, rgb24, bgr24, mjpeg")]
pub struct UnknownFormat(pub String);

impl FromStr for CaptureFormat {
    type Err = UnknownFormat;

    /// The command line's names, and the fourccs themselves, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        Ok(match lower.as_str() {
            "yuyv" | "yuy2" | "yuyv422" => CaptureFormat::Yuyv,
            "uyvy" | "uyvy422" => CaptureFormat::Uyvy,
            "nv12" => CaptureFormat::Nv12,
            "grey" | "gray" | "gray8" | "y8" => CaptureFormat::Grey,
            "rgb24" | "rgb3" => CaptureFormat::Rgb24,
            "bgr24" | "bgr3" => CaptureFormat::Bgr24,
            "mjpeg" | "mjpg" | "jpeg" => CaptureFormat::Mjpeg,
            _ => return Err(UnknownFormat(s.to_owned())),
        })
    }
}

/// A frame size, `WxH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSize {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// Why a `--v4l2-size` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a frame size: WIDTHxHEIGHT, each 1 to 65535, e.g. 1920x1080")]
pub struct BadSize(pub String);

impl FromStr for FrameSize {
    type Err = BadSize;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadSize(s.to_owned());
        let (w, h) = s.trim().split_once(['x', 'X']).ok_or_else(bad)?;
        let side = |v: &str| {
            v.parse::<u16>()
                .ok()
                .filter(|&n| n > 0)
                .map(u32::from)
                .ok_or_else(bad)
        };
        Ok(FrameSize {
            width: side(w)?,
            height: side(h)?,
        })
    }
}

impl fmt::Display for FrameSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// How a device lays out its frames, as negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The pixel format.
    pub format: CaptureFormat,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes from one row to the next (for NV12, in both planes); 0 for MJPEG.
    pub bytes_per_line: u32,
}

impl Layout {
    /// Rows without padding.
    pub fn packed(format: CaptureFormat, width: u32, height: u32) -> Self {
        Layout {
            format,
            width,
            height,
            bytes_per_line: format.row_bytes(width).unwrap_or(0),
        }
    }

    fn error(&self, reason: String) -> ConvertError {
        ConvertError::Layout {
            format: self.format,
            width: self.width,
            height: self.height,
            reason,
        }
    }

    /// Whether frames of this layout can be converted: a size the protocol carries (1 to
    /// 65535 a side), an even width for 4:2:x formats, rows no shorter than their pixels.
    pub fn check(&self) -> Result<(), ConvertError> {
        if !(1..=u32::from(u16::MAX)).contains(&self.width)
            || !(1..=u32::from(u16::MAX)).contains(&self.height)
        {
            return Err(self.error("the size must be 1 to 65535 pixels a side".into()));
        }
        if self.format.subsampled_horizontally() && !self.width.is_multiple_of(2) {
            return Err(self.error("the width must be even (chroma is shared by pairs)".into()));
        }
        if let Some(row) = self.format.row_bytes(self.width)
            && self.bytes_per_line < row
        {
            return Err(self.error(format!(
                "{} bytes per line is less than the {row} a row of {} pixels takes",
                self.bytes_per_line, self.width
            )));
        }
        Ok(())
    }

    /// Bytes a buffer must hold for a frame (the last row needs no padding); `None` for
    /// MJPEG, or a layout beyond the address space.
    pub fn min_len(&self) -> Option<usize> {
        let row = usize::try_from(self.format.row_bytes(self.width)?).ok()?;
        let stride = usize::try_from(self.bytes_per_line).ok()?;
        let rows = usize::try_from(self.height).ok()?;
        // NV12: the luma rows, then the chroma rows, one per two luma rows.
        let rows = match self.format {
            CaptureFormat::Nv12 => rows.checked_add(rows.div_ceil(2))?,
            _ => rows,
        };
        stride.checked_mul(rows.checked_sub(1)?)?.checked_add(row)
    }

    /// The protocol size, once checked.
    fn size(&self) -> Result<(u16, u16), ConvertError> {
        match (u16::try_from(self.width), u16::try_from(self.height)) {
            (Ok(w), Ok(h)) => Ok((w, h)),
            _ => Err(self.error("the size must be 1 to 65535 pixels a side".into())),
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}x{}", self.format, self.width, self.height)?;
        match self.format.row_bytes(self.width) {
            Some(row) if row != self.bytes_per_line => {
                write!(f, " ({} bytes a line)", self.bytes_per_line)
            }
            _ => Ok(()),
        }
    }
}

/// A frame in one of the protocol's pixel formats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    /// Its pixel format.
    pub format: PixelFormat,
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// `format.frame_len(width, height)` bytes.
    pub data: Vec<u8>,
}

/// Why a buffer could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// The buffer is shorter than its format and size need.
    #[error(
        "{format} {width}x{height}: the buffer holds {actual} bytes, {expected} expected at least"
    )]
    Short {
        /// The format.
        format: CaptureFormat,
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Bytes needed.
        expected: usize,
        /// Bytes the buffer held.
        actual: usize,
    },
    /// The layout itself cannot be converted.
    #[error("{format} {width}x{height}: {reason}")]
    Layout {
        /// The format.
        format: CaptureFormat,
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Why.
        reason: String,
    },
    /// An MJPEG frame that does not end with the end-of-image marker: cut short.
    #[error("MJPEG: no end-of-image marker in {len} bytes: the frame was cut short")]
    Truncated {
        /// Bytes the buffer held.
        len: usize,
    },
    /// An MJPEG frame the decoder refused.
    #[error("MJPEG: {reason}")]
    Decode {
        /// Why.
        reason: String,
    },
    /// An MJPEG frame of another size than the stream was set to.
    #[error(
        "MJPEG: the frame is {actual_width}x{actual_height}, the stream was set to {width}x{height}"
    )]
    SizeMismatch {
        /// The stream's width.
        width: u32,
        /// The stream's height.
        height: u32,
        /// The frame's width.
        actual_width: u32,
        /// The frame's height.
        actual_height: u32,
    },
}

impl ConvertError {
    /// How the lost frame is counted.
    pub fn loss(&self) -> CaptureLoss {
        match self {
            ConvertError::Short { .. } => CaptureLoss::ShortBuffer,
            ConvertError::Layout { .. } => CaptureLoss::BadLayout,
            ConvertError::Truncated { .. } => CaptureLoss::Truncated,
            ConvertError::Decode { .. } => CaptureLoss::Undecodable,
            ConvertError::SizeMismatch { .. } => CaptureLoss::SizeMismatch,
        }
    }
}

/// Converts one buffer, as the driver filled it (`data`: its `bytesused` bytes), to a frame.
pub fn convert(layout: &Layout, data: &[u8]) -> Result<Converted, ConvertError> {
    layout.check()?;
    if layout.format == CaptureFormat::Mjpeg {
        return decode_mjpeg(layout, data);
    }
    let (width, height) = layout.size()?;
    let short = |expected| ConvertError::Short {
        format: layout.format,
        width: layout.width,
        height: layout.height,
        expected,
        actual: data.len(),
    };
    let need = layout
        .min_len()
        .ok_or_else(|| layout.error("the frame is larger than memory".into()))?;
    if data.len() < need {
        return Err(short(need));
    }
    let (format, out) = match layout.format {
        CaptureFormat::Grey => (PixelFormat::Gray8, repack(layout, data, None)),
        CaptureFormat::Yuyv => (PixelFormat::Yuyv422, repack(layout, data, None)),
        CaptureFormat::Rgb24 => (PixelFormat::Rgb888, repack(layout, data, None)),
        CaptureFormat::Uyvy => (
            PixelFormat::Yuyv422,
            repack(
                layout,
                data,
                Some((4, |px, out| {
                    if let [u, y0, v, y1] = *px {
                        out.extend_from_slice(&[y0, u, y1, v]);
                    }
                })),
            ),
        ),
        CaptureFormat::Bgr24 => (
            PixelFormat::Rgb888,
            repack(
                layout,
                data,
                Some((3, |px, out| {
                    if let [b, g, r] = *px {
                        out.extend_from_slice(&[r, g, b]);
                    }
                })),
            ),
        ),
        CaptureFormat::Nv12 => (PixelFormat::Yuyv422, nv12_to_yuyv(layout, data)),
        CaptureFormat::Mjpeg => return decode_mjpeg(layout, data),
    };
    // The length was checked above; a frame of any other length would be made up.
    let expected = format
        .frame_len(width, height)
        .and_then(|n| usize::try_from(n).ok());
    if expected != Some(out.len()) {
        return Err(short(need));
    }
    Ok(Converted {
        format,
        width,
        height,
        data: out,
    })
}

/// How one group of bytes (a pixel, or a pixel pair in 4:2:2) is rewritten.
type Reorder = (usize, fn(&[u8], &mut Vec<u8>));

/// The rows of a packed format, padding dropped, copied or rewritten group by group.
fn repack(layout: &Layout, data: &[u8], reorder: Option<Reorder>) -> Vec<u8> {
    let row = layout.format.row_bytes(layout.width).unwrap_or(0) as usize;
    let stride = layout.bytes_per_line as usize;
    let mut out = Vec::with_capacity(row * layout.height as usize);
    for y in 0..layout.height as usize {
        let Some(line) = data.get(y * stride..y * stride + row) else {
            break;
        };
        match reorder {
            None => out.extend_from_slice(line),
            Some((unit, f)) => {
                for px in line.chunks_exact(unit) {
                    f(px, &mut out);
                }
            }
        }
    }
    out
}

/// NV12 to YUYV: each pixel pair takes the chroma sample of its 2x2 block, which is what a
/// 4:2:0 to 4:2:2 conversion without interpolation does, and loses nothing.
fn nv12_to_yuyv(layout: &Layout, data: &[u8]) -> Vec<u8> {
    let (w, h, stride) = (
        layout.width as usize,
        layout.height as usize,
        layout.bytes_per_line as usize,
    );
    let chroma = stride * h;
    let mut out = Vec::with_capacity(w * h * 2);
    for y in 0..h {
        let luma = data.get(y * stride..y * stride + w);
        let uv_start = chroma + (y / 2) * stride;
        let uv = data.get(uv_start..uv_start + w);
        let (Some(luma), Some(uv)) = (luma, uv) else {
            break;
        };
        for (ys, uvs) in luma.chunks_exact(2).zip(uv.chunks_exact(2)) {
            if let (&[y0, y1], &[u, v]) = (ys, uvs) {
                out.extend_from_slice(&[y0, u, y1, v]);
            }
        }
    }
    out
}

/// Decodes an MJPEG frame. UVC cameras often leave out the Huffman tables and rely on the
/// standard ones (the motion-JPEG convention, "AVI1"); such a frame is marked as motion JPEG
/// so that the decoder (zune-jpeg, under `image`) fills in the standard tables.
fn decode_mjpeg(layout: &Layout, data: &[u8]) -> Result<Converted, ConvertError> {
    let decode = |reason: String| ConvertError::Decode { reason };
    if !data.starts_with(&[0xFF, 0xD8]) {
        if data.is_empty() {
            return Err(ConvertError::Short {
                format: layout.format,
                width: layout.width,
                height: layout.height,
                expected: 4,
                actual: 0,
            });
        }
        return Err(decode("no start-of-image marker: not a JPEG frame".into()));
    }
    // FF D9 cannot occur inside entropy-coded data (an FF there is followed by 00), so the
    // last one is the end of the image; drivers may pad the buffer after it.
    let end = memchr::memmem::rfind(data, &[0xFF, 0xD9])
        .filter(|&i| i >= 2)
        .ok_or(ConvertError::Truncated { len: data.len() })?;
    let jpeg = data.get(..end + 2).unwrap_or(data);
    let marked;
    let jpeg = if has_huffman_tables(jpeg) {
        jpeg
    } else {
        marked = mark_as_motion_jpeg(jpeg);
        &marked
    };
    let decoder = image::codecs::jpeg::JpegDecoder::new(Cursor::new(jpeg))
        .map_err(|e| decode(e.to_string()))?;
    let (w, h) = decoder.dimensions();
    if (w, h) != (layout.width, layout.height) {
        return Err(ConvertError::SizeMismatch {
            width: layout.width,
            height: layout.height,
            actual_width: w,
            actual_height: h,
        });
    }
    let (width, height) = layout.size()?;
    let image = image::DynamicImage::from_decoder(decoder).map_err(|e| decode(e.to_string()))?;
    let (format, data) = match image {
        image::DynamicImage::ImageLuma8(grey) => (PixelFormat::Gray8, grey.into_raw()),
        other => (PixelFormat::Rgb888, other.into_rgb8().into_raw()),
    };
    Ok(Converted {
        format,
        width,
        height,
        data,
    })
}

/// Whether a JPEG defines Huffman tables (a DHT segment) before its first scan. A stream it
/// cannot walk counts as having them: the decoder then says what is wrong.
fn has_huffman_tables(jpeg: &[u8]) -> bool {
    let mut at = 2;
    loop {
        let (Some(&0xFF), Some(&marker)) = (jpeg.get(at), jpeg.get(at + 1)) else {
            return true;
        };
        match marker {
            0xC4 => return true,
            0xDA => return false,
            // Fill bytes before a marker.
            0xFF => at += 1,
            // Markers without a length.
            0x01 | 0xD0..=0xD8 => at += 2,
            _ => {
                let (Some(&hi), Some(&lo)) = (jpeg.get(at + 2), jpeg.get(at + 3)) else {
                    return true;
                };
                at += 2 + usize::from(u16::from_be_bytes([hi, lo]));
            }
        }
    }
}

/// The frame with an `AVI1` APP0 segment right after its start-of-image marker: the mark of
/// motion JPEG, on which the decoder uses the standard Huffman tables (ITU T.81 Annex K.3).
fn mark_as_motion_jpeg(jpeg: &[u8]) -> Vec<u8> {
    const APP0_AVI1: [u8; 9] = [0xFF, 0xE0, 0x00, 0x07, b'A', b'V', b'I', b'1', 0x00];
    let mut out = Vec::with_capacity(jpeg.len() + APP0_AVI1.len());
    out.extend_from_slice(&[0xFF, 0xD8]);
    out.extend_from_slice(&APP0_AVI1);
    out.extend_from_slice(jpeg.get(2..).unwrap_or_default());
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn fourccs_are_the_kernels() {
        // From linux/videodev2.h (v4l2_fourcc): the first character in the lowest byte.
        assert_eq!(CaptureFormat::Yuyv.fourcc(), 0x5659_5559);
        assert_eq!(CaptureFormat::Uyvy.fourcc(), 0x5956_5955);
        assert_eq!(CaptureFormat::Nv12.fourcc(), 0x3231_564e);
        assert_eq!(CaptureFormat::Grey.fourcc(), 0x5945_5247);
        assert_eq!(CaptureFormat::Rgb24.fourcc(), 0x3342_4752);
        assert_eq!(CaptureFormat::Bgr24.fourcc(), 0x3352_4742);
        assert_eq!(CaptureFormat::Mjpeg.fourcc(), 0x4750_4a4d);
        for f in CaptureFormat::ALL {
            assert_eq!(CaptureFormat::from_fourcc(f.fourcc()), Some(f));
            assert_eq!(f.name().parse::<CaptureFormat>(), Ok(f));
        }
        assert_eq!(
            CaptureFormat::from_fourcc(0x4745_504a),
            Some(CaptureFormat::Mjpeg)
        );
        assert_eq!(CaptureFormat::from_fourcc(fourcc(b"H264")), None);
        assert_eq!(fourcc_name(fourcc(b"H264")), "H264");
        assert_eq!(fourcc_name(7), "0x00000007");
        assert_eq!(CaptureFormat::Rgb24.to_string(), "RGB3");
    }

    #[test]
    fn format_and_size_arguments_parse_or_say_what_is_accepted() {
        assert_eq!("MJPG".parse(), Ok(CaptureFormat::Mjpeg));
        assert_eq!("gray".parse(), Ok(CaptureFormat::Grey));
        let err = "h264".parse::<CaptureFormat>().unwrap_err().to_string();
        assert!(
            err.contains("h264") && err.contains("yuyv") && err.contains("mjpeg"),
            "{err}"
        );
        assert_eq!(
            "1920x1080".parse(),
            Ok(FrameSize {
                width: 1920,
                height: 1080
            })
        );
        for bad in ["1920", "0x10", "10x", "70000x10", "axb", "-1x2"] {
            let err = bad.parse::<FrameSize>().unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains("WIDTHxHEIGHT"), "{err}");
        }
    }

    #[test]
    fn layouts_that_cannot_be_converted_are_refused_before_any_frame() {
        let odd = Layout::packed(CaptureFormat::Yuyv, 63, 48);
        assert!(matches!(odd.check(), Err(ConvertError::Layout { .. })));
        let narrow = Layout {
            bytes_per_line: 100,
            ..Layout::packed(CaptureFormat::Rgb24, 64, 2)
        };
        let err = narrow.check().unwrap_err().to_string();
        assert!(
            err.contains("100 bytes per line") && err.contains("192"),
            "{err}"
        );
        assert!(
            Layout::packed(CaptureFormat::Grey, 70_000, 1)
                .check()
                .is_err()
        );
        assert!(Layout::packed(CaptureFormat::Grey, 0, 1).check().is_err());
        // Odd heights are fine, NV12 included (its last chroma row serves one luma row).
        assert_eq!(
            Layout::packed(CaptureFormat::Nv12, 4, 3).min_len(),
            Some(4 * 3 + 4 * 2)
        );
        assert_eq!(Layout::packed(CaptureFormat::Mjpeg, 4, 3).min_len(), None);
    }

    #[test]
    fn padded_rows_lose_their_padding() {
        // 2x2 YUYV with 4 bytes of padding a row.
        let layout = Layout {
            bytes_per_line: 8,
            ..Layout::packed(CaptureFormat::Yuyv, 2, 2)
        };
        let data = [1, 2, 3, 4, 0xEE, 0xEE, 0xEE, 0xEE, 5, 6, 7, 8];
        let c = convert(&layout, &data).unwrap();
        assert_eq!(c.format, PixelFormat::Yuyv422);
        assert_eq!(c.data, [1, 2, 3, 4, 5, 6, 7, 8]);
        // The last row needs no padding, but must hold its pixels.
        let err = convert(&layout, &data[..11]).unwrap_err();
        assert_eq!(
            err,
            ConvertError::Short {
                format: CaptureFormat::Yuyv,
                width: 2,
                height: 2,
                expected: 12,
                actual: 11
            }
        );
        assert_eq!(err.loss(), CaptureLoss::ShortBuffer);
        assert!(err.to_string().contains("YUYV 2x2"), "{err}");
    }

    #[test]
    fn uyvy_bgr_and_nv12_are_reordered_exactly() {
        let uyvy = convert(
            &Layout::packed(CaptureFormat::Uyvy, 2, 1),
            &[10, 20, 30, 40],
        )
        .unwrap();
        assert_eq!(uyvy.data, [20, 10, 40, 30]);
        let bgr = convert(
            &Layout::packed(CaptureFormat::Bgr24, 2, 1),
            &[1, 2, 3, 4, 5, 6],
        )
        .unwrap();
        assert_eq!(
            (bgr.format, bgr.data),
            (PixelFormat::Rgb888, vec![3, 2, 1, 6, 5, 4])
        );
        // 4x3 NV12: luma 0..12, chroma rows [100 101 102 103] and [104 105 106 107].
        let mut nv12: Vec<u8> = (0..12).collect();
        nv12.extend(100..108);
        let c = convert(&Layout::packed(CaptureFormat::Nv12, 4, 3), &nv12).unwrap();
        assert_eq!(
            c.data,
            [
                0, 100, 1, 101, 2, 102, 3, 103, // row 0: chroma row 0
                4, 100, 5, 101, 6, 102, 7, 103, // row 1: chroma row 0
                8, 104, 9, 105, 10, 106, 11, 107, // row 2: chroma row 1
            ]
        );
    }

    #[test]
    fn broken_mjpeg_is_a_typed_error_not_a_panic() {
        let layout = Layout::packed(CaptureFormat::Mjpeg, 8, 8);
        assert_eq!(
            convert(&layout, &[]).unwrap_err().loss(),
            CaptureLoss::ShortBuffer
        );
        assert_eq!(
            convert(&layout, b"not a jpeg").unwrap_err().loss(),
            CaptureLoss::Undecodable
        );
        assert_eq!(
            convert(&layout, &[0xFF, 0xD8, 0xFF, 0xE0, 0x00]).unwrap_err(),
            ConvertError::Truncated { len: 5 }
        );
        // Start and end, nothing decodable between.
        let err = convert(&layout, &[0xFF, 0xD8, 0xFF, 0xD9]).unwrap_err();
        assert_eq!(err.loss(), CaptureLoss::Undecodable, "{err}");
        // Every prefix and every single-byte corruption of a real frame: an error or a frame,
        // never a panic.
        let mut jpeg = Vec::new();
        image::RgbImage::from_fn(8, 8, |x, y| image::Rgb([x as u8 * 30, y as u8 * 30, 90]))
            .write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
            .unwrap();
        assert_eq!(convert(&layout, &jpeg).unwrap().format, PixelFormat::Rgb888);
        for n in 0..jpeg.len() {
            let _ = convert(&layout, &jpeg[..n]);
            let mut bad = jpeg.clone();
            bad[n] ^= 0x5A;
            if let Ok(c) = convert(&layout, &bad) {
                assert_eq!(c.data.len(), c.format.frame_len(8, 8).unwrap() as usize);
            }
        }
        let wrong = Layout::packed(CaptureFormat::Mjpeg, 16, 8);
        assert_eq!(
            convert(&wrong, &jpeg).unwrap_err(),
            ConvertError::SizeMismatch {
                width: 16,
                height: 8,
                actual_width: 8,
                actual_height: 8
            }
        );
    }

    #[test]
    fn huffman_tables_are_found_or_their_absence_marked() {
        let mut jpeg = Vec::new();
        image::GrayImage::from_fn(8, 8, |x, y| image::Luma([(x * 20 + y * 10) as u8]))
            .write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
            .unwrap();
        assert!(has_huffman_tables(&jpeg));
        let marked = mark_as_motion_jpeg(&jpeg);
        assert_eq!(&marked[..11], b"\xFF\xD8\xFF\xE0\x00\x07AVI1\x00");
        assert_eq!(&marked[11..], &jpeg[2..]);
        let c = convert(&Layout::packed(CaptureFormat::Mjpeg, 8, 8), &jpeg).unwrap();
        assert_eq!(c.format, PixelFormat::Gray8);
    }
}
