//! Negotiation: [`Hello`] from the edge, then [`Welcome`] or [`Reject`] from the host.

use serde::{Deserialize, Serialize};

use super::{MAX_ID, PixelFormat};

/// A semantic version (firmware, host software).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Version {
    /// Incompatible changes.
    pub major: u16,
    /// Compatible additions.
    pub minor: u16,
    /// Fixes.
    pub patch: u16,
}

/// What the edge's image sensor or frame grabber delivers.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Sensor {
    /// Frame width in pixels.
    pub width: u16,
    /// Frame height in pixels.
    pub height: u16,
    /// Pixel layout of each frame.
    pub format: PixelFormat,
    /// Nominal frame rate in thousandths of a frame per second (30 fps = 30000).
    pub fps_milli: u32,
}

/// Optional features an edge offers, as bits.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[serde(transparent)]
pub struct Capabilities(pub u32);

impl Capabilities {
    /// The edge can crop to the region of interest a [`Welcome`] asks for.
    pub const ROI: Capabilities = Capabilities(1 << 0);
    /// The edge can lower its frame rate to the one a [`Welcome`] asks for.
    pub const FRAME_RATE: Capabilities = Capabilities(1 << 1);
    /// The edge sends [`Event`](super::Event)s for buttons and pedals.
    pub const EVENTS: Capabilities = Capabilities(1 << 2);
    /// The edge drives an alarm output from results.
    pub const ALARM_OUTPUT: Capabilities = Capabilities(1 << 3);
    /// The edge can use a run-length mask in results (e.g. to draw it).
    pub const MASK: Capabilities = Capabilities(1 << 4);
    /// Frames carry sweep id and slice index for 3D sweeps.
    pub const SWEEPS: Capabilities = Capabilities(1 << 5);
    /// The edge computes the frame CRC only after streaming and sends it in a `FrameEnd`.
    pub const CRC_AT_END: Capabilities = Capabilities(1 << 6);

    /// No capabilities.
    pub const fn empty() -> Self {
        Capabilities(0)
    }

    /// Whether every bit of `other` is set here.
    pub const fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union of both sets.
    #[must_use]
    pub const fn with(self, other: Capabilities) -> Self {
        Capabilities(self.0 | other.0)
    }
}

/// Edge → host, first packet of every session.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Hello {
    /// The protocol version the edge speaks ([`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION)).
    pub protocol_version: u16,
    /// A stable identifier of the edge unit, such as its serial number.
    pub device_id: heapless::String<MAX_ID>,
    /// The edge's firmware version.
    pub firmware_version: Version,
    /// What the edge captures.
    pub sensor: Sensor,
    /// Largest packet the edge can send, in bytes (see PROTOCOL.md, "Packet size").
    pub max_packet_tx: u32,
    /// Largest packet the edge can receive, in bytes.
    pub max_packet_rx: u32,
    /// Optional features the edge offers.
    pub capabilities: Capabilities,
}

/// A rectangle within the sensor's frame, in pixels.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Roi {
    /// Left edge.
    pub x: u16,
    /// Top edge.
    pub y: u16,
    /// Width.
    pub width: u16,
    /// Height.
    pub height: u16,
}

/// Host → edge, the answer to an acceptable [`Hello`]: the session's terms.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Welcome {
    /// The protocol version both sides now speak.
    pub protocol_version: u16,
    /// Identifies this session; a new value after a host restart.
    pub session_id: u32,
    /// Largest packet the edge may send to the host, in bytes.
    pub max_packet_to_host: u32,
    /// Largest packet the host will send to the edge, in bytes.
    pub max_packet_to_edge: u32,
    /// Frames the edge may start before the first [`Credit`](super::Credit): frames with
    /// `seq < initial_credits`.
    pub initial_credits: u32,
    /// Region the host wants, when the edge has [`Capabilities::ROI`].
    pub roi: Option<Roi>,
    /// Frame rate the host wants, in thousandths of a frame per second.
    pub fps_milli: Option<u32>,
}

/// Why the host refused an edge.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RejectReason {
    /// The host does not speak the edge's protocol version.
    UnsupportedVersion,
    /// The edge's packet sizes are below the protocol's minimum.
    PacketTooSmall,
    /// The host cannot process the edge's pixel format or frame size.
    UnsupportedFormat,
    /// The host already serves another edge.
    Busy,
}

/// Host → edge, the answer to a [`Hello`] the host cannot accept.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Reject {
    /// Why.
    pub reason: RejectReason,
    /// Oldest protocol version the host speaks.
    pub supported_min: u16,
    /// Newest protocol version the host speaks.
    pub supported_max: u16,
}
