//! Framing: a [`Message`] on the wire is `COBS(postcard(message) ‖ CRC-32 LE)` followed by
//! one `0x00` delimiter. See PROTOCOL.md for the byte-level description.
//!
//! [`encode`] writes one packet into a caller's buffer; [`Decoder`] takes a byte stream in
//! pieces of any size and yields checked packets, resynchronising at the next delimiter after
//! any damage.

mod cobs;
mod decoder;
mod error;

pub use cobs::max_encoded_len as max_stuffed_len;
pub use decoder::{Decoder, DecoderStats};
pub use error::{DecodeError, EncodeError, MalformedKind};

use crate::message::{Message, MessageKind};

/// Bytes of the CRC that ends every packet.
pub const CRC_LEN: usize = 4;

/// The delimiter that ends every packet on the wire.
pub const DELIMITER: u8 = 0x00;

/// Largest FrameChunk header (wire id, seq, offset, data length as varints), in bytes.
pub const CHUNK_HEADER_MAX: usize = 1 + 5 + 5 + 5;

/// CRC-32/ISO-HDLC (the zlib/Ethernet CRC: reflected polynomial 0xEDB88320, initial value and
/// final XOR 0xFFFFFFFF) of `bytes`; the CRC of packets and of frame data.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Incremental [`crc32`], for frame data that arrives or leaves in pieces.
#[derive(Clone, Default)]
pub struct FrameCrc(crc32fast::Hasher);

impl FrameCrc {
    /// A CRC over no bytes yet.
    pub fn new() -> Self {
        FrameCrc(crc32fast::Hasher::new())
    }

    /// Adds `bytes` to the CRC.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The CRC of everything added so far.
    pub fn value(&self) -> u32 {
        self.0.clone().finalize()
    }
}

impl core::fmt::Debug for FrameCrc {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "FrameCrc({:#010x})", self.value())
    }
}

/// Bytes on the wire, delimiter included, of a packet of `packet_len` bytes (message plus
/// CRC) in the worst case; size transmit and receive buffers with it.
pub const fn max_wire_len(packet_len: usize) -> usize {
    cobs::max_encoded_len(packet_len) + 1
}

/// Bytes a buffer handed to [`encode`] needs so that any packet of up to `packet_len` bytes
/// fits.
pub const fn encode_buffer_len(packet_len: usize) -> usize {
    // The packet is serialised behind a headroom that grows with the buffer (len / 254 + 2);
    // this length leaves room for that headroom, the packet and the delimiter, and is never
    // less than `max_wire_len(packet_len)`.
    packet_len + packet_len / 253 + 4
}

/// Most pixel bytes one FrameChunk may carry in a packet of at most `max_packet` bytes.
pub const fn chunk_capacity(max_packet: usize) -> usize {
    max_packet.saturating_sub(CHUNK_HEADER_MAX + CRC_LEN)
}

/// Encodes `msg` as one wire packet (COBS frame plus delimiter) into `buf` and returns the
/// bytes to send, a prefix of `buf`.
///
/// `buf` needs [`encode_buffer_len`] of the packet's length; a buffer that is too small gives
/// [`EncodeError::BufferTooSmall`], never a partial packet.
pub fn encode<'b>(msg: &Message<'_>, buf: &'b mut [u8]) -> Result<&'b [u8], EncodeError> {
    encode_limited(msg, usize::MAX, buf)
}

/// Like [`encode`], and fails with [`EncodeError::PacketTooLarge`] if the packet (message
/// plus CRC) exceeds `max_packet` bytes, the size negotiated for the link.
pub fn encode_limited<'b>(
    msg: &Message<'_>,
    max_packet: usize,
    buf: &'b mut [u8],
) -> Result<&'b [u8], EncodeError> {
    // Only on failure: the packet's exact length tells which limit it broke.
    let too_small = |buf_len: usize| {
        let packet_len = serialized_len(msg) + CRC_LEN;
        if packet_len > max_packet {
            EncodeError::PacketTooLarge {
                len: packet_len,
                max: max_packet,
            }
        } else {
            EncodeError::BufferTooSmall {
                available: buf_len,
                needed: encode_buffer_len(packet_len),
            }
        }
    };
    let buf_len = buf.len();
    let start = cobs::headroom(buf_len);
    let body_end = buf_len
        .checked_sub(CRC_LEN)
        .ok_or_else(|| too_small(buf_len))?;
    let body = buf
        .get_mut(start..body_end)
        .ok_or_else(|| too_small(buf_len))?;
    let body_len = match postcard::to_slice(msg, body) {
        Ok(used) => used.len(),
        Err(postcard::Error::SerializeBufferFull) => return Err(too_small(buf_len)),
        Err(_) => return Err(EncodeError::Unserializable),
    };
    let packet_len = body_len + CRC_LEN;
    if packet_len > max_packet {
        return Err(EncodeError::PacketTooLarge {
            len: packet_len,
            max: max_packet,
        });
    }
    let crc = crc32(buf.get(start..start + body_len).unwrap_or_default());
    buf.get_mut(start + body_len..start + packet_len)
        .ok_or_else(|| too_small(buf_len))?
        .copy_from_slice(&crc.to_le_bytes());
    let stuffed =
        cobs::encode_in_place(buf, start, packet_len).ok_or_else(|| too_small(buf_len))?;
    *buf.get_mut(stuffed).ok_or_else(|| too_small(buf_len))? = DELIMITER;
    buf.get(..stuffed + 1).ok_or_else(|| too_small(buf_len))
}

