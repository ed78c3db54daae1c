//! The two halves of an established secure connection: the reading half opens the edge's
//! sealed packets and hands the session the same packets in the clear; the writing half
//! seals the session's packets. What goes past them above (the session, a recording tap) is
//! the clear protocol, so recordings and replays stay exact.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use dinoedge_proto::secure::{Channel, OpenError, SEAL_OVERHEAD};
use dinoedge_proto::wire::{self, Decoder};
use dinoedge_proto::{Message, MessageKind};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::audit::{AuditEntry, SecurityReport};
use crate::link::source::{ReadHalf, WriteHalf};

/// Bytes asked of the transport per read.
const READ_CHUNK: usize = 64 * 1024;

/// Who is on the other end, for the audit trail.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// Address or device path.
    pub peer: String,
    /// The key's id, as printed.
    pub key_id: String,
    /// The unit the key belongs to.
    pub device_id: String,
}

/// The reading half: sealed packets in, clear packets out.
pub struct SealedRead {
    inner: ReadHalf,
    decoder: Decoder<Vec<u8>>,
    channel: Channel,
    raw: Vec<u8>,
    /// Clear packets ready for the reader.
    plain: Vec<u8>,
    plain_pos: usize,
    /// Set once the edge's `Hello` named the key's unit.
    hello_checked: bool,
    peer: PeerInfo,
    report: Arc<Mutex<SecurityReport>>,
    /// Ends the connection once the clear bytes before it are read.
    failed: Option<String>,
}

impl SealedRead {
    /// Opens what `inner` reads under `channel`; `early` are bytes already read after the
    /// handshake. Packets of up to `max_packet` bytes (clear) are taken.
    pub fn new(
        inner: ReadHalf,
        channel: Channel,
        max_packet: usize,
        peer: PeerInfo,
        report: Arc<Mutex<SecurityReport>>,
        early: &[u8],
    ) -> Self {
        let sealed = max_packet + SEAL_OVERHEAD;
        let mut read = SealedRead {
            inner,
            decoder: Decoder::new(vec![0u8; wire::max_wire_len(sealed)]),
            channel,
            raw: vec![0u8; READ_CHUNK],
            plain: Vec::new(),
            plain_pos: 0,
            hello_checked: false,
            peer,
            report,
            failed: None,
        };
        read.take(early);
        read
    }

    fn count(&self, what: fn(&mut SecurityReport)) {
        let mut report = match self.report.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        what(&mut report);
    }

    /// Opens the packets in `bytes` and queues them in the clear.
    fn take(&mut self, mut bytes: &[u8]) {
        while self.failed.is_none()
            && let Some(result) = self.decoder.push(&mut bytes)
        {
            if result.is_err() {
                self.count(|r| r.packets_damaged += 1);
                continue;
            }
            let opened = match self.decoder.message() {
                Ok(Message::Sealed(sealed)) => {
                    // Where the data lies in the packet, to decrypt it there without a copy.
                    let (counter, len) = (sealed.counter, sealed.data.len());
                    let at = self.decoder.body().map_or(0, |b| {
                        (sealed.data.as_ptr() as usize) - (b.as_ptr() as usize)
                    });
                    match self.decoder.body_mut() {
                        Ok(body) => match body.get_mut(at..at + len) {
                            Some(data) => self
                                .channel
                                .open_in_place(counter, data)
                                .map(|plain| data.get(..plain).unwrap_or_default()),
                            None => Err(OpenError::Size { len }),
                        },
                        Err(_) => Err(OpenError::Size { len }),
                    }
                }
                Ok(Message::SecureHello(_)) => {
                    self.failed = Some(
                        "the edge began a new secure handshake (it restarted); reconnecting"
                            .to_owned(),
                    );
                    break;
                }
                Ok(_) => {
                    self.count(|r| r.packets_clear_refused += 1);
                    continue;
                }
                Err(_) => {
                    self.count(|r| r.packets_damaged += 1);
                    continue;
                }
            };
            let body = match opened {
                Ok(body) => body,
                Err(OpenError::Replayed { .. } | OpenError::TooOld { .. }) => {
                    self.count(|r| r.packets_replayed += 1);
                    tracing::warn!(peer = %self.peer.peer, "replayed packet dropped");
                    continue;
                }
                Err(e) => {
                    self.count(|r| r.packets_forged += 1);
                    tracing::warn!(peer = %self.peer.peer, error = %e, "packet dropped");
                    continue;
                }
            };
            if !self.hello_checked && body.first() == Some(&MessageKind::Hello.wire_id()) {
                if let Ok(Message::Hello(hello)) = wire::parse_body(body)
                    && hello.device_id.as_str() != self.peer.device_id
                {
                    let claimed = hello.device_id.to_string();
                    let entry = AuditEntry {
                        at_unix_ms: super::unix_ms(),
                        peer: self.peer.peer.clone(),
                        device_id: Some(self.peer.device_id.clone()),
                        key_id: Some(self.peer.key_id.clone()),
                        outcome: "refused",
                        reason: Some("device_mismatch"),
                    };
                    self.count_entry(entry);
                    self.failed = Some(format!(
                        "the edge calls itself {claimed:?} but holds the key of {:?}; refused",
                        self.peer.device_id
                    ));
                    break;
                }
                self.hello_checked = true;
            }
            // Framed straight onto the end of what waits for the reader.
            let start = self.plain.len();
            self.plain.resize(
                start + wire::encode_buffer_len(body.len() + wire::CRC_LEN),
                0,
            );
            let framed = self
                .plain
                .get_mut(start..)
                .and_then(|tail| wire::encode_body(body, tail).ok().map(<[u8]>::len));
            self.plain.truncate(start + framed.unwrap_or(0));
        }
    }

