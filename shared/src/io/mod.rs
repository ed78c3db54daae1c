//! Reading and writing packets on byte streams: blocking over `std::io`, and async over
//! tokio (feature `tokio`). Both wrap the same [`Decoder`](crate::wire::Decoder) and
//! [`encode`](crate::wire::encode), so they frame bytes identically.

mod blocking;
#[cfg(feature = "tokio")]
mod nonblocking;

pub use blocking::{PacketReader, PacketWriter};
#[cfg(feature = "tokio")]
pub use nonblocking::{AsyncPacketReader, AsyncPacketWriter};

use crate::wire::{DecodeError, EncodeError};

/// Bytes asked of the stream per read.
const READ_CHUNK: usize = 64 * 1024;

/// Why a packet could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The stream failed.
    #[error("reading the link: {0}")]
    Io(#[from] std::io::Error),
    /// A damaged packet, or an intact `Hello` of another protocol version
    /// ([`DecodeError::OtherVersionHello`]); the reader has resynchronised and may be read
    /// again.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The stream ended inside a packet.
    #[error("the link ended inside a packet ({pending} bytes of it received)")]
    Truncated {
        /// Bytes of the unfinished packet.
        pending: usize,
    },
}

/// Why a packet could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The stream failed.
    #[error("writing the link: {0}")]
    Io(#[from] std::io::Error),
    /// The message could not be encoded (too large for the link's packet size).
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// A read buffer and a decoder: the state both readers share.
#[derive(Debug)]
struct ReadState {
    decoder: crate::wire::Decoder<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
}

/// What the reader should do next.
enum Step {
    /// A packet is ready in the decoder.
    Ready,
    /// The buffered bytes are used up: read more.
    Refill,
}

impl ReadState {
    fn new(max_packet: usize) -> Self {
        ReadState {
            decoder: crate::wire::Decoder::new(vec![0u8; crate::wire::max_wire_len(max_packet)]),
            buf: vec![0u8; READ_CHUNK],
            pos: 0,
            filled: 0,
        }
    }

    /// Runs the decoder over the buffered bytes.
    fn step(&mut self) -> Result<Step, DecodeError> {
        let mut input = self.buf.get(self.pos..self.filled).unwrap_or_default();
        let before = input.len();
        let outcome = self.decoder.push(&mut input);
        self.pos += before - input.len();
        match outcome {
            Some(Ok(_)) => Ok(Step::Ready),
            Some(Err(e)) => Err(e),
            None => Ok(Step::Refill),
        }
    }

    /// Takes `n` freshly read bytes into account; `n == 0` is the end of the stream.
    fn filled(&mut self, n: usize) -> Result<bool, ReadError> {
        self.pos = 0;
        self.filled = n;
        if n > 0 {
            return Ok(true);
        }
        match self.decoder.pending() {
            0 => Ok(false),
            pending => {
                self.decoder.reset();
                Err(ReadError::Truncated { pending })
            }
        }
    }
}

/// An encode buffer with the link's packet limit: the state both writers share.
#[derive(Debug)]
struct WriteState {
    buf: Vec<u8>,
    max_packet: usize,
}

impl WriteState {
    fn new(max_packet: usize) -> Self {
        WriteState {
            buf: vec![0u8; crate::wire::encode_buffer_len(max_packet)],
            max_packet,
        }
    }

    fn encode(&mut self, msg: &crate::Message<'_>) -> Result<&[u8], EncodeError> {
        crate::wire::encode_limited(msg, self.max_packet, &mut self.buf)
    }
}
