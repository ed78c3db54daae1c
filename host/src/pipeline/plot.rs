//! Latency plots drawn straight into an [`image::RgbImage`], so a benchmark can write a PNG
//! without a plotting crate or system fonts: latency over time with its p50 and p99 on the
//! left, the latency histogram on the right, and the text in a tiny built-in bitmap font.
//!
//! Drawing never panics: every pixel goes through a bounds check, and points that are not
//! finite are skipped rather than trusted.

use image::{Rgb, RgbImage};

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 540;
/// Glyph pixels are drawn as `SCALE`×`SCALE` squares: 5×7 pixels alone are too small to read.
const SCALE: i64 = 2;
/// One glyph column of space between characters.
const ADVANCE: i64 = 6 * SCALE;
const GLYPH_HEIGHT: i64 = 7 * SCALE;
const BINS: usize = 40;

const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
const GRID: Rgb<u8> = Rgb([228, 228, 228]);
const BLUE: Rgb<u8> = Rgb([31, 119, 180]);
const GREEN: Rgb<u8> = Rgb([44, 160, 44]);
const RED: Rgb<u8> = Rgb([214, 39, 40]);
const BAR: Rgb<u8> = Rgb([140, 160, 190]);
const GREY_TEXT: Rgb<u8> = Rgb([110, 110, 110]);

/// A plot area in pixels, `y0` at the top (image rows grow downwards).
#[derive(Clone, Copy)]
struct Area {
    x0: i64,
    y0: i64,
    x1: i64,
    y1: i64,
}

const LEFT: Area = Area {
    x0: 90,
    y0: 60,
    x1: 740,
    y1: 430,
};
const RIGHT: Area = Area {
    x0: 860,
    y0: 60,
    x1: 1180,
    y1: 430,
};

