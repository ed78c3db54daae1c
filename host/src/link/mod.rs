//! The host's end of the link to the edge: sources of connections (secured by [`secure`]:
//! the edge proves its key, every packet sealed), the session that runs over them as a state
//! machine, and the runner that does its I/O.
//!
//! ```text
//!  Source::open ─► Connection ─► runner ─bytes, now─► LinkSession ─► LinkEvent ─► pipeline
//!  (serial, TCP,     read/write    (tokio)  ◄─packets──  handshake, credit from the consumer's
//!   secured by                      ▲                    free room, reassembly, Ping/Pong clock
//!   `secure`; a replay;             └── OutgoingResult   offset, heartbeats, liveness, counters
//!   a tap records)
//! ```

pub mod config;
pub mod event;
pub mod runner;
pub mod secure;
pub mod session;
pub mod source;
pub mod stats;

pub use config::LinkConfig;
pub use event::{EdgeInput, LinkEvent, OutgoingResult, ReceivedFrame};
pub use runner::{Link, LinkHandle, ResultRefused, ResultSender, spawn};
pub use session::LinkSession;
pub use source::{Connection, Limited, LiveSource, OpenFuture, Source, Transport, TransportError};
pub use stats::{FrameLoss, LinkStats};
