//! The incremental stream decoder: bytes in, checked packets out.

use super::{DecodeError, check_crc, cobs, parse_message};
use crate::message::{Message, MessageKind};

/// Counts of what a [`Decoder`] has seen since it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DecoderStats {
    /// Bytes fed in and consumed.
    pub bytes: u64,
    /// Packets delivered intact.
    pub packets: u64,
    /// Empty frames (two delimiters in a row), skipped: senders may send an extra delimiter to
    /// flush the line.
    pub empty_frames: u64,
    /// Frames longer than the buffer.
    pub oversize: u64,
    /// Frames with invalid COBS stuffing.
    pub cobs_errors: u64,
    /// Frames too short for a message and CRC.
    pub too_short: u64,
    /// Frames with a CRC mismatch.
    pub crc_errors: u64,
    /// Frames with a good CRC but an invalid message.
    pub malformed: u64,
    /// Intact `Hello`s of another protocol version that this version cannot parse
    /// ([`DecodeError::OtherVersionHello`]); not damage, so not in [`rejected`](Self::rejected).
    pub other_version_hellos: u64,
}

impl DecoderStats {
    /// Damaged frames rejected, for any reason.
    pub fn rejected(&self) -> u64 {
        self.oversize + self.cobs_errors + self.too_short + self.crc_errors + self.malformed
    }
}

/// Cuts a byte stream into packets at each `0x00`, unstuffs them, checks their CRC and parses
/// their message.
///
/// The buffer `B` (an array, a `&mut [u8]`, a `Vec<u8>`) bounds the memory used: a frame longer
/// than the buffer is reported as [`DecodeError::Oversize`] and skipped. Size it with
/// [`max_wire_len`](super::max_wire_len) of the largest packet the peer may send.
///
/// Feeding the same bytes in any split yields the same packets and errors.
///
/// ```
/// use dinoedge_proto::{Message, Ping, wire};
///
/// let mut out = [0u8; 64];
/// let bytes = wire::encode(&Message::Ping(Ping { id: 7, sent_us: 1_000 }), &mut out).unwrap();
/// let mut decoder = wire::Decoder::new([0u8; 64]);
/// let mut input = bytes;
/// let msg = decoder.decode(&mut input).unwrap().unwrap();
/// assert_eq!(msg, Message::Ping(Ping { id: 7, sent_us: 1_000 }));
/// ```
#[derive(Debug, Clone)]
pub struct Decoder<B> {
    buf: B,
    /// Stuffed bytes of the frame in progress held in `buf`.
    len: usize,
    /// Skipping an oversize frame up to its delimiter.
    discarding: bool,
    /// Bytes of the oversize frame skipped so far.
    skipped: usize,
    /// Length of the message (CRC stripped) of the packet ready in `buf`, if any.
    ready: Option<usize>,
    stats: DecoderStats,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Decoder<B> {
    /// A decoder that holds frames in `buf`.
    pub fn new(buf: B) -> Self {
        Decoder {
            buf,
            len: 0,
            discarding: false,
            skipped: 0,
            ready: None,
            stats: DecoderStats::default(),
        }
    }

    /// What it has seen so far.
    pub fn stats(&self) -> &DecoderStats {
        &self.stats
    }

    /// Bytes of an unfinished frame it holds or is skipping (e.g. to report a stream cut
    /// mid-packet).
    pub fn pending(&self) -> usize {
        if self.ready.is_some() {
            0
        } else {
            self.len + self.skipped
        }
    }

    /// Forgets any unfinished frame, as after a reconnect. Statistics are kept.
    pub fn reset(&mut self) {
        self.len = 0;
        self.discarding = false;
        self.skipped = 0;
        self.ready = None;
    }

    /// Consumes bytes from the front of `input` until a frame ends, and returns what that
    /// frame was: `Some(Ok(kind))` when a valid packet is ready (read it with
    /// [`message`](Self::message) before the next call), `Some(Err(_))` for a damaged frame
    /// (or an intact `Hello` of another protocol version:
    /// [`DecodeError::OtherVersionHello`]), or `None` once `input` is used up without a frame
    /// ending.
    pub fn push(&mut self, input: &mut &[u8]) -> Option<Result<MessageKind, DecodeError>> {
        if self.ready.take().is_some() {
            self.len = 0;
        }
        loop {
            let Some(end) = memchr::memchr(super::DELIMITER, input) else {
                self.stats.bytes += input.len() as u64;
                let taken = core::mem::take(input);
                return self.append(taken).err().map(Err);
            };
            let (frame, rest) = input.split_at(end);
            *input = rest.get(1..).unwrap_or_default();
            self.stats.bytes += end as u64 + 1;
            if self.discarding {
                self.discarding = false;
                self.skipped = 0;
                continue;
            }
            if let Err(e) = self.append(frame) {
                self.discarding = false;
                self.skipped = 0;
                return Some(Err(e));
            }
            if self.len == 0 {
                self.stats.empty_frames += 1;
                continue;
            }
            return Some(self.finish_frame());
        }
    }

    /// Feeds bytes until a frame ends and returns its message, as [`push`](Self::push) then
    /// [`message`](Self::message).
    pub fn decode(&mut self, input: &mut &[u8]) -> Option<Result<Message<'_>, DecodeError>> {
        match self.push(input)? {
            Ok(_) => Some(self.message()),
            Err(e) => Some(Err(e)),
        }
    }

