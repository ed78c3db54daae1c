//! Negotiation: [`Hello`] from the edge, then [`Welcome`] or [`Reject`] from the host.

use serde::{Deserialize, Serialize};

use super::{MAX_ID, MessageKind, PixelFormat};

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
    /// The edge's last session, if it had one since boot: lets the host report the frames
    /// that vanished with that session's connection (added in protocol version 2; the last
    /// field, so a version 1 `Hello` ends before it).
    pub previous: Option<PreviousSession>,
}

/// A session the edge lost (link timeout, host restart, I/O error), told in its next
/// [`Hello`].
///
/// The edge numbered every frame it started in that session below `next_seq`; a host that
/// still knows the session (same `session_id`) reports each of those frames it has not yet
/// delivered or reported lost as lost with the connection.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PreviousSession {
    /// The host's `session_id` of that session, from its [`Welcome`].
    pub session_id: u32,
    /// The sequence number the edge would have given its next frame in that session: frames
    /// `..next_seq` (in wrapping order, from 0) were all started.
    pub next_seq: u32,
}

/// The `protocol_version` of a packet body (postcard bytes, CRC removed) whose message is a
/// [`Hello`], read without parsing the rest; `None` for any other body.
///
/// Every version of the protocol begins its `Hello` body the same way: the wire id `00`, then
/// `protocol_version` as a u16 varint. So a host can tell which version an edge speaks even
/// when the rest of its `Hello` has another layout, and refuse it by name rather than count a
/// damaged packet.
pub fn hello_version(body: &[u8]) -> Option<u16> {
    let mut bytes = body.iter().copied();
    if bytes.next()? != MessageKind::Hello.wire_id() {
        return None;
    }
    // A u16 varint takes at most 3 bytes (7 bits each, least significant group first).
    let mut value = 0u32;
    for shift in [0, 7, 14] {
        let byte = bytes.next()?;
        value |= u32::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return u16::try_from(value).ok();
        }
    }
    None
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;

    fn hello(previous: Option<PreviousSession>) -> Hello {
        Hello {
            protocol_version: crate::PROTOCOL_VERSION,
            device_id: heapless::String::try_from("US-0042").unwrap(),
            firmware_version: Version {
                major: 1,
                minor: 2,
                patch: 3,
            },
            sensor: Sensor {
                width: 640,
                height: 480,
                format: PixelFormat::Gray8,
                fps_milli: 30_000,
            },
            max_packet_tx: 4096,
            max_packet_rx: 1024,
            capabilities: Capabilities::EVENTS,
            previous,
        }
    }

    #[test]
    fn hello_version_reads_this_versions_hello() {
        let mut buf = [0u8; 128];
        for previous in [
            None,
            Some(PreviousSession {
                session_id: 7,
                next_seq: 300,
            }),
        ] {
            let body = postcard::to_slice(&Message::Hello(hello(previous)), &mut buf).unwrap();
            assert_eq!(hello_version(body), Some(crate::PROTOCOL_VERSION));
        }
    }

    #[test]
    fn hello_version_reads_a_version_1_hello() {
        // The version 1 golden Hello: no `previous` after the capabilities.
        let body = [
            0x00, 0x01, 0x07, 0x55, 0x53, 0x2d, 0x30, 0x30, 0x34, 0x32, 0x01, 0x02, 0x03, 0x80,
            0x05, 0xe0, 0x03, 0x00, 0xb0, 0xea, 0x01, 0x80, 0x20, 0x80, 0x08, 0x0c,
        ];
        assert_eq!(hello_version(&body), Some(1));
        // Only the first bytes count: a multi-byte version, then anything.
        assert_eq!(hello_version(&[0x00, 0xac, 0x02, 0xff]), Some(300));
        assert_eq!(hello_version(&[0x00, 0xff, 0xff, 0x03]), Some(u16::MAX));
    }

    #[test]
    fn hello_version_is_none_for_anything_else() {
        assert_eq!(hello_version(&[]), None, "empty");
        assert_eq!(hello_version(&[0x00]), None, "no version");
        assert_eq!(hello_version(&[0x00, 0x81]), None, "varint cut short");
        assert_eq!(
            hello_version(&[0x00, 0xff, 0xff, 0xff]),
            None,
            "over 3 bytes"
        );
        assert_eq!(
            hello_version(&[0x00, 0xff, 0xff, 0x04]),
            None,
            "over u16::MAX"
        );
        assert_eq!(hello_version(&[0x01, 0x02]), None, "a Welcome");
        assert_eq!(hello_version(&[0x13, 0x37, 0x42]), None, "garbage");
    }
}
