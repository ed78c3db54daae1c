//! The dinoedge acquisition-side firmware core: captures frames at the scanner, streams them to
//! the host under credit-based flow control, and acts on the results that come back.
//!
//! # Overview
//! - [`machine::Edge`] is the state machine (handshake, streaming, liveness, results, events).
//!   It is generic over traits, not over a board: embedded-io `Read + ReadReady + Write` for the
//!   link, a [`port::FrameSource`] for the capture peripheral, a [`port::Clock`], and
//!   embedded-hal pins for the alarm output, the freeze button and the foot switch.
//! - [`source`] has two frame sources: an SPI frame grabber over an embedded-hal `SpiDevice`,
//!   and a test pattern.
//! - [`buffers::EdgeBuffers`] is all the memory it uses, sized by const generics and owned by the
//!   caller; no heap, and never a whole frame.
//!
//! It speaks the protocol of [`dinoedge_proto`] (re-exported as [`proto`]); see its PROTOCOL.md.
#![no_std]

#[macro_use]
mod fmt;

pub mod buffers;
pub mod machine;
pub mod port;
pub mod source;

pub use dinoedge_proto as proto;
