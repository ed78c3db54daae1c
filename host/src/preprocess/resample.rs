//! The resampling plan of the antialiased bilinear resize, and a float reference of the GPU
//! preprocessing.
//!
//! The plan holds, per output index, the first source index and the triangle filter's weights,
//! computed as fast_image_resize (and PIL) compute them, in fixed-width rows so that the GPU can
//! read them without a per-row length. [`ReferencePreprocessor`] does in f32 on the CPU what the
//! kernels in `src/cuda/preprocess.cu` do, step for step, so that the kernels can be checked
//! against it and it against [`Preprocessor`](super::Preprocessor).

use dinoedge_proto::message::PixelFormat;

use super::{FrameRef, PreprocessConfig, PreprocessError, Rect, Roi, check_output, checked_rect};

/// The resampling of one axis: `input` source samples to `output` samples.
#[derive(Clone, Debug, PartialEq)]
pub struct AxisPlan {
    /// Source samples.
    pub input: u32,
    /// Output samples.
    pub output: u32,
    /// Weights per output sample (the widest filter window; shorter ones are zero-padded).
    pub taps: usize,
    /// First source sample of each output sample's window; `start + taps <= input` always.
    pub starts: Vec<u32>,
    /// `output * taps` weights, row by row; each row sums to 1.
    pub weights: Vec<f32>,
}

impl AxisPlan {
    /// The plan for `input` samples to `output`, or `None` when either is zero.
    pub fn new(input: u32, output: u32) -> Option<Self> {
        if input == 0 || output == 0 {
            return None;
        }
        // In f64 as fast_image_resize does, so that windows and weights come out the same.
        let scale = f64::from(input) / f64::from(output);
        let filter_scale = scale.max(1.0);
        // The triangle's support is 1 source pixel, widened by the downscale factor (antialias).
        let radius = filter_scale;
        let recip = 1.0 / filter_scale;
        let mut windows: Vec<(u32, Vec<f64>)> = Vec::with_capacity(output as usize);
        for i in 0..output {
            let in_center = (f64::from(i) + 0.5) * scale;
            let first = (in_center - radius).floor().max(0.0) as u32;
            let end = ((in_center + radius).ceil().min(f64::from(input)) as u32).max(first);
            // Source pixel j is centred at j + 0.5.
            let center = in_center - 0.5;
            let mut start = first;
            let mut ws = Vec::with_capacity((end - first) as usize);
            let mut sum = 0.0;
            for j in first..end {
                let w = triangle((f64::from(j) - center) * recip);
                if ws.is_empty() && w == 0.0 {
                    start += 1;
                } else {
                    ws.push(w);
                    sum += w;
                }
            }
            while ws.last() == Some(&0.0) {
                ws.pop();
            }
            if sum != 0.0 {
                ws.iter_mut().for_each(|w| *w /= sum);
            }
            windows.push((start, ws));
        }
        let taps = windows
            .iter()
            .map(|(_, w)| w.len())
            .max()
            .unwrap_or(1)
            .max(1);
        let mut starts = Vec::with_capacity(output as usize);
        let mut weights = vec![0.0f32; output as usize * taps];
        for ((start, ws), row) in windows.iter().zip(weights.chunks_exact_mut(taps)) {
            // Windows near the far edge move left so that every tap reads inside the source;
            // the taps they gain get zero weight.
            let shifted = (*start).min(input.saturating_sub(taps as u32));
            let pad = (start - shifted) as usize;
            for (slot, w) in row.iter_mut().skip(pad).zip(ws) {
                *slot = *w as f32;
            }
            starts.push(shifted);
        }
        Some(AxisPlan {
            input,
            output,
            taps,
            starts,
            weights,
        })
    }

    /// The window of output sample `i`: first source sample and `taps` weights.
    pub fn window(&self, i: usize) -> Option<(u32, &[f32])> {
        let start = *self.starts.get(i)?;
        let weights = self.weights.get(i * self.taps..(i + 1) * self.taps)?;
        Some((start, weights))
    }
}

