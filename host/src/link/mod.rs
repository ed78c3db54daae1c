//! The host's end of the link to the edge: transports, and the session that runs over them.
//!
//! ```text
//!  Transport::open ─► AsyncPacketReader ─► Session ─► LinkEvent (Frame, Lost, ...) ─► pipeline
//!   serial / TCP      AsyncPacketWriter ◄─  │  handshake, credit from the consumer's free
//!   (reopened after loss)                    │  room, reassembly, Ping/Pong clock offset,
//!                                            └─ heartbeats, counters (LinkStats)
//! ```

pub mod session;
pub mod stats;
pub mod transport;

pub use session::{LinkConfig, LinkEvent, OutgoingResult, ReceivedFrame, run_link};
pub use stats::LinkStats;
pub use transport::{Transport, TransportError};
