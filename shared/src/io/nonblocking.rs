//! Async packet reader and writer over tokio's `AsyncRead` / `AsyncWrite`.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{ReadError, ReadState, Step, WriteError, WriteState};
use crate::message::Message;
use crate::wire::DecoderStats;

/// Reads packets from an async byte stream (tokio-serial, a TCP socket).
#[derive(Debug)]
pub struct AsyncPacketReader<R> {
    inner: R,
    state: ReadState,
}

impl<R: AsyncRead + Unpin> AsyncPacketReader<R> {
    /// A reader for packets of up to `max_packet` bytes (message plus CRC).
    pub fn new(inner: R, max_packet: usize) -> Self {
        AsyncPacketReader {
            inner,
            state: ReadState::new(max_packet),
        }
    }

    /// The next message, `Ok(None)` at the end of the stream, or an error. After
    /// [`ReadError::Decode`] the reader has resynchronised: call it again for the next packet.
    ///
    /// Cancel-safe: dropping the future loses no bytes already read.
    pub async fn next_message(&mut self) -> Result<Option<Message<'_>>, ReadError> {
        loop {
            match self.state.step()? {
                Step::Ready => break,
                Step::Refill => {
                    let n = self.inner.read(&mut self.state.buf).await?;
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

    /// Gives the stream back.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// Writes packets to an async byte stream.
#[derive(Debug)]
pub struct AsyncPacketWriter<W> {
    inner: W,
    state: WriteState,
}

impl<W: AsyncWrite + Unpin> AsyncPacketWriter<W> {
    /// A writer for packets of up to `max_packet` bytes (message plus CRC).
    pub fn new(inner: W, max_packet: usize) -> Self {
        AsyncPacketWriter {
            inner,
            state: WriteState::new(max_packet),
        }
    }

    /// Encodes and writes one packet; returns the bytes written.
    pub async fn send(&mut self, msg: &Message<'_>) -> Result<usize, WriteError> {
        let bytes = self.state.encode(msg)?;
        self.inner.write_all(bytes).await?;
        Ok(bytes.len())
    }

    /// Flushes the stream.
    pub async fn flush(&mut self) -> Result<(), WriteError> {
        Ok(self.inner.flush().await?)
    }

    /// Gives the stream back.
    pub fn into_inner(self) -> W {
        self.inner
    }
}