    fn count_entry(&self, entry: AuditEntry) {
        let mut report = match self.report.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        report.record(entry);
    }
}

impl AsyncRead for SealedRead {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.plain_pos < this.plain.len() {
                let ready = this.plain.get(this.plain_pos..).unwrap_or_default();
                let n = ready.len().min(buf.remaining());
                buf.put_slice(ready.get(..n).unwrap_or_default());
                this.plain_pos += n;
                if this.plain_pos == this.plain.len() {
                    this.plain.clear();
                    this.plain_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if let Some(reason) = this.failed.take() {
                return Poll::Ready(Err(std::io::Error::other(reason)));
            }
            let mut raw = std::mem::take(&mut this.raw);
            let mut read = ReadBuf::new(&mut raw);
            let polled = this.inner.as_mut().poll_read(cx, &mut read);
            let n = read.filled().len();
            match polled {
                Poll::Ready(Ok(())) if n == 0 => {
                    this.raw = raw;
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Ok(())) => {
                    this.take(raw.get(..n).unwrap_or_default());
                    this.raw = raw;
                }
                other => {
                    this.raw = raw;
                    return other;
                }
            }
        }
    }
}

/// The writing half: the session's clear packets in, sealed packets out.
pub struct SealedWrite {
    inner: WriteHalf,
    cutter: Decoder<Vec<u8>>,
    channel: Channel,
    scratch: Vec<u8>,
    tx: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
}

impl SealedWrite {
    /// Seals what is written under `channel` onto `inner`; packets of up to `max_packet`
    /// bytes (clear).
    pub fn new(inner: WriteHalf, channel: Channel, max_packet: usize) -> Self {
        let sealed = max_packet + SEAL_OVERHEAD;
        SealedWrite {
            inner,
            cutter: Decoder::new(vec![0u8; wire::max_wire_len(max_packet)]),
            channel,
            scratch: vec![0u8; sealed],
            tx: vec![0u8; wire::encode_buffer_len(sealed)],
            out: Vec::new(),
            out_pos: 0,
        }
    }

    /// Writes out what is sealed and waiting.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.out_pos < self.out.len() {
            let pending = self.out.get(self.out_pos..).unwrap_or_default();
            let n = ready!(self.inner.as_mut().poll_write(cx, pending))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.out_pos += n;
        }
        self.out.clear();
        self.out_pos = 0;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for SealedWrite {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        // What was sealed before goes out first: a stalled edge holds back the writer.
        ready!(this.poll_drain(cx))?;
        let mut input = buf;
        while let Some(result) = this.cutter.push(&mut input) {
            let Ok(body) = result.and_then(|_| this.cutter.body()) else {
                continue;
            };
            let len = body.len();
            let Some(slot) = this.scratch.get_mut(..len) else {
                tracing::error!(len, "a packet for the edge is too large to seal; not sent");
                continue;
            };
            slot.copy_from_slice(body);
            match this
                .channel
                .seal_body(len, usize::MAX, &mut this.scratch, &mut this.tx)
            {
                Ok(sealed) => this.out.extend_from_slice(sealed),
                Err(e) => {
                    return Poll::Ready(Err(std::io::Error::other(format!(
                        "cannot seal a packet for the edge: {e}"
                    ))));
                }
            }
        }
        // Accepted whole; what the transport cannot take yet waits for the next call.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        self.inner.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        self.inner.as_mut().poll_shutdown(cx)
    }
}