/// A latency plot: latency over time on the left, its histogram on the right, and under them
/// `footer` (the machine's telemetry: power mode, clocks, temperatures, throttling), wrapped to
/// the width, so that a plot passed around alone still says what produced it.
pub fn latency_plot(timeline: &[(f64, f64)], title: &str, footer: &str) -> RgbImage {
    let mut img = RgbImage::from_pixel(WIDTH, HEIGHT, WHITE);
    let points: Vec<(f64, f64)> = timeline
        .iter()
        .copied()
        .filter(|(t, l)| t.is_finite() && l.is_finite())
        .collect();

    let title_x = ((i64::from(WIDTH) - text_width(title)) / 2).max(4);
    draw_text(&mut img, title_x, 10, title, BLACK);

    let (t_min, t_max) = min_max(points.iter().map(|p| p.0));
    let (l_min, l_max) = min_max(points.iter().map(|p| p.1));
    let time = Axis::new(t_min, t_max, false, false, 8.0);
    let latency = Axis::new(l_min, l_max, true, false, 6.0);
    let latency_x = Axis::new(l_min, l_max, true, false, 3.0);

    let mut sorted: Vec<f64> = points.iter().map(|p| p.1).collect();
    sorted.sort_unstable_by(f64::total_cmp);
    let p50 = percentile(&sorted, 0.50);
    let p99 = percentile(&sorted, 0.99);

    // Histogram counts first, because the count axis depends on the tallest bin.
    let mut counts = [0u64; BINS];
    let bin_width = (latency_x.hi - latency_x.lo) / BINS as f64;
    for &(_, l) in &points {
        let bin = if bin_width > 0.0 && bin_width.is_finite() {
            ((l - latency_x.lo) / bin_width).floor().max(0.0) as usize
        } else {
            0
        };
        if let Some(c) = counts.get_mut(bin.min(BINS - 1)) {
            *c += 1;
        }
    }
    let max_count = counts.iter().copied().max().unwrap_or(0);
    let count = Axis::new(0.0, max_count as f64, true, true, 6.0);

    // Left panel: grid under the points, percentile lines over them, axes last so they stay
    // crisp.
    draw_y_grid(&mut img, LEFT, &latency);
    let dot = if points.len() < 50_000 { 2 } else { 1 };
    for &(t, l) in &points {
        let x = to_px_x(LEFT, &time, t);
        let y = to_px_y(LEFT, &latency, l);
        fill_rect(&mut img, x, y - dot / 2, dot, dot, BLUE);
    }
    if let (Some(p50), Some(p99)) = (p50, p99) {
        dashed_hline(&mut img, LEFT, to_px_y(LEFT, &latency, p50), GREEN);
        dashed_hline(&mut img, LEFT, to_px_y(LEFT, &latency, p99), RED);
    }
    draw_axes(&mut img, LEFT, &time, &latency);
    draw_text(&mut img, LEFT.x0 - 60, LEFT.y0 - 24, "latency (ms)", BLACK);
    let x_label = "time (s)";
    draw_text(
        &mut img,
        (LEFT.x0 + LEFT.x1 - text_width(x_label)) / 2,
        LEFT.y1 + 34,
        x_label,
        BLACK,
    );

    // Right panel.
    draw_y_grid(&mut img, RIGHT, &count);
    for (i, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let a = to_px_x(RIGHT, &latency_x, latency_x.lo + i as f64 * bin_width);
        let b = to_px_x(RIGHT, &latency_x, latency_x.lo + (i + 1) as f64 * bin_width);
        let top = to_px_y(RIGHT, &count, c as f64);
        // A one-pixel gap keeps neighbouring bars apart; at least one pixel keeps thin bars.
        fill_rect(&mut img, a, top, (b - a - 1).max(1), RIGHT.y1 - top, BAR);
    }
    if let (Some(p50), Some(p99)) = (p50, p99) {
        dashed_vline(&mut img, RIGHT, to_px_x(RIGHT, &latency_x, p50), GREEN);
        dashed_vline(&mut img, RIGHT, to_px_x(RIGHT, &latency_x, p99), RED);
    }
    draw_axes(&mut img, RIGHT, &latency_x, &count);
    draw_text(&mut img, RIGHT.x0 - 60, RIGHT.y0 - 24, "frames", BLACK);
    let x_label = "latency (ms)";
    draw_text(
        &mut img,
        (RIGHT.x0 + RIGHT.x1 - text_width(x_label)) / 2,
        RIGHT.y1 + 34,
        x_label,
        BLACK,
    );

    match (p50, p99) {
        (Some(p50), Some(p99)) => {
            // One legend string, drawn in two colours so it doubles as the lines' key.
            let first = format!("p50 {} ms  ", fmt_ms(p50));
            let second = format!("p99 {} ms", fmt_ms(p99));
            let x = LEFT.x1 - text_width(&first) - text_width(&second) - ADVANCE;
            let x = draw_text(&mut img, x, LEFT.y0 - 24, &first, GREEN);
            draw_text(&mut img, x, LEFT.y0 - 24, &second, RED);
        }
        _ => {
            let msg = "no frames";
            for area in [LEFT, RIGHT] {
                let x = (area.x0 + area.x1 - text_width(msg)) / 2;
                let y = (area.y0 + area.y1 - GLYPH_HEIGHT) / 2;
                draw_text(&mut img, x, y, msg, GREY_TEXT);
            }
        }
    }
    for (i, line) in wrap(footer, (i64::from(WIDTH) - 8) / ADVANCE)
        .iter()
        .take(FOOTER_LINES)
        .enumerate()
    {
        let y = LEFT.y1 + 58 + i as i64 * (GLYPH_HEIGHT + 6);
        draw_text(&mut img, 4, y, line, GREY_TEXT);
    }
    img
}

/// Footer lines the plot has room for.
const FOOTER_LINES: usize = 2;

