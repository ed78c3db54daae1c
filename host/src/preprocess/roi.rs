//! Regions of interest: the part of the frame the scanner's image occupies, so that menus,
//! text and the black surround do not reach the model.

use super::convert::Rect;

/// The part of a frame to keep; pixels outside a circle or sector become black.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Roi {
    /// A rectangle.
    Rect(Rect),
    /// An endoscope's circular field of view (centre and radius in pixels); the crop is its
    /// bounding square, clipped to the frame.
    Circle {
        /// Centre column.
        cx: f32,
        /// Centre row.
        cy: f32,
        /// Radius.
        radius: f32,
    },
    /// A curved or phased-array ultrasound sector: the ring segment between two radii from the
    /// apex (which may lie above the frame), between two angles in degrees measured from straight
    /// down, positive towards the right. The crop is its bounding box, clipped to the frame.
    Sector {
        /// Apex column.
        apex_x: f32,
        /// Apex row (negative when the apex is above the image).
        apex_y: f32,
        /// Inner radius (0 for a phased array).
        inner: f32,
        /// Outer radius.
        outer: f32,
        /// Left edge angle, degrees (e.g. -35).
        start_deg: f32,
        /// Right edge angle, degrees (e.g. 35).
        end_deg: f32,
    },
}

impl Roi {
    /// The rectangle to crop in a `width` x `height` frame, or `None` when the region misses
    /// the frame or is degenerate.
    pub fn bounds(&self, width: u32, height: u32) -> Option<Rect> {
        let (x0, y0, x1, y1) = match *self {
            Roi::Rect(r) => {
                let (x1, y1) = (r.x.checked_add(r.width)?, r.y.checked_add(r.height)?);
                if r.width == 0 || r.height == 0 || x1 > width || y1 > height {
                    return None;
                }
                return Some(r);
            }
            Roi::Circle { cx, cy, radius } => {
                if radius.is_nan() || radius <= 0.0 {
                    return None;
                }
                (cx - radius, cy - radius, cx + radius, cy + radius)
            }
            Roi::Sector {
                apex_x,
                apex_y,
                inner,
                outer,
                start_deg,
                end_deg,
            } => {
                if !(outer > inner
                    && inner >= 0.0
                    && end_deg > start_deg
                    && end_deg - start_deg <= 360.0)
                {
                    return None;
                }
                // Extremes lie on the arcs' ends or where an arc crosses an axis; sampling each
                // degree (plus the ends) bounds it within a pixel for any practical radius.
                let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
                let steps = (end_deg - start_deg).ceil() as usize;
                for i in 0..=steps {
                    let a = (start_deg + (end_deg - start_deg) * i as f32 / steps.max(1) as f32)
                        .to_radians();
                    for r in [inner, outer] {
                        let (x, y) = (apex_x + r * a.sin(), apex_y + r * a.cos());
                        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
                    }
                }
                (x0 - 1.0, y0 - 1.0, x1 + 1.0, y1 + 1.0)
            }
        };
        if ![x0, y0, x1, y1].iter().all(|v| v.is_finite()) {
            return None;
        }
        let clip = |v: f32, max: u32| v.round().clamp(0.0, max as f32) as u32;
        let (x0, y0, x1, y1) = (
            clip(x0, width),
            clip(y0, height),
            clip(x1, width),
            clip(y1, height),
        );
        (x1 > x0 && y1 > y0).then_some(Rect {
            x: x0,
            y: y0,
            width: x1 - x0,
            height: y1 - y0,
        })
    }

    /// Whether the pixel centred at frame coordinates (`x` + 0.5, `y` + 0.5) is kept.
    pub fn contains(&self, x: u32, y: u32) -> bool {
        let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
        match *self {
            Roi::Rect(_) => true,
            Roi::Circle { cx, cy, radius } => {
                (px - cx).powi(2) + (py - cy).powi(2) <= radius * radius
            }
            Roi::Sector {
                apex_x,
                apex_y,
                inner,
                outer,
                start_deg,
                end_deg,
            } => {
                let (dx, dy) = (px - apex_x, py - apex_y);
                let r = dx.hypot(dy);
                let angle = dx.atan2(dy).to_degrees();
                r >= inner && r <= outer && angle >= start_deg && angle <= end_deg
            }
        }
    }

    /// Whether pixels outside the shape must be blacked out within the crop.
    pub fn masks(&self) -> bool {
        !matches!(self, Roi::Rect(_))
    }
}

