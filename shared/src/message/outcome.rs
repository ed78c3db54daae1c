//! [`InferenceResult`]: what the host found in one frame, sent back to the edge.

use serde::{Deserialize, Serialize};

use super::{MAX_SEGMENTS, MAX_TOP_K, RleMask};

/// Where the host spent the time between receiving a frame and sending its result, in
/// microseconds. `total_us` runs from capture (edge clock mapped to the host's) to send.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Latency {
    /// Capture to last byte received on the host.
    pub transfer_us: u32,
    /// Waiting in the host's queues.
    pub queue_us: u32,
    /// Preprocessing (colour conversion, resize, normalisation).
    pub preprocess_us: u32,
    /// The backbone.
    pub backbone_us: u32,
    /// The heads and post-processing.
    pub heads_us: u32,
    /// Capture to result sent.
    pub total_us: u32,
}

/// One entry of a classification top-k list.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ClassScore {
    /// Class index in the head's class list.
    pub class: u16,
    /// Probability (softmax or sigmoid), 0 to 1.
    pub score: f32,
}

/// An axis-aligned box in frame pixels.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BoundingBox {
    /// Left edge.
    pub x: u16,
    /// Top edge.
    pub y: u16,
    /// Width.
    pub width: u16,
    /// Height.
    pub height: u16,
}

/// Segmentation summary for one class present in the frame.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SegmentSummary {
    /// Class index in the head's class list.
    pub class: u16,
    /// Fraction of the frame (or ROI) the class covers, 0 to 1.
    pub area_fraction: f32,
    /// Box around the class's pixels, in frame pixels.
    pub bbox: BoundingBox,
    /// Centroid x, in frame pixels.
    pub centroid_x: f32,
    /// Centroid y, in frame pixels.
    pub centroid_y: f32,
}

/// Alarm bits a result raises; the edge acts on them (e.g. an alarm output).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[serde(transparent)]
pub struct AlarmFlags(pub u32);

impl AlarmFlags {
    /// A class score crossed its alarm threshold.
    pub const CLASS_THRESHOLD: AlarmFlags = AlarmFlags(1 << 0);
    /// A segmented area crossed its alarm threshold.
    pub const AREA_THRESHOLD: AlarmFlags = AlarmFlags(1 << 1);
    /// The host is falling behind (latency above its bound).
    pub const HOST_OVERLOADED: AlarmFlags = AlarmFlags(1 << 2);
    /// The input looks unusable (e.g. a blank or frozen image).
    pub const BAD_INPUT: AlarmFlags = AlarmFlags(1 << 3);
    /// The host lost its GPU and carries on with a slower engine: results are still computed
    /// by the same model, but later than they should be.
    pub const DEGRADED: AlarmFlags = AlarmFlags(1 << 4);

    /// Whether any alarm is raised.
    pub const fn any(self) -> bool {
        self.0 != 0
    }

    /// Whether every bit of `other` is set here.
    pub const fn contains(self, other: AlarmFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

/// Host → edge: the outcome for the frame `seq`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct InferenceResult<'a> {
    /// The frame's [`FrameStart::seq`](super::FrameStart::seq).
    pub seq: u32,
    /// The frame's capture time on the edge clock, echoed.
    pub capture_us: u64,
    /// Where the time went.
    pub latency: Latency,
    /// Best classes, highest score first.
    pub top_k: heapless::Vec<ClassScore, MAX_TOP_K>,
    /// Summary per segmented class present in the frame.
    pub segments: heapless::Vec<SegmentSummary, MAX_SEGMENTS>,
    /// A low-resolution class mask, when asked for.
    #[serde(borrow)]
    pub mask: Option<RleMask<'a>>,
    /// Raised alarms.
    pub alarms: AlarmFlags,
}
