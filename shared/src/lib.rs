//! The dinoedge wire protocol, shared by the acquisition-side firmware (`dinoedge-edge`) and
//! the Jetson host (`dinoedge`).
//!
//! # Overview
//! - [`Message`] is the table of every packet, from [`Hello`] to [`InferenceResult`].
//! - [`wire`] frames messages on a byte stream: postcard, then CRC-32, then COBS, then a
//!   `0x00` delimiter. [`wire::encode`] writes one packet; [`wire::Decoder`] reads a stream in
//!   pieces of any size and resynchronises after damage.
//! - [`chunk`] splits a frame into [`FrameChunk`]s that fit the negotiated packet size;
//!   [`reassembly`] (feature `alloc`) puts them back together on the host and reports each
//!   lost frame with its reason.
//! - [`credit`] is the flow-control arithmetic both ends agree on; [`clock`] turns a
//!   [`Ping`]/[`Pong`] exchange into a clock-offset estimate.
//! - [`secure`] authenticates both ends with a pre-shared key (Noise `NNpsk0`) and seals
//!   every packet after the handshake in a [`Sealed`] message.
//! - [`io`] (feature `std`, and `tokio` for async) reads and writes packets on streams.
//!
//! PROTOCOL.md describes every byte, for implementations in other languages.
//!
//! The crate is `no_std` and needs no allocator without the `alloc` feature; every decode
//! entry point returns a value or a typed error for any input, and never panics.
#![cfg_attr(not(feature = "std"), no_std)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod chunk;
pub mod clock;
pub mod credit;
#[cfg(feature = "std")]
pub mod io;
pub mod message;
#[cfg(feature = "alloc")]
pub mod reassembly;
pub mod secure;
pub mod wire;

pub use message::*;

/// The protocol version this crate speaks, sent in [`Hello`] and [`Welcome`].
///
/// Version 2 appended [`Hello::previous`]; a version 1 `Hello` no longer parses, and the
/// decoders tell it apart from a damaged packet
/// ([`DecodeError::OtherVersionHello`](wire::DecodeError::OtherVersionHello)). Version 3
/// added the secure link ([`secure`]: [`SecureHello`] to [`Sealed`]); its `Hello` has the
/// version 2 layout, and a host refuses a version 2 edge by name rather than let it stream
/// in the clear past the handshake.
pub const PROTOCOL_VERSION: u16 = 3;

/// Smallest packet size (message plus CRC, in bytes) a peer may announce or a host may
/// negotiate: every message but a [`FrameChunk`] or a masked [`InferenceResult`] fits in it.
pub const MIN_PACKET: usize = 1024;
