//! Pixel formats from the wire to packed RGB888, over a rectangle of the frame.

use dinoedge_proto::message::PixelFormat;

/// A rectangle in pixels: left, top, width, height.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    /// Left column.
    pub x: u32,
    /// Top row.
    pub y: u32,
    /// Columns.
    pub width: u32,
    /// Rows.
    pub height: u32,
}

/// Converts the `rect` part of a frame (already checked to lie inside it, with `data` of the
/// right length) to RGB888 in `out`, row-major, `rect.width * rect.height * 3` bytes.
pub(crate) fn to_rgb(
    format: PixelFormat,
    frame_width: u32,
    data: &[u8],
    rect: Rect,
    out: &mut Vec<u8>,
) {
    out.clear();
    let (fw, x0, x1) = (
        frame_width as usize,
        rect.x as usize,
        (rect.x + rect.width) as usize,
    );
    for y in rect.y as usize..(rect.y + rect.height) as usize {
        match format {
            PixelFormat::Gray8 => {
                let row = &data[y * fw..(y + 1) * fw];
                for &v in &row[x0..x1] {
                    out.extend_from_slice(&[v, v, v]);
                }
            }
            PixelFormat::Rgb888 => {
                let row = &data[y * fw * 3..(y + 1) * fw * 3];
                out.extend_from_slice(&row[x0 * 3..x1 * 3]);
            }
            PixelFormat::Rgb565 => {
                let row = &data[y * fw * 2..(y + 1) * fw * 2];
                for px in row[x0 * 2..x1 * 2].chunks_exact(2) {
                    let v = u16::from_le_bytes([px[0], px[1]]);
                    let (r, g, b) = ((v >> 11) as u8, ((v >> 5) & 0x3f) as u8, (v & 0x1f) as u8);
                    // Replicate the high bits so that full scale maps to 255.
                    out.extend_from_slice(&[
                        (r << 3) | (r >> 2),
                        (g << 2) | (g >> 4),
                        (b << 3) | (b >> 2),
                    ]);
                }
            }
            PixelFormat::Yuyv422 => {
                let row = &data[y * fw * 2..(y + 1) * fw * 2];
                for x in x0..x1 {
                    let pair = x / 2 * 4;
                    let (luma, u, v) = (row[x * 2], row[pair + 1], row[pair + 3]);
                    out.extend_from_slice(&yuv_to_rgb(luma, u, v));
                }
            }
        }
    }
}

/// BT.601 limited range ("studio swing", what capture devices send as YUYV), integer form.
fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = 298 * (i32::from(y) - 16);
    let d = i32::from(u) - 128;
    let e = i32::from(v) - 128;
    let clip = |x: i32| ((x + 128) >> 8).clamp(0, 255) as u8;
    [
        clip(c + 409 * e),
        clip(c - 100 * d - 208 * e),
        clip(c + 516 * d),
    ]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)]
    use super::*;

    fn all(format: PixelFormat, w: u32, h: u32, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        to_rgb(
            format,
            w,
            data,
            Rect {
                x: 0,
                y: 0,
                width: w,
                height: h,
            },
            &mut out,
        );
        out
    }

    #[test]
    fn every_format_maps_black_white_and_primaries() {
        assert_eq!(
            all(PixelFormat::Gray8, 2, 1, &[0, 255]),
            [0, 0, 0, 255, 255, 255]
        );
        let rgb565: Vec<u8> = [0xf800u16, 0x07e0, 0x001f, 0xffff]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(
            all(PixelFormat::Rgb565, 4, 1, &rgb565),
            [255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255]
        );
        // Limited-range black (16) and white (235) with neutral chroma.
        assert_eq!(
            all(PixelFormat::Yuyv422, 2, 1, &[16, 128, 235, 128]),
            [0, 0, 0, 255, 255, 255]
        );
        // Pure red in BT.601 limited range: Y 81, U 90, V 240.
        let red = all(PixelFormat::Yuyv422, 2, 1, &[81, 90, 81, 240]);
        assert!(red[0] >= 253 && red[1] <= 2 && red[2] <= 2, "{red:?}");
    }

    #[test]
    fn a_rectangle_takes_only_its_pixels() {
        let data: Vec<u8> = (0..12).collect(); // 4x3 Gray8
        let mut out = Vec::new();
        to_rgb(
            PixelFormat::Gray8,
            4,
            &data,
            Rect {
                x: 1,
                y: 1,
                width: 2,
                height: 2,
            },
            &mut out,
        );
        assert_eq!(out, [5, 5, 5, 6, 6, 6, 9, 9, 9, 10, 10, 10]);
        // YUYV with an odd left edge still pairs each pixel with its own chroma.
        let yuyv = [16, 128, 235, 128, 235, 128, 16, 128];
        to_rgb(
            PixelFormat::Yuyv422,
            4,
            &yuyv,
            Rect {
                x: 1,
                y: 0,
                width: 2,
                height: 1,
            },
            &mut out,
        );
        assert_eq!(out, [255, 255, 255, 255, 255, 255]);
    }
}
