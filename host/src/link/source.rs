//! Where the link's bytes come from: a source opens connections one after another. A live
//! transport (a serial device, TCP in either direction) is one; a replayed recording
//! (`crate::recording::ReplaySource`) is another, and a recording tap
//! (`crate::recording::TappedSource`) wraps any source.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use super::config::LinkConfig;

/// The reading half of an open connection.
pub type ReadHalf = Pin<Box<dyn AsyncRead + Send>>;
/// The writing half of an open connection.
pub type WriteHalf = Pin<Box<dyn AsyncWrite + Send>>;

/// One open connection to the edge.
pub struct Connection {
    /// What the edge sends.
    pub read: ReadHalf,
    /// What the host sends.
    pub write: WriteHalf,
    /// The peer's address on TCP; `None` on a serial link or a replay.
    pub peer: Option<SocketAddr>,
}

/// What [`Source::open`] returns: the next connection, `None` once the source has ended.
pub type OpenFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<Connection>, TransportError>> + Send + 'a>>;

/// Opens connections to an edge, one after another (the link reopens after each ends).
pub trait Source: Send {
    /// Opens (or, listening, accepts) the next connection; `Ok(None)` when the source has no
    /// more (a replay played out), which ends the link.
    fn open(&mut self) -> OpenFuture<'_>;

    /// The connection opened last has ended, and why.
    fn closed(&mut self, _reason: &str) {}

    /// What it is, for logs.
    fn describe(&self) -> String;

    /// Adjusts the link's settings to what the source is (a replay reconnects at once).
    fn configure(&self, _config: &mut LinkConfig) {}

    /// Whether its connections are news worth logging (a live edge) or routine (a replay).
    fn is_live(&self) -> bool {
        true
    }
}

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
}

/// Why a transport could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
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

/// A live transport: the listener of `TcpListen` stays bound across reconnections.
pub struct LiveSource {
    transport: Transport,
    listener: Option<Listener>,
}

/// A listener is bound at once (so that its address is known and a busy port is an error
/// before anything runs) and handed to tokio on first use, inside the link's runtime.
enum Listener {
    Bound(std::net::TcpListener),
    Serving(TcpListener),
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Serial { path, baud } => {
                write!(f, "serial {} at {baud} baud", path.display())
            }
            Transport::TcpConnect(addr) => write!(f, "tcp {addr}"),
            Transport::TcpListen(addr) => write!(f, "tcp listen {addr}"),
        }
    }
}

impl LiveSource {
    /// Prepares `transport`; a listener binds here, so that its address is known at once.
    pub fn new(transport: Transport) -> Result<Self, TransportError> {
        let listener = match &transport {
            Transport::TcpListen(addr) => {
                let tcp = |source| TransportError::Tcp {
                    addr: *addr,
                    source,
                };
                let listener = std::net::TcpListener::bind(addr).map_err(tcp)?;
                listener.set_nonblocking(true).map_err(tcp)?;
                Some(Listener::Bound(listener))
            }
            _ => None,
        };
        Ok(LiveSource {
            transport,
            listener,
        })
    }

    /// The address a listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self.listener.as_ref()? {
            Listener::Bound(l) => l.local_addr().ok(),
            Listener::Serving(l) => l.local_addr().ok(),
        }
    }

    /// What it opens.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    async fn open_live(&mut self) -> Result<Connection, TransportError> {
        match &self.transport {
            Transport::Serial { path, baud } => {
                let builder = tokio_serial::new(path.to_string_lossy(), *baud);
                let port = tokio_serial::SerialStream::open(&builder).map_err(|source| {
                    TransportError::Serial {
                        path: path.clone(),
                        source,
                    }
                })?;
                let (read, write) = tokio::io::split(port);
                Ok(Connection {
                    read: Box::pin(read),
                    write: Box::pin(write),
                    peer: None,
                })
            }
            Transport::TcpConnect(addr) => {
                let stream =
                    TcpStream::connect(addr)
                        .await
                        .map_err(|source| TransportError::Tcp {
                            addr: *addr,
                            source,
                        })?;
                Ok(split_tcp(stream))
            }
            Transport::TcpListen(addr) => {
                let addr = *addr;
                let tcp = |source| TransportError::Tcp { addr, source };
                let listener = match self.listener.take() {
                    Some(Listener::Bound(l)) => TcpListener::from_std(l).map_err(tcp)?,
                    Some(Listener::Serving(l)) => l,
                    None => return Err(tcp(std::io::Error::other("listener not bound"))),
                };
                let listener = &*self.listener.insert(Listener::Serving(listener));
                let Listener::Serving(listener) = listener else {
                    return Err(tcp(std::io::Error::other("listener not bound")));
                };
                let (stream, _) = listener
                    .accept()
                    .await
                    .map_err(|source| TransportError::Tcp { addr, source })?;
                Ok(split_tcp(stream))
            }
        }
    }
}

impl Source for LiveSource {
    fn open(&mut self) -> OpenFuture<'_> {
        Box::pin(async move { self.open_live().await.map(Some) })
    }

    fn describe(&self) -> String {
        self.transport.to_string()
    }
}

fn split_tcp(stream: TcpStream) -> Connection {
    // Small packets (credits, results) must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok();
    let (read, write) = stream.into_split();
    Connection {
        read: Box::pin(read),
        write: Box::pin(write),
        peer,
    }
}

/// A source that ends after a number of connections (a run that serves one edge session and
/// then reports, as a test or a bench does).
pub struct Limited<S> {
    inner: S,
    left: u32,
}

impl<S: Source> Limited<S> {
    /// Opens at most `connections` connections from `inner`.
    pub fn new(inner: S, connections: u32) -> Self {
        Limited {
            inner,
            left: connections,
        }
    }
}

impl<S: Source> Source for Limited<S> {
    fn open(&mut self) -> OpenFuture<'_> {
        Box::pin(async move {
            if self.left == 0 {
                return Ok(None);
            }
            let opened = self.inner.open().await?;
            if opened.is_some() {
                self.left -= 1;
            }
            Ok(opened)
        })
    }

    fn closed(&mut self, reason: &str) {
        self.inner.closed(reason);
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