impl std::fmt::Display for Roi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Roi::Rect(r) => write!(f, "rect:{},{},{},{}", r.x, r.y, r.width, r.height),
            Roi::Circle { cx, cy, radius } => write!(f, "circle:{cx},{cy},{radius}"),
            Roi::Sector {
                apex_x,
                apex_y,
                inner,
                outer,
                start_deg,
                end_deg,
            } => {
                write!(
                    f,
                    "sector:{apex_x},{apex_y},{inner},{outer},{start_deg},{end_deg}"
                )
            }
        }
    }
}

impl std::str::FromStr for Roi {
    type Err = String;

    /// `rect:X,Y,W,H`, `circle:CX,CY,R` or `sector:APEX_X,APEX_Y,R_INNER,R_OUTER,DEG_START,DEG_END`.
    fn from_str(s: &str) -> Result<Self, String> {
        let usage = "expected rect:X,Y,W,H, circle:CX,CY,R or sector:APEX_X,APEX_Y,R_INNER,R_OUTER,DEG_START,DEG_END";
        let (kind, args) = s.split_once(':').ok_or_else(|| format!("{s:?}: {usage}"))?;
        let nums: Vec<f32> = args
            .split(',')
            .map(|v| v.trim().parse::<f32>())
            .collect::<Result<_, _>>()
            .map_err(|_| format!("{s:?}: numbers expected after \"{kind}:\"; {usage}"))?;
        if nums.iter().any(|v| !v.is_finite()) {
            return Err(format!("{s:?}: numbers must be finite"));
        }
        let whole =
            |v: f32| (v >= 0.0 && v.fract() == 0.0 && v <= u32::MAX as f32).then_some(v as u32);
        match (kind, nums.as_slice()) {
            ("rect", &[x, y, w, h]) => match (whole(x), whole(y), whole(w), whole(h)) {
                (Some(x), Some(y), Some(width), Some(height)) if width > 0 && height > 0 => {
                    Ok(Roi::Rect(Rect {
                        x,
                        y,
                        width,
                        height,
                    }))
                }
                _ => Err(format!(
                    "{s:?}: a rectangle needs whole, non-negative numbers and a positive size"
                )),
            },
            ("circle", &[cx, cy, radius]) if radius > 0.0 => Ok(Roi::Circle { cx, cy, radius }),
            ("sector", &[apex_x, apex_y, inner, outer, start_deg, end_deg])
                if outer > inner && inner >= 0.0 && end_deg > start_deg =>
            {
                Ok(Roi::Sector {
                    apex_x,
                    apex_y,
                    inner,
                    outer,
                    start_deg,
                    end_deg,
                })
            }
            _ => Err(format!(
                "{s:?}: {usage} (radii positive, outer > inner, end angle > start angle)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_display_round_trip_and_bounds() {
        for s in [
            "rect:10,20,100,50",
            "circle:320,240,200",
            "sector:320,-40,30,500,-35,35",
        ] {
            let roi: Roi = s.parse().unwrap();
            assert_eq!(roi.to_string().parse::<Roi>().unwrap(), roi);
        }
        let c: Roi = "circle:320,240,200".parse().unwrap();
        assert_eq!(
            c.bounds(640, 480),
            Some(Rect {
                x: 120,
                y: 40,
                width: 400,
                height: 400
            })
        );
        assert!(c.contains(320, 240) && !c.contains(125, 45));
        // A circle larger than the frame is clipped to it.
        let big: Roi = "circle:100,100,500".parse().unwrap();
        assert_eq!(
            big.bounds(200, 150),
            Some(Rect {
                x: 0,
                y: 0,
                width: 200,
                height: 150
            })
        );
        let s: Roi = "sector:320,-40,30,500,-35,35".parse().unwrap();
        let b = s.bounds(640, 480).unwrap();
        // Bottom of the arc at apex_y + outer = 460, edges at ±500 sin 35° ≈ ±287 from the apex.
        assert!((459..=462).contains(&(b.y + b.height)), "{b:?}");
        assert!(b.x <= 34 && b.x + b.width >= 606, "{b:?}");
        assert!(s.contains(320, 300) && !s.contains(20, 300) && !s.contains(320, 470));
    }

    #[test]
    fn bad_regions_are_refused() {
        for s in [
            "rect:1,2,3",
            "rect:0,0,0,10",
            "rect:-1,0,5,5",
            "circle:1,2,-3",
            "sector:0,0,50,10,0,10",
            "oval:1,2,3",
            "circle:a,b,c",
            "circle:1,1,inf",
        ] {
            assert!(s.parse::<Roi>().is_err(), "{s}");
        }
        let r: Roi = "rect:600,0,100,10".parse().unwrap();
        assert_eq!(r.bounds(640, 480), None);
        let off: Roi = "circle:-500,-500,10".parse().unwrap();
        assert_eq!(off.bounds(640, 480), None);
    }
}
