//! Blocking packet reader and writer over `std::io`.

use std::io::{Read, Write};

use super::{ReadError, ReadState, Step, WriteError, WriteState};
use crate::message::Message;
use crate::wire::DecoderStats;

/// Reads packets from a byte stream (a serial port, a socket, a recording).
///
/// ```
/// use dinoedge_proto::{Message, Ping, io::{PacketReader, PacketWriter}};
///
/// let mut wire = Vec::new();
/// PacketWriter::new(&mut wire, 1024).send(&Message::Ping(Ping { id: 1, sent_us: 5 })).unwrap();
/// let mut reader = PacketReader::new(&wire[..], 1024);
/// assert!(matches!(reader.next_message().unwrap(), Some(Message::Ping(_))));
/// assert!(reader.next_message().unwrap().is_none());
/// ```
#[derive(Debug)]
pub struct PacketReader<R> {
    inner: R,
    state: ReadState,
}

impl<R: Read> PacketReader<R> {
    /// A reader for packets of up to `max_packet` bytes (message plus CRC).
    pub fn new(inner: R, max_packet: usize) -> Self {
        PacketReader {
            inner,
            state: ReadState::new(max_packet),
        }
    }

    /// The next message, `Ok(None)` at the end of the stream, or an error. After
    /// [`ReadError::Decode`] the reader has resynchronised: call it again for the next packet.
    pub fn next_message(&mut self) -> Result<Option<Message<'_>>, ReadError> {
        loop {
            match self.state.step()? {
                Step::Ready => break,
                Step::Refill => {
                    let n = loop {
                        match self.inner.read(&mut self.state.buf) {
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                            other => break other?,
                        }
                    };
                    if !self.state.filled(n)? {
                        return Ok(None);
                    }
                }
            }
        }
        Ok(Some(self.state.decoder.message()?))
    }

    /// The decoder's counters.
    pub fn stats(&self) -> &DecoderStats {
        self.state.decoder.stats()
    }

    /// The stream it reads.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Gives the stream back.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// Writes packets to a byte stream.
#[derive(Debug)]
pub struct PacketWriter<W> {
    inner: W,
    state: WriteState,
}

impl<W: Write> PacketWriter<W> {
    /// A writer for packets of up to `max_packet` bytes (message plus CRC).
    pub fn new(inner: W, max_packet: usize) -> Self {
        PacketWriter {
            inner,
            state: WriteState::new(max_packet),
        }
    }

    /// Encodes and writes one packet; returns the bytes written.
    pub fn send(&mut self, msg: &Message<'_>) -> Result<usize, WriteError> {
        let bytes = self.state.encode(msg)?;
        self.inner.write_all(bytes)?;
        Ok(bytes.len())
    }

    /// Flushes the stream.
    pub fn flush(&mut self) -> Result<(), WriteError> {
        Ok(self.inner.flush()?)
    }

    /// Gives the stream back.
    pub fn into_inner(self) -> W {
        self.inner
    }
}