    /// The message of the packet that the last [`push`](Self::push) completed; it borrows
    /// from the decoder's buffer.
    pub fn message(&self) -> Result<Message<'_>, DecodeError> {
        let len = self.ready.ok_or(DecodeError::NoPacket)?;
        let body = self.buf.as_ref().get(..len).ok_or(DecodeError::NoPacket)?;
        parse_message(body)
    }

    /// The postcard bytes (CRC checked and removed) of the packet that the last
    /// [`push`](Self::push) completed, unparsed: for a layer that forwards or seals packets
    /// without reading them.
    pub fn body(&self) -> Result<&[u8], DecodeError> {
        let len = self.ready.ok_or(DecodeError::NoPacket)?;
        self.buf.as_ref().get(..len).ok_or(DecodeError::NoPacket)
    }

    /// The same bytes as [`body`](Self::body), writable: a layer that opens a sealed packet
    /// decrypts it where it lies.
    pub fn body_mut(&mut self) -> Result<&mut [u8], DecodeError> {
        let len = self.ready.ok_or(DecodeError::NoPacket)?;
        self.buf
            .as_mut()
            .get_mut(..len)
            .ok_or(DecodeError::NoPacket)
    }

    /// Appends stuffed bytes of the current frame, or starts discarding when they overflow.
    fn append(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        if self.discarding {
            self.skipped = self.skipped.saturating_add(bytes.len());
            return Ok(());
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let buf = self.buf.as_mut();
        let limit = buf.len();
        let end = self.len + bytes.len();
        match buf.get_mut(self.len..end) {
            Some(slot) => {
                slot.copy_from_slice(bytes);
                self.len = end;
                Ok(())
            }
            None => {
                self.skipped = end;
                self.len = 0;
                self.discarding = true;
                self.stats.oversize += 1;
                Err(DecodeError::Oversize { limit })
            }
        }
    }

    /// Unstuffs, checks and parses the complete frame held in the buffer.
    fn finish_frame(&mut self) -> Result<MessageKind, DecodeError> {
        let stuffed_len = core::mem::take(&mut self.len);
        let frame = self.buf.as_mut().get_mut(..stuffed_len).unwrap_or_default();
        let result = match cobs::decode_in_place(frame) {
            Err(at) => Err(DecodeError::Cobs {
                at,
                len: stuffed_len,
            }),
            Ok(n) => {
                let packet = frame.get(..n).unwrap_or_default();
                check_crc(packet)
                    .and_then(parse_message)
                    .map(|msg| (msg.kind(), n - super::CRC_LEN))
            }
        };
        match result {
            Ok((kind, body_len)) => {
                self.stats.packets += 1;
                self.ready = Some(body_len);
                Ok(kind)
            }
            Err(e) => {
                match e {
                    DecodeError::Cobs { .. } => self.stats.cobs_errors += 1,
                    DecodeError::TooShort { .. } => self.stats.too_short += 1,
                    DecodeError::Crc { .. } => self.stats.crc_errors += 1,
                    DecodeError::OtherVersionHello { .. } => self.stats.other_version_hellos += 1,
                    _ => self.stats.malformed += 1,
                }
                Err(e)
            }
        }
    }
}