/// The triangle (bilinear) filter on a unit support.
fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// Both axes' plans for one crop rectangle and one output size.
#[derive(Clone, Debug, PartialEq)]
pub struct ResamplePlan {
    /// The crop it was made for.
    pub rect: Rect,
    /// Columns: `rect.width` to the output width.
    pub horizontal: AxisPlan,
    /// Rows: `rect.height` to the output height.
    pub vertical: AxisPlan,
}

impl ResamplePlan {
    /// The plan for `rect` to `out_width` x `out_height`, or `None` when a side is zero.
    pub fn new(rect: Rect, out_width: u32, out_height: u32) -> Option<Self> {
        Some(ResamplePlan {
            rect,
            horizontal: AxisPlan::new(rect.width, out_width)?,
            vertical: AxisPlan::new(rect.height, out_height)?,
        })
    }
}

/// The pixel-format code the kernels switch on.
pub fn format_code(format: PixelFormat) -> u32 {
    match format {
        PixelFormat::Gray8 => 0,
        PixelFormat::Rgb888 => 1,
        PixelFormat::Rgb565 => 2,
        PixelFormat::Yuyv422 => 3,
    }
}

/// A region of interest as the kernels take it: kind (0 keep everything, 1 circle, 2 sector) and
/// six numbers (circle: cx, cy, radius; sector: apex x, apex y, inner, outer, start and end
/// degrees).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MaskParams {
    /// 0 no mask, 1 circle, 2 sector.
    pub kind: u32,
    /// The shape's numbers, zero where unused.
    pub p: [f32; 6],
}

impl MaskParams {
    /// The mask of `roi` (none for a rectangle or no region).
    pub fn of(roi: Option<&Roi>) -> Self {
        match roi {
            Some(&Roi::Circle { cx, cy, radius }) => MaskParams {
                kind: 1,
                p: [cx, cy, radius, 0.0, 0.0, 0.0],
            },
            Some(&Roi::Sector {
                apex_x,
                apex_y,
                inner,
                outer,
                start_deg,
                end_deg,
            }) => MaskParams {
                kind: 2,
                p: [apex_x, apex_y, inner, outer, start_deg, end_deg],
            },
            Some(Roi::Rect(_)) | None => MaskParams {
                kind: 0,
                p: [0.0; 6],
            },
        }
    }

    /// Whether pixel (`x`, `y`) of the frame is kept: [`Roi::contains`], from these numbers, as
    /// `roi_contains` in the kernel source computes it.
    pub fn contains(&self, x: u32, y: u32) -> bool {
        let [a, b, c, d, e, f] = self.p;
        let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
        match self.kind {
            1 => {
                let (dx, dy) = (px - a, py - b);
                dx * dx + dy * dy <= c * c
            }
            2 => {
                let (dx, dy) = (px - a, py - b);
                let r = dx.hypot(dy);
                let angle = dx.atan2(dy).to_degrees();
                r >= c && r <= d && angle >= e && angle <= f
            }
            _ => true,
        }
    }
}

/// Byte `i` of the frame; lengths are checked before, so the fallback is never taken.
fn byte(data: &[u8], i: usize) -> u8 {
    data.get(i).copied().unwrap_or(0)
}