/// Frames a message's postcard bytes (`body`, as [`parse_body`] takes them) as one wire
/// packet into `buf`, as [`encode`] frames a [`Message`]: for bytes that arrive already
/// serialised, such as the inner message of a [`Sealed`](crate::Sealed) packet.
pub fn encode_body<'b>(body: &[u8], buf: &'b mut [u8]) -> Result<&'b [u8], EncodeError> {
    let packet_len = body.len() + CRC_LEN;
    let buf_len = buf.len();
    let too_small = EncodeError::BufferTooSmall {
        available: buf_len,
        needed: encode_buffer_len(packet_len),
    };
    let start = cobs::headroom(buf_len);
    buf.get_mut(start..start + body.len())
        .ok_or(too_small)?
        .copy_from_slice(body);
    buf.get_mut(start + body.len()..start + packet_len)
        .ok_or(too_small)?
        .copy_from_slice(&crc32(body).to_le_bytes());
    let stuffed = cobs::encode_in_place(buf, start, packet_len).ok_or(too_small)?;
    *buf.get_mut(stuffed).ok_or(too_small)? = DELIMITER;
    buf.get(..stuffed + 1).ok_or(too_small)
}

/// Length of `msg` once serialised by postcard, without CRC or framing.
pub fn serialized_len(msg: &Message<'_>) -> usize {
    postcard::experimental::serialized_size(msg).unwrap_or(usize::MAX / 2)
}

/// Decodes one packet body (message plus CRC, already unstuffed): checks the CRC, then parses
/// the message. This is what [`Decoder`] does for each frame it cuts from the stream.
///
/// A `Hello` of another protocol version that this version cannot parse gives
/// [`DecodeError::OtherVersionHello`] with the version it names.
pub fn decode_packet(packet: &[u8]) -> Result<Message<'_>, DecodeError> {
    let body = check_crc(packet)?;
    parse_message(body)
}

/// Checks the CRC at the end of `packet` and returns the message bytes before it.
pub(crate) fn check_crc(packet: &[u8]) -> Result<&[u8], DecodeError> {
    if packet.len() <= CRC_LEN {
        return Err(DecodeError::TooShort { len: packet.len() });
    }
    let (body, tail) = packet.split_at(packet.len() - CRC_LEN);
    let mut le = [0u8; CRC_LEN];
    le.copy_from_slice(tail);
    let received = u32::from_le_bytes(le);
    let computed = crc32(body);
    if received == computed {
        Ok(body)
    } else {
        Err(DecodeError::Crc { received, computed })
    }
}

/// Parses a message's postcard bytes (a packet body without its CRC, or the inner bytes of a
/// [`Sealed`](crate::Sealed) packet); the bytes must hold exactly one message.
pub fn parse_body(body: &[u8]) -> Result<Message<'_>, DecodeError> {
    parse_message(body)
}

/// Parses a postcard message that must fill `body` exactly; a `Hello` of another protocol
/// version that does not parse is [`DecodeError::OtherVersionHello`], not malformed.
pub(crate) fn parse_message(body: &[u8]) -> Result<Message<'_>, DecodeError> {
    parse_this_version(body).map_err(|e| match crate::message::hello_version(body) {
        Some(version) if version != crate::PROTOCOL_VERSION => {
            DecodeError::OtherVersionHello { version }
        }
        _ => e,
    })
}

fn parse_this_version(body: &[u8]) -> Result<Message<'_>, DecodeError> {
    let wire_id = body.first().copied().unwrap_or(0);
    let kind = MessageKind::from_wire_id(wire_id);
    if kind.is_none() {
        return Err(DecodeError::Malformed {
            kind: MalformedKind::UnknownMessage,
            wire_id,
        });
    }
    match postcard::take_from_bytes::<Message<'_>>(body) {
        Ok((msg, [])) => Ok(msg),
        Ok((_, rest)) => Err(DecodeError::Malformed {
            kind: MalformedKind::TrailingBytes { count: rest.len() },
            wire_id,
        }),
        Err(e) => Err(DecodeError::Malformed {
            kind: MalformedKind::from_postcard(e),
            wire_id,
        }),
    }
}