/// `text` in lines of at most `width` characters, broken after `;` or `,` where it can be, in
/// the glyphs the plot has (`;` becomes `,`; `°C` becomes `C`).
fn wrap(text: &str, width: i64) -> Vec<String> {
    let text = text.replace("°C", "C").replace(';', ",");
    let width = usize::try_from(width.max(1)).unwrap_or(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    for piece in text.split_inclusive(", ") {
        if !line.is_empty() && line.chars().count() + piece.trim_end().chars().count() > width {
            lines.push(std::mem::take(&mut line).trim_end().to_string());
        }
        line.push_str(piece);
    }
    if !line.trim().is_empty() {
        lines.push(line.trim_end().to_string());
    }
    lines
}

/// One configuration on a sweep's score-against-latency plot.
#[derive(Clone, Debug)]
pub struct SweepPoint {
    /// `vits16 224x224`.
    pub label: String,
    /// Median latency, ms.
    pub latency_ms: f64,
    /// Validation score.
    pub score: f64,
    /// On the Pareto front.
    pub on_front: bool,
    /// The configuration chosen.
    pub chosen: bool,
}

/// A sweep's plot: validation score against median latency, each configuration labelled, the
/// Pareto front joined by a line, the chosen configuration ringed.
pub fn sweep_plot(points: &[SweepPoint], title: &str, score_name: &str) -> RgbImage {
    const AREA: Area = Area {
        x0: 90,
        y0: 60,
        x1: 1100,
        y1: 430,
    };
    let mut img = RgbImage::from_pixel(WIDTH, HEIGHT, WHITE);
    let points: Vec<&SweepPoint> = points
        .iter()
        .filter(|p| p.latency_ms.is_finite() && p.score.is_finite())
        .collect();
    let title_x = ((i64::from(WIDTH) - text_width(title)) / 2).max(4);
    draw_text(&mut img, title_x, 10, title, BLACK);
    let (l_min, l_max) = min_max(points.iter().map(|p| p.latency_ms));
    let (s_min, s_max) = min_max(points.iter().map(|p| p.score));
    // Room around the points: for the labels on the right, the ring at the top.
    let s_pad = ((s_max - s_min) * 0.08).max(1e-3);
    let latency = Axis::new(l_min, l_max * 1.15, true, false, 8.0);
    let score = Axis::new(s_min - s_pad, s_max + s_pad, false, false, 6.0);
    draw_y_grid(&mut img, AREA, &score);
    // The front, in order of latency, as a stepped line: what a faster budget can reach.
    let mut front: Vec<&&SweepPoint> = points.iter().filter(|p| p.on_front).collect();
    front.sort_by(|a, b| a.latency_ms.total_cmp(&b.latency_ms));
    for pair in front.windows(2) {
        if let [a, b] = pair {
            let (ax, ay) = (
                to_px_x(AREA, &latency, a.latency_ms),
                to_px_y(AREA, &score, a.score),
            );
            let (bx, by) = (
                to_px_x(AREA, &latency, b.latency_ms),
                to_px_y(AREA, &score, b.score),
            );
            // A staircase: a's score holds until b's latency, where b's is reached.
            fill_rect(&mut img, ax, ay, bx - ax + 1, 2, GREEN);
            fill_rect(&mut img, bx, ay.min(by), 2, (ay - by).abs() + 1, GREEN);
        }
    }
    for p in &points {
        let x = to_px_x(AREA, &latency, p.latency_ms);
        let y = to_px_y(AREA, &score, p.score);
        if p.chosen {
            fill_rect(&mut img, x - 8, y - 8, 17, 17, RED);
            fill_rect(&mut img, x - 6, y - 6, 13, 13, WHITE);
        }
        let color = if p.on_front { GREEN } else { BLUE };
        fill_rect(&mut img, x - 4, y - 4, 9, 9, color);
        // Labels that would run off the plot go to the left of their point.
        let lx = if x + 10 + text_width(&p.label) > AREA.x1 {
            x - 10 - text_width(&p.label)
        } else {
            x + 10
        };
        draw_text(&mut img, lx, y - GLYPH_HEIGHT - 2, &p.label, BLACK);
    }
    draw_axes(&mut img, AREA, &latency, &score);
    draw_text(
        &mut img,
        AREA.x0 - 60,
        AREA.y0 - 24,
        &format!("validation {score_name}"),
        BLACK,
    );
    let x_label = "median latency (ms)";
    draw_text(
        &mut img,
        (AREA.x0 + AREA.x1 - text_width(x_label)) / 2,
        AREA.y1 + 34,
        x_label,
        BLACK,
    );
    let legend = "green: Pareto front   red ring: chosen";
    draw_text(
        &mut img,
        AREA.x1 - text_width(legend),
        AREA.y0 - 24,
        legend,
        GREY_TEXT,
    );
    if points.is_empty() {
        let msg = "no configurations";
        draw_text(
            &mut img,
            (AREA.x0 + AREA.x1 - text_width(msg)) / 2,
            (AREA.y0 + AREA.y1) / 2,
            msg,
            GREY_TEXT,
        );
    }
    img
}

/// A linear axis rounded out to nice ticks (1, 2 or 5 × 10^k).
#[derive(Clone, Copy, Debug)]
struct Axis {
    lo: f64,
    hi: f64,
    step: f64,
}

impl Axis {
    /// `divisions` is roughly how many ticks fit: the step is the first nice value at or above
    /// span / divisions.
    fn new(min: f64, max: f64, from_zero: bool, integer: bool, divisions: f64) -> Axis {
        let (mut lo, mut hi) = if min.is_finite() && max.is_finite() && min <= max {
            (min, max)
        } else {
            (0.0, 1.0)
        };
        if from_zero {
            lo = lo.min(0.0);
        }
        let mut span = hi - lo;
        if !(span.is_finite() && span > 0.0) {
            // A single value still needs a visible range around it.
            span = (lo.abs() * 0.1).max(1.0);
            hi = lo + span;
        }
        let raw = span / divisions;
        let base = 10f64.powf(raw.log10().floor());
        let frac = raw / base;
        let nice = if frac <= 1.0 {
            1.0
        } else if frac <= 2.0 {
            2.0
        } else if frac <= 5.0 {
            5.0
        } else {
            10.0
        };
        let mut step = nice * base;
        if integer {
            step = step.max(1.0);
        }
        if !(step.is_finite() && step > 0.0) {
            step = if span.is_finite() && span > 0.0 {
                span
            } else {
                1.0
            };
        }
        let mut nlo = (lo / step).floor() * step;
        let mut nhi = (hi / step).ceil() * step;
        if !nlo.is_finite() || nlo > lo {
            nlo = lo;
        }
        if !nhi.is_finite() || nhi < hi {
            nhi = hi;
        }
        if nhi <= nlo {
            nhi = nlo + step;
        }
        Axis {
            lo: nlo,
            hi: nhi,
            step,
        }
    }

    /// Tick values from `lo` to `hi`; capped so that an absurd step cannot loop for long.
    fn ticks(&self) -> impl Iterator<Item = f64> + '_ {
        let n = ((self.hi - self.lo) / self.step + 1e-6).floor();
        let n = if n.is_finite() && n >= 0.0 {
            (n as usize).min(50)
        } else {
            0
        };
        (0..=n).map(move |i| {
            let v = self.lo + i as f64 * self.step;
            // Snap float dust (1e-17) to zero so it is not labelled "-0.0".
            if v.abs() < self.step * 1e-6 { 0.0 } else { v }
        })
    }

    /// Position of `v` along the axis, 0 at `lo` and 1 at `hi`.
    fn frac(&self, v: f64) -> f64 {
        let d = self.hi - self.lo;
        if d > 0.0 && d.is_finite() {
            (v - self.lo) / d
        } else {
            0.0
        }
    }

    /// A tick label with as many decimals as the step needs.
    fn label(&self, v: f64) -> String {
        if v.abs().max(self.step) >= 1e7 || self.step < 1e-4 {
            format!("{v:.1e}")
        } else {
            let decimals = (-self.step.log10().floor()).clamp(0.0, 6.0) as usize;
            format!("{v:.decimals$}")
        }
    }
}

