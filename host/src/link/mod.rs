//! The host's end of the link to the edge: sources of connections, the session that runs
//! over them as a state machine, and the runner that does its I/O.
//!
//! ```text
//!  Source::open ─► Connection ─► runner ─bytes, now─► LinkSession ─► LinkEvent ─► pipeline
//!  (serial, TCP,     read/write    (tokio)  ◄─packets──  handshake, credit from the consumer's
//!   a replay; a                     ▲                    free room, reassembly, Ping/Pong clock
//!   tap records)                    └── OutgoingResult   offset, heartbeats, liveness, counters
//! ```

pub mod config;
pub mod event;
pub mod runner;
pub mod session;
pub mod source;
pub mod stats;

pub use config::LinkConfig;
pub use event::{LinkEvent, OutgoingResult, ReceivedFrame};
pub use runner::{Link, LinkHandle, ResultRefused, ResultSender, spawn};
pub use session::LinkSession;
pub use source::{Connection, Limited, LiveSource, OpenFuture, Source, Transport, TransportError};
pub use stats::{FrameLoss, LinkStats};
