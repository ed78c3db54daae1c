//! Taps on a connection's halves: every byte read or written passes on unchanged and is
//! recorded with its time, as it happens. [`TappedSource`] puts them on every connection a
//! source opens.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::link::{Connection, LinkConfig, OpenFuture, Source};

use super::format::RecordKind;
use super::writer::RecordingWriter;

/// A recording shared by both halves of a tapped transport (and by whoever notes the
/// connection's opening and end).
pub type SharedRecording = Arc<Mutex<RecordingWriter>>;

/// Records `payload`; a failing disk is logged once and remembered by the writer, whose
/// `finish` reports it (the link goes on: losing the recording must not lose the frames).
pub fn record(recording: &SharedRecording, kind: RecordKind, payload: &[u8]) {
    let mut w = match recording.lock() {
        Ok(w) => w,
        Err(poisoned) => poisoned.into_inner(),
    };
    let failed_before = w.failed();
    if let Err(e) = w.write(kind, payload)
        && !failed_before
    {
        tracing::error!(error = %e, "recording failed; the link goes on unrecorded");
    }
}

/// The reading half of a transport, recording what the edge sends.
pub struct TapRead<R> {
    inner: R,
    recording: SharedRecording,
}

impl<R> TapRead<R> {
    /// Taps `inner`.
    pub fn new(inner: R, recording: SharedRecording) -> Self {
        TapRead { inner, recording }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for TapRead<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            let new = buf.filled().get(before..).unwrap_or_default();
            if !new.is_empty() {
                record(&self.recording, RecordKind::EdgeToHost, new);
            }
        }
        polled
    }
}

/// The writing half of a transport, recording what the host sends.
pub struct TapWrite<W> {
    inner: W,
    recording: SharedRecording,
}

impl<W> TapWrite<W> {
    /// Taps `inner`.
    pub fn new(inner: W, recording: SharedRecording) -> Self {
        TapWrite { inner, recording }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for TapWrite<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            let sent = buf.get(..*n).unwrap_or_default();
            if !sent.is_empty() {
                record(&self.recording, RecordKind::HostToEdge, sent);
            }
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A source whose every connection is recorded: its bytes both ways, and when it opens and
/// ends.
pub struct TappedSource {
    inner: Box<dyn Source>,
    recording: SharedRecording,
}

impl TappedSource {
    /// Records every connection `inner` opens from now on into `recording`.
    pub fn new(inner: Box<dyn Source>, recording: SharedRecording) -> Self {
        TappedSource { inner, recording }
    }
}

impl Source for TappedSource {
    fn open(&mut self) -> OpenFuture<'_> {
        Box::pin(async move {
            let Some(connection) = self.inner.open().await? else {
                return Ok(None);
            };
            let rec = self.recording.clone();
            record(
                &rec,
                RecordKind::Connected,
                self.inner.describe().as_bytes(),
            );
            Ok(Some(Connection {
                read: Box::pin(TapRead::new(connection.read, rec.clone())),
                write: Box::pin(TapWrite::new(connection.write, rec)),
                peer: connection.peer,
            }))
        })
    }

    fn closed(&mut self, reason: &str) {
        self.inner.closed(reason);
        record(&self.recording, RecordKind::Disconnected, reason.as_bytes());
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn configure(&self, config: &mut LinkConfig) {
        self.inner.configure(config);
    }

    fn is_live(&self) -> bool {
        self.inner.is_live()
    }
}