/// A latency for the legend: one decimal, or scientific when too long to read.
fn fmt_ms(v: f64) -> String {
    if v.abs() >= 1e7 {
        format!("{v:.1e}")
    } else {
        format!("{v:.1}")
    }
}

fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

/// Nearest-rank percentile of sorted values; `None` when there are none.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = (q * n as f64).ceil() as usize;
    sorted.get(rank.clamp(1, n) - 1).copied()
}

/// Pixel positions are kept far inside `i64`, so the offsets added to them later (labels, dash
/// widths) cannot overflow; `as` then maps NaN to 0.
const PX_LIMIT: f64 = 1e9;

fn to_px_x(area: Area, axis: &Axis, v: f64) -> i64 {
    let x = area.x0 as f64 + axis.frac(v) * (area.x1 - area.x0) as f64;
    x.round().clamp(-PX_LIMIT, PX_LIMIT) as i64
}

fn to_px_y(area: Area, axis: &Axis, v: f64) -> i64 {
    let y = area.y1 as f64 - axis.frac(v) * (area.y1 - area.y0) as f64;
    y.round().clamp(-PX_LIMIT, PX_LIMIT) as i64
}

fn put(img: &mut RgbImage, x: i64, y: i64, color: Rgb<u8>) {
    if let (Ok(x), Ok(y)) = (u32::try_from(x), u32::try_from(y))
        && let Some(p) = img.get_pixel_mut_checked(x, y)
    {
        *p = color;
    }
}