/// Pixel (`x`, `y`) of a frame `width` wide as RGB 0-255, as `load_rgb` in the kernel source
/// decodes it (the same integer arithmetic as the CPU conversion).
pub fn decode_pixel(format: PixelFormat, width: u32, data: &[u8], x: u32, y: u32) -> [u8; 3] {
    let (w, x, y) = (width as usize, x as usize, y as usize);
    match format {
        PixelFormat::Gray8 => {
            let v = byte(data, y * w + x);
            [v, v, v]
        }
        PixelFormat::Rgb888 => {
            let i = (y * w + x) * 3;
            [byte(data, i), byte(data, i + 1), byte(data, i + 2)]
        }
        PixelFormat::Rgb565 => {
            let i = (y * w + x) * 2;
            let v = u32::from(byte(data, i)) | (u32::from(byte(data, i + 1)) << 8);
            let (r, g, b) = (v >> 11, (v >> 5) & 0x3f, v & 0x1f);
            [
                ((r << 3) | (r >> 2)) as u8,
                ((g << 2) | (g >> 4)) as u8,
                ((b << 3) | (b >> 2)) as u8,
            ]
        }
        PixelFormat::Yuyv422 => {
            let row = y * w * 2;
            let pair = row + x / 2 * 4;
            let luma = i32::from(byte(data, row + x * 2));
            let u = i32::from(byte(data, pair + 1));
            let v = i32::from(byte(data, pair + 3));
            let c = 298 * (luma - 16);
            let (d, e) = (u - 128, v - 128);
            let clip = |t: i32| ((t + 128) >> 8).clamp(0, 255) as u8;
            [
                clip(c + 409 * e),
                clip(c - 100 * d - 208 * e),
                clip(c + 516 * d),
            ]
        }
    }
}

/// The GPU preprocessing done in f32 on the CPU: decode, mask, horizontal pass, vertical pass,
/// normalise, with no rounding in between. The kernels follow it step for step.
#[derive(Debug)]
pub struct ReferencePreprocessor {
    config: PreprocessConfig,
    plan: Option<ResamplePlan>,
    /// The horizontal pass: `[rect height, output width, 3]`.
    rows: Vec<f32>,
}

impl ReferencePreprocessor {
    /// A reference for one model size and region of interest.
    pub fn new(config: PreprocessConfig) -> Self {
        ReferencePreprocessor {
            config,
            plan: None,
            rows: Vec::new(),
        }
    }

    /// Writes one frame as `[3, H, W]` into `out`.
    pub fn run_into(&mut self, frame: FrameRef, out: &mut [f32]) -> Result<(), PreprocessError> {
        check_output(self.config.size, out.len())?;
        let rect = checked_rect(self.config.roi.as_ref(), frame)?;
        let (out_h, out_w) = (self.config.size.height, self.config.size.width);
        let plan = match self.plan.take() {
            Some(plan) if plan.rect == rect => plan,
            _ => ResamplePlan::new(rect, out_w as u32, out_h as u32).ok_or_else(|| {
                PreprocessError::Resize(format!("empty output size {out_h}x{out_w}"))
            })?,
        };
        let mask = MaskParams::of(self.config.roi.as_ref());
        let (hp, vp) = (&plan.horizontal, &plan.vertical);

        // Kernel 1, one thread per (output column, crop row).
        self.rows.clear();
        self.rows.resize(rect.height as usize * out_w * 3, 0.0);
        for (r, row) in self.rows.chunks_exact_mut(out_w * 3).enumerate() {
            let y = rect.y + r as u32;
            for (ox, px) in row.chunks_exact_mut(3).enumerate() {
                let Some((start, weights)) = hp.window(ox) else {
                    continue;
                };
                let mut acc = [0.0f32; 3];
                for (k, &w) in weights.iter().enumerate() {
                    let x = rect.x + start + k as u32;
                    let rgb = if mask.contains(x, y) {
                        decode_pixel(frame.format, frame.width, frame.data, x, y)
                    } else {
                        [0; 3]
                    };
                    for (a, v) in acc.iter_mut().zip(rgb) {
                        *a = w.mul_add(f32::from(v), *a);
                    }
                }
                px.copy_from_slice(&acc);
            }
        }

        // Kernel 2, one thread per output pixel.
        let affine = self.config.affine();
        let plane = out_h * out_w;
        for oy in 0..out_h {
            let Some((start, weights)) = vp.window(oy) else {
                continue;
            };
            for ox in 0..out_w {
                let mut acc = [0.0f32; 3];
                for (k, &w) in weights.iter().enumerate() {
                    let i = ((start as usize + k) * out_w + ox) * 3;
                    for (c, a) in acc.iter_mut().enumerate() {
                        *a = w.mul_add(self.rows.get(i + c).copied().unwrap_or(0.0), *a);
                    }
                }
                for (c, ((scale, offset), a)) in affine.iter().zip(acc).enumerate() {
                    if let Some(o) = out.get_mut(c * plane + oy * out_w + ox) {
                        *o = a.mul_add(*scale, *offset);
                    }
                }
            }
        }
        self.plan = Some(plan);
        Ok(())
    }
}

