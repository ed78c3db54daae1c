//! Byte-stream transports to the edge: a serial device (UART, USB CDC-ACM, a pseudo-terminal)
//! or TCP in either direction.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use crate::recording::Player;
use crate::recording::RecordKind;
use crate::recording::tap::{self, SharedRecording, TapRead, TapWrite};

/// The reading half of an open transport.
pub type ReadHalf = Pin<Box<dyn AsyncRead + Send>>;
/// The writing half of an open transport.
pub type WriteHalf = Pin<Box<dyn AsyncWrite + Send>>;

/// Where the edge is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A serial device and its baud rate (ignored by USB CDC-ACM and pseudo-terminals).
    Serial {
        /// Device path, e.g. `/dev/ttyACM0`.
        path: PathBuf,
        /// Baud rate.
        baud: u32,
    },
    /// Connect to an edge listening on TCP.
    TcpConnect(SocketAddr),
    /// Listen for an edge that connects over TCP.
    TcpListen(SocketAddr),
    /// A recording played back (see [`Opener::replay`]).
    Replay(PathBuf),
}

/// Why a transport could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A replay transport was opened without its player (use [`Opener::replay`]).
    #[error("{}: a replay needs a player (Opener::replay)", .0.display())]
    Replay(PathBuf),
    /// The serial device could not be opened.
    #[error("opening serial device {path}: {source}")]
    Serial {
        /// The device.
        path: PathBuf,
        /// Why.
        source: tokio_serial::Error,
    },
    /// The TCP connection or listener failed.
    #[error("TCP {addr}: {source}")]
    Tcp {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A transport being served: the listener of `TcpListen` stays bound across reconnections.
pub struct Opener {
    transport: Transport,
    listener: Option<TcpListener>,
    player: Option<Player>,
    recording: Option<SharedRecording>,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Serial { path, baud } => {
                write!(f, "serial {} at {baud} baud", path.display())
            }
            Transport::TcpConnect(addr) => write!(f, "tcp {addr}"),
            Transport::TcpListen(addr) => write!(f, "tcp listen {addr}"),
            Transport::Replay(path) => write!(f, "replay of {}", path.display()),
        }
    }
}

impl Opener {
    /// Prepares `transport`; a listener binds here, so that its address is known at once.
    pub async fn new(transport: Transport) -> Result<Self, TransportError> {
        let listener = match &transport {
            Transport::TcpListen(addr) => Some(TcpListener::bind(addr).await.map_err(
                |source| TransportError::Tcp {
                    addr: *addr,
                    source,
                },
            )?),
            _ => None,
        };
        Ok(Opener {
            transport,
            listener,
            player: None,
            recording: None,
        })
    }

    /// A recording played back: each recorded connection is opened in turn; the host's
    /// answers go nowhere. After the last one, `open` waits forever (the caller stops the
    /// link when [`Player::end`] says the replay is over).
    pub fn replay(path: PathBuf, player: Player) -> Self {
        Opener {
            transport: Transport::Replay(path),
            listener: None,
            player: Some(player),
            recording: None,
        }
    }

    /// Records every byte in both directions of every connection opened from now on, and when
    /// each connection opens and ends.
    pub fn record_into(&mut self, recording: SharedRecording) {
        self.recording = Some(recording);
    }

    /// Notes why the current connection ended (in the recording, if there is one).
    pub fn note_closed(&self, reason: &str) {
        if let Some(rec) = &self.recording {
            tap::record(rec, RecordKind::Disconnected, reason.as_bytes());
        }
    }

    /// The address a listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// What it opens.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Opens (or, listening, accepts) one connection.
    pub async fn open(&mut self) -> Result<(ReadHalf, WriteHalf), TransportError> {
        let (r, w) = self.open_untapped().await?;
        Ok(match &self.recording {
            Some(rec) => {
                tap::record(
                    rec,
                    RecordKind::Connected,
                    self.transport.to_string().as_bytes(),
                );
                (
                    Box::pin(TapRead::new(r, rec.clone())),
                    Box::pin(TapWrite::new(w, rec.clone())),
                )
            }
            None => (r, w),
        })
    }

    async fn open_untapped(&mut self) -> Result<(ReadHalf, WriteHalf), TransportError> {
        if let Some(player) = &mut self.player {
            return match player.next_connection().await {
                Some(stream) => {
                    let (r, _) = tokio::io::split(stream);
                    Ok((Box::pin(r), Box::pin(tokio::io::sink())))
                }
                None => std::future::pending().await,
            };
        }
        match &self.transport {
            Transport::Serial { path, baud } => {
                let builder = tokio_serial::new(path.to_string_lossy(), *baud);
                let port = tokio_serial::SerialStream::open(&builder).map_err(|source| {
                    TransportError::Serial {
                        path: path.clone(),
                        source,
                    }
                })?;
                let (r, w) = tokio::io::split(port);
                Ok((Box::pin(r), Box::pin(w)))
            }
            Transport::TcpConnect(addr) => {
                let stream =
                    TcpStream::connect(addr)
                        .await
                        .map_err(|source| TransportError::Tcp {
                            addr: *addr,
                            source,
                        })?;
                split_tcp(stream)
            }
            Transport::Replay(path) => Err(TransportError::Replay(path.clone())),
            Transport::TcpListen(addr) => {
                let addr = *addr;
                let listener = match &self.listener {
                    Some(l) => l,
                    None => {
                        return Err(TransportError::Tcp {
                            addr,
                            source: std::io::Error::other("listener not bound"),
                        });
                    }
                };
                let (stream, _) = listener
                    .accept()
                    .await
                    .map_err(|source| TransportError::Tcp { addr, source })?;
                split_tcp(stream)
            }
        }
    }
}

fn split_tcp(stream: TcpStream) -> Result<(ReadHalf, WriteHalf), TransportError> {
    // Small packets (credits, results) must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    Ok((Box::pin(r), Box::pin(w)))
}