/// Clips to the image first, so a huge rectangle costs only its visible pixels.
fn fill_rect(img: &mut RgbImage, x: i64, y: i64, w: i64, h: i64, color: Rgb<u8>) {
    let x_start = x.max(0);
    let y_start = y.max(0);
    let x_end = x.saturating_add(w).min(i64::from(img.width()));
    let y_end = y.saturating_add(h).min(i64::from(img.height()));
    for py in y_start..y_end {
        for px in x_start..x_end {
            put(img, px, py, color);
        }
    }
}

fn dashed_hline(img: &mut RgbImage, area: Area, y: i64, color: Rgb<u8>) {
    let mut x = area.x0;
    while x < area.x1 {
        fill_rect(img, x, y - 1, 8.min(area.x1 - x), 2, color);
        x += 13;
    }
}

fn dashed_vline(img: &mut RgbImage, area: Area, x: i64, color: Rgb<u8>) {
    let mut y = area.y0;
    while y < area.y1 {
        fill_rect(img, x - 1, y, 2, 8.min(area.y1 - y), color);
        y += 13;
    }
}

fn draw_y_grid(img: &mut RgbImage, area: Area, y_axis: &Axis) {
    for v in y_axis.ticks() {
        let y = to_px_y(area, y_axis, v);
        fill_rect(img, area.x0 + 1, y, area.x1 - area.x0, 1, GRID);
    }
}

fn draw_axes(img: &mut RgbImage, area: Area, x_axis: &Axis, y_axis: &Axis) {
    fill_rect(img, area.x0, area.y0, 1, area.y1 - area.y0 + 1, BLACK);
    fill_rect(img, area.x0, area.y1, area.x1 - area.x0 + 1, 1, BLACK);
    // Labels that would overlap the previous one are left out: the tick marks still show.
    let mut free_from = i64::MIN;
    for v in x_axis.ticks() {
        let x = to_px_x(area, x_axis, v);
        fill_rect(img, x, area.y1 + 1, 1, 5, BLACK);
        let label = x_axis.label(v);
        let lx = x - text_width(&label) / 2;
        if lx >= free_from {
            free_from = draw_text(img, lx, area.y1 + 10, &label, BLACK) + ADVANCE;
        }
    }
    let mut free_above = i64::MAX;
    for v in y_axis.ticks() {
        let y = to_px_y(area, y_axis, v);
        fill_rect(img, area.x0 - 5, y, 5, 1, BLACK);
        let label = y_axis.label(v);
        let ly = y - GLYPH_HEIGHT / 2;
        if ly + GLYPH_HEIGHT + SCALE <= free_above {
            draw_text(img, area.x0 - 9 - text_width(&label), ly, &label, BLACK);
            free_above = ly;
        }
    }
}

fn text_width(text: &str) -> i64 {
    let n = i64::try_from(text.chars().count()).unwrap_or(i64::MAX / ADVANCE);
    (n.saturating_mul(ADVANCE) - SCALE).max(0)
}

