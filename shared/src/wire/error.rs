//! Errors of encoding and decoding packets.

/// Why a packet could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum EncodeError {
    /// The output buffer cannot hold the encoded packet.
    #[error("encode buffer of {available} bytes is too small: {needed} needed")]
    BufferTooSmall {
        /// The buffer's length.
        available: usize,
        /// A buffer length that would do.
        needed: usize,
    },
    /// The packet exceeds the size negotiated for the link.
    #[error("packet of {len} bytes exceeds the negotiated maximum of {max}")]
    PacketTooLarge {
        /// The packet's length (message plus CRC).
        len: usize,
        /// The negotiated maximum.
        max: usize,
    },
    /// The message cannot be serialised (cannot happen with the protocol's own types).
    #[error("message cannot be serialised")]
    Unserializable,
}

/// What was wrong inside a packet whose CRC was good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum MalformedKind {
    /// The wire id names no message.
    UnknownMessage,
    /// The message ends before all its fields.
    Truncated,
    /// Bytes remain after the message.
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// A varint is longer than its type allows.
    BadVarint,
    /// A bool is neither 0 nor 1.
    BadBool,
    /// A text is not UTF-8.
    BadUtf8,
    /// An option tag is neither 0 nor 1.
    BadOption,
    /// An enum tag names no variant.
    BadEnum,
    /// A bounded list or text is longer than its bound.
    TooLong,
    /// Anything else postcard refuses.
    Other,
}

impl MalformedKind {
    pub(crate) fn from_postcard(e: postcard::Error) -> Self {
        use postcard::Error as P;
        match e {
            P::DeserializeUnexpectedEnd => MalformedKind::Truncated,
            P::DeserializeBadVarint => MalformedKind::BadVarint,
            P::DeserializeBadBool => MalformedKind::BadBool,
            P::DeserializeBadChar | P::DeserializeBadUtf8 => MalformedKind::BadUtf8,
            P::DeserializeBadOption => MalformedKind::BadOption,
            P::DeserializeBadEnum => MalformedKind::BadEnum,
            // heapless reports an over-long String or Vec through serde's custom error.
            P::SerdeDeCustom => MalformedKind::TooLong,
            _ => MalformedKind::Other,
        }
    }
}

impl core::fmt::Display for MalformedKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MalformedKind::UnknownMessage => f.write_str("unknown message id"),
            MalformedKind::Truncated => f.write_str("message ends early"),
            MalformedKind::TrailingBytes { count } => write!(f, "{count} bytes after the message"),
            MalformedKind::BadVarint => f.write_str("bad varint"),
            MalformedKind::BadBool => f.write_str("bad bool"),
            MalformedKind::BadUtf8 => f.write_str("text is not UTF-8"),
            MalformedKind::BadOption => f.write_str("bad option tag"),
            MalformedKind::BadEnum => f.write_str("bad enum tag"),
            MalformedKind::TooLong => f.write_str("list or text longer than its bound"),
            MalformedKind::Other => f.write_str("invalid encoding"),
        }
    }
}

/// Why bytes from the link did not yield a packet. After any of these the decoder has already
/// resynchronised: the next delimiter starts a fresh packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DecodeError {
    /// More bytes arrived without a delimiter than the receive buffer holds; they are
    /// discarded up to the next delimiter.
    #[error("packet longer than the {limit}-byte receive buffer; skipped to the next delimiter")]
    Oversize {
        /// The receive buffer's size.
        limit: usize,
    },
    /// The COBS stuffing is invalid (a code byte points past the end of the frame).
    #[error("bad COBS stuffing at byte {at} of a {len}-byte frame")]
    Cobs {
        /// Offset of the bad code byte.
        at: usize,
        /// Length of the stuffed frame.
        len: usize,
    },
    /// The unstuffed packet is too short to hold a message and its CRC.
    #[error("packet of {len} bytes is too short for a message and its CRC")]
    TooShort {
        /// Its length.
        len: usize,
    },
    /// The packet's CRC does not match its contents.
    #[error("packet CRC mismatch: received {received:#010x}, computed {computed:#010x}")]
    Crc {
        /// The CRC at the end of the packet.
        received: u32,
        /// The CRC of the bytes before it.
        computed: u32,
    },
    /// The CRC is good but the message is not valid.
    #[error("malformed message (wire id {wire_id}): {kind}")]
    Malformed {
        /// What is wrong.
        kind: MalformedKind,
        /// The packet's first byte, the message's wire id.
        wire_id: u8,
    },
    /// The CRC is good and the packet is a `Hello`, but of protocol version `version`, not
    /// this crate's [`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION), and its body does not
    /// parse as this version's `Hello`. Not damage: the peer speaks another version (a host
    /// answers it with a `Reject` for `UnsupportedVersion`). Read with
    /// [`hello_version`](crate::message::hello_version).
    #[error(
        "Hello of protocol version {version}, which this side (version {}) cannot parse",
        crate::PROTOCOL_VERSION
    )]
    OtherVersionHello {
        /// The protocol version the `Hello` names.
        version: u16,
    },
    /// [`Decoder::message`](super::Decoder::message) was called with no packet ready.
    #[error("no decoded packet is ready")]
    NoPacket,
}
