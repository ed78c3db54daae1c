//! Link captures: synthesise the byte stream an edge sends ([`synth`]) and take a capture
//! apart ([`inspect`]).
//!
//! A capture is the raw bytes of one direction of the link, as read from the serial device or
//! socket, with nothing added: exactly what [`dinoedge_proto::wire`] frames.

pub mod inspect;
pub mod synth;

pub use inspect::{Inspection, inspect};
pub use synth::{SynthConfig, SynthError, SynthReport, synthesize};