/// Draws `text` with its top-left corner at (x, y) and returns the x after its last
/// character.
fn draw_text(img: &mut RgbImage, x: i64, y: i64, text: &str, color: Rgb<u8>) -> i64 {
    let mut cx = x;
    for c in text.chars() {
        // Text past the right edge is invisible anyway; stopping keeps long titles cheap.
        if cx >= i64::from(img.width()) {
            break;
        }
        let top = if DESCENDERS.contains(c) {
            y + 2 * SCALE
        } else {
            y
        };
        for (row, bits) in (0i64..).zip(glyph(c)) {
            for col in 0..5i64 {
                if (bits >> (4 - col)) & 1 == 1 {
                    fill_rect(
                        img,
                        cx + col * SCALE,
                        top + row * SCALE,
                        SCALE,
                        SCALE,
                        color,
                    );
                }
            }
        }
        cx += ADVANCE;
    }
    cx
}

/// Seven rows leave no room below the line, so these letters drop instead.
const DESCENDERS: &str = "gpqy";

fn glyph(c: char) -> [u8; 7] {
    GLYPHS
        .iter()
        .find(|(g, _)| *g == c)
        .map_or(UNKNOWN, |(_, rows)| *rows)
}

/// Characters outside the table show as a box, so a missing glyph is visible, not silent.
const UNKNOWN: [u8; 7] = [0, 0b11111, 0b10001, 0b10001, 0b10001, 0b11111, 0];