/// A textured `w` x `h` frame in `format` (gradients, a checker, a colour ramp), raw as an edge
/// would send it: for checks of every pixel format against each other (`w` even for Yuyv422).
pub fn textured(format: PixelFormat, w: u32, h: u32) -> Vec<u8> {
    let rgb = |x: u32, y: u32| -> [u8; 3] {
        let check = if (x / 7 + y / 5).is_multiple_of(2) {
            40
        } else {
            0
        };
        [
            ((x * 255 / w) as u8).saturating_add(check),
            ((y * 255 / h) as u8).saturating_sub(check / 2),
            (((x + 2 * y) * 3) % 256) as u8,
        ]
    };
    let mut data = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let [r, g, b] = rgb(x, y);
            match format {
                PixelFormat::Gray8 => data.push(((u32::from(r) + u32::from(g)) / 2) as u8),
                PixelFormat::Rgb888 => data.extend_from_slice(&[r, g, b]),
                PixelFormat::Rgb565 => {
                    let v = ((u16::from(r) >> 3) << 11)
                        | ((u16::from(g) >> 2) << 5)
                        | (u16::from(b) >> 3);
                    data.extend_from_slice(&v.to_le_bytes());
                }
                PixelFormat::Yuyv422 => {
                    // Luma from the gradient, chroma from the pattern; U on even, V on odd.
                    let chroma = if x.is_multiple_of(2) {
                        16 + b / 2
                    } else {
                        100 + r / 3
                    };
                    data.extend_from_slice(&[16 + g / 2, chroma]);
                }
            }
        }
    }
    data
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::super::{Preprocessor, convert};
    use super::*;
    use crate::backbone::InputSize;

    #[test]
    fn weights_sum_to_one_and_stay_inside_the_source() {
        for (input, output) in [
            (640, 224),
            (480, 224),
            (1920, 224),
            (100, 224),
            (7, 3),
            (3, 7),
        ] {
            let p = AxisPlan::new(input, output).unwrap();
            assert_eq!(p.starts.len(), output as usize);
            assert_eq!(p.weights.len(), output as usize * p.taps);
            for i in 0..output as usize {
                let (start, w) = p.window(i).unwrap();
                assert!(
                    start as usize + p.taps <= input as usize,
                    "{input}->{output} #{i}"
                );
                let sum: f32 = w.iter().sum();
                assert!((sum - 1.0).abs() < 1e-5, "{input}->{output} #{i}: {sum}");
                assert!(w.iter().all(|&v| v >= 0.0));
            }
        }
        // Downscaling by s widens the triangle to about 2s taps (antialias).
        assert!(AxisPlan::new(1920, 224).unwrap().taps >= 17);
        assert_eq!(AxisPlan::new(0, 224), None);
    }

    #[test]
    fn equal_sizes_copy() {
        let p = AxisPlan::new(50, 50).unwrap();
        for i in 0..50 {
            let (start, w) = p.window(i).unwrap();
            let at = (0..p.taps).position(|k| w[k] == 1.0).unwrap();
            assert_eq!(start as usize + at, i);
            assert_eq!(w.iter().sum::<f32>(), 1.0);
        }
    }

    /// Every pixel format an edge sends.
    const FORMATS: [PixelFormat; 4] = [
        PixelFormat::Gray8,
        PixelFormat::Rgb888,
        PixelFormat::Rgb565,
        PixelFormat::Yuyv422,
    ];

    #[test]
    fn pixel_decoding_matches_the_cpu_conversion() {
        let (w, h) = (36, 10);
        for format in FORMATS {
            let data = textured(format, w, h);
            let mut rgb = Vec::new();
            let rect = Rect {
                x: 0,
                y: 0,
                width: w,
                height: h,
            };
            convert::to_rgb(format, w, &data, rect, &mut rgb);
            for y in 0..h {
                for x in 0..w {
                    let i = ((y * w + x) * 3) as usize;
                    assert_eq!(
                        decode_pixel(format, w, &data, x, y),
                        rgb[i..i + 3],
                        "{format:?} {x},{y}"
                    );
                }
            }
        }
    }

    #[test]
    fn mask_numbers_agree_with_the_regions() {
        for s in [
            "circle:320,240,200",
            "sector:320,-40,30,500,-35,35",
            "rect:1,2,3,4",
            "circle:10.5,7.25,3.3",
        ] {
            let roi: Roi = s.parse().unwrap();
            let mask = MaskParams::of(Some(&roi));
            for y in (0..480).step_by(3) {
                for x in (0..640).step_by(3) {
                    assert_eq!(mask.contains(x, y), roi.contains(x, y), "{s} {x},{y}");
                }
            }
        }
    }

    /// Mean and max absolute difference of two normalised outputs, on the 0-255 pixel scale.
    fn diff_255(config: &PreprocessConfig, a: &[f32], b: &[f32]) -> (f32, f32) {
        let plane = a.len() / 3;
        let (mut sum, mut max) = (0.0f64, 0.0f32);
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            let d = (x - y).abs() * config.std[i / plane] * 255.0;
            sum += f64::from(d);
            max = max.max(d);
        }
        ((sum / a.len() as f64) as f32, max)
    }

    #[test]
    fn the_float_reference_matches_the_cpu_preprocessor() {
        let cases: [(u32, u32, InputSize, Option<&str>); 6] = [
            (640, 480, InputSize::new(224, 224), None),
            (
                640,
                480,
                InputSize::new(224, 224),
                Some("rect:100,40,400,300"),
            ),
            (
                640,
                480,
                InputSize::new(224, 224),
                Some("circle:320,240,200"),
            ),
            (
                640,
                480,
                InputSize::new(224, 224),
                Some("sector:320,-40,30,500,-35,35"),
            ),
            (120, 90, InputSize::new(224, 160), None),
            (120, 90, InputSize::new(112, 112), Some("circle:60,45,40.5")),
        ];
        for (w, h, size, roi) in cases {
            for format in FORMATS {
                let data = textured(format, w, h);
                let frame = FrameRef {
                    format,
                    width: w,
                    height: h,
                    data: &data,
                };
                let mut config = PreprocessConfig::new(size);
                config.roi = roi.map(|s| s.parse().unwrap());
                let n = 3 * size.height * size.width;
                let (mut cpu, mut reference) = (vec![0.0; n], vec![0.0; n]);
                Preprocessor::new(config.clone())
                    .run_into(frame, &mut cpu)
                    .unwrap();
                ReferencePreprocessor::new(config.clone())
                    .run_into(frame, &mut reference)
                    .unwrap();
                let (mean, max) = diff_255(&config, &cpu, &reference);
                eprintln!("{w}x{h} -> {size} {roi:?} {format:?}: mean {mean:.4} max {max:.4}");
                assert!(
                    mean <= 1.0 && max <= 2.0,
                    "{w}x{h} -> {size} {roi:?} {format:?}: mean {mean} max {max}"
                );
            }
        }
    }

    #[test]
    fn the_reference_checks_frames_like_the_cpu_preprocessor() {
        let mut r = ReferencePreprocessor::new(PreprocessConfig::new(InputSize::new(16, 16)));
        let mut out = vec![0.0; 3 * 16 * 16];
        let short = [0u8; 10];
        let frame = FrameRef {
            format: PixelFormat::Rgb565,
            width: 4,
            height: 4,
            data: &short,
        };
        assert!(matches!(
            r.run_into(frame, &mut out),
            Err(PreprocessError::DataLength { .. })
        ));
        assert!(matches!(
            r.run_into(frame, &mut out[..5]),
            Err(PreprocessError::OutputLength { .. })
        ));
    }
}