/// 5×7 glyphs, one row per byte, the leftmost pixel in bit 4. The letters in [`DESCENDERS`]
/// are drawn two rows lower, so their rows 0..5 are the x-height and rows 5..7 hang below.
#[rustfmt::skip]
const GLYPHS: &[(char, [u8; 7])] = &[
    (' ', [0, 0, 0, 0, 0, 0, 0]),
    ('0', [0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110]),
    ('1', [0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110]),
    ('2', [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111]),
    ('3', [0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110]),
    ('4', [0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010]),
    ('5', [0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110]),
    ('6', [0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110]),
    ('7', [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000]),
    ('8', [0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110]),
    ('9', [0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100]),
    ('.', [0, 0, 0, 0, 0, 0b01100, 0b01100]),
    (',', [0, 0, 0, 0, 0b01100, 0b00100, 0b01000]),
    ('-', [0, 0, 0, 0b01110, 0, 0, 0]),
    ('+', [0, 0b00100, 0b00100, 0b11111, 0b00100, 0b00100, 0]),
    ('=', [0, 0, 0b11111, 0, 0b11111, 0, 0]),
    ('_', [0, 0, 0, 0, 0, 0, 0b11111]),
    (':', [0, 0b01100, 0b01100, 0, 0b01100, 0b01100, 0]),
    ('/', [0b00001, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b10000]),
    ('%', [0b11000, 0b11001, 0b00010, 0b00100, 0b01000, 0b10011, 0b00011]),
    ('(', [0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010]),
    (')', [0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000]),
    ('[', [0b01110, 0b01000, 0b01000, 0b01000, 0b01000, 0b01000, 0b01110]),
    (']', [0b01110, 0b00010, 0b00010, 0b00010, 0b00010, 0b00010, 0b01110]),
    ('<', [0b00010, 0b00100, 0b01000, 0b10000, 0b01000, 0b00100, 0b00010]),
    ('>', [0b01000, 0b00100, 0b00010, 0b00001, 0b00010, 0b00100, 0b01000]),
    ('!', [0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0, 0b00100]),
    ('?', [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0, 0b00100]),
    ('\'', [0b00100, 0b00100, 0b01000, 0, 0, 0, 0]),
    ('"', [0b01010, 0b01010, 0b01010, 0, 0, 0, 0]),
    ('#', [0b01010, 0b01010, 0b11111, 0b01010, 0b11111, 0b01010, 0b01010]),
    ('*', [0, 0b00100, 0b10101, 0b01110, 0b10101, 0b00100, 0]),
    ('A', [0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001]),
    ('B', [0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110]),
    ('C', [0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110]),
    ('D', [0b11100, 0b10010, 0b10001, 0b10001, 0b10001, 0b10010, 0b11100]),
    ('E', [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111]),
    ('F', [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000]),
    ('G', [0b01110, 0b10001, 0b10000, 0b10111, 0b10001, 0b10001, 0b01111]),
    ('H', [0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001]),
    ('I', [0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110]),
    ('J', [0b00111, 0b00010, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100]),
    ('K', [0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001]),
    ('L', [0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b11111]),
    ('M', [0b10001, 0b11011, 0b10101, 0b10101, 0b10001, 0b10001, 0b10001]),
    ('N', [0b10001, 0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001]),
    ('O', [0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110]),
    ('P', [0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000, 0b10000]),
    ('Q', [0b01110, 0b10001, 0b10001, 0b10001, 0b10101, 0b10010, 0b01101]),
    ('R', [0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001]),
    ('S', [0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110]),
    ('T', [0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100]),
    ('U', [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110]),
    ('V', [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100]),
    ('W', [0b10001, 0b10001, 0b10001, 0b10101, 0b10101, 0b10101, 0b01010]),
    ('X', [0b10001, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b10001]),
    ('Y', [0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100]),
    ('Z', [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b11111]),
    ('a', [0, 0, 0b01110, 0b00001, 0b01111, 0b10001, 0b01111]),
    ('b', [0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b11110]),
    ('c', [0, 0, 0b01110, 0b10000, 0b10000, 0b10001, 0b01110]),
    ('d', [0b00001, 0b00001, 0b01101, 0b10011, 0b10001, 0b10001, 0b01111]),
    ('e', [0, 0, 0b01110, 0b10001, 0b11111, 0b10000, 0b01110]),
    ('f', [0b00110, 0b01001, 0b01000, 0b11100, 0b01000, 0b01000, 0b01000]),
    ('g', [0b01111, 0b10001, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110]),
    ('h', [0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001]),
    ('i', [0b00100, 0, 0b01100, 0b00100, 0b00100, 0b00100, 0b01110]),
    ('j', [0b00010, 0, 0b00110, 0b00010, 0b00010, 0b10010, 0b01100]),
    ('k', [0b10000, 0b10000, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010]),
    ('l', [0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110]),
    ('m', [0, 0, 0b11010, 0b10101, 0b10101, 0b10001, 0b10001]),
    ('n', [0, 0, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001]),
    ('o', [0, 0, 0b01110, 0b10001, 0b10001, 0b10001, 0b01110]),
    ('p', [0b11110, 0b10001, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000]),
    ('q', [0b01111, 0b10001, 0b10001, 0b10001, 0b01111, 0b00001, 0b00001]),
    ('r', [0, 0, 0b10110, 0b11001, 0b10000, 0b10000, 0b10000]),
    ('s', [0, 0, 0b01110, 0b10000, 0b01110, 0b00001, 0b11110]),
    ('t', [0b01000, 0b01000, 0b11100, 0b01000, 0b01000, 0b01001, 0b00110]),
    ('u', [0, 0, 0b10001, 0b10001, 0b10001, 0b10011, 0b01101]),
    ('v', [0, 0, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100]),
    ('w', [0, 0, 0b10001, 0b10001, 0b10101, 0b10101, 0b01010]),
    ('x', [0, 0, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001]),
    ('y', [0b10001, 0b10001, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110]),
    ('z', [0, 0, 0b11111, 0b00010, 0b00100, 0b01000, 0b11111]),
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn has(img: &RgbImage, color: Rgb<u8>) -> bool {
        img.pixels().any(|p| *p == color)
    }

    #[test]
    fn synthetic_timeline_has_size_points_and_p99() {
        let timeline: Vec<(f64, f64)> = (0..3000)
            .map(|i| {
                let spike = if i % 97 == 0 { 60.0 } else { 0.0 };
                (i as f64 / 30.0, 12.0 + (i % 17) as f64 * 0.4 + spike)
            })
            .collect();
        let img = latency_plot(&timeline, "bench: offline, 1 worker", "");
        assert_eq!(img.dimensions(), (WIDTH, HEIGHT));
        assert!(has(&img, BLUE), "no points drawn");
        assert!(has(&img, RED), "no p99 line");
        assert!(has(&img, GREEN), "no p50 line");
        assert!(has(&img, BAR), "no histogram bars");
        let mut sorted: Vec<f64> = timeline.iter().map(|p| p.1).collect();
        sorted.sort_unstable_by(f64::total_cmp);
        assert!(percentile(&sorted, 0.99).unwrap() >= 60.0);
    }

    #[test]
    fn empty_and_non_finite_inputs_still_draw() {
        let cases: Vec<Vec<(f64, f64)>> = vec![
            vec![],
            vec![
                (f64::NAN, 1.0),
                (1.0, f64::INFINITY),
                (f64::NEG_INFINITY, f64::NAN),
            ],
            vec![(0.0, 0.0)],
            vec![(1.0, 5.0), (1.0, 5.0)],
            vec![(0.0, 0.0), (1e300, f64::MAX)],
            vec![(-5.0, -1.0), (f64::MIN_POSITIVE, 1e-300)],
        ];
        for timeline in &cases {
            let img = latency_plot(timeline, "", "");
            assert_eq!(img.dimensions(), (WIDTH, HEIGHT));
            assert!(img.pixels().any(|p| *p != WHITE));
        }
        let empty = latency_plot(&[], &"a very long title ".repeat(1000), "");
        assert!(!has(&empty, BLUE));
        assert!(has(&empty, GREY_TEXT), "no \"no frames\" text");
    }

    #[test]
    fn telemetry_footer_is_drawn_under_the_panels_and_wrapped() {
        let timeline = [(0.0, 10.0), (1.0, 12.0)];
        let footer = "telemetry: power mode MAXN (0); max GPU 1300 MHz; max temp 61.5 °C \
                      (gpu-thermal); max power 12.4 W (VDD_GPU_SOC); throttled in 3 of 20 samples";
        let with = latency_plot(&timeline, "t", footer);
        let without = latency_plot(&timeline, "t", "");
        let footer_ink = |img: &RgbImage| {
            img.enumerate_pixels()
                .filter(|(_, y, p)| i64::from(*y) > LEFT.y1 + 50 && **p == GREY_TEXT)
                .count()
        };
        assert_eq!(footer_ink(&without), 0);
        assert!(footer_ink(&with) > 0);
        let lines = wrap(footer, 60);
        assert!(lines.len() >= 2, "{lines:?}");
        assert!(lines.iter().all(|l| l.chars().count() <= 60), "{lines:?}");
        assert_eq!(
            lines.concat().replace(' ', ""),
            footer.replace("°C", "C").replace(';', ",").replace(' ', "")
        );
        // Every character of the footer has a glyph (no boxes for `;` or `°`).
        assert!(
            lines
                .iter()
                .flat_map(|l| l.chars())
                .all(|c| glyph(c) != UNKNOWN || c == ' ')
        );
    }

    #[test]
    fn glyphs_change_pixels() {
        let mut img = RgbImage::from_pixel(20, 20, WHITE);
        let end = draw_text(&mut img, 1, 1, "0", BLACK);
        assert_eq!(end, 1 + ADVANCE);
        let ink = img.pixels().filter(|p| **p == BLACK).count();
        let set: u32 = glyph('0').iter().map(|r| r.count_ones()).sum();
        assert!(set > 0);
        assert_eq!(ink, set as usize * (SCALE * SCALE) as usize);

        let mut blank = RgbImage::from_pixel(20, 20, WHITE);
        draw_text(&mut blank, 1, 1, " ", BLACK);
        assert!(!has(&blank, BLACK));
        draw_text(&mut blank, 1, 1, "\u{20ac}", BLACK);
        assert!(has(&blank, BLACK), "unknown characters draw a box");
        // Off-image text is clipped, not a panic.
        draw_text(&mut blank, -30, 15, "Hello, 12:34", BLACK);
    }
}
